/**
 * `ringfence run` with a ringfenced to hand the job to: the daemon makes the
 * job (cgroup, policy in the kernel, DNS proxy, lockdown) under its one
 * sensor; this process starts the command in the job's cgroup (so it keeps
 * the terminal), writes the events and summary the daemon streams back, and
 * asks the daemon to end the job when the command ended. If this process is
 * killed, the daemon ends the job (its connection closed).
 */
import fs from 'node:fs';
import type { StdioOptions } from 'node:child_process';
import { Cgroup } from '../cgroup/cgroup2';
import type { JobResult } from '../jobs/session';
import { EXIT, exitStatusOf } from '../jobs/exit-status';
import { JOB_API, JOB_NOTIFICATIONS, type PolicySource, type StartParams, type StartReply, type TraceFinishReply, type TraceStartReply } from './job-api';
import { API_CODES, LocalApiClient, LocalApiError } from './local-api';
import { OutputFile, standardStreamFailures } from '../jobs/output';
import { instanceName } from '../jobs/registry';
import { sealPrefix, selfTargets, type SealTargets } from '../jobs/seal';
import type { Endpoint } from '../policy/endpoint';
import type { Policy } from '../policy/policy';
import type { JobIdentity } from '../jobs/identity';
import { RingfenceError } from '../util/errors';
import { signalNumber } from '../util/signals';

/** The running ringfenced at `socket`, or undefined when none listens there (then the job runs in-process). */
export async function connectDaemon(socket: string): Promise<LocalApiClient | undefined> {
  try {
    return await LocalApiClient.connect(socket);
  } catch (error) {
    if (error instanceof LocalApiError && error.code === API_CODES.noDaemon) return undefined;
    throw error;
  }
}

/**
 * The ringfence job this process runs in, if any (its cgroup is under
 * `…/ringfence[-NAME]/jobs/ID`): a job must not start a fresh one in-process,
 * which would take its command out of the job's cgroup.
 */
export function enclosingJob(cgroupFile = '/proc/self/cgroup', instance = instanceName()): string | undefined {
  let text: string;
  try {
    text = fs.readFileSync(cgroupFile, 'utf8');
  } catch {
    return undefined;
  }
  const line = text.split('\n').find((l) => l.startsWith('0::'));
  const segments = (line?.slice(3) ?? '').split('/');
  const at = segments.findIndex((s, i) => s === instance && segments[i + 1] === 'jobs' && segments[i + 2]);
  return at >= 0 ? segments[at + 2] : undefined;
}

/** A policy in the form a policy file has (docs/policy.md), for the daemon to read with the same parser. */
export function policyText(policy: Policy): string {
  const lines = [`egress-policy: ${policy.egressPolicy}`];
  if (policy.allowedEndpoints.length) lines.push('allowed-endpoints: >', ...policy.allowedEndpoints.map((e) => `  ${e.text}`));
  if (policy.lockdown.enabled || policy.lockdown.detections.length) {
    lines.push('lockdown-mode:', `  enabled: ${policy.lockdown.enabled}`);
    if (policy.lockdown.detections.length) lines.push('  detections:', ...policy.lockdown.detections.map((d) => `    - ${d}`));
  }
  return lines.join('\n') + '\n';
}

export interface DaemonRunOptions {
  /** Absent: the daemon's policy (store, policy-file or audit). */
  policy?: PolicySource;
  identity?: JobIdentity;
  dnsUpstream?: string;
  serviceEndpoints?: Endpoint[];
  events?: OutputFile;
  summary?: OutputFile;
  stdio?: StdioOptions;
  log: (line: string) => void;
}

const FINISH_TIMEOUT_MS = 120_000;

export async function runViaDaemon(client: LocalApiClient, command: string, args: string[], options: DaemonRunOptions): Promise<JobResult> {
  const { events, summary, log } = options;
  client.on('notification', (method: string, params: { text?: unknown }) => {
    if (typeof params?.text !== 'string') return;
    if (method === JOB_NOTIFICATIONS.events) events?.write(params.text);
    else if (method === JOB_NOTIFICATIONS.summary) summary?.write(params.text);
  });
  const params: StartParams = {
    command: [command, ...args],
    ...(options.policy ? { policy: options.policy } : {}),
    ...(options.identity ? { identity: options.identity } : {}),
    ...(options.dnsUpstream !== undefined ? { dnsUpstream: options.dnsUpstream } : {}),
    ...(options.serviceEndpoints ? { serviceEndpoints: options.serviceEndpoints.map((e) => e.text) } : {}),
    events: events !== undefined,
    summary: summary !== undefined,
  };
  let started: StartReply;
  try {
    started = await client.call<StartReply>(JOB_API.start, params, { timeoutMs: 60_000 });
  } catch (error) {
    client.close();
    throw asRingfenceError(error, client.socketPath);
  }
  const { id, policy } = started;
  if (policy.from !== 'request') {
    const named = policy.name ? `policy ${policy.name}${policy.version !== undefined ? ` v${policy.version}` : ''}` : 'audit mode';
    log(`ringfence: ${named} from ringfenced${policy.from === 'audit' ? ' (it has no policy-file or store): everything is recorded, nothing is refused' : `'s ${policy.from}`} (${policy.mode})`);
  }
  log(`ringfence: job ${id} runs under ringfenced (${client.socketPath})`);
  let interrupted: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    interrupted = signal;
    client.call(JOB_API.kill, { id }).catch((error: Error) => log(`ringfence: asking ringfenced to end job ${id}: ${error.message}`));
  };
  process.on('SIGINT', onSignal).on('SIGTERM', onSignal).on('SIGHUP', onSignal);
  try {
    // a session of its own: kill(0, …) and the terminal's signals stay inside the job
    // sealed against ringfenced and against this process, whose going away ends the job
    const child = new Cgroup(started.cgroup).spawn(command, args, { stdio: options.stdio ?? 'inherit', detached: true }, sealPrefix(sealTargets(started.agent)));
    const [exitCode, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
      child.on('error', (error) => {
        log(`ringfence: cannot start ${command}: ${error.message}`);
        resolve([127, null]);
      });
      child.on('exit', (code, sig) => resolve([code, sig]));
    });
    let result: JobResult;
    try {
      result = await client.call<JobResult>(JOB_API.finish, { id, exitCode, signal, ...(interrupted ? { interrupted } : {}) }, { timeoutMs: FINISH_TIMEOUT_MS });
    } catch (error) {
      // ringfenced gone mid-job: the kernel ended the job (its processes die at their next syscall); the daemon's log has the rest
      const why = (error as Error).message;
      log(`ringfence: job ${id}: ${why}; the job's report is ringfenced's (its log, once it runs again)`);
      events?.close();
      summary?.close();
      return { id, exitStatus: EXIT.AGENT_FAILURE, exitCode, signal, blocked: 0, interrupted: interrupted !== undefined, killedBy: [], reason: 'agent-failure', agentFailures: [why], summaryText: '' };
    }
    events?.close();
    summary?.close();
    if (events?.lost) result.agentFailures.push(`${events.lost} event(s) not written to ${events.label} (${events.firstError})`);
    if (summary?.lost) result.agentFailures.push(`the summary was not written to ${summary.label} (${summary.firstError})`);
    log(result.summaryText);
    const stderrLost = standardStreamFailures();
    if ((stderrLost > 0 || events?.lost || summary?.lost) && result.reason !== 'lockdown') {
      if (stderrLost > 0) result.agentFailures.push(`${stderrLost} write(s) to stderr failed`);
      ({ status: result.exitStatus, reason: result.reason } = exitStatusOf({ exitCode, signal, blocked: 0, interrupted, lockedDown: false, agentFailures: result.agentFailures }));
    }
    return result;
  } finally {
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal).off('SIGHUP', onSignal);
    client.close();
  }
}

