/**
 * The policy file (docs/policy.md, docs/design.md §4): the same shape as a Harden-Runner step's
 * `with:` block, so existing policies import as they are.
 *
 *   name: npm-build                # optional for `ringfence run`
 *   egress-policy: block           # audit | block
 *   allowed-endpoints: >
 *     registry.npmjs.org:443
 *     *.githubusercontent.com:443
 *   lockdown-mode:
 *     enabled: true
 *     detections: [Reverse-Shell, Runner-Worker-Memory-Read, Privileged-Container]
 *
 * Validation reports every problem at once, each with its line, and a policy
 * with any problem is not returned: nothing of it can be applied.
 */
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node as YamlNode, type Scalar } from 'yaml';
import { formatIp } from '../net/address';
import { EndpointError, endpointEntries, parseEndpoint, type Endpoint } from './endpoint';
import { readTextFile } from './file';

export const DETECTIONS = ['Privileged-Container', 'Runner-Worker-Memory-Read', 'Reverse-Shell'] as const;
export type Detection = (typeof DETECTIONS)[number];
export type EgressMode = 'audit' | 'block';

export interface Policy {
  name?: string;
  egressPolicy: EgressMode;
  allowedEndpoints: Endpoint[];
  lockdown: { enabled: boolean; detections: Detection[] };
}

export interface PolicyProblem {
  line: number;
  /** Names the key or entry it is about. */
  message: string;
}

export class PolicyError extends Error {
  constructor(
    readonly source: string,
    readonly problems: PolicyProblem[],
  ) {
    super(problems.map((p) => `${source}:${p.line}: ${p.message}`).join('\n'));
    this.name = 'PolicyError';
  }
}

/** A policy with what the caller should tell the user about it (Harden-Runner keys ringfence reads otherwise). */
export interface ParsedPolicy {
  policy: Policy;
  /** One line each, for stderr; the parser prints nothing itself. */
  notes: string[];
}

/**
 * Harden-Runner `with:` inputs that have no ringfence setting. The first two
 * are accepted with a note of what ringfence does instead; the sudo ones
 * are refused when true: ringfence does not take sudo away yet, and a policy
 * must never be enforced more weakly than it says.
 */
const HARDEN_RUNNER_NOTES: Record<string, string> = {
  'disable-telemetry': 'ringfence sends no telemetry: events go only to the outputs the job names (--events, --summary) or to the policy store you run',
  'disable-file-monitoring': 'ringfence does not monitor file writes, so there is nothing to disable; lockdown-mode detections are what it watches',
};
const HARDEN_RUNNER_UNENFORCED = ['disable-sudo', 'disable-sudo-and-containers'];

const KEYS = ['name', 'egress-policy', 'allowed-endpoints', 'lockdown-mode', ...Object.keys(HARDEN_RUNNER_NOTES), ...HARDEN_RUNNER_UNENFORCED];
const LOCKDOWN_KEYS = ['enabled', 'detections'];

/** An unknown key's message: the known ones, and the one it is most likely a typo of. */
function unknownKey(key: string, known: string[]): string {
  const near = known.filter((k) => editDistance(key.toLowerCase(), k) <= Math.max(1, Math.floor(k.length / 4)));
  return `${near.length === 1 ? `did you mean '${near[0]}'? ` : ''}known: ${known.join(', ')}`;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = current;
  }
  return previous[b.length];
}

/** A Harden-Runner boolean input: YAML true/false, or the strings action inputs are. */
function booleanInput(node: YamlNode | null): boolean | undefined {
  if (!isScalar(node)) return undefined;
  if (typeof node.value === 'boolean') return node.value;
  if (node.value === 'true' || node.value === 'false') return node.value === 'true';
  return undefined;
}

/** An audit-mode policy with no endpoints: what a job gets when none applies. */
export const AUDIT_POLICY: Policy = { egressPolicy: 'audit', allowedEndpoints: [], lockdown: { enabled: false, detections: [] } };

