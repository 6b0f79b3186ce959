/**
 * One job under a supervisor: its DNS proxy, its egress policy and lockdown
 * settings in the kernel, the judgement of its events, its event file and
 * summary, and how it ended. Many sessions run at once under one sensor; the
 * supervisor (src/jobs/supervisor.ts) makes the job's cgroup, hands each
 * session the events of its own cgroup, and drains the sensor at its end.
 *
 * A session never touches the sensor or the kernel directly: what it needs
 * of them comes in as `SessionDeps`, so its decisions are unit-tested with
 * doubles (test/unit/session.test.ts) and the privileged end-to-end tests are
 * the contract tests of the real parts.
 */
import type { DnsProxyAddress, JobEgress } from '../enforce/egress';
import type { JobLockdown } from '../enforce/lockdown';
import { killedDetections } from '../enforce/lockdown';
import { leavesTargetStopped, PTRACE_SEIZE, type TargetAfterKill } from '../enforce/resume';
import type { DnsProxy, DnsProxyOptions, Upstream } from '../dns/proxy';
import type { Policy } from '../policy/policy';
import { EgressMatcher } from '../policy/matcher';
import type { Endpoint } from '../policy/endpoint';
import type { DetectionName, SensorEvent, ShellOnIpcEvent } from '../sensor/events';
import type { ProcessTree } from '../sensor/process-tree';
import type { Relay } from './relay';
import { exitStatusOf, type ExitReason } from './exit-status';
import type { OutputFile } from './output';
import { detectionEvent, dnsEvent, jobCompletedEvent, jobStartedEvent, JobEventWriter, networkEvent, processEvent, processRef, relayDetectionEvent, type DetectionJobEvent, type PolicyRef } from './job-events';
import { JobSummary, policyDisplay } from './summary';
import type { JobIdentity } from './identity';

/** The job's cgroup as a session uses it (src/cgroup/cgroup2.ts's Cgroup is one). */
export interface JobCgroup {
  readonly id: number;
  readonly path: string;
  allProcs(): number[];
  /** Kills every process in it and below, and waits until they are gone. */
  kill(): Promise<void>;
}

export type SessionEgress = Pick<JobEgress, 'policyId' | 'learn' | 'unrecordedRepeats' | 'remove'>;
export type SessionLockdown = Pick<JobLockdown, 'kills' | 'remove'>;

/** What a session needs of the supervisor: the kernel side, the shared process tree, and the job's machine. */
export interface SessionDeps {
  /** The job's egress policy into the kernel (a JobEgress on the supervisor's sensor). */
  startEgress(cgroup: JobCgroup, policy: Policy, dns: DnsProxyAddress): SessionEgress;
  /** What lockdown kills in the job's cgroup (a JobLockdown). */
  startLockdown(cgroupId: number, detections: DetectionName[]): SessionLockdown;
  startDnsProxy(options: DnsProxyOptions): Promise<Pick<DnsProxy, 'port' | 'settled' | 'close'>>;
  /** The sensor's process tree (it sees every event before a session does). */
  tree: ProcessTree;
  /** Wall-clock ms at boot: the kernel stamps events with CLOCK_BOOTTIME. */
  clockOffsetMs: number;
  /** Whether the kernel holds a job process to have tampered with ringfence (its record may have been lost). */
  tampered(): boolean;
  /** Sensor records dropped so far (ring buffer full), machine-wide. */
  droppedRecords(): number;
  /** A relay between a held shell and a remote host, among the job's processes (src/jobs/relay.ts). */
  lookForRelay(event: ShellOnIpcEvent, jobPids: number[]): { relay?: Relay; holders: number };
  /** Resumes the target a killed tracer left stopped (src/enforce/resume.ts). */
  resumeAfterPtraceKill(offender: number, target: number, seized: boolean): TargetAfterKill;
  /** Sends a signal to a process that may have exited meanwhile. */
  signal(pid: number, signal: NodeJS.Signals): void;
  /** Waits, for the relay look's retries. */
  sleep(ms: number): Promise<void>;
  now(): Date;
}

export interface JobSpec {
  id: string;
  command: string[];
  policy: Policy;
  /** The policy's name in events, or null in audit mode without a policy (docs/events.md). */
  policyName: string | null;
  /** The store's version of it (store policies only). */
  policyVersion?: number;
  /** Who the job is; every event carries it. */
  identity?: JobIdentity;
  /** Where the events go (opened before anything starts). */
  events?: OutputFile;
  summary?: OutputFile;
  /** Where allowed DNS queries go. */
  dnsUpstream: Upstream;
  /** Endpoints every job may reach (the store, the collector): added to the policy. */
  serviceEndpoints?: Endpoint[];
}

