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
import { EndpointError, parseEndpoint, type Endpoint } from './endpoint';
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
  /** The endpoint or key the problem is about. */
  entry?: string;
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

/**
 * Splits an allowed-endpoints block (white space separated, commas
 * tolerated) into entries with the source offset of each.
 */
function splitEntries(text: string, at: number): { entry: string; offset: number }[] {
  const entries: { entry: string; offset: number }[] = [];
  const token = /[^\s,]+/g;
  let match: RegExpExecArray | null;
  while ((match = token.exec(text))) entries.push({ entry: match[0], offset: at + match.index });
  return entries;
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
  const lineOf = (offset: number | undefined) => (offset === undefined ? 1 : lines.linePos(offset).line);
  const nodeLine = (node: YamlNode | null | undefined) => lineOf(node?.range?.[0]);
  const problem = (line: number, message: string, entry?: string) => problems.push({ line, message, entry });
  const notes: string[] = [];

  for (const error of doc.errors) problem(lineOf(error.pos[0]), `YAML: ${error.message.split('\n')[0]}`);
  if (problems.length) throw new PolicyError(source, problems);

  const root = doc.contents;
  if (root === null || (isScalar(root) && root.value === null)) throw new PolicyError(source, [{ line: 1, message: 'the policy is empty: it needs at least egress-policy (docs/policy.md)' }]);
  if (!isMap(root)) throw new PolicyError(source, [{ line: nodeLine(root as YamlNode), message: 'a policy is a mapping of egress-policy, allowed-endpoints, lockdown-mode' }]);

  // egress-policy defaults to audit, as in Harden-Runner.
  const policy: Policy = { egressPolicy: 'audit', allowedEndpoints: [], lockdown: { enabled: false, detections: [] } };
  for (const pair of root.items) {
    const keyNode = pair.key as YamlNode;
    const key = isScalar(keyNode) ? String(keyNode.value) : '';
    const value = pair.value as YamlNode | null;
    const line = nodeLine(keyNode);
    switch (key) {
      case 'name': {
        const name = isScalar(value) ? String(value.value ?? '') : '';
        if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/.test(name)) problem(line, `name '${name}' must be 1-100 letters, digits, '.', '_' or '-'`, 'name');
        else policy.name = name;
        break;
      }
      case 'egress-policy': {
        const mode = isScalar(value) ? String(value.value) : '';
        if (mode !== 'audit' && mode !== 'block') problem(nodeLine(value) || line, `egress-policy must be 'audit' or 'block', not '${mode}'`, 'egress-policy');
        else policy.egressPolicy = mode;
        break;
      }
      case 'allowed-endpoints': {
        const entries: { entry: string; offset: number }[] = [];
        if (isSeq(value)) {
          for (const item of value.items as YamlNode[]) {
            if (!isScalar(item) || typeof item.value !== 'string') {
              problem(nodeLine(item), 'each allowed endpoint is a string');
              continue;
            }
            entries.push(...splitEntries(item.value, (item as Scalar).range![0]));
          }
        } else if (isScalar(value) && (typeof value.value === 'string' || value.value === null)) {
          // Block scalars (> or |) and plain strings: find each entry in the
          // source so that its own line can be named.
          const [start, end] = value.range!;
          const raw = text.slice(start, end);
          const body = value.type === 'BLOCK_FOLDED' || value.type === 'BLOCK_LITERAL' ? raw.replace(/^[>|][+-]?\d*[^\n]*/, (header) => ' '.repeat(header.length)) : raw.replace(/^["']|["']$/g, ' ');
          entries.push(...splitEntries(body.replace(/#[^\n]*/g, (c) => ' '.repeat(c.length)), start));
        } else {
          problem(nodeLine(value) || line, 'allowed-endpoints is a block of endpoints or a list');
        }
        const seen = new Set<string>();
        for (const { entry, offset } of entries) {
          try {
            const endpoint = parseEndpoint(entry);
            const identity = endpoint.kind === 'name' ? `${endpoint.pattern}:${endpoint.port}` : `${endpoint.text.toLowerCase()}`;
            if (seen.has(identity)) continue; // a duplicate changes nothing
            seen.add(identity);
            policy.allowedEndpoints.push(endpoint);
          } catch (error) {
            if (!(error instanceof EndpointError)) throw error;
            problem(lineOf(offset), `endpoint '${entry}': ${error.message}`, entry);
          }
        }
        break;
      }
      case 'lockdown-mode': {
        if (!isMap(value)) {
          problem(nodeLine(value) || line, 'lockdown-mode is a mapping with enabled and detections');
          break;
        }
        for (const item of value.items) {
          const subKey = isScalar(item.key) ? String(item.key.value) : '';
          const subValue = item.value as YamlNode | null;
          const subLine = nodeLine(item.key as YamlNode);
          if (subKey === 'enabled') {
            if (!isScalar(subValue) || typeof subValue.value !== 'boolean') problem(subLine, 'lockdown-mode.enabled must be true or false', 'enabled');
            else policy.lockdown.enabled = subValue.value;
          } else if (subKey === 'detections') {
            if (!isSeq(subValue)) {
              problem(subLine, `lockdown-mode.detections is a list of ${DETECTIONS.join(', ')}`, 'detections');
              continue;
            }
            for (const detection of subValue.items as YamlNode[]) {
              const name = isScalar(detection) ? String(detection.value) : '';
              if (!(DETECTIONS as readonly string[]).includes(name)) problem(nodeLine(detection), `unknown detection '${name}' (known: ${DETECTIONS.join(', ')})`, name);
              else if (!policy.lockdown.detections.includes(name as Detection)) policy.lockdown.detections.push(name as Detection);
            }
          } else {
            problem(subLine, `unknown key 'lockdown-mode.${subKey}' (${unknownKey(subKey, LOCKDOWN_KEYS)})`, subKey);
          }
        }
        break;
      }
      case 'disable-telemetry':
      case 'disable-file-monitoring':
        if (booleanInput(value) === undefined) problem(nodeLine(value) || line, `${key} must be true or false`, key);
        else notes.push(`${source}:${line}: ${key} is accepted for Harden-Runner compatibility: ${HARDEN_RUNNER_NOTES[key]}`);
        break;
      case 'disable-sudo':
      case 'disable-sudo-and-containers': {
        const enabled = booleanInput(value);
        if (enabled === undefined) problem(nodeLine(value) || line, `${key} must be true or false`, key);
        else if (enabled) problem(line, `${key}: true is not enforced by ringfence yet; the job would keep sudo, so the policy is refused (remove it or set it to false)`, key);
        break;
      }
      default:
        problem(line, `unknown key '${key}' (${unknownKey(key, KEYS)})`, key);
    }
  }
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
