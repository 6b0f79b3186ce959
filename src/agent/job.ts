/**
 * `ringfence run`'s job in this process (no ringfenced to hand it to): the
 * options a run takes, and where its DNS goes by default.
 */
import type { StdioOptions } from 'node:child_process';
import fs from 'node:fs';
import type { Upstream } from '../dns/proxy';
import { parseIp } from '../net/address';
import type { Endpoint } from '../policy/endpoint';
import type { Policy } from '../policy/policy';
import type { JobIdentity } from '../jobs/identity';
import type { JobResult, JobSpec } from '../jobs/session';
import { Supervisor } from '../jobs/supervisor';
import { exitStatusOf } from '../jobs/exit-status';
import { OutputFile, standardStreamFailures } from '../jobs/output';
import { resolveCommand } from '../jobs/command';
import { sealPrefix, selfTargets } from '../jobs/seal';

export interface JobOptions {
  policy: Policy;
  /** Who the job is; every event carries it. */
  identity?: JobIdentity;
  /** The policy's name in events, or null in audit mode without a policy (docs/events.md). */
  policyName: string | null;
  /** The store's version of it (store policies only). */
  policyVersion?: number;
  /** Where the events go: a path (opened before anything starts) or an opened output. */
  eventsPath?: string;
  events?: OutputFile;
  summaryPath?: string;
  summary?: OutputFile;
  /** Where allowed DNS queries go; default: the host's first nameserver. */
  dnsUpstream?: Upstream;
  serviceEndpoints?: Endpoint[];
  /** The command's stdio; default inherited. */
  stdio?: StdioOptions;
  /** Where the summary is printed; default stderr. */
  log?: (text: string) => void;
}

/** The host's resolver, from /etc/resolv.conf. */
export function systemUpstream(resolvConf = '/etc/resolv.conf'): Upstream {
  try {
    const match = /^\s*nameserver\s+(\S+)/m.exec(fs.readFileSync(resolvConf, 'utf8'));
    if (match && parseIp(match[1])) return { host: match[1], port: 53 };
  } catch {
    /* fall through */
  }
  return { host: '127.0.0.53', port: 53 };
}

export function parseUpstream(spec: string): Upstream {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(spec);
  const [host, port] = bracketed ? [bracketed[1], bracketed[2]] : spec.split(':').length === 2 ? spec.split(':') : [spec, undefined];
  if (!parseIp(host) || (port !== undefined && !(Number(port) >= 1 && Number(port) <= 65535))) {
    throw new Error(`bad DNS upstream '${spec}': expected ADDRESS, ADDRESS:PORT or [IPv6]:PORT`);
  }
  return { host, port: port ? Number(port) : 53 };
}


/**
 * Runs one job under a supervisor of its own, in this process: the sensor
 * loaded for the job's life, its policy enforced, its events and summary
 * written, whichever way it ends nothing of it left behind.
 */
export async function runJob(command: string, args: string[], options: JobOptions): Promise<JobResult> {
  // Everything that can be wrong with the request is found before anything starts.
  resolveCommand(command); // the job's shell looks it up the same way, on the same PATH
  const events = options.events ?? (options.eventsPath ? OutputFile.open(options.eventsPath, '--events') : undefined);
  const summary = options.summary ?? (options.summaryPath ? OutputFile.open(options.summaryPath, '--summary') : undefined);
  const stderr = OutputFile.fd(2, 'stderr');
  const log = options.log ?? ((text: string) => void stderr.write(text + '\n'));
  const spec: Omit<JobSpec, 'id'> = {
    command: [command, ...args],
    policy: options.policy,
    policyName: options.policyName,
    policyVersion: options.policyVersion,
    identity: options.identity,
    events,
    summary,
    dnsUpstream: options.dnsUpstream ?? systemUpstream(),
    serviceEndpoints: options.serviceEndpoints,
  };
  let supervisor: Supervisor;
  try {
    supervisor = await Supervisor.open({ log });
  } catch (error) {
    events?.close();
    summary?.close();
    throw error;
  }
  try {
    const { session, cgroup } = await supervisor.startJob('run', spec);
    let interrupted: NodeJS.Signals | undefined;
    const onSignal = (signal: NodeJS.Signals) => {
      interrupted = signal;
      session.endAll();
    };
    process.on('SIGINT', onSignal).on('SIGTERM', onSignal).on('SIGHUP', onSignal);
    try {
      // a session of its own: kill(0, …) and the terminal's signals stay inside the job
      // sealed against this process, the job's agent (src/jobs/seal.ts)
      const child = cgroup.spawn(command, args, { stdio: options.stdio ?? 'inherit', detached: true }, sealPrefix(selfTargets()));
      const [exitCode, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
        child.on('error', (error) => {
          log(`ringfence: cannot start ${command}: ${error.message}`);
          resolve([127, null]);
        });
        child.on('exit', (code, sig) => resolve([code, sig]));
      });
      const result = await supervisor.endJob(session, { exitCode, signal, interrupted });
      log(result.summaryText);
      // stderr is an output too: a summary nobody could read is a lost report (`run … 2>&1 | head`)
      const stderrLost = stderr.lost + standardStreamFailures();
      if (stderrLost > 0 && result.reason !== 'lockdown') {
        result.agentFailures.push(`${stderrLost} write(s) to stderr failed (${stderr.firstError ?? 'EPIPE'})`);
        ({ status: result.exitStatus, reason: result.reason } = exitStatusOf({ exitCode, signal, blocked: 0, interrupted, lockedDown: false, agentFailures: result.agentFailures }));
      }
      return result;
    } finally {
      process.off('SIGINT', onSignal).off('SIGTERM', onSignal).off('SIGHUP', onSignal);
    }
  } finally {
    await supervisor.close();
  }
}
