/**
 * One job run under ringfence: a cgroup of its own, the sensor tracking it,
 * its egress policy in the kernel, its DNS proxy, and its events, from start
 * to a clean end (nothing of the job is left behind, whichever way it ends).
 */
import type { StdioOptions } from 'node:child_process';
import fs from 'node:fs';
import { DnsProxy, type Upstream } from '../dns/proxy';
import { JobEgress } from '../enforce/egress';
import { configureStdinShells, JobLockdown, killedDetections, protectRunnerProcesses } from '../enforce/lockdown';
import { leavesTargetStopped, PTRACE_SEIZE, resumeAfterPtraceKill } from '../enforce/resume';
import type { SensorEvent, ShellOnIpcEvent } from '../sensor/events';
import { lookForRelay } from './relay';
import { parseIp } from '../net/address';
import type { Endpoint } from '../policy/endpoint';
import { EgressMatcher } from '../policy/matcher';
import type { Policy } from '../policy/policy';
import type { JobIdentity } from '../jobs/identity';
import { JobRegistry, startJob } from '../jobs/registry';
import { exitStatusOf, type ExitReason } from './exit-status';
import { OutputFile, standardStreamFailures } from './output';
import { resolveCommand } from './command';
import { detectionEvent, dnsEvent, jobCompletedEvent, jobStartedEvent, JobEventWriter, networkEvent, processEvent, processRef, relayDetectionEvent, type DetectionJobEvent } from './job-events';
import { JobSummary, policyDisplay } from './summary';

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

