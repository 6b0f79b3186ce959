/**
 * ringfenced's configuration file (docs/ringfenced.md), by default
 * /etc/ringfence/ringfenced.yaml, validated whole at start:
 *
 *   policy-file: /etc/ringfence/default-policy.yml
 *   socket: /run/ringfence/agent.sock
 *   socket-group: ci
 *   dns-upstream: 127.0.0.53
 *   cluster: linux-x64
 *   store:
 *     url: https://127.0.0.1:7070
 *     token-file: /etc/ringfence/agent-token
 *     ca-file: /etc/ringfence/store-ca.pem
 *   metrics:
 *     listen: 127.0.0.1:9464
 *   log-level: info
 *
 * Every key is optional and an empty file is all defaults. Each problem is
 * one line `FILE:LINE: KEY …`, and all of them are reported at once: a
 * daemon that protects jobs must not start on a half-understood config.
 *
 * parseDaemonConfig reads text only (no files, no groups); loadDaemonConfig
 * reads the file and then what it names (the policy, the store's token and
 * CA, the groups), so that a missing token fails at start, not at the
 * first job.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node as YamlNode } from 'yaml';
import type { Upstream } from '../dns/proxy';
import { isLoopback, parseIp } from '../net/address';
import { readTextFile } from '../policy/file';
import { PolicyError, readPolicyFile, type Policy } from '../policy/policy';
import { checkName } from '../store/model';
import { instanceName } from '../jobs/registry';
import { RingfenceError } from '../util/errors';
import { parseUpstream } from './job';
import { LOG_LEVELS, type LogLevel } from './log';
import { parseMetricsListen, unixSocketPathProblem, type MetricsListen } from './metrics';

export const DEFAULT_CONFIG_PATH = '/etc/ringfence/ringfenced.yaml';

/** The local API's socket when the config names none: /run/ringfence/agent.sock, or /run/ringfence-NAME/… under RINGFENCE_INSTANCE=NAME. */
export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  return `/run/${instanceName(env)}/agent.sock`;
}

export interface StoreConfig {
  /** As written: https://HOST:PORT, or http://HOST:PORT for a store on loopback. */
  url: string;
  /** HOST:PORT, what the gRPC client dials. */
  address: string;
  /** https: TLS (with ca-file's CA, else the system's roots). */
  tls: boolean;
  /** The agent token (one line); read again at each use, so it can be rotated without a restart. */
  tokenFile: string;
  /** PEM of the CA that signed the store's certificate (https only). */
  caFile?: string;
}

export interface MetricsConfig {
  listen: MetricsListen;
  /** A unix socket's group (mode 0660); without one the socket is root's only (0600). */
  group?: string;
}

export interface DaemonConfig {
  /** The file it came from, as errors name it. */
  source: string;
  /** The policy of every job handed over without one, when no store is configured. */
  policyFile?: string;
  /** The local API's unix socket. */
  socket: string;
  /** Members of this group may connect to the socket (0660); without it only root may (0600). */
  socketGroup?: string;
  /** Where allowed DNS queries go; undefined: the host's resolver (systemUpstream, read when a job starts). */
  dnsUpstream?: Upstream;
  store?: StoreConfig;
  /** This machine's runner group / cluster: the job identity's `cluster`, used by policy resolution. */
  cluster?: string;
  /** Prometheus metrics; undefined: not served. */
  metrics?: MetricsConfig;
  logLevel: LogLevel;
}

/** What loadDaemonConfig adds: what the config names, read and checked. */
export interface LoadedDaemonConfig extends DaemonConfig {
  /** policy-file's policy, with its name (the file's `name:`, else its base name) and the parser's notes to log. */
  defaultPolicy?: { policy: Policy; name: string; notes: string[] };
  socketGid?: number;
  metricsGid?: number;
}

/** One problem of a config file: its line, and a message that names the key. */
interface ConfigProblem {
  line: number;
  message: string;
}

/**
 * Every problem of a config file and of what it names, one line each
 * (`FILE:LINE: KEY …`): a usage error, nothing was started.
 */