/** How the job's command ended, as its starter saw it. */
export interface CommandEnd {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** The signal that interrupted the run (SIGINT, SIGTERM, SIGHUP), if one did. */
  interrupted?: NodeJS.Signals;
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
  /** The summary's text (what `ringfence run` prints on stderr). */
  summaryText: string;
}

/** How long a held shell may wait for its pipeline to connect before it is let go. */
export const RELAY_WAIT_MS = 500;
const RELAY_LOOK_EVERY_MS = 10;

const LOOPBACK4 = Uint8Array.from([127, 0, 0, 1]);
const LOOPBACK6 = Uint8Array.from([...Array<number>(15).fill(0), 1]);

export class JobSession {
  readonly id: string;
  readonly policy: Policy;
  private readonly ref: PolicyRef;
  private readonly writer: JobEventWriter;
  private readonly summary = new JobSummary();
  /** address → the allowed name it answered */
  private readonly names = new Map<string, string>();
  private readonly killedBy: string[] = [];
  private readonly agentFailures: string[] = [];
  private readonly judging: Promise<void>[] = [];
  private readonly droppedAtStart: number;
  private processes = 0;
  private proxy: Pick<DnsProxy, 'port' | 'settled' | 'close'> | undefined;
  private egress: SessionEgress | undefined;
  private lockdown: SessionLockdown | undefined;
  private finished = false;

  private constructor(
    private readonly spec: JobSpec,
    readonly cgroup: JobCgroup,
    private readonly deps: SessionDeps,
  ) {
    this.id = spec.id;
    this.policy = { ...spec.policy, allowedEndpoints: [...spec.policy.allowedEndpoints, ...(spec.serviceEndpoints ?? [])] };
    this.ref = { name: spec.policyName, version: spec.policyVersion };
    this.writer = new JobEventWriter(spec.events, { identity: spec.identity });
    this.droppedAtStart = deps.droppedRecords();
  }

  /**
   * Everything of the job that must hold before its first process runs: the
   * DNS proxy, the egress policy, the lockdown settings, the started event.
   * What fails half-way is undone before the error is thrown.
   */
  static async start(spec: JobSpec, cgroup: JobCgroup, deps: SessionDeps): Promise<JobSession> {
    const session = new JobSession(spec, cgroup, deps);
    try {
      await session.enforce();
    } catch (error) {
      await session.release();
      throw error;
    }
    return session;
  }

  private async enforce(): Promise<void> {
    const matcher = new EgressMatcher(this.policy);
    this.proxy = await this.deps.startDnsProxy({
      matcher,
      mode: this.policy.egressPolicy,
      upstream: this.spec.dnsUpstream,
      learn: (addresses, ports) => addresses.forEach((address) => this.egress?.learn(address, ports)),
      clientPids: () => this.cgroup.allProcs(),
      record: (query) => {
        // audited answers name their addresses too (what an allow-list is built from); refused names have none
        if (query.verdict !== 'blocked') for (const answer of query.answers) this.names.set(answer, query.name);
        // written once its asker is known (the answer went out already); after the job's end, neither written nor counted
        void (query.asker ?? Promise.resolve(undefined)).then((pid) => {
          // Stryker disable next-line ConditionalExpression: equivalent; a closed writer drops the event and the summary, rendered synchronously after close, is never read again
          if (this.writer.closed) return;
          const event = dnsEvent(this.id, this.ref, query, query.time, pid ? processRef(this.deps.tree, pid) : undefined);
          this.summary.addDns(event);
          this.writer.write(event);
        });
      },
    });
    this.egress = this.deps.startEgress(this.cgroup, this.policy, { ip4: LOOPBACK4, ip6: LOOPBACK6, port: this.proxy.port });
    this.lockdown = this.deps.startLockdown(this.cgroup.id, killedDetections(this.policy));
    this.writer.write(jobStartedEvent(this.id, this.deps.now().toISOString(), this.spec.command, this.ref, this.policy.egressPolicy));
  }

