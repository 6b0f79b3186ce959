/**
 * The local API's job methods (docs/local-api.md): what `ringfence run` and
 * `ringfence status|jobs` send ringfenced, and what comes back. One module
 * for both ends, so the client and the daemon cannot disagree; every request
 * is checked here, on the daemon's side, with one-line errors naming the
 * field (a caller is never trusted to send what its client would).
 */
import { parseEndpoint, type Endpoint } from '../policy/endpoint';
import type { JobIdentity } from '../jobs/identity';
import type { JobResult } from '../jobs/session';
import { RingfenceError } from '../util/errors';

export const JOB_API = {
  status: 'status',
  jobs: 'jobs',
  /** Makes the job (cgroup, policy in the kernel); the caller starts its first process in the returned cgroup. */
  start: 'job.start',
  /** Makes a traced job (`ringfence trace`): every event of it streamed back (job.events), nothing enforced. */
  trace: 'trace.start',
  /** The job's first process ended: end the job, reply its result. */
  finish: 'job.finish',
  /** Kill every process of the job now (the starter was interrupted). */
  kill: 'job.kill',
} as const;

/** Notifications ringfenced pushes to the connection that started a job. */
export const JOB_NOTIFICATIONS = {
  /** One or more events file lines (docs/events.md), as written. */
  events: 'job.events',
  /** The job's Markdown summary, once, at its end. */
  summary: 'job.summary',
} as const;

export const API_ERRORS = {
  badParams: 'RF_API_BAD_PARAMS',
  unknownJob: 'RF_API_UNKNOWN_JOB',
  /** The caller runs inside a job: it may not start a fresh one (docs/local-api.md, nesting). */
  nested: 'RF_API_NESTED',
  refused: 'RF_API_REFUSED',
} as const;

/** A policy as the starter read it: its text (YAML), parsed again by the daemon, and how events name it. */
export interface PolicySource {
  text: string;
  /** Where it came from, as errors name it (`--policy FILE`). */
  source: string;
  name: string | null;
  version?: number;
}

export interface StartParams {
  command: string[];
  /** Absent: the daemon's (the store's for the job's identity, or its policy-file, or audit). */
  policy?: PolicySource;
  identity?: JobIdentity;
  /** ADDRESS[:PORT] (as --dns-upstream). */
  dnsUpstream?: string;
  /** Endpoints every job of this starter may reach, as policy entries. */
  serviceEndpoints?: string[];
  /** Stream the events file's lines / the summary back (JOB_NOTIFICATIONS). */
  events: boolean;
  summary: boolean;
}

export interface StartReply {
  id: string;
  /** The job's cgroup directory: its first process is started in it. */
  cgroup: string;
  policy: { name: string | null; version?: number; mode: 'audit' | 'block'; from: 'request' | 'store' | 'policy-file' | 'audit' };
  /** ringfenced itself: the job is sealed against its pid and process group (src/jobs/seal.ts). */
  agent: AgentRef;
}

/** The daemon's pid and process group, which a job's seal refuses signals to. */
export interface AgentRef {
  pid: number;
  group: number;
}

export interface FinishParams {
  id: string;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  interrupted?: NodeJS.Signals;
}

export type FinishReply = JobResult;

export interface TraceParams {
  command: string[];
  /** Job events (JSON lines) instead of text lines. */
  json: boolean;
  identity?: JobIdentity;
}

export interface TraceStartReply {
  id: string;
  cgroup: string;
  agent: AgentRef;
}

/** A traced job's end: what failed or was lost, and whether the kernel ended it for tampering. */
export interface TraceFinishReply {
  failures: string[];
  tampered: boolean;
}

export interface JobInfo {
  id: string;
  command: string[];
  policy: string | null;
  mode: 'audit' | 'block';
  startedAt: string;
  /** The process that started it (the local API peer). */
  starterPid: number;
}

export interface StatusReply {
  pid: number;
  instance: string;
  startedAt: string;
  socket: string;
  jobs: number;
  sensor: { delivered: number; dropped: number; unknownRecords: number; decodeErrors: number };
  /** Kernel ids of the sensor's programs and links: the same for the daemon's whole life, however many jobs. */
  kernel: { programs: number[]; links: number[] };
}

const bad = (method: string, message: string) => new RingfenceError(`${method}: ${message}`, API_ERRORS.badParams);

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

function checkKeys(method: string, params: Record<string, unknown>, known: readonly string[]): void {
  for (const key of Object.keys(params)) if (!known.includes(key)) throw bad(method, `unknown field '${key}' (known: ${known.join(', ')})`);
}

const SIGNAL = /^SIG[A-Z0-9]+$/;
const START_KEYS = ['command', 'policy', 'identity', 'dnsUpstream', 'serviceEndpoints', 'events', 'summary'] as const;
const IDENTITY_KEYS = ['org', 'repo', 'workflow', 'jobName', 'runId', 'runAttempt', 'runner', 'host', 'cluster'] as const;