export class DaemonConfigError extends RingfenceError {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'), 'RF_USAGE');
    this.name = 'DaemonConfigError';
  }

  static of(source: string, problems: ConfigProblem[]): DaemonConfigError {
    return new DaemonConfigError(problems.map((p) => `${source}:${p.line}: ${p.message}`));
  }
}

const KEYS = ['policy-file', 'socket', 'socket-group', 'dns-upstream', 'store', 'cluster', 'metrics', 'log-level'];
const STORE_KEYS = ['url', 'token-file', 'ca-file'];
const METRICS_KEYS = ['listen', 'group'];

/** Every key a config file may have, nested ones as `store.url` (docs/ringfenced.md lists each). */
export const CONFIG_KEYS: readonly string[] = [...KEYS, ...STORE_KEYS.map((k) => `store.${k}`), ...METRICS_KEYS.map((k) => `metrics.${k}`)];

const GROUP_NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,30}\$?$/;

/** How a value the key does not take is named in a problem. */
function described(node: YamlNode): string {
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  if (isScalar(node)) return typeof node.value === 'string' ? `'${node.value}'` : `${typeof node.value} ${String(node.value)}`;
  return `'${String(node)}'`;
}

/** Where each key and what the keys' values are, for load to name in its own problems. */
interface Parsed {
  config: DaemonConfig;
  lines: Map<string, number>;
}