  /** The sensor's events of this job's cgroup, in the order the kernel wrote them. */
  handle(events: SensorEvent[]): void {
    for (const event of events) {
      if (event.type === 'exec') {
        this.processes++;
        this.writer.write(processEvent(this.id, this.deps.tree, event));
      } else if (event.type === 'detection') {
        // The offender is already dead; the rest of the job goes now.
        if (event.action === 'killed') this.endAll();
        const detection = detectionEvent(this.id, this.spec.policyName, this.deps.tree, event);
        const killed = event.action === 'killed' ? `${detection.detection} by ${detection.process?.exe ?? event.comm} (pid ${event.tgid})` : undefined;
        if (leavesTargetStopped(event)) {
          // The attach took effect before its tracer died, and the death leaves the target stopped: resume it before
          // reporting (synchronously: this event may come while the sensor drains at the job's end).
          const target = `${(detection.target as { exe?: string }).exe ?? 'the protected process'} (pid ${event.targetTgid})`;
          try {
            detection.targetAfterKill = this.deps.resumeAfterPtraceKill(event.tgid, event.targetTgid, event.ptraceRequest === PTRACE_SEIZE);
            if (detection.targetAfterKill === 'stopped') this.agentFailures.push(`${target} is still stopped after its tracer was killed`);
          } catch (error) {
            this.agentFailures.push(`resuming ${target} after its tracer was killed: ${(error as Error).message}`);
          }
        }
        this.report(detection, killed);
      } else if (event.type === 'shell_on_ipc') {
        this.judging.push(
          this.judgeShell(event).catch((error: Error) => {
            // a held shell is never left stopped for good; the failure is the job's record
            this.agentFailures.push(`judging shell ${event.tgid}: ${error.message}`);
            if (event.action === 'held') this.deps.signal(event.tgid, 'SIGCONT');
          }),
        );
      } else if (event.type === 'egress') {
        const network = networkEvent(this.id, this.ref, this.deps.tree, event, this.names.get(event.address));
        this.summary.addNetwork(network);
        this.writer.write(network);
      }
    }
  }

  /** A failure of ringfence's own (a sensor error) that the job's result must say. */
  agentFailure(what: string): void {
    this.agentFailures.push(what);
  }

  /** Kills the job's processes (an interrupt, a lockdown kill), without waiting. */
  endAll(): void {
    this.cgroup.kill().catch((error: Error) => this.agentFailures.push(`killing the job: ${error.message}`));
  }

  private report(detection: DetectionJobEvent, killed: string | undefined): void {
    if (killed) this.killedBy.push(killed);
    this.summary.addDetection(detection);
    this.writer.write(detection);
  }

  /*
   * A shell reading commands from a pipe/socketpair, stopped by the kernel
   * when reverse shells are killed: look for a relay to a remote host among
   * the holders of its output, then kill the job or let the shell go. While
   * job processes hold the other end but none is connected yet (a
   * pipeline's members start together), look again, for up to half a
   * second; when no job process holds it (output to the runner's log), at once.
   */
  private async judgeShell(event: ShellOnIpcEvent): Promise<void> {
    let relay;
    for (let waited = 0; ; waited += RELAY_LOOK_EVERY_MS) {
      const look = this.deps.lookForRelay(event, this.cgroup.allProcs());
      relay = look.relay;
      if (relay || look.holders === 0 || waited >= RELAY_WAIT_MS) break;
      await this.deps.sleep(RELAY_LOOK_EVERY_MS);
    }
    const held = event.action === 'held';
    if (!relay) {
      if (held) this.deps.signal(event.tgid, 'SIGCONT');
      return;
    }
    if (held) {
      this.deps.signal(event.tgid, 'SIGKILL');
      this.endAll();
    }
    const detection = relayDetectionEvent(this.id, this.spec.policyName, this.deps.tree, event, relay);
    this.report(detection, held ? `Reverse-Shell by ${detection.process?.exe ?? event.comm} (pid ${event.tgid}) through ${relay.exe} (pid ${relay.pid})` : undefined);
  }