/** A job.start request, checked field by field. */
export function parseStartParams(params: unknown): StartParams {
  const m = JOB_API.start;
  if (!isObject(params)) throw bad(m, 'expected an object');
  checkKeys(m, params, START_KEYS);
  const { command, policy, identity, dnsUpstream, serviceEndpoints, events, summary } = params;
  if (!Array.isArray(command) || command.length === 0 || !command.every((a) => typeof a === 'string') || command[0] === '') {
    throw bad(m, "'command' must be a non-empty array of strings");
  }
  let policySource: PolicySource | undefined;
  if (policy !== undefined) {
    if (!isObject(policy)) throw bad(m, "'policy' must be an object {text, source, name}");
    checkKeys(`${m} policy`, policy, ['text', 'source', 'name', 'version']);
    if (typeof policy.text !== 'string') throw bad(m, "'policy.text' must be a string");
    if (typeof policy.source !== 'string' || policy.source === '') throw bad(m, "'policy.source' must be a non-empty string");
    if (policy.name !== null && typeof policy.name !== 'string') throw bad(m, "'policy.name' must be a string or null");
    if (policy.version !== undefined && !(Number.isInteger(policy.version) && (policy.version as number) > 0)) throw bad(m, "'policy.version' must be a positive integer");
    policySource = { text: policy.text, source: policy.source, name: policy.name, ...(policy.version !== undefined ? { version: policy.version as number } : {}) };
  }
  let jobIdentity: JobIdentity | undefined;
  if (identity !== undefined) {
    if (!isObject(identity)) throw bad(m, "'identity' must be an object");
    checkKeys(`${m} identity`, identity, IDENTITY_KEYS);
    for (const [key, value] of Object.entries(identity)) {
      if (key === 'runAttempt' ? !(Number.isInteger(value) && (value as number) > 0) : typeof value !== 'string') throw bad(m, `'identity.${key}' must be ${key === 'runAttempt' ? 'a positive integer' : 'a string'}`);
    }
    if (typeof identity.host !== 'string') throw bad(m, "'identity.host' must be a string");
    jobIdentity = identity as unknown as JobIdentity;
  }
  if (dnsUpstream !== undefined && typeof dnsUpstream !== 'string') throw bad(m, "'dnsUpstream' must be a string (ADDRESS[:PORT])");
  if (serviceEndpoints !== undefined && !(Array.isArray(serviceEndpoints) && serviceEndpoints.every((e) => typeof e === 'string'))) {
    throw bad(m, "'serviceEndpoints' must be an array of endpoint strings");
  }
  if (typeof events !== 'boolean' || typeof summary !== 'boolean') throw bad(m, "'events' and 'summary' must be booleans");
  return {
    command: command as string[],
    ...(policySource ? { policy: policySource } : {}),
    ...(jobIdentity ? { identity: jobIdentity } : {}),
    ...(dnsUpstream !== undefined ? { dnsUpstream } : {}),
    ...(serviceEndpoints !== undefined ? { serviceEndpoints: serviceEndpoints as string[] } : {}),
    events,
    summary,
  };
}

/** A trace.start request. */
export function parseTraceParams(params: unknown): TraceParams {
  const m = JOB_API.trace;
  if (!isObject(params)) throw bad(m, 'expected an object');
  checkKeys(m, params, ['command', 'json', 'identity']);
  const { command, json, identity } = params;
  // the same checks as job.start's, for the fields they share
  // (an absent identity is passed as undefined, which job.start takes as absent; its
  // events and summary flags are required there but unused here)
  // Stryker disable next-line BooleanLiteral: only command and identity of the result are read
  const shared = parseStartParams({ command, identity, events: false, summary: false });
  if (typeof json !== 'boolean') throw bad(m, "'json' must be a boolean");
  return { command: shared.command, json, ...(shared.identity ? { identity: shared.identity } : {}) };
}

/** Service endpoints of a request, each a policy entry; a bad one names itself. */
export function parseServiceEndpointTexts(texts: string[]): Endpoint[] {
  return texts.map((text, i) => {
    try {
      return parseEndpoint(text);
    } catch (error) {
      throw bad(JOB_API.start, `serviceEndpoints[${i}] '${text}': ${(error as Error).message}`);
    }
  });
}

/** A job.finish request. */
export function parseFinishParams(params: unknown): FinishParams {
  const m = JOB_API.finish;
  if (!isObject(params)) throw bad(m, 'expected an object');
  checkKeys(m, params, ['id', 'exitCode', 'signal', 'interrupted']);
  const { id, exitCode, signal, interrupted } = params;
  if (typeof id !== 'string' || id === '') throw bad(m, "'id' must be a job id");
  if (exitCode !== null && !(Number.isInteger(exitCode) && (exitCode as number) >= 0 && (exitCode as number) <= 255)) throw bad(m, "'exitCode' must be 0-255 or null");
  if (signal !== null && !(typeof signal === 'string' && SIGNAL.test(signal))) throw bad(m, "'signal' must be a signal name (SIGTERM) or null");
  if (exitCode === null && signal === null) throw bad(m, "one of 'exitCode' and 'signal' must be set");
  if (interrupted !== undefined && !(typeof interrupted === 'string' && SIGNAL.test(interrupted))) throw bad(m, "'interrupted' must be a signal name");
  return { id, exitCode: exitCode as number | null, signal: signal as NodeJS.Signals | null, ...(interrupted !== undefined ? { interrupted: interrupted as NodeJS.Signals } : {}) };
}

/** A request naming one job ({id}). */
export function parseJobRef(method: string, params: unknown): { id: string } {
  if (!isObject(params)) throw bad(method, 'expected an object {id}');
  checkKeys(method, params, ['id']);
  if (typeof params.id !== 'string' || params.id === '') throw bad(method, "'id' must be a job id");
  return { id: params.id };
}