export interface DaemonTraceOptions {
  out: OutputFile;
  json: boolean;
  identity?: JobIdentity;
  log: (line: string) => void;
}

/** `ringfence trace` under ringfenced: the same exit statuses as in-process (src/cli/trace.ts). */
export async function traceViaDaemon(client: LocalApiClient, command: string, args: string[], options: DaemonTraceOptions): Promise<number> {
  const { out, log } = options;
  client.on('notification', (method: string, params: { text?: unknown }) => {
    if (method === JOB_NOTIFICATIONS.events && typeof params?.text === 'string') out.write(params.text);
  });
  let started: TraceStartReply;
  try {
    started = await client.call<TraceStartReply>(JOB_API.trace, { command: [command, ...args], json: options.json, ...(options.identity ? { identity: options.identity } : {}) }, { timeoutMs: 60_000 });
  } catch (error) {
    client.close();
    out.close();
    throw asRingfenceError(error, client.socketPath);
  }
  const { id } = started;
  let interrupted: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    interrupted = signal;
    client.call(JOB_API.kill, { id }).catch((error: Error) => log(`ringfence: asking ringfenced to end job ${id}: ${error.message}`));
  };
  process.on('SIGINT', onSignal).on('SIGTERM', onSignal).on('SIGHUP', onSignal);
  try {
    const child = new Cgroup(started.cgroup).spawn(command, args, { stdio: 'inherit', detached: true }, sealPrefix(sealTargets(started.agent)));
    const [exitCode, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
      child.on('error', (error) => {
        log(`ringfence: cannot start ${command}: ${error.message}`);
        resolve([127, null]);
      });
      child.on('exit', (code, sig) => resolve([code, sig]));
    });
    let result: TraceFinishReply;
    try {
      result = await client.call<TraceFinishReply>(JOB_API.finish, { id, exitCode, signal, ...(interrupted ? { interrupted } : {}) }, { timeoutMs: FINISH_TIMEOUT_MS });
    } catch (error) {
      log(`ringfence: job ${id}: ${(error as Error).message}; the job's report is ringfenced's (its log, once it runs again)`);
      return EXIT.AGENT_FAILURE;
    } finally {
      out.close();
    }
    const failures = [...result.failures];
    if (out.lost > 0) failures.push(`${out.lost} events could not be written to ${out.label} (${out.firstError})`);
    for (const failure of failures) log(`ringfence: ${failure}`);
    if (result.tampered) {
      log(`ringfence: CMD was killed in the kernel: a process of it tampered with ringfence (Agent-Tamper, exit ${EXIT.LOCKDOWN})`);
      return EXIT.LOCKDOWN;
    }
    if (interrupted) return 128 + signalNumber(interrupted);
    if (failures.length) return EXIT.AGENT_FAILURE;
    return exitCode ?? 128 + (signal ? signalNumber(signal) : 0);
  } finally {
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal).off('SIGHUP', onSignal);
    client.close();
  }
}

/** A daemon's refusal as the CLI reports it (one line; a bad request is a usage error). */
/** ringfenced and this process (whose going away ends the job), with their process groups. */
function sealTargets(agent: { pid: number; group: number }): SealTargets {
  const self = selfTargets();
  return { agents: [agent.pid, ...self.agents], groups: [agent.group, ...self.groups] };
}

function asRingfenceError(error: unknown, socket: string): RingfenceError {
  if (error instanceof LocalApiError) {
    const usage = error.code === 'RF_API_BAD_PARAMS' || error.code === 'RF_API_NESTED';
    return new RingfenceError(`ringfenced (${socket}) refused the job: ${error.message}`, usage ? 'RF_USAGE' : error.code);
  }
  return error as RingfenceError;
}
