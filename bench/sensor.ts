/**
 * Sensor benchmarks: storms of real syscalls in a tracked cgroup.
 *
 *  - exec storm and connect storm: wall time of the storm with the sensor
 *    tracking its cgroup vs without the sensor loaded at all (ratio, medians
 *    over alternating rounds), events/s delivered to JS, drops, agent CPU;
 *  - flood: the highest rate the machine's cores can make reported syscalls
 *    (one generator per core, PTRACE_PEEKDATA on a missing pid), events/s
 *    delivered to JS and drops.
 */
import path from 'node:path';
import { Cgroup } from '../src/cgroup/cgroup2';
import { Sensor } from '../src/sensor/sensor';
import { REPO_ROOT } from '../src/util/paths';
import { median } from './stats';

const FLOOD = path.join(REPO_ROOT, 'test/fixtures/bin/syscall_flood');

export interface StormResult {
  kind: string;
  count: number;
  rounds: number;
  baselineMs: number[];
  sensorMs: number[];
  /** CPU time of the storm (medians): without, untracked, tracked. */
  cpuMs: { none: number; untracked: number; tracked: number };
  cpuRatio: number;
  /** The sensor loaded but not tracking the storm's cgroup: the rest of the machine's cost. */
  untrackedMs: number[];
  medianUntrackedMs: number;
  untrackedRatio: number;
  medianBaselineMs: number;
  medianSensorMs: number;
  overheadRatio: number;
  eventsDelivered: number;
  eventsPerSecond: number;
  dropped: number;
  agentCpuSeconds: number;
}

export interface FloodResult {
  generators: number;
  syscallsPerGenerator: number;
  /** Until the last generator exited. */
  generateMs: number;
  /** Until the sensor had delivered everything and closed. */
  wallMs: number;
  eventsDelivered: number;
  eventsPerSecond: number;
  dropped: number;
  agentCpuSeconds: number;
  backpressureWaits: number;
}

export interface StormRun {
  wallMs: number;
  /** User + system CPU of the storm process and its children. */
  cpuMs: number;
}

/** Runs syscall_flood in the cgroup; its wall time, and the CPU time it reports. */
export function runFlood(cgroup: Cgroup, args: string[]): Promise<StormRun> {
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const child = cgroup.spawn(FLOOD, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    child.stdout!.on('data', (chunk) => (output += chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
      const cpu = /cpu_us=(\d+)/.exec(output);
      if (code !== 0 || !cpu) reject(new Error(`syscall_flood ${args.join(' ')} exited ${code}`));
      else resolve({ wallMs, cpuMs: Number(cpu[1]) / 1000 });
    });
  });
}

const runIn = async (cgroup: Cgroup, args: string[]) => (await runFlood(cgroup, args)).wallMs;

/** Opens a sensor that counts delivered events; returns it with a counter. */
function countingSensor(): { sensor: Sensor; delivered: () => number } {
  const sensor = Sensor.open();
  let delivered = 0;
  sensor.on('events', (events) => (delivered += events.length));
  sensor.start();
  return { sensor, delivered: () => delivered };
}

const cpuSeconds = (usage: NodeJS.CpuUsage) => (usage.user + usage.system) / 1e6;