export interface JobResult {
  id: string;
  /** What `ringfence run` exits with. */
  exitStatus: number;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** Requests refused (block mode) or that would have been (audit mode). */
  blocked: number;
  interrupted: boolean;
  /** Offenders lockdown killed (the job was ended for them). */
  killedBy: string[];
  /** Why ringfence exits with exitStatus. */
  reason: ExitReason;
  /** What ringfence failed to do or lost (events not written, records dropped…). */
  agentFailures: string[];
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


/** Signals a process that may have exited meanwhile. */
function signalIfAlive(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

/** How long a held shell may wait for its pipeline to connect before it is let go. */
const RELAY_WAIT_MS = 500;

export async function runJob(command: string, args: string[], options: JobOptions): Promise<JobResult> {
  // Everything that can be wrong with the request is found before anything starts.
  resolveCommand(command); // the job's shell looks it up the same way, on the same PATH
  const eventsOut = options.events ?? (options.eventsPath ? OutputFile.open(options.eventsPath, '--events') : undefined);
  const summaryOut = options.summary ?? (options.summaryPath ? OutputFile.open(options.summaryPath, '--summary') : undefined);
  const stderr = OutputFile.fd(2, 'stderr');
  const log = options.log ?? ((text: string) => void stderr.write(text + '\n'));
  const id = JobRegistry.newId('run');
  const policy: Policy = { ...options.policy, allowedEndpoints: [...options.policy.allowedEndpoints, ...(options.serviceEndpoints ?? [])] };
  const matcher = new EgressMatcher(policy);
  const writer = new JobEventWriter(eventsOut, { identity: options.identity });
  const summary = new JobSummary();
  const names = new Map<string, string>(); // address → the allowed name it answered
  let processes = 0;
  const now = () => new Date().toISOString();
  const agentFailures: string[] = [];

  const { registry, pins, sensor, cgroup } = await startJob('run', log, id);
  let proxy: DnsProxy | undefined;
  let egress: JobEgress | undefined;
  let lockdown: JobLockdown | undefined;
  const killedBy: string[] = [];
  /** A detection into the summary and the events; `killed` says what it killed, for the job's end. */
  const report = (detection: DetectionJobEvent, killed: string | undefined) => {
    if (killed) killedBy.push(killed);
    summary.addDetection(detection);
    writer.write(detection);
  };
  const judging: Promise<void>[] = [];
  let interrupted: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    interrupted = signal;
    void cgroup.kill().catch(() => undefined);
  };
  process.on('SIGINT', onSignal).on('SIGTERM', onSignal).on('SIGHUP', onSignal);

  try {
    proxy = await DnsProxy.start({
      matcher,
      mode: policy.egressPolicy,
      upstream: options.dnsUpstream ?? systemUpstream(),
      learn: (addresses, ports) => addresses.forEach((address) => egress?.learn(address, ports)),
      clientPids: () => cgroup.allProcs(),
      record: (query) => {
        // audited answers name their addresses too (what an allow-list is built from); refused names have none
        if (query.verdict !== 'blocked') for (const answer of query.answers) names.set(answer, query.name);
        // written once its asker is known (the answer went out already); after the job's end, neither written nor counted
        void (query.asker ?? Promise.resolve(undefined)).then((pid) => {
          if (writer.closed) return;
          const event = dnsEvent(id, { name: options.policyName, version: options.policyVersion }, query, query.time, pid ? processRef(sensor.tree, pid) : undefined);
          summary.addDns(event);
          writer.write(event);
        });
      },
    });
    const loopback4 = parseIp('127.0.0.1')!.bytes;
    const loopback6 = parseIp('::1')!.bytes;
    egress = new JobEgress(sensor.kernel(), cgroup, policy, { ip4: loopback4, ip6: loopback6, port: proxy.port });
    protectRunnerProcesses(sensor.kernel());
    configureStdinShells(sensor.kernel());
    lockdown = new JobLockdown(sensor.kernel(), cgroup.id, killedDetections(policy));

    /*
     * A shell reading commands from a pipe/socketpair, stopped by the kernel
     * when reverse shells are killed: look for a relay to a remote host among
     * the holders of its output, then kill the job or let the shell go. While
     * job processes hold the other end but none is connected yet (a
     * pipeline's members start together), look again, for up to half a
     * second; when no job process holds it (output to the runner's log), at once.
     */
    const judgeShell = async (event: ShellOnIpcEvent) => {
      let relay;
      for (let waited = 0; ; waited += 10) {
        const look = lookForRelay(event, cgroup.allProcs());
        relay = look.relay;
        if (relay || look.holders === 0 || waited >= RELAY_WAIT_MS) break;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const held = event.action === 'held';
      if (!relay) {
        if (held) signalIfAlive(event.tgid, 'SIGCONT');
        return;
      }
      if (held) {
        signalIfAlive(event.tgid, 'SIGKILL');
        void cgroup.kill().catch(() => undefined);
      }
      const detection = relayDetectionEvent(id, options.policyName, sensor.tree, event, relay);
      report(detection, held ? `Reverse-Shell by ${detection.process?.exe ?? event.comm} (pid ${event.tgid}) through ${relay.exe} (pid ${relay.pid})` : undefined);
    };

    const onEvents = (events: SensorEvent[]) => {
      for (const event of events) {
        if (event.type === 'exec') {
          processes++;
          writer.write(processEvent(id, sensor.tree, event));
        } else if (event.type === 'detection') {
          // The offender is already dead; the rest of the job goes now.
          if (event.action === 'killed') void cgroup.kill().catch(() => undefined);
          const detection = detectionEvent(id, options.policyName, sensor.tree, event);
          const killed = event.action === 'killed' ? `${detection.detection} by ${detection.process?.exe ?? event.comm} (pid ${event.tgid})` : undefined;
          if (leavesTargetStopped(event)) {
            // The attach took effect before its tracer died, and the death leaves the target stopped: resume it before
            // reporting (synchronously: this event may come while the sensor drains at the job's end).
            const target = `${(detection.target as { exe?: string }).exe ?? 'the protected process'} (pid ${event.targetTgid})`;
            try {
              detection.targetAfterKill = resumeAfterPtraceKill(event.tgid, event.targetTgid, event.ptraceRequest === PTRACE_SEIZE);
              if (detection.targetAfterKill === 'stopped') agentFailures.push(`${target} is still stopped after its tracer was killed`);
            } catch (error) {
              agentFailures.push(`resuming ${target} after its tracer was killed: ${(error as Error).message}`);
            }
          }
          report(detection, killed);
        } else if (event.type === 'shell_on_ipc') {
          judging.push(
            judgeShell(event).catch((error) => {
              log(`ringfence: judging shell ${event.tgid}: ${(error as Error).message}`);
              if (event.action === 'held') signalIfAlive(event.tgid, 'SIGCONT');
            }),
          );
        } else if (event.type === 'egress') {
          const network = networkEvent(id, { name: options.policyName, version: options.policyVersion }, sensor.tree, event, names.get(event.address));
          summary.addNetwork(network);
          writer.write(network);
        }
      }
    };
    sensor.on('events', onEvents);
    sensor.on('error', (error) => {
      agentFailures.push(`sensor: ${error.message}`);
      log(`ringfence: sensor: ${error.message}`);
    });
    sensor.start();
    sensor.track(cgroup);
    writer.write(jobStartedEvent(id, now(), [command, ...args], { name: options.policyName, version: options.policyVersion }, policy.egressPolicy));

    // a session of its own: kill(0, …) and the terminal's signals stay inside the job
    const child = cgroup.spawn(command, args, { stdio: options.stdio ?? 'inherit', detached: true });
    const [exitCode, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
      child.on('error', (error) => {
        log(`ringfence: cannot start ${command}: ${error.message}`);
        resolve([127, null]);
      });
      child.on('exit', (code, sig) => resolve([code, sig]));
    });

    // The job is its cgroup: whatever CMD left running ends with it.
    await Promise.all(judging);
    // DNS events wait for the lookup of who asked (a few ms): none may be left out
    await proxy.settled();
    await cgroup.kill();
    // repeats the kernel folded into records that never came: counted like the rest
    onEvents(egress.unrecordedRepeats(sensor.clockOffsetMs));
    egress.remove();
    const kills = lockdown.kills(); // final: no process of the job is left
    const tampered = sensor.agentGone().includes('tampered');
    lockdown.remove();
    await sensor.close();
    // the kernel's word stands even when its record did not reach us
    if (tampered && !killedBy.some((k) => k.startsWith('Agent-Tamper'))) killedBy.push('Agent-Tamper by a job process (its record was lost)');
    if (kills > killedBy.length) killedBy.push(`${kills - killedBy.length} offender(s) whose detection record was lost`);
    const dropped = sensor.finalStats?.dropped ?? 0;
    if (dropped) agentFailures.push(`${dropped} sensor records dropped (ring buffer full)`);
    const lockedDown = killedBy.length > 0;
    const counts = { processes, ...summary.counts() };
    const mode = policy.egressPolicy;
    const blockedRequests = counts.blocked;

    // The report is written before the status is decided: losing it is a failure too.
    const outcome = (status: number, reason: ExitReason) =>
      reason === 'lockdown'
        ? `killed by lockdown: ${killedBy.join('; ')}`
        : reason === 'interrupted'
        ? `interrupted by ${interrupted}`
        : `exited ${exitCode ?? `on ${signal}`}${reason === 'blocked' ? ` (ringfence exits ${status}: ${blockedRequests} request(s) blocked)` : ''}`;
    const provisional = exitStatusOf({ exitCode, signal, blocked: mode === 'block' ? blockedRequests : 0, interrupted, lockedDown, agentFailures });
    writer.write(jobCompletedEvent(id, now(), { status: { exitCode, signal }, ...(lockedDown ? { killedBy: killedBy.join('; ') } : {}), counts, dropped, exitStatus: provisional.status, reason: provisional.reason, lost: writer.lost }));
    writer.close();
    if (writer.lost) agentFailures.push(`${writer.lost} event(s) not written to ${eventsOut!.label} (${writer.error})`);
    if (summaryOut) {
      summaryOut.write(
        summary.renderMarkdown(`ringfence: ${[command, ...args].join(' ')}`, [
          `job \`${id}\` ${outcome(provisional.status, provisional.reason)}`,
          `policy \`${policyDisplay({ name: options.policyName, version: options.policyVersion })}\`, egress ${mode}`,
          `${processes} processes, ${counts.network} connections, ${counts.dns} DNS queries, ${counts.blocked} blocked`,
          ...(dropped ? [`${dropped} sensor events dropped (ring buffer full)`] : []),
        ]),
      );
      summaryOut.close();
      if (summaryOut.lost) agentFailures.push(`the summary was not written to ${summaryOut.label} (${summaryOut.firstError})`);
    }
    const decided = exitStatusOf({ exitCode, signal, blocked: mode === 'block' ? blockedRequests : 0, interrupted, lockedDown, agentFailures });
    let { status: exitStatus, reason } = decided;
    const failures = agentFailures.length ? `; ringfence failed: ${agentFailures.join('; ')}` : '';
    log(
      summary.renderText(
        `ringfence: job ${id} ${outcome(exitStatus, reason)}; policy ${policyDisplay({ name: options.policyName, version: options.policyVersion })} (${mode}); ${processes} processes, ${counts.network} connections, ${counts.dns} DNS queries, ${counts.blocked} blocked${dropped ? `, ${dropped} events dropped` : ''}${failures}${reason === 'agent-failure' || reason === 'lockdown' ? ` (ringfence exits ${exitStatus}: ${reason})` : ''}`,
      ),
    );
    // stderr is an output too: a summary nobody could read is a lost report (`run … 2>&1 | head`)
    const stderrLost = stderr.lost + standardStreamFailures();
    if (stderrLost > 0 && reason !== 'lockdown') {
      agentFailures.push(`${stderrLost} write(s) to stderr failed (${stderr.firstError ?? 'EPIPE'})`);
      ({ status: exitStatus, reason } = exitStatusOf({ exitCode, signal, blocked: 0, interrupted, lockedDown, agentFailures }));
    }
    return { id, exitStatus, exitCode, signal, blocked: blockedRequests, interrupted: interrupted !== undefined, killedBy, reason, agentFailures };
  } finally {
    // Every step runs even if an earlier one failed: nothing of the job may stay.
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal).off('SIGHUP', onSignal);
    const attempt = async (what: string, step: () => unknown) => {
      try {
        await step();
      } catch (error) {
        log(`ringfence: ${what}: ${(error as Error).message}`);
      }
    };
    await attempt('killing the job', () => cgroup.kill());
    await attempt('removing the egress policy', () => egress?.remove());
    await attempt('removing the lockdown settings', () => lockdown?.remove());
    await attempt('unloading the sensor', () => sensor.destroy());
    await attempt('stopping the DNS proxy', () => proxy?.close());
    await attempt(`removing ${cgroup.path}`, () => cgroup.destroy());
    await attempt('writing the events', () => writer.close());
    await attempt('closing the summary', () => summaryOut?.close());
    // a record whose pins could not all be removed stays, for the next sweep
    await attempt('forgetting the job', () => (fs.existsSync(pins) ? log(`ringfence: ${pins} is left for the next ringfence to remove`) : registry.unregister(id)));
  }
}