function parse(text: string, source: string, env: NodeJS.ProcessEnv): Parsed {
  const counter = new LineCounter();
  const doc = parseDocument(text, { lineCounter: counter, prettyErrors: false, uniqueKeys: true });
  const problems: ConfigProblem[] = [];
  const problem = (line: number, message: string) => problems.push({ line, message });
  const lineOf = (node: YamlNode | null | undefined, fallback: number) => (node?.range ? counter.linePos(node.range[0]).line : fallback);

  for (const error of doc.errors) problem(counter.linePos(error.pos[0]).line, `YAML: ${error.message.split('\n')[0]}`);
  if (problems.length) throw DaemonConfigError.of(source, problems);

  const config: DaemonConfig = { source, socket: defaultSocketPath(env), logLevel: 'info' };
  const lines = new Map<string, number>();
  const root = doc.contents as YamlNode | null;
  if (root === null || (isScalar(root) && root.value === null)) return { config, lines }; // empty, or comments only: all defaults
  if (!isMap(root)) throw DaemonConfigError.of(source, [{ line: lineOf(root, 1), message: `a config file is a mapping of keys (${KEYS.join(', ')}), not ${described(root)}` }]);

  /** A string value, or undefined after its problem: empty, or not a string. */
  const stringValue = (key: string, value: YamlNode | null, line: number, expected: string): string | undefined => {
    if (value === null || (isScalar(value) && (value.value === null || value.value === ''))) {
      problem(line, `${key} is empty (expected ${expected})`);
      return undefined;
    }
    if (!isScalar(value) || typeof value.value !== 'string') {
      problem(lineOf(value, line), `${key} must be ${expected}, not ${described(value)}`);
      return undefined;
    }
    return value.value;
  };
  const absolutePath = (key: string, value: YamlNode | null, line: number): string | undefined => {
    const text = stringValue(key, value, line, 'an absolute path');
    if (text === undefined) return undefined;
    if (!path.isAbsolute(text)) return void problem(lineOf(value, line), `${key} must be an absolute path, not '${text}'`);
    if (text.includes('\0')) return void problem(lineOf(value, line), `${key} '${JSON.stringify(text)}' holds a NUL byte`);
    return text;
  };
  const socketPath = (key: string, value: YamlNode | null, line: number): string | undefined => {
    const text = absolutePath(key, value, line);
    const unfit = text === undefined ? undefined : unixSocketPathProblem(text);
    if (unfit) return void problem(lineOf(value, line), `${key} '${text}' ${unfit}`);
    return text;
  };
  const groupName = (key: string, value: YamlNode | null, line: number): string | undefined => {
    const text = stringValue(key, value, line, 'a group name');
    if (text !== undefined && !GROUP_NAME.test(text)) return void problem(lineOf(value, line), `${key} '${text}' is not a group name`);
    return text;
  };
  /** The pairs of a nested mapping, unknown keys refused; undefined when it is no mapping. */
  const mapping = (key: string, value: YamlNode | null, line: number, known: string[]) => {
    if (value === null || (isScalar(value) && value.value === null)) return void problem(line, `${key} is empty (expected a mapping of ${known.join(', ')})`);
    if (!isMap(value)) return void problem(lineOf(value, line), `${key} must be a mapping of ${known.join(', ')}, not ${described(value)}`);
    const pairs = new Map<string, { value: YamlNode | null; line: number }>();
    for (const pair of value.items) {
      const sub = String(pair.key);
      const subLine = lineOf(pair.key as YamlNode, line);
      if (!known.includes(sub)) problem(subLine, `unknown key '${key}.${sub}' (expected one of: ${known.join(', ')})`);
      else {
        pairs.set(sub, { value: pair.value as YamlNode | null, line: subLine });
        lines.set(`${key}.${sub}`, subLine);
      }
    }
    return pairs;
  };

  for (const pair of root.items) {
    const key = String(pair.key);
    const value = pair.value as YamlNode | null;
    const line = lineOf(pair.key as YamlNode, 1);
    if (!KEYS.includes(key)) {
      problem(line, `unknown key '${key}' (expected one of: ${KEYS.join(', ')})`);
      continue;
    }
    lines.set(key, line);
    switch (key) {
      case 'policy-file':
        config.policyFile = absolutePath(key, value, line);
        break;
      case 'socket': {
        const socket = socketPath(key, value, line);
        if (socket !== undefined) config.socket = socket;
        break;
      }
      case 'socket-group':
        config.socketGroup = groupName(key, value, line);
        break;
      case 'dns-upstream': {
        const spec = stringValue(key, value, line, 'ADDRESS, ADDRESS:PORT or [IPv6]:PORT');
        if (spec === undefined) break;
        try {
          config.dnsUpstream = parseUpstream(spec);
        } catch (error) {
          problem(lineOf(value, line), `dns-upstream: ${(error as Error).message}`);
        }
        break;
      }
      case 'cluster': {
        const cluster = stringValue(key, value, line, 'a cluster name');
        if (cluster === undefined) break;
        try {
          config.cluster = checkName('cluster', cluster);
        } catch (error) {
          problem(lineOf(value, line), (error as Error).message); // "cluster 'x' must be 1-100 letters, …"
        }
        break;
      }
      case 'log-level': {
        const level = stringValue(key, value, line, `one of ${LOG_LEVELS.join(', ')}`);
        if (level === undefined) break;
        if (!(LOG_LEVELS as readonly string[]).includes(level)) problem(lineOf(value, line), `log-level must be one of ${LOG_LEVELS.join(', ')}, not '${level}'`);
        else config.logLevel = level as LogLevel;
        break;
      }
      case 'store': {
        const pairs = mapping(key, value, line, STORE_KEYS);
        if (!pairs) break;
        const url = pairs.has('url') ? storeUrl(pairs.get('url')!) : void problem(line, 'store.url is missing (the policy store, https://HOST:PORT)');
        const tokenFile = pairs.has('token-file')
          ? absolutePath('store.token-file', pairs.get('token-file')!.value, pairs.get('token-file')!.line)
          : void problem(line, "store.token-file is missing (the file that holds this agent's token)");
        const caFile = pairs.has('ca-file') ? absolutePath('store.ca-file', pairs.get('ca-file')!.value, pairs.get('ca-file')!.line) : undefined;
        if (url && caFile !== undefined && !url.tls) problem(pairs.get('ca-file')!.line, `store.ca-file is for an https:// store, and store.url is '${url.url}'`);
        if (url && tokenFile !== undefined) config.store = { ...url, tokenFile, ...(caFile !== undefined ? { caFile } : {}) };
        break;
      }
      case 'metrics': {
        const pairs = mapping(key, value, line, METRICS_KEYS);
        if (!pairs) break;
        let listen: MetricsListen | undefined;
        if (!pairs.has('listen')) problem(line, 'metrics.listen is missing (a unix socket path, 127.0.0.1:PORT or [::1]:PORT)');
        else {
          const { value: listenValue, line: listenLine } = pairs.get('listen')!;
          const spec = stringValue('metrics.listen', listenValue, listenLine, 'a unix socket path, 127.0.0.1:PORT or [::1]:PORT');
          if (spec !== undefined) {
            try {
              listen = parseMetricsListen(spec);
            } catch (error) {
              problem(lineOf(listenValue, listenLine), `metrics.listen ${(error as Error).message}`);
            }
          }
        }
        const group = pairs.has('group') ? groupName('metrics.group', pairs.get('group')!.value, pairs.get('group')!.line) : undefined;
        if (group !== undefined && listen?.kind === 'tcp') problem(pairs.get('group')!.line, 'metrics.group is for a unix socket, and metrics.listen is a TCP port');
        if (listen) config.metrics = { listen, ...(group !== undefined ? { group } : {}) };
        break;
      }
    }
  }

  /** A store URL: https, or http to a store on loopback only (a token never crosses the network in clear). */
  function storeUrl({ value, line }: { value: YamlNode | null; line: number }): Pick<StoreConfig, 'url' | 'address' | 'tls'> | undefined {
    const text = stringValue('store.url', value, line, 'https://HOST:PORT');
    if (text === undefined) return undefined;
    const at = lineOf(value, line);
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      return void problem(at, `store.url '${text}' is not a URL (expected https://HOST:PORT)`);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') return void problem(at, `store.url '${text}': expected https://HOST:PORT, not ${url.protocol.slice(0, -1)}://`);
    if (url.username || url.password || url.search || url.hash || (url.pathname !== '/' && url.pathname !== '')) {
      return void problem(at, `store.url '${text}': expected https://HOST:PORT and nothing more (the token goes in store.token-file)`);
    }
    if (!url.port) return void problem(at, `store.url '${text}' has no port (the policy store listens on 7070 unless told otherwise)`);
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    const ip = parseIp(host);
    const loopback = host === 'localhost' || (ip !== undefined && isLoopback(ip));
    if (url.protocol === 'http:' && !loopback) return void problem(at, `store.url '${text}': http:// would send the agent token in clear: use https:// (http:// is for a store on loopback only)`);
    return { url: text, address: `${url.hostname}:${url.port}`, tls: url.protocol === 'https:' };
  }

  if (config.policyFile !== undefined && config.store) {
    problem(Math.max(lines.get('policy-file')!, lines.get('store')!), "policy-file and store exclude each other: with a store, each job's policy is the one the store resolves for it");
  }
  if (config.metrics?.listen.kind === 'unix' && config.metrics.listen.path === config.socket) {
    problem(lines.get('metrics.listen')!, `metrics.listen is the local API's socket (${config.socket}): give it a path of its own`);
  }
  if (problems.length) throw DaemonConfigError.of(source, problems.sort((a, b) => a.line - b.line));
  return { config, lines };
}

