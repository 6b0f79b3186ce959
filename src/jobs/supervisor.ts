/**
 * The supervisor: owns the sensor for its whole life and runs many jobs under
 * it at once, each a JobSession (src/jobs/session.ts). It makes each job's
 * cgroup, records it in the registry before anything of it exists, hands each
 * session the events of its own cgroup (events name the job cgroup they
 * happened in or below: `jobCgroupId`), drains the sensor at a job's end, and
 * takes everything of a job out again, whichever way it ended.
 *
 * `ringfence run`/`trace` run one in-process when no ringfenced is running;
 * ringfenced (src/agent/daemon.ts) is one as a service.
 */
import { Cgroup } from '../cgroup/cgroup2';
import { DnsProxy } from '../dns/proxy';
import { JobEgress } from '../enforce/egress';
import { configureStdinShells, JobLockdown, protectRunnerProcesses } from '../enforce/lockdown';
import { resumeAfterPtraceKill, signalIfAlive } from '../enforce/resume';
import { lookForRelay } from './relay';
import { preflight } from '../sensor/kernel';
import { Sensor, type SensorOptions } from '../sensor/sensor';
import type { SensorEvent } from '../sensor/events';
import { JobRegistry } from './registry';
import { JobSession, type CommandEnd, type JobResult, type JobSpec, type SessionDeps } from './session';

/** The sensor's watchdog (SensorOptions.watchdogMs): the default, for every supervisor. */
export const WATCHDOG_MS = 3000;

export interface SupervisorOptions {
  /** Where what the supervisor does for nobody's request goes (sweeps, cleanup failures). */
  log: (line: string) => void;
  registry?: JobRegistry;
  /** The sensor's tuning (ring buffer size…); pins and the agent are the supervisor's. */
  sensor?: Omit<SensorOptions, 'pinDir' | 'skipPreflight'>;
  /** Sees every batch before it is routed (the daemon's metrics). */
  observe?: (events: SensorEvent[]) => void;
}

/** What the supervisor runs for a job: a JobSession (run), a TraceSession (trace). */
export interface SupervisedJob {
  readonly id: string;
  /** The sensor's events of the job's cgroup, in kernel order. */
  handle(events: SensorEvent[]): void;
  /** A failure of ringfence's own that the job's result must say. */
  agentFailure(what: string): void;
  /** Takes everything of the job out but its cgroup; returns what failed. */
  release(): Promise<string[]>;
}

/** A job as its starter sees it: its session, and the cgroup to start its first process in. */
export interface StartedJob<J extends SupervisedJob = JobSession> {
  session: J;
  cgroup: Cgroup;
}

export class Supervisor {
  private readonly sessions = new Map<number, { session: SupervisedJob; cgroup: Cgroup }>();
  /** Records of job cgroups no session owns (a job that just ended), counted rather than lost without a word. */
  unroutedEvents = 0;
  private closed = false;

  private constructor(
    readonly id: string,
    readonly registry: JobRegistry,
    readonly sensor: Sensor,
    private readonly log: (line: string) => void,
    private readonly observe: ((events: SensorEvent[]) => void) | undefined,
  ) {}

  /**
   * Checks the machine, ends jobs whose ringfence is gone, and loads the
   * sensor pinned under the supervisor's own record (if this process dies,
   * its jobs stay enforced and die at their next syscall: bpf/agent.bpf.c).
   */
  static async open(options: SupervisorOptions): Promise<Supervisor> {
    preflight();
    const registry = options.registry ?? new JobRegistry();
    for (const line of await registry.sweep()) options.log(line);
    const id = JobRegistry.newId('sensor');
    const pins = registry.pinDirOf(id);
    registry.register(id, undefined, pins);
    let sensor: Sensor;
    try {
      sensor = Sensor.open({ watchdogMs: WATCHDOG_MS, ...options.sensor, pinDir: pins, skipPreflight: true });
    } catch (error) {
      registry.unregister(id);
      throw error;
    }
    const supervisor = new Supervisor(id, registry, sensor, options.log, options.observe);
    sensor.on('events', (events) => supervisor.route(events));
    sensor.on('error', (error) => supervisor.sensorFailed(error));
    try {
      configureStdinShells(sensor.kernel());
      sensor.start();
    } catch (error) {
      sensor.destroy();
      registry.unregister(id);
      throw error;
    }
    return supervisor;
  }

  /** Jobs running now. */
  get jobs(): SupervisedJob[] {
    return [...this.sessions.values()].map((s) => s.session);
  }

  /** Each running job's cgroup, relative to the cgroup2 mount (who a local API caller is: src/agent/caller.ts). */
  jobCgroups(): { jobId: string; cgroups: string[] }[] {
    return [...this.sessions.values()].map(({ session }) => ({ jobId: session.id, cgroups: [`${this.registry.jobsCgroup}/${session.id}`] }));
  }

  /**
   * Starts a job: records it, makes its cgroup, enforces its policy and
   * tracks it. The caller starts its first process in `cgroup` and, when
   * that ended, calls endJob. What fails half-way is undone.
   */
  startJob(prefix: 'run', spec: Omit<JobSpec, 'id'>): Promise<StartedJob> {
    return this.start(prefix, (id, cgroup) => JobSession.start({ ...spec, id }, cgroup, this.sessionDeps(cgroup)));
  }