/** How a value is named in a problem: a scalar as its value ('' when there is none), anything else as JSON. */
function shown(node: YamlNode | null): string {
  return isScalar(node) ? String(node.value ?? '') : String(node ?? '');
}

/** The same endpoint however it is written (a duplicate changes nothing). */
function endpointIdentity(endpoint: Endpoint): string {
  const target = endpoint.kind === 'name' ? endpoint.pattern : `${formatIp(endpoint)}/${endpoint.prefixLength}`;
  return `${target}:${endpoint.port}`;
}

/** Parses and validates a policy document. Throws PolicyError listing every problem. */
export function parsePolicy(text: string, source = '<policy>'): Policy {
  return parsePolicyWithNotes(text, source).policy;
}

/** parsePolicy, with the notes the caller should print (see HARDEN_RUNNER_NOTES). */
export function parsePolicyWithNotes(text: string, source = '<policy>'): ParsedPolicy {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const problems: PolicyProblem[] = [];
  const lineOf = (offset: number) => lines.linePos(offset).line;
  /** A node's line; `fallback` (its key's) for a key with no value at all (`? key`). */
  const nodeLine = (node: YamlNode | null, fallback: number) => (node ? lineOf(node.range![0]) : fallback);
  const problem = (line: number, message: string) => problems.push({ line, message });
  const notes: string[] = [];

  /**
   * The entries of a string, each with its line: read from the source, so
   * that a folded block still names each entry's own line. A block scalar's
   * first line is its header (`>`, `|`, indicators, a comment).
   */
  const stringEntries = (node: Scalar): { entry: string; line: number }[] => {
    const [start, end] = node.range!;
    const quoted = node.type === 'QUOTE_DOUBLE' || node.type === 'QUOTE_SINGLE';
    const sourceLines = (quoted ? text.slice(start + 1, end - 1) : text.slice(start, end)).split('\n');
    if (node.type === 'BLOCK_FOLDED' || node.type === 'BLOCK_LITERAL') sourceLines[0] = '';
    return sourceLines.flatMap((source, i) => endpointEntries(source).map((entry) => ({ entry, line: lineOf(start) + i })));
  };

  for (const error of doc.errors) problem(lineOf(error.pos[0]), `YAML: ${error.message.split('\n')[0]}`);
  if (problems.length) throw new PolicyError(source, problems);

  const root = doc.contents;
  if (root === null || (isScalar(root) && root.value === null)) throw new PolicyError(source, [{ line: 1, message: 'the policy is empty: it needs at least egress-policy (docs/policy.md)' }]);
  if (!isMap(root)) throw new PolicyError(source, [{ line: nodeLine(root, 1), message: 'a policy is a mapping of egress-policy, allowed-endpoints, lockdown-mode' }]);

  // egress-policy defaults to audit, as in Harden-Runner.
  const policy: Policy = { egressPolicy: 'audit', allowedEndpoints: [], lockdown: { enabled: false, detections: [] } };
  for (const pair of root.items) {
    const key = String(pair.key);
    const value = pair.value as YamlNode | null;
    const line = nodeLine(pair.key as YamlNode, 1);
    const valueLine = nodeLine(value, line);
    switch (key) {
      case 'name': {
        const name = shown(value);
        if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/.test(name)) problem(line, `name '${name}' must be 1-100 letters, digits, '.', '_' or '-'`);
        else policy.name = name;
        break;
      }
      case 'egress-policy': {
        const mode = shown(value);
        if (mode !== 'audit' && mode !== 'block') problem(valueLine, `egress-policy must be 'audit' or 'block', not '${mode}'`);
        else policy.egressPolicy = mode;
        break;
      }
      case 'allowed-endpoints': {
        const entries: { entry: string; line: number }[] = [];
        if (isSeq(value)) {
          for (const item of value.items as YamlNode[]) {
            if (isScalar(item) && typeof item.value === 'string') entries.push(...stringEntries(item));
            else problem(nodeLine(item, valueLine), `each allowed endpoint is a string, not '${shown(item)}'`);
          }
        } else if (isScalar(value) && (typeof value.value === 'string' || value.value === null)) {
          entries.push(...stringEntries(value));
        } else {
          problem(valueLine, `allowed-endpoints is a block of endpoints or a list, not '${shown(value)}'`);
        }
        const seen = new Set<string>();
        for (const { entry, line: entryLine } of entries) {
          try {
            const endpoint = parseEndpoint(entry);
            const identity = endpointIdentity(endpoint);
            if (seen.has(identity)) continue; // a duplicate changes nothing
            seen.add(identity);
            policy.allowedEndpoints.push(endpoint);
          } catch (error) {
            if (!(error instanceof EndpointError)) throw error;
            problem(entryLine, `endpoint '${entry}': ${error.message}`);
          }
        }
        break;
      }
      case 'lockdown-mode': {
        if (!isMap(value)) {
          problem(valueLine, 'lockdown-mode is a mapping with enabled and detections');
          break;
        }
        for (const item of value.items) {
          const subKey = String(item.key);
          const subValue = item.value as YamlNode | null;
          const subLine = nodeLine(item.key as YamlNode, valueLine);
          if (subKey === 'enabled') {
            if (!isScalar(subValue) || typeof subValue.value !== 'boolean') problem(subLine, 'lockdown-mode.enabled must be true or false');
            else policy.lockdown.enabled = subValue.value;
          } else if (subKey === 'detections') {
            if (!isSeq(subValue)) {
              problem(subLine, `lockdown-mode.detections is a list of ${DETECTIONS.join(', ')}`);
              continue;
            }
            for (const detection of subValue.items as YamlNode[]) {
              const name = shown(detection);
              if (!(DETECTIONS as readonly string[]).includes(name)) problem(nodeLine(detection, subLine), `unknown detection '${name}' (known: ${DETECTIONS.join(', ')})`);
              else if (!policy.lockdown.detections.includes(name as Detection)) policy.lockdown.detections.push(name as Detection);
            }
          } else {
            problem(subLine, `unknown key 'lockdown-mode.${subKey}' (${unknownKey(subKey, LOCKDOWN_KEYS)})`);
          }
        }
        break;
      }
      case 'disable-telemetry':
      case 'disable-file-monitoring':
        if (booleanInput(value) === undefined) problem(valueLine, `${key} must be true or false`);
        else notes.push(`${source}:${line}: ${key} is accepted for Harden-Runner compatibility: ${HARDEN_RUNNER_NOTES[key]}`);
        break;
      case 'disable-sudo':
      case 'disable-sudo-and-containers': {
        const enabled = booleanInput(value);
        if (enabled === undefined) problem(valueLine, `${key} must be true or false`);
        else if (enabled) problem(line, `${key}: true is not enforced by ringfence yet; the job would keep sudo, so the policy is refused (remove it or set it to false)`);
        break;
      }
      default:
        problem(line, `unknown key '${key}' (${unknownKey(key, KEYS)})`);
    }
  }
  // by line: the list items that are no strings are found before the entries of the strings
  if (problems.length) throw new PolicyError(source, problems.sort((a, b) => a.line - b.line));
  return { policy, notes };
}

/**
 * A policy file: a file that cannot be read, is empty or is not text is a
 * RingfenceError of one line (label names it: `--policy`, `-f`); a file
 * that is wrong inside is a PolicyError with a line per problem.
 */
export function readPolicyFile(path: string, label = 'policy file'): ParsedPolicy {
  return parsePolicyWithNotes(readTextFile(path, label), path);
}

/** readPolicyFile without its notes. */
export function loadPolicyFile(path: string, label = 'policy file'): Policy {
  return readPolicyFile(path, label).policy;
}
