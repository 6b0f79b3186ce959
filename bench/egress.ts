/**
 * Egress benchmarks:
 *  - DNS: latency of a query through the proxy vs straight to the upstream
 *    (sequential, p50/p99), and answers/s the proxy sustains;
 *  - connect: a loopback connect storm with the egress hooks attached vs not.
 */
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Cgroup } from '../src/cgroup/cgroup2';
import { DnsProxy } from '../src/dns/proxy';
import { JobEgress } from '../src/enforce/egress';
import { EgressMatcher } from '../src/policy/matcher';
import { parsePolicy } from '../src/policy/policy';
import { Sensor } from '../src/sensor/sensor';
import { runFlood, type StormRun } from './sensor';
import { median, percentile } from './stats';


function node(script: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(process.execPath, [path.join(__dirname, script), ...args], { maxBuffer: 64 << 20 }, (error, stdout) => (error ? reject(error) : resolve(stdout))),
  );
}

export interface DnsBenchResult {
  queries: number;
  direct: { p50: number; p99: number };
  proxy: { p50: number; p99: number };
  addedP50: number;
  addedP99: number;
  qps: number;
  qpsLost: number;
}

export async function dnsLatency(queries: number, floodSeconds: number): Promise<DnsBenchResult> {
  const upstream = spawn(process.execPath, [path.join(__dirname, 'dns-upstream.js')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const upstreamPort = await new Promise<number>((resolve) => upstream.stdout.once('data', (d) => resolve(Number(String(d).trim()))));
  const sensor = Sensor.open();
  const cgroup = Cgroup.create(`ringfence-bench/dns-${process.pid}`);
  const policy = parsePolicy('egress-policy: block\nallowed-endpoints: bench.allowed.test\n');
  sensor.track(cgroup);
  const egress = new JobEgress(sensor.kernel(), cgroup, policy);
  const proxy = await DnsProxy.start({
    matcher: new EgressMatcher(policy),
    mode: 'block',
    upstream: { host: '127.0.0.1', port: upstreamPort },
    learn: (addresses, ports) => addresses.forEach((a) => egress.learn(a, ports)),
    record: () => undefined,
  });
  try {
    const run = async (port: number) => JSON.parse(await node('dns-client.js', ['127.0.0.1', String(port), 'bench.allowed.test', 'sequential', String(queries)])) as { latencies: number[] };
    // alternate, so that drift in the machine's load hits both alike
    const direct: number[] = [];
    const viaProxy: number[] = [];
    for (let round = 0; round < 4; round++) {
      direct.push(...(await run(upstreamPort)).latencies);
      viaProxy.push(...(await run(proxy.port)).latencies);
    }
    const flood = JSON.parse(await node('dns-client.js', ['127.0.0.1', String(proxy.port), 'bench.allowed.test', 'flood', String(floodSeconds), '64'])) as { qps: number; lost: number };
    const d = { p50: percentile(direct, 50), p99: percentile(direct, 99) };
    const p = { p50: percentile(viaProxy, 50), p99: percentile(viaProxy, 99) };
    return { queries: direct.length, direct: d, proxy: p, addedP50: p.p50 - d.p50, addedP99: p.p99 - d.p99, qps: flood.qps, qpsLost: flood.lost };
  } finally {
    await proxy.close();
    egress.remove();
    sensor.destroy();
    await cgroup.destroy();
    upstream.kill();
  }
}

export interface ConnectBenchResult {
  connects: number;
  rounds: number;
  noneMs: number;
  sensorMs: number;
  hooksMs: number;
  hooksVsSensor: number;
  hooksVsNone: number;
  /** CPU time of the storm process (medians) and the same ratios. */
  cpu: { noneMs: number; sensorMs: number; hooksMs: number; hooksVsSensor: number };
  /** Run time of each of our programs per connect of the hooks storm (kernel.bpf_stats_enabled). */
  perConnectNs: Record<string, number>;
}

const BPF_STATS = '/proc/sys/kernel/bpf_stats_enabled';

/** Cumulative run time (ns) of every program of the sensor, by name, from the kernel's own accounting. */
async function programRunTime(sensor: Sensor): Promise<Map<string, number>> {
  const times = new Map<string, number>();
  for (const id of sensor.kernelObjects().programs) {
    const shown = await new Promise<string>((resolve) => execFile('bpftool', ['prog', 'show', 'id', String(id), '-j'], (_e, stdout) => resolve(stdout)));
    try {
      const info = JSON.parse(shown) as { name: string; run_time_ns?: number };
      times.set(info.name, info.run_time_ns ?? 0);
    } catch {
      /* program gone */
    }
  }
  return times;
}

const storm = (cgroup: Cgroup, count: number) => runFlood(cgroup, ['connect', String(count)]);

/**
 * Three set-ups per round, alternating: nothing loaded; the sensor tracking
 * the cgroup; the sensor tracking it and the egress hooks attached (what
 * `ringfence run` does). Loopback is allowed, so every connect runs the hook's
 * whole decision and passes.
 */
export async function connectCost(count: number, rounds: number): Promise<ConnectBenchResult> {
  const cgroup = Cgroup.create(`ringfence-bench/connect-${process.pid}`);
  const none: StormRun[] = [];
  const sensorOnly: StormRun[] = [];
  const hooks: StormRun[] = [];
  const hookNs = new Map<string, number>();
  const policy = parsePolicy('egress-policy: block\nallowed-endpoints: 198.18.9.9\n');
  const statsWere = fs.readFileSync(BPF_STATS, 'utf8').trim();
  fs.writeFileSync(BPF_STATS, '1');
  try {
    for (let round = 0; round < rounds; round++) {
      none.push(await storm(cgroup, count));
      const sensor = Sensor.open();
      sensor.on('events', () => undefined);
      sensor.start();
      sensor.track(cgroup);
      sensorOnly.push(await storm(cgroup, count));
      const egress = new JobEgress(sensor.kernel(), cgroup, policy);
      const before = await programRunTime(sensor);
      hooks.push(await storm(cgroup, count));
      const after = await programRunTime(sensor);
      for (const [name, ns] of after) hookNs.set(name, (hookNs.get(name) ?? 0) + ns - (before.get(name) ?? 0));
      egress.remove();
      await sensor.close();
    }
  } finally {
    fs.writeFileSync(BPF_STATS, statsWere);
    await cgroup.destroy();
  }
  const perConnectNs: Record<string, number> = {};
  for (const [name, ns] of hookNs) if (ns > 0) perConnectNs[name] = ns / (count * rounds);
  const wall = (runs: StormRun[]) => median(runs.map((r) => r.wallMs));
  const cpu = (runs: StormRun[]) => median(runs.map((r) => r.cpuMs));
  const noneMs = wall(none);
  const sensorMs = wall(sensorOnly);
  const hooksMs = wall(hooks);
  return {
    connects: count,
    rounds,
    noneMs,
    sensorMs,
    hooksMs,
    hooksVsSensor: hooksMs / sensorMs,
    hooksVsNone: hooksMs / noneMs,
    cpu: { noneMs: cpu(none), sensorMs: cpu(sensorOnly), hooksMs: cpu(hooks), hooksVsSensor: cpu(hooks) / cpu(sensorOnly) },
    perConnectNs,
  };
}