  /** Starts a traced job: every event of it to `create`'s session, nothing enforced. */
  startTrace<J extends SupervisedJob>(create: (id: string, cgroup: Cgroup, sensor: Sensor) => J): Promise<StartedJob<J>> {
    return this.start('trace', async (id, cgroup) => create(id, cgroup, this.sensor));
  }

  /** Ends a job whose command ended (see JobSession.finish), and takes everything of it out. */
  endJob(session: JobSession, end: CommandEnd): Promise<JobResult> {
    return this.end(session, () => session.finish(end, () => this.sensor.drain()));
  }

  /** Ends a traced job: `finish` is given the drain to wait for its last records. */
  endTrace<J extends SupervisedJob, R>(session: J, finish: (drain: () => Promise<void>) => Promise<R>): Promise<R> {
    return this.end(session, () => finish(() => this.sensor.drain()));
  }

  private async start<J extends SupervisedJob>(prefix: 'run' | 'trace', create: (id: string, cgroup: Cgroup) => Promise<J>): Promise<StartedJob<J>> {
    if (this.closed) throw new Error('the supervisor is closed');
    const id = JobRegistry.newId(prefix);
    this.registry.register(id, this.registry.cgroupPathOf(id));
    let cgroup: Cgroup;
    try {
      cgroup = Cgroup.create(`${this.registry.jobsCgroup}/${id}`);
    } catch (error) {
      this.registry.unregister(id);
      throw error;
    }
    try {
      // runner processes started since the last job are protected from this one's (Runner-Worker-Memory-Read…)
      protectRunnerProcesses(this.sensor.kernel());
      const session = await create(id, cgroup);
      this.sessions.set(cgroup.id, { session, cgroup });
      this.sensor.track(cgroup);
      return { session, cgroup };
    } catch (error) {
      await this.forget(id, cgroup, undefined);
      throw error;
    }
  }

  private async end<R>(session: SupervisedJob, finish: () => Promise<R>): Promise<R> {
    const entry = [...this.sessions.values()].find((e) => e.session === session);
    if (!entry) throw new Error(`job ${session.id} is not running under this supervisor`);
    try {
      // the kernel ended the job while ringfence did not beat (stopped from outside, frozen, hung): the job's report says so
      if (this.sensor.agentGone().includes('stalled')) {
        session.agentFailure(`ringfence was stopped or stalled for longer than its watchdog (${WATCHDOG_MS / 1000} s): the kernel ended the job`);
      }
      return await finish();
    } finally {
      await this.forget(session.id, entry.cgroup, session);
    }
  }

  /** Ends every job still running (as interrupted), unloads the sensor and unpins it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const { session, cgroup } of [...this.sessions.values()]) await this.forget(session.id, cgroup, session);
    try {
      await this.sensor.close();
    } catch (error) {
      this.log(`ringfence: unloading the sensor: ${(error as Error).message}`);
      this.sensor.destroy();
    }
    if (this.unroutedEvents) this.log(`ringfence: ${this.unroutedEvents} sensor record(s) of job cgroups no job owned (a job that had ended)`);
    this.registry.unregister(this.id);
    this.registry.removeEmptyRoots();
  }

  private sessionDeps(cgroup: Cgroup): SessionDeps {
    const sensor = this.sensor;
    return {
      startEgress: (_job, policy, dns) => new JobEgress(sensor.kernel(), cgroup, policy, dns),
      startLockdown: (cgroupId, detections) => new JobLockdown(sensor.kernel(), cgroupId, detections),
      startDnsProxy: (options) => DnsProxy.start(options),
      tree: sensor.tree,
      clockOffsetMs: sensor.clockOffsetMs,
      tampered: () => sensor.agentGone().includes('tampered'),
      droppedRecords: () => sensor.stats().dropped,
      lookForRelay: (event, pids) => lookForRelay(event, pids),
      resumeAfterPtraceKill: (offender, target, seized) => resumeAfterPtraceKill(offender, target, seized),
      signal: signalIfAlive,
      sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
      now: () => new Date(),
    };
  }

  /** Each job's events to its session, in kernel order. */
  private route(events: SensorEvent[]): void {
    this.observe?.(events);
    const byJob = new Map<number, SensorEvent[]>();
    for (const event of events) {
      const batch = byJob.get(event.jobCgroupId);
      if (batch) batch.push(event);
      else byJob.set(event.jobCgroupId, [event]);
    }
    for (const [jobCgroupId, batch] of byJob) {
      const entry = this.sessions.get(jobCgroupId);
      if (entry) entry.session.handle(batch);
      else this.unroutedEvents += batch.length;
    }
  }

  /** A sensor failure is every running job's: each result says it. */
  private sensorFailed(error: Error): void {
    this.log(`ringfence: sensor: ${error.message}`);
    for (const { session } of this.sessions.values()) session.agentFailure(`sensor: ${error.message}`);
  }

  /** Untracks, releases and removes a job; every step runs, each failure is logged. */
  private async forget(id: string, cgroup: Cgroup, session: SupervisedJob | undefined): Promise<void> {
    this.sessions.delete(cgroup.id);
    const failed = session ? await session.release() : [];
    try {
      this.sensor.untrack(cgroup);
    } catch (error) {
      failed.push(`untracking its cgroup: ${(error as Error).message}`);
    }
    try {
      await cgroup.destroy();
      this.registry.unregister(id);
    } catch (error) {
      // the record stays, for the next sweep
      failed.push(`removing ${cgroup.path}: ${(error as Error).message}`);
    }
    for (const line of failed) this.log(`ringfence: job ${id}: ${line}`);
  }
}