/**
 * A config file's text as a DaemonConfig, reading nothing else. `source`
 * names the file in every problem; `env` gives RINGFENCE_INSTANCE for the
 * default socket. Throws DaemonConfigError listing every problem.
 */
export function parseDaemonConfig(text: string, source: string, env: NodeJS.ProcessEnv = process.env): DaemonConfig {
  return parse(text, source, env).config;
}

/**
 * The config file at `file`, and what it names: the policy file parsed with
 * the policy parser (its problems name the policy file and line), the
 * store's token and CA readable, the groups known to the system. A missing
 * or unreadable config file is a one-line usage error; an empty one is all
 * defaults.
 */
export function loadDaemonConfig(file: string = DEFAULT_CONFIG_PATH, env: NodeJS.ProcessEnv = process.env): LoadedDaemonConfig {
  let text: string;
  try {
    text = readConfigText(file);
  } catch (error) {
    if (error instanceof RingfenceError) throw new DaemonConfigError([error.message]); // "config file F: no such file"…
    throw error;
  }
  const { config, lines } = parse(text, file, env);
  const loaded: LoadedDaemonConfig = { ...config };
  const where = (key: string) => `${file}:${lines.get(key)}: ${key}`;
  const problems: string[] = [];
  const check = (fn: () => void) => {
    try {
      fn();
    } catch (error) {
      if (!(error instanceof RingfenceError)) throw error;
      problems.push(error.message);
    }
  };

  if (config.policyFile !== undefined) {
    const policyFile = config.policyFile;
    try {
      const { policy, notes } = readPolicyFile(policyFile, where('policy-file'));
      loaded.defaultPolicy = { policy, name: policy.name ?? path.basename(policyFile).replace(/\.ya?ml$/, ''), notes };
    } catch (error) {
      if (error instanceof RingfenceError) problems.push(error.message);
      // wrong inside: each of the policy's own problems (POLICY:LINE: …) after the config line that names it
      else if (error instanceof PolicyError) problems.push(...error.message.split('\n').map((line) => `${where('policy-file')} ${line}`));
      else throw error;
    }
  }
  if (config.store) {
    const store = config.store;
    check(() => readStoreCredentials(store, { token: where('store.token-file'), ca: where('store.ca-file') }));
  }
  if (config.socketGroup !== undefined) {
    const group = config.socketGroup;
    check(() => (loaded.socketGid = groupId(group, where('socket-group'))));
  }
  if (config.metrics?.group !== undefined) {
    const group = config.metrics.group;
    check(() => (loaded.metricsGid = groupId(group, where('metrics.group'))));
  }
  if (problems.length) throw new DaemonConfigError(problems);
  return loaded;
}

