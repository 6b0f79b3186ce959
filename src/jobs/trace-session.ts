/**
 * A traced job (`ringfence trace`): every event of it written as it comes, as
 * text lines or as the job events `run --events` writes (docs/events.md), and
 * nothing enforced. Like a JobSession, it runs under a supervisor that routes
 * it its cgroup's events and drains the sensor at its end.
 */
import type { OutputFile } from './output';
import { jobCompletedEvent, JobEventWriter, jobStartedEvent, sensorJobEvent, type PolicyRef } from './job-events';
import { formatEvent } from '../sensor/format';
import type { SensorEvent } from '../sensor/events';
import type { ProcessTree } from '../sensor/process-tree';
import type { JobIdentity } from './identity';
import type { JobCgroup, CommandEnd } from './session';

export interface TraceSpec {
  id: string;
  command: string[];
  out: OutputFile;
  /** Job events (JSON lines) instead of text lines. */
  json: boolean;
  identity?: JobIdentity;
}

export interface TraceDeps {
  tree: ProcessTree;
  tampered(): boolean;
  droppedRecords(): number;
  now(): Date;
}

export interface TraceResult {
  /** What failed or was lost, one line each. */
  failures: string[];
  /** The kernel ended the job: a process of it tampered with ringfence. */
  tampered: boolean;
}

const NO_POLICY: PolicyRef = { name: null };

export class TraceSession {
  readonly id: string;
  private readonly events: JobEventWriter | undefined;
  private readonly failures: string[] = [];
  private readonly droppedAtStart: number;
  private finished = false;

  constructor(
    private readonly spec: TraceSpec,
    readonly cgroup: JobCgroup,
    private readonly deps: TraceDeps,
  ) {
    this.id = spec.id;
    this.events = spec.json ? new JobEventWriter(spec.out, { identity: spec.identity }) : undefined;
    this.droppedAtStart = deps.droppedRecords();
    this.events?.write(jobStartedEvent(this.id, deps.now().toISOString(), spec.command, NO_POLICY));
  }

  handle(events: SensorEvent[]): void {
    for (const event of events) {
      if (this.events) this.events.write(sensorJobEvent(this.id, NO_POLICY, this.deps.tree, event));
      else this.spec.out.write(formatEvent(event, this.deps.tree.ancestry(event.tgid)) + '\n');
    }
  }

  agentFailure(what: string): void {
    this.failures.push(what);
  }

  /** Kills the job's processes (its starter was interrupted), without waiting. */
  endAll(): void {
    this.cgroup.kill().catch((error: Error) => this.failures.push(`killing the job: ${error.message}`));
  }

  /** Ends the job after its command ended: kills what it left running, waits for its last records, writes the end. */
  async finish(end: CommandEnd, drain: () => Promise<void>): Promise<TraceResult> {
    if (this.finished) throw new Error(`job ${this.id} has already finished`);
    this.finished = true;
    // Anything the command left running in the background ends with it.
    await this.cgroup.kill();
    await drain();
    const tampered = this.deps.tampered();
    const dropped = this.deps.droppedRecords() - this.droppedAtStart;
    const out = this.spec.out;
    this.events?.write(jobCompletedEvent(this.id, this.deps.now().toISOString(), { status: { exitCode: end.exitCode, signal: end.signal }, dropped, lost: out.lost }));
    this.events?.close();
    const failures = [...this.failures];
    if (dropped > 0) failures.push(`${dropped} events were dropped (ring buffer full)`);
    if (out.lost > 0) failures.push(`${out.lost} events could not be written to ${out.label} (${out.firstError})`);
    return { failures, tampered };
  }

  async release(): Promise<string[]> {
    const failed: string[] = [];
    try {
      await this.cgroup.kill();
    } catch (error) {
      failed.push(`killing the job: ${(error as Error).message}`);
    }
    this.spec.out.close();
    return failed;
  }
}
