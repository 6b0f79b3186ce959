/**
 * Runs real commands in real job cgroups under a real sensor, and waits for
 * their events. Used by the privileged end-to-end tests.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { Cgroup } from '../../src/cgroup/cgroup2';
import type { SensorEvent } from '../../src/sensor/events';
import { Sensor } from '../../src/sensor/sensor';

export const FIXTURES = path.resolve(__dirname, '../fixtures/bin');
export const fixture = (name: string) => path.join(FIXTURES, name);

let sequence = 0;

export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** pid of the job's first process (the shell that moved itself in, then exec'd). */
  pid: number;
}

/** A sensor that records every event it delivers, for assertions. */
export class RecordingSensor {
  readonly events: SensorEvent[] = [];
  readonly sensor: Sensor;

  constructor() {
    this.sensor = Sensor.open();
    this.sensor.on('events', (events) => this.events.push(...events));
    this.sensor.on('error', (error) => {
      throw error;
    });
    this.sensor.start();
  }

  /** Events of one job cgroup (or below it). */
  of(cgroup: Cgroup): SensorEvent[] {
    const id = cgroup.id;
    return this.events.filter((e) => e.jobCgroupId === id);
  }

  /** Waits until `predicate` holds for the recorded events (polls; fails after timeoutMs). */
  async waitFor(predicate: (events: SensorEvent[]) => boolean, timeoutMs = 5000, what = 'events'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this.events)) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  async close(): Promise<void> {
    await this.sensor.close();
  }
}

/** A fresh cgroup for one test; tracked unless told otherwise. */
export class TestJob {
  readonly cgroup: Cgroup;

  constructor(
    private readonly recorder: RecordingSensor,
    options: { tracked?: boolean } = {},
  ) {
    this.cgroup = Cgroup.create(`ringfence-test/${process.pid}-${++sequence}`);
    if (options.tracked !== false) recorder.sensor.track(this.cgroup);
  }

  /** Runs a command in the cgroup and waits for it and for its exit event. */
  async run(command: string, args: string[] = [], tracked = true): Promise<CommandResult> {
    // Plain files on stdio: node's 'pipe' stdio is a unix socketpair, which
    // the stdio probes would rightly report.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringfence-job-'));
    const outPath = path.join(dir, 'stdout');
    const errPath = path.join(dir, 'stderr');
    const outFd = fs.openSync(outPath, 'w');
    const errFd = fs.openSync(errPath, 'w');
    const child = this.cgroup.spawn(command, args, { stdio: ['ignore', outFd, errFd] });
    fs.closeSync(outFd);
    fs.closeSync(errFd);
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      child.on('error', reject);
      child.on('exit', (c, s) => resolve([c, s]));
    });
    const stdout = fs.readFileSync(outPath, 'utf8');
    const stderr = fs.readFileSync(errPath, 'utf8');
    fs.rmSync(dir, { recursive: true, force: true });
    const pid = child.pid!;
    if (tracked) {
      await this.recorder.waitFor((events) => events.some((e) => e.type === 'exit' && e.tgid === pid), 5000, `exit of ${pid}`);
    }
    return { code, signal, stdout, stderr, pid };
  }

  /** Runs a bash script in the cgroup. */
  bash(script: string, tracked = true): Promise<CommandResult> {
    return this.run('/bin/bash', ['-c', script], tracked);
  }

  events(): SensorEvent[] {
    return this.recorder.of(this.cgroup);
  }

  async destroy(): Promise<void> {
    this.recorder.sensor.untrack(this.cgroup);
    await this.cgroup.destroy();
  }
}

export function bpftool(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('bpftool', args, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/**
 * For a test file: one recording sensor for all its tests (opened before,
 * closed after) and fresh job cgroups that are removed at the end.
 */
export function useSensorAndJobs(): { recorder: () => RecordingSensor; newJob: (tracked?: boolean) => TestJob } {
  let recorder: RecordingSensor | undefined;
  const jobs: TestJob[] = [];
  beforeAll(() => {
    recorder = new RecordingSensor();
  });
  afterAll(async () => {
    for (const job of jobs) await job.destroy();
    await recorder?.close();
  });
  return {
    recorder: () => recorder!,
    newJob: (tracked = true) => {
      const job = new TestJob(recorder!, { tracked });
      jobs.push(job);
      return job;
    },
  };
}