/** The config file's text: '' for an empty one (all defaults), which a policy file may not be. */
function readConfigText(file: string): string {
  try {
    return readTextFile(file, 'config file');
  } catch (error) {
    if (isBlankFile(file)) return '';
    throw error;
  }
}

function isBlankFile(file: string): boolean {
  try {
    return fs.readFileSync(file, 'utf8').trim() === '';
  } catch {
    return false;
  }
}

export interface StoreCredentials {
  token: string;
  /** The CA's PEM, for an https store with ca-file. */
  ca?: Buffer;
}

/**
 * The agent's token and the store's CA, read now (the daemon reads them for
 * each connection, so a rotated token is picked up). `labels` say how a
 * problem names each file (load names the config file's line). A token file
 * others can read is refused: the token is this machine's credential.
 */
export function readStoreCredentials(store: StoreConfig, labels: { token: string; ca: string } = { token: 'store.token-file', ca: 'store.ca-file' }): StoreCredentials {
  const token = readTextFile(store.tokenFile, labels.token).trim();
  if (/\s/.test(token)) throw new RingfenceError(`${labels.token} ${store.tokenFile}: expected one token on one line`, 'RF_USAGE');
  const mode = fs.statSync(store.tokenFile).mode & 0o777;
  if (mode & 0o004) {
    throw new RingfenceError(`${labels.token} ${store.tokenFile}: every user can read it (mode ${mode.toString(8).padStart(4, '0')}): chmod 600 it`, 'RF_USAGE');
  }
  if (store.caFile === undefined) return { token };
  const ca = readTextFile(store.caFile, labels.ca);
  if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw new RingfenceError(`${labels.ca} ${store.caFile}: no PEM certificate in it (-----BEGIN CERTIFICATE-----)`, 'RF_USAGE');
  return { token, ca: Buffer.from(ca) };
}

/** A group's id, from the system's group database (getent: /etc/group, and LDAP or sssd where configured). */
function groupId(name: string, label: string): number {
  let entry: string;
  try {
    entry = execFileSync('getent', ['group', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { status?: number };
    if (e.status === 2) throw new RingfenceError(`${label} '${name}': no such group`, 'RF_USAGE');
    throw new RingfenceError(`${label} '${name}': cannot look the group up (getent: ${e.code ?? `exit ${e.status}`})`, 'RF_USAGE');
  }
  return Number(entry.split(':')[2]);
}