export async function storm(kind: 'exec' | 'connect', count: number, rounds: number, log: (line: string) => void): Promise<StormResult> {
  const cgroup = Cgroup.create(`ringfence-bench/${kind}-${process.pid}`);
  const baselineMs: number[] = [];
  const sensorMs: number[] = [];
  const untrackedMs: number[] = [];
  const cpu = { none: [] as number[], untracked: [] as number[], tracked: [] as number[] };
  const record = (run: StormRun, wall: number[], cpuList: number[]) => {
    wall.push(run.wallMs);
    cpuList.push(run.cpuMs);
    return run.wallMs;
  };
  let eventsDelivered = 0;
  let sensorSeconds = 0;
  let dropped = 0;
  let agentCpu = 0;
  try {
    for (let round = 0; round < rounds; round++) {
      record(await runFlood(cgroup, [kind, String(count)]), baselineMs, cpu.none);

      const { sensor, delivered } = countingSensor();
      record(await runFlood(cgroup, [kind, String(count)]), untrackedMs, cpu.untracked);
      sensor.track(cgroup);
      const cpuBefore = process.cpuUsage();
      const ms = record(await runFlood(cgroup, [kind, String(count)]), sensorMs, cpu.tracked);
      await sensor.close();
      agentCpu += cpuSeconds(process.cpuUsage(cpuBefore));
      eventsDelivered += delivered();
      sensorSeconds += ms / 1000;
      dropped += sensor.finalStats!.dropped;
      log(`  ${kind} round ${round + 1}/${rounds}: ${baselineMs[round].toFixed(0)} ms without, ${untrackedMs[round].toFixed(0)} ms untracked, ${ms.toFixed(0)} ms tracked, ${delivered()} events`);
    }
  } finally {
    await cgroup.destroy();
  }
  const medianBaselineMs = median(baselineMs);
  const medianSensorMs = median(sensorMs);
  return {
    kind,
    count,
    rounds,
    baselineMs,
    sensorMs,
    untrackedMs,
    medianUntrackedMs: median(untrackedMs),
    untrackedRatio: median(untrackedMs) / medianBaselineMs,
    medianBaselineMs,
    medianSensorMs,
    overheadRatio: medianSensorMs / medianBaselineMs,
    eventsDelivered: eventsDelivered / rounds,
    eventsPerSecond: eventsDelivered / sensorSeconds,
    dropped,
    agentCpuSeconds: agentCpu / rounds,
    cpuMs: { none: median(cpu.none), untracked: median(cpu.untracked), tracked: median(cpu.tracked) },
    cpuRatio: median(cpu.tracked) / median(cpu.none),
  };
}

export async function flood(generators: number, syscallsPerGenerator: number): Promise<FloodResult> {
  const cgroup = Cgroup.create(`ringfence-bench/flood-${process.pid}`);
  const { sensor, delivered } = countingSensor();
  sensor.track(cgroup);
  try {
    const cpuBefore = process.cpuUsage();
    const started = process.hrtime.bigint();
    await Promise.all(Array.from({ length: generators }, () => runIn(cgroup, ['ptrace', String(syscallsPerGenerator)])));
    const generateMs = Number(process.hrtime.bigint() - started) / 1e6;
    await sensor.close();
    const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
    const stats = sensor.finalStats!;
    return {
      generators,
      syscallsPerGenerator,
      generateMs,
      wallMs,
      eventsDelivered: delivered(),
      eventsPerSecond: delivered() / (wallMs / 1000),
      dropped: stats.dropped,
      agentCpuSeconds: cpuSeconds(process.cpuUsage(cpuBefore)),
      backpressureWaits: stats.reader.backpressureWaits,
    };
  } finally {
    sensor.destroy();
    await cgroup.destroy();
  }
}

export interface DrainResult {
  events: number;
  drainMs: number;
  eventsPerSecond: number;
  batches: number;
  dropped: number;
}

/**
 * Delivery throughput alone: `count` events are made while nobody reads,
 * so they wait in a large ring buffer; then the reader starts and the time
 * until JS listeners have every one of them is measured.
 */
export async function drain(count: number): Promise<DrainResult> {
  const cgroup = Cgroup.create(`ringfence-bench/drain-${process.pid}`);
  const sensor = Sensor.open({ ringBufferBytes: 1 << 28 });
  let delivered = 0;
  let done: () => void = () => undefined;
  const all = new Promise<void>((resolve) => (done = resolve));
  sensor.on('events', (events) => {
    delivered += events.length;
    if (delivered >= count) done();
  });
  sensor.track(cgroup);
  try {
    await runIn(cgroup, ['ptrace', String(count)]);
    const started = process.hrtime.bigint();
    sensor.start();
    await all;
    const drainMs = Number(process.hrtime.bigint() - started) / 1e6;
    await sensor.close();
    const stats = sensor.finalStats!;
    return { events: delivered, drainMs, eventsPerSecond: delivered / (drainMs / 1000), batches: stats.reader.batches, dropped: stats.dropped };
  } finally {
    sensor.destroy();
    await cgroup.destroy();
  }
}