  /**
   * Ends the job after its command ended: kills what it left running, takes
   * its policy out of the kernel, waits for every record of it (`drain`: the
   * sensor delivers what the kernel wrote until now), writes the completed
   * event and the summary, and decides the exit status.
   */
  async finish(end: CommandEnd, drain: () => Promise<void>): Promise<JobResult> {
    if (this.finished) throw new Error(`job ${this.id} has already finished`);
    this.finished = true;
    const { exitCode, signal, interrupted } = end;
    const egress = this.egress!;
    const lockdown = this.lockdown!;
    await Promise.all(this.judging);
    // DNS events wait for the lookup of who asked (a few ms): none may be left out
    await this.proxy!.settled();
    // The job is its cgroup: whatever the command left running ends with it.
    await this.cgroup.kill();
    // every record the kernel wrote of the job, now that nothing of it runs, before its counts are read
    await drain();
    // repeats the kernel folded into records that never came: counted like the rest
    this.handle(egress.unrecordedRepeats(this.deps.clockOffsetMs));
    egress.remove();
    const kills = lockdown.kills(); // final: no process of the job is left
    lockdown.remove();
    const killedBy = this.killedBy;
    // the kernel's word stands even when its record did not reach us
    if (this.deps.tampered() && !killedBy.some((k) => k.startsWith('Agent-Tamper'))) killedBy.push('Agent-Tamper by a job process (its record was lost)');
    if (kills > killedBy.length) killedBy.push(`${kills - killedBy.length} offender(s) whose detection record was lost`);
    const agentFailures = this.agentFailures;
    const dropped = this.deps.droppedRecords() - this.droppedAtStart;
    if (dropped) agentFailures.push(`${dropped} sensor records dropped (ring buffer full)`);
    const lockedDown = killedBy.length > 0;
    const counts = { processes: this.processes, ...this.summary.counts() };
    const mode = this.policy.egressPolicy;
    const blocked = counts.blocked;
    const policy = policyDisplay(this.ref);
    const outcome = (status: number, reason: ExitReason) =>
      reason === 'lockdown'
        ? `killed by lockdown: ${killedBy.join('; ')}`
        : reason === 'interrupted'
        ? `interrupted by ${interrupted}`
        : `exited ${exitCode ?? `on ${signal}`}${reason === 'blocked' ? ` (ringfence exits ${status}: ${blocked} request(s) blocked)` : ''}`;
    const decide = () => exitStatusOf({ exitCode, signal, blocked: mode === 'block' ? blocked : 0, interrupted, lockedDown, agentFailures });

    // The report is written before the status is decided: losing it is a failure too.
    const provisional = decide();
    this.writer.write(
      jobCompletedEvent(this.id, this.deps.now().toISOString(), {
        status: { exitCode, signal },
        ...(lockedDown ? { killedBy: killedBy.join('; ') } : {}),
        counts,
        dropped,
        exitStatus: provisional.status,
        reason: provisional.reason,
        lost: this.writer.lost,
      }),
    );
    this.writer.close();
    if (this.writer.lost) agentFailures.push(`${this.writer.lost} event(s) not written to ${this.spec.events!.label} (${this.writer.error})`);
    const totals = `${counts.processes} processes, ${counts.network} connections, ${counts.dns} DNS queries, ${counts.blocked} blocked`;
    const summaryOut = this.spec.summary;
    if (summaryOut) {
      summaryOut.write(
        this.summary.renderMarkdown(`ringfence: ${this.spec.command.join(' ')}`, [
          `job \`${this.id}\` ${outcome(provisional.status, provisional.reason)}`,
          `policy \`${policy}\`, egress ${mode}`,
          totals,
          ...(dropped ? [`${dropped} sensor events dropped (ring buffer full)`] : []),
        ]),
      );
      summaryOut.close();
      if (summaryOut.lost) agentFailures.push(`the summary was not written to ${summaryOut.label} (${summaryOut.firstError})`);
    }
    const { status: exitStatus, reason } = decide();
    const failures = agentFailures.length ? `; ringfence failed: ${agentFailures.join('; ')}` : '';
    const summaryText = this.summary.renderText(
      `ringfence: job ${this.id} ${outcome(exitStatus, reason)}; policy ${policy} (${mode}); ${totals}${dropped ? `, ${dropped} events dropped` : ''}${failures}${
        reason === 'agent-failure' || reason === 'lockdown' ? ` (ringfence exits ${exitStatus}: ${reason})` : ''
      }`,
    );
    return { id: this.id, exitStatus, exitCode, signal, blocked, interrupted: interrupted !== undefined, killedBy, reason, agentFailures, summaryText };
  }

  /**
   * Takes everything of the session out again, whichever way it ended (its
   * cgroup is the supervisor's): every step runs even if an earlier one
   * failed, and each failure is returned, for the log.
   */
  async release(): Promise<string[]> {
    const failed: string[] = [];
    const attempt = async (what: string, step: () => unknown) => {
      try {
        await step();
      } catch (error) {
        failed.push(`${what}: ${(error as Error).message}`);
      }
    };
    await attempt('killing the job', () => this.cgroup.kill());
    await attempt('removing the egress policy', () => this.egress?.remove());
    await attempt('removing the lockdown settings', () => this.lockdown?.remove());
    await attempt('stopping the DNS proxy', () => this.proxy?.close());
    await attempt('writing the events', () => this.writer.close());
    await attempt('closing the summary', () => this.spec.summary?.close());
    return failed;
  }
}
