/**
 * Which processes the sensor covers (nested cgroups, untracking, namespaces)
 * and what happens when JavaScript cannot keep up: drops are counted, nothing
 * disappears silently, memory stays bounded.
 */
import { describe, expect, it } from 'vitest';
import { Cgroup } from '../../src/cgroup/cgroup2';
import type { ExecEvent, SensorEvent } from '../../src/sensor/events';
import { Sensor } from '../../src/sensor/sensor';
import { fixture, useSensorAndJobs } from '../helpers/job';

const CAP_SYS_ADMIN = 1n << 21n;

const suite = useSensorAndJobs();
const newJob = suite.newJob;

const execsOf = (events: SensorEvent[]) => events.filter((e): e is ExecEvent => e.type === 'exec');

describe('job scope', () => {
  it('covers cgroups created below a tracked one', async () => {
    const job = newJob();
    const nested = Cgroup.create('inner/deeper', job.cgroup.path);
    const child = nested.spawn('/bin/echo', ['nested'], { stdio: 'ignore' });
    await new Promise((resolve) => child.on('exit', resolve));
    await suite.recorder().waitFor((events) => events.some((e) => e.type === 'exit' && e.tgid === child.pid), 5000, 'nested exit');
    const exec = execsOf(suite.recorder().events).find((e) => e.tgid === child.pid)!;
    expect(exec.cgroupId).toBe(nested.id);
    expect(exec.jobCgroupId).toBe(job.cgroup.id);
  });

  it('stops reporting a cgroup once it is untracked', async () => {
    const job = newJob();
    await job.run('/bin/true');
    expect(execsOf(job.events())).toHaveLength(1);
    suite.recorder().sensor.untrack(job.cgroup);
    const quiet = await job.run('/bin/echo', ['after'], false);
    const other = newJob();
    await other.run('/bin/true'); // proves events were still flowing
    expect(suite.recorder().events.filter((e) => e.tgid === quiet.pid)).toEqual([]);
    suite.recorder().sensor.track(job.cgroup);
  });
});

describe('container facts', () => {
  it('a process in new pid and mount namespaces, root caps, initial user namespace', async () => {
    const job = newJob();
    await job.run('/usr/bin/unshare', ['--pid', '--mount', '--fork', '/bin/true']);
    const exec = execsOf(job.events()).find((e) => e.filename === '/bin/true')!;
    expect(exec.container).toMatchObject({ pidnsLevel: 1, mntnsNotInit: true, usernsInit: true });
    expect(exec.container.capEffective & CAP_SYS_ADMIN).toBe(CAP_SYS_ADMIN);
  });

  it('a user-namespaced ("rootless") container is not in the initial user namespace', async () => {
    const job = newJob();
    await job.run('/usr/bin/unshare', ['--user', '--map-root-user', '--pid', '--mount', '--fork', '/bin/true']);
    const exec = execsOf(job.events()).find((e) => e.filename === '/bin/true')!;
    expect(exec.container).toMatchObject({ pidnsLevel: 1, mntnsNotInit: true, usernsInit: false });
  });

  it('capabilities dropped with capsh are reported as dropped', async () => {
    const job = newJob();
    await job.run('/usr/sbin/capsh', ['--drop=cap_sys_admin', '--', '-c', '/bin/true']);
    const exec = execsOf(job.events()).find((e) => e.filename === '/bin/true')!;
    expect(exec.container.capEffective & CAP_SYS_ADMIN).toBe(0n);
    expect(exec.container.capEffective).not.toBe(0n);
  });
});

describe('backpressure', () => {
  it('when JS lags, the reader stops draining, probes count drops, and every committed record is delivered', async () => {
    const sensor = Sensor.open({ ringBufferBytes: 1 << 18, batchBytes: 16 << 10, maxBatchesInFlight: 2, wakeupBytes: 4096 });
    const cgroup = Cgroup.create(`ringfence-test/${process.pid}-pressure`);
    let delivered = 0;
    let maxBuffered = 0;
    sensor.on('events', (events) => {
      delivered += events.length;
      const until = Date.now() + 20; // a listener far slower than the probes
      while (Date.now() < until);
      maxBuffered = Math.max(maxBuffered, process.memoryUsage().arrayBuffers);
    });
    sensor.start();
    sensor.track(cgroup);
    try {
      const flood = cgroup.spawn(fixture('syscall_flood'), ['ptrace', '300000'], { stdio: 'ignore' });
      await new Promise((resolve) => flood.on('exit', resolve));
      await sensor.close();
      const stats = sensor.finalStats!;
      const ptrace = stats.probes.ptrace;
      expect(stats.reader.backpressureWaits).toBeGreaterThan(0);
      expect(ptrace.dropped).toBeGreaterThan(0);
      expect(ptrace.seen).toBe(300000);
      expect(ptrace.emitted + ptrace.dropped).toBe(ptrace.seen);
      // everything the probes committed reached the listener
      const emitted = Object.values(stats.probes).reduce((n, p) => n + p.emitted, 0);
      expect(delivered).toBe(emitted);
      expect(stats.reader.records).toBe(emitted);
      // bounded: ring (256 KiB) + in-flight batches, far below the flood's 24 MB
      expect(maxBuffered).toBeLessThan(8 << 20);
    } finally {
      sensor.destroy();
      await cgroup.destroy();
    }
  });
});
