/**
 * One job run under ringfence: a cgroup of its own, the sensor tracking it,
 * its egress policy in the kernel, its DNS proxy, and its events, from start
 * to a clean end (nothing of the job is left behind, whichever way it ends).
 */
import type { StdioOptions } from 'node:child_process';
import fs from 'node:fs';
import { Cgroup } from '../cgroup/cgroup2';
import { DnsProxy, type Upstream } from '../dns/proxy';
import { JobEgress } from '../enforce/egress';
import { configureStdinShells, JobLockdown, killedDetections, protectRunnerProcesses } from '../enforce/lockdown';
import type { ShellOnIpcEvent } from '../sensor/events';
import { lookForRelay } from './relay';
import { parseIp } from '../net/address';
import type { Endpoint } from '../policy/endpoint';
import { EgressMatcher } from '../policy/matcher';
import type { Policy } from '../policy/policy';
import { Sensor } from '../sensor/sensor';
import { signalNumber } from '../util/signals';
import { detectionEvent, JobEventWriter, networkEvent, processEvent, relayDetectionEvent, type DetectionJobEvent, type DnsJobEvent } from './job-events';
import { JobSummary } from './summary';

export interface JobOptions {
  policy: Policy;
  /** How events name the policy. */
  policyName: string;
  eventsPath?: string;
  summaryPath?: string;
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

const JOBS_CGROUP = 'ringfence/jobs';
/** How long a held shell may wait for its pipeline to connect before it is let go. */
const RELAY_WAIT_MS = 500;

/**
 * Job cgroups whose ringfence process is gone (it was SIGKILLed or the
 * machine lost power mid-job): their processes ran unwatched since; end them
 * and remove the cgroups. Job ids end in the owning process's pid.
 */
export async function removeOrphanedJobs(log: (text: string) => void, root = Cgroup.create(JOBS_CGROUP)): Promise<string[]> {
  const removed: string[] = [];
  for (const job of root.children()) {
    const owner = Number(/-(\d+)$/.exec(job.path)?.[1]);
    if (!owner || owner === process.pid) continue;
    try {
      process.kill(owner, 0);
      continue; // its ringfence is alive
    } catch {
      /* gone */
    }
    const processes = job.allProcs().length;
    await job.destroy();
    removed.push(job.path);
    log(`ringfence: removed orphaned job cgroup ${job.path}${processes ? ` and killed its ${processes} process(es)` : ''}`);
  }
  return removed;
}

export async function runJob(command: string, args: string[], options: JobOptions): Promise<JobResult> {
  const log = options.log ?? ((text: string) => process.stderr.write(text + '\n'));
  const id = `run-${Date.now().toString(36)}-${process.pid}`;
  const policy: Policy = { ...options.policy, allowedEndpoints: [...options.policy.allowedEndpoints, ...(options.serviceEndpoints ?? [])] };
  const matcher = new EgressMatcher(policy);
  const writer = new JobEventWriter(options.eventsPath);
  const summary = new JobSummary();
  const names = new Map<string, string>(); // address → the allowed name it answered
  let processes = 0;
  const now = () => new Date().toISOString();

  const sensor = Sensor.open();
  await removeOrphanedJobs(log);
  const cgroup = Cgroup.create(`${JOBS_CGROUP}/${id}`);
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
  process.on('SIGINT', onSignal).on('SIGTERM', onSignal);

  try {
    proxy = await DnsProxy.start({
      matcher,
      mode: policy.egressPolicy,
      upstream: options.dnsUpstream ?? systemUpstream(),
      learn: (addresses, ports) => addresses.forEach((address) => egress?.learn(address, ports)),
      record: (query) => {
        if (query.verdict === 'allowed') for (const answer of query.answers) names.set(answer, query.name);
        const event: DnsJobEvent = { kind: 'dns', time: now(), job: id, name: query.name, type: query.type, answers: query.answers, verdict: query.verdict, policy: options.policyName, rcode: query.rcode, ttl: query.ttl, error: query.error };
        summary.addDns(event);
        writer.write(event);
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

    sensor.on('events', (events) => {
      for (const event of events) {
        if (event.type === 'exec') {
          processes++;
          writer.write(processEvent(id, sensor.tree, event));
        } else if (event.type === 'detection') {
          // The offender is already dead; the rest of the job goes now.
          if (event.action === 'killed') void cgroup.kill().catch(() => undefined);
          const detection = detectionEvent(id, options.policyName, sensor.tree, event);
          report(detection, event.action === 'killed' ? `${detection.detection} by ${detection.process?.exe ?? event.comm} (pid ${event.tgid})` : undefined);
        } else if (event.type === 'shell_on_ipc') {
          judging.push(
            judgeShell(event).catch((error) => {
              log(`ringfence: judging shell ${event.tgid}: ${(error as Error).message}`);
              if (event.action === 'held') signalIfAlive(event.tgid, 'SIGCONT');
            }),
          );
        } else if (event.type === 'egress') {
          const network = networkEvent(id, options.policyName, sensor.tree, event, names.get(event.address));
          summary.addNetwork(network);
          writer.write(network);
        }
      }
    });
    sensor.on('error', (error) => log(`ringfence: sensor: ${error.message}`));
    sensor.start();
    sensor.track(cgroup);
    writer.write({ kind: 'job', time: now(), job: id, phase: 'started', command: [command, ...args], policy: options.policyName, mode: policy.egressPolicy });

    const child = cgroup.spawn(command, args, { stdio: options.stdio ?? 'inherit' });
    const [exitCode, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
      child.on('error', (error) => {
        log(`ringfence: cannot start ${command}: ${error.message}`);
        resolve([127, null]);
      });
      child.on('exit', (code, sig) => resolve([code, sig]));
    });

    // The job is its cgroup: whatever CMD left running ends with it.
    await Promise.all(judging);
    await cgroup.kill();
    egress.remove();
    const kills = lockdown.kills(); // final: no process of the job is left
    lockdown.remove();
    await sensor.close();
    if (kills > killedBy.length) killedBy.push(`${kills - killedBy.length} offender(s) whose detection record was lost`);
    const dropped = sensor.finalStats?.dropped ?? 0;
    const lockedDown = killedBy.length > 0;
    const counts = { processes, ...summary.counts() };
    writer.write({ kind: 'job', time: now(), job: id, phase: 'completed', status: { exitCode, signal }, ...(lockedDown ? { killedBy: killedBy.join('; ') } : {}), counts, dropped });

    const mode = policy.egressPolicy;
    const blockedRequests = counts.blocked;
    let exitStatus = exitCode ?? 128 + (signal ? signalNumber(signal) : 0);
    if (lockedDown) exitStatus = 137;
    else if (interrupted) exitStatus = 128 + signalNumber(interrupted);
    else if (exitStatus === 0 && mode === 'block' && blockedRequests > 0) exitStatus = 1;

    const outcome = lockedDown
      ? `killed by lockdown: ${killedBy.join('; ')}`
      : interrupted
      ? `interrupted by ${interrupted}`
      : `exited ${exitCode ?? `on ${signal}`}${exitStatus !== (exitCode ?? -1) && !signal ? ` (ringfence exits ${exitStatus}: ${blockedRequests} request(s) blocked)` : ''}`;
    log(summary.renderText(`ringfence: job ${id} ${outcome}; policy ${options.policyName} (${mode}); ${processes} processes, ${counts.network} connections, ${counts.dns} DNS queries, ${counts.blocked} blocked${dropped ? `, ${dropped} events dropped` : ''}`));
    if (options.summaryPath) {
      fs.writeFileSync(
        options.summaryPath,
        summary.renderMarkdown(`ringfence: ${[command, ...args].join(' ')}`, [
          `job \`${id}\` ${outcome}`,
          `policy \`${options.policyName}\`, egress ${mode}`,
          `${processes} processes, ${counts.network} connections, ${counts.dns} DNS queries, ${counts.blocked} blocked`,
          ...(dropped ? [`${dropped} sensor events dropped (ring buffer full)`] : []),
        ]),
      );
    }
    return { id, exitStatus, exitCode, signal, blocked: blockedRequests, interrupted: interrupted !== undefined, killedBy };
  } finally {
    // Every step runs even if an earlier one failed: nothing of the job may stay.
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
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
  }
}
