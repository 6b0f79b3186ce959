/**
 * `npm run bench [-- --quick]`: runs the benchmarks and writes
 * docs/benchmarks.md with the machine, the date and every figure measured.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connectCost, dnsLatency, type ConnectBenchResult } from './egress';
import { killLatency, lockdownExecStorm } from './lockdown';
import { inProcessResolve, postgresBenchDb, resolveLoad, sqliteBenchDb, type ResolveBenchResult } from './store';
import { median } from './stats';
import { REPO_ROOT } from '../src/util/paths';
import { drain, flood, storm, type DrainResult, type FloodResult, type StormResult } from './sensor';
import { gateCost } from './failclosed';
import { daemonBench } from './daemon';


function machine(): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  return `${os.cpus().length} × ${cpu}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${os.release()}, Node ${process.version}`;
}

const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

function stormTable(results: StormResult[]): string {
  const rows = results.map(
    (r) =>
      `| ${r.kind} × ${fmt(r.count)} | ${r.rounds} | ${fmt(r.medianBaselineMs)} ms | ${fmt(r.medianUntrackedMs)} ms (${fmt(r.untrackedRatio, 3)}) | ${fmt(r.medianSensorMs)} ms | ${fmt(r.overheadRatio, 3)} (${fmt((r.overheadRatio - 1) * 100, 1)} %) | ${fmt(r.eventsDelivered)} | ${fmt(r.eventsPerSecond)} | ${r.dropped} | ${fmt(r.agentCpuSeconds, 2)} s |`,
  );
  return [
    '| storm | rounds | median wall, no sensor | sensor loaded, cgroup not tracked (ratio) | sensor tracking the cgroup | ratio (overhead) | events per storm | events/s to JS | drops | agent CPU per storm |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
    'CPU time of the storm process itself (user + system, its own report), medians — the probes run in its context, so this is their cost free of scheduling noise:',
    '',
    '| storm | no sensor | not tracked | tracked | ratio tracked / none |',
    '|---|---|---|---|---|',
    ...results.map((r) => `| ${r.kind} | ${fmt(r.cpuMs.none)} ms | ${fmt(r.cpuMs.untracked)} ms (${fmt(r.cpuMs.untracked / r.cpuMs.none, 3)}) | ${fmt(r.cpuMs.tracked)} ms | ${fmt(r.cpuRatio, 3)} (${fmt((r.cpuRatio - 1) * 100, 1)} %) |`),
  ].join('\n');
}

function floodTable(results: FloodResult[]): string {
  const rows = results.map(
    (r) =>
      `| ${r.generators} × ${fmt(r.syscallsPerGenerator)} | ${fmt((r.generators * r.syscallsPerGenerator) / (r.generateMs / 1000))} | ${fmt(r.wallMs)} ms | ${fmt(r.eventsDelivered)} | ${fmt(r.eventsPerSecond)} | ${r.dropped} | ${r.backpressureWaits} | ${fmt(r.agentCpuSeconds, 2)} s |`,
  );
  return [
    '| generators × syscalls | syscalls/s generated | wall (until drained) | events delivered | events/s to JS | drops | reader waits (backpressure) | agent CPU |',
    '|---|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}

/** The egress hooks' and the sensor's share of a connect, from the kernel's program run times. */
function hookShare(c: ConnectBenchResult) {
  const cycleNs = (c.cpu.noneMs * 1e6) / c.connects;
  let hooksNs = 0;
  let probesNs = 0;
  for (const [name, ns] of Object.entries(c.perConnectNs)) {
    if (/^handle_(connect|sendmsg|recvmsg|getpeername)[46]$|^handle_skb_egress$/.test(name)) hooksNs += ns;
    else if (/connect/.test(name)) probesNs += ns;
  }
  return { cycleNs, hooksNs, probesNs, hooksPct: (hooksNs / cycleNs) * 100, probesPct: (probesNs / cycleNs) * 100 };
}

/** A section of docs/benchmarks.md: measured, then rendered. */
interface Section {
  name: string;
  run(options: { quick: boolean; log: (line: string) => void }): Promise<string>;
}

const SECTIONS: Section[] = [
  {
    name: 'daemon',
    async run({ quick, log }) {
      const options = quick ? { jobs: 200, rounds: 2, stormCount: 500, idleSeconds: 5 } : { jobs: 3000, rounds: 5, stormCount: 2000, idleSeconds: 30 };
      log(`ringfenced: ${options.rounds} CPU rounds, ${options.jobs} jobs…`);
      const d = await daemonBench(options, log);
      return `## ringfenced: one sensor for every job

The real daemon (bin/ringfenced, bench/daemon.ts), jobs handed to it through
the local API as \`ringfence run\` does (start, the command in the job's
cgroup, finish), each job on a connection of its own.

**CPU, 4 concurrent jobs.** Each of ${d.cpu.rounds} rounds runs the same 4 concurrent
jobs (${d.cpu.storm}: fork + exec of /bin/true, one after the other) first under one
ringfenced, then as 4 separate in-process \`ringfence run\`s (each loading its own
sensor), side by side; busy CPU of the whole machine (/proc/stat) from the first
request to the last job's end, medians: **${fmt(d.cpu.daemonMs)} ms under ringfenced,
${fmt(d.cpu.separateMs)} ms as 4 runs, ratio ${fmt(d.cpu.ratio, 3)}**. (The daemon's start,
sensor load included, is outside its window, as it is once per boot; each
separate run pays its own.)

**Idle.** The daemon's own CPU over ${d.idleSeconds} s with no job: ${fmt(d.idleCpuPct, 2)} % of one core.

**Start → enforced**, over ${fmt(d.jobs)} jobs one after the other: the job.start
request to its reply (the policy is in the kernel by then) p50 **${fmt(d.enforcedMs.p50, 1)} ms**,
p99 ${fmt(d.enforcedMs.p99, 1)} ms; to the job's first connect refused with EPERM (a
connect_to to a host in a test network namespace, spawn included) p50
${fmt(d.firstRefusedMs.p50, 1)} ms, p99 ${fmt(d.firstRefusedMs.p99, 1)} ms.

**Memory.** The daemon's resident set after start: ${fmt(d.rssMiB.start, 1)} MiB; ${d.rssMiB.points.map((p) => `after ${fmt(p.jobs)} jobs ${fmt(p.mib, 1)} MiB`).join(', ')}.`;
    },
  },
  {
    name: 'failclosed',
    async run({ quick, log }) {
      const rounds = quick ? 3 : 9;
      const count = quick ? 1_000_000 : 5_000_000;
      log(`fail-closed gate: getppid storm of ${fmt(count)} (${rounds} rounds)…`);
      const g = await gateCost(count, rounds, log);
      const row = (name: string, key: keyof typeof g.cpuMs) => `| ${name} | ${fmt(g.cpuMs[key])} ms | ${fmt(g.nsPerSyscall[key], 1)} ns |`;
      return `## Fail closed: the agent-gone gate on every syscall

The gate (bpf/agent.bpf.c, \`raw_syscalls:sys_enter\`) is what makes a job whose
ringfence is gone die at its next syscall; it runs on every syscall of the
machine. Each of ${g.rounds} rounds runs ${fmt(g.count)} getppid(2) calls (no probe
reports them) four ways, one after the other: nothing loaded; the sensor
without the gate; the sensor with the gate, not tracking the storm's cgroup
(what the rest of the machine pays); and tracking it (what a job pays). CPU
time of the storm, medians over the rounds.

| configuration | CPU per storm | per syscall |
|---|---|---|
${row('nothing loaded', 'none')}
${row('sensor, no gate', 'noGate')}
${row('sensor with the gate', 'gate')}
${row('sensor with the gate, storm tracked', 'gateTracked')}

The gate against the same sensor without it: **${fmt(g.gateVsNoGate, 3)}×**; a tracked job's
syscalls against nothing loaded: ${fmt(g.trackedVsNone, 3)}×. (Any syscall
tracepoint the sensor enables already puts every task on the kernel's slow
syscall path; the gate adds one more raw-tracepoint program run per syscall,
which reads one global. On a syscall as cheap as getppid that run is most
of what the gate costs; a syscall that does work pays the same absolute amount.)`;
    },
  },
  {
    name: 'sensor',
    async run({ quick, log }) {
      const rounds = quick ? 3 : 7;
      log(`exec storm (${rounds} rounds)…`);
      const exec = await storm('exec', quick ? 2000 : 20000, rounds, log);
      log(`connect storm (${rounds} rounds)…`);
      const connect = await storm('connect', quick ? 20000 : 200000, rounds, log);
      log('flood…');
      const floods: FloodResult[] = [];
      for (const generators of [1, os.cpus().length]) {
        const result = await flood(generators, quick ? 200000 : 2000000);
        log(`  ${generators} generator(s): ${fmt(result.eventsPerSecond)} events/s, ${result.dropped} drops`);
        floods.push(result);
      }
      log('drain…');
      const drains: DrainResult[] = [];
      for (let i = 0; i < (quick ? 1 : 5); i++) {
        const result = await drain(quick ? 300000 : 1000000);
        log(`  ${fmt(result.eventsPerSecond)} events/s`);
        drains.push(result);
      }
      const drainRates = drains.map((d) => d.eventsPerSecond);
      return `## Sensor: storms in a tracked cgroup

Each round runs the storm (test/fixtures/syscall_flood) in a cgroup without the
sensor loaded, then with the sensor loaded but not tracking that cgroup (what
the rest of the machine pays), then with the sensor tracking it; the figures
are medians over the rounds. "exec" is fork + exec of /bin/true,
waited one by one; "connect" is socket + connect to a closed port on
127.0.0.1 + close. Events are everything the probes reported (an exec storm
yields fork, exec and exit per process). Agent CPU is the user + system time of
the process holding the sensor (its JS thread and its ring-buffer reader).
Targets: overhead ≤ 5 % wall time, no drops.

${stormTable([exec, connect])}

Raw rounds (ms, without / untracked / tracked): exec ${exec.baselineMs.map((v) => v.toFixed(0)).join(', ')} / ${exec.untrackedMs.map((v) => v.toFixed(0)).join(', ')} / ${exec.sensorMs.map((v) => v.toFixed(0)).join(', ')};
connect ${connect.baselineMs.map((v) => v.toFixed(0)).join(', ')} / ${connect.untrackedMs.map((v) => v.toFixed(0)).join(', ')} / ${connect.sensorMs.map((v) => v.toFixed(0)).join(', ')}.

## Sensor: flood

The highest rate this machine makes reported syscalls: one generator process
per core, each calling ptrace(PTRACE_PEEKDATA) on a pid that does not exist
(every call is one event). Events/s counts events decoded and handed to JS
listeners over the whole run (generators started → sensor closed and
drained). Target: ≥ 500,000 events/s delivered, no drops.

${floodTable(floods)}

## Sensor: delivery throughput

How fast the pipeline (ring buffer → native reader thread → batches → JS
decoder → listeners) delivers when records are waiting: ${fmt(drains[0].events)} ptrace
events are made while nobody reads (a 256 MiB ring buffer holds them), then the reader starts and the time until listeners have all of them
is measured. Runs: ${drainRates.map((r) => fmt(r)).join(', ')} events/s; median
**${fmt(median(drainRates))} events/s**, ${drains[0].batches} batches per run, ${drains.reduce((n, d) => n + d.dropped, 0)} drops.
Target: ≥ 500,000 events/s.`;
    },
  },
  {
    name: 'egress',
    async run({ quick, log }) {
      const rounds = quick ? 3 : 7;
      log('DNS proxy latency…');
      const dns = await dnsLatency(quick ? 500 : 2500, quick ? 3 : 10);
      log(`  p50 ${fmt(dns.direct.p50)} µs direct, ${fmt(dns.proxy.p50)} µs via proxy; ${fmt(dns.qps)} answers/s`);
      log('connect cost of the egress hooks…');
      const connects = await connectCost(quick ? 20000 : 200000, rounds);
      log(`  ${fmt(connects.hooksVsSensor, 3)}× with hooks vs sensor only`);
      const share = hookShare(connects);
      return `## Egress: DNS proxy

A client in its own process sends A queries one at a time for an allowed
name, alternately straight to a test upstream on 127.0.0.1 (its own process)
and through the job's DNS proxy (which forwards to that upstream and adds the
answer to the kernel allow map before replying): ${fmt(dns.queries)} queries each.
Then 64 concurrent clients flood the proxy for ${quick ? 3 : 10} s.
Target: ≤ 0.2 ms (200 µs) added at p50.

| path | p50 | p99 |
|---|---|---|
| direct to upstream | ${fmt(dns.direct.p50)} µs | ${fmt(dns.direct.p99)} µs |
| through the proxy | ${fmt(dns.proxy.p50)} µs | ${fmt(dns.proxy.p99)} µs |
| **added by the proxy** | **${fmt(dns.addedP50)} µs** | ${fmt(dns.addedP99)} µs |

Sustained: **${fmt(dns.qps)} answers/s** through the proxy (${dns.qpsLost} queries unanswered within 1 s).

## Egress: connect cost of the hooks

A loopback connect storm (socket + connect to 127.0.0.1:1, refused + close) of
${fmt(connects.connects)} connects, median of ${connects.rounds} rounds, in three set-ups per
round: nothing loaded; the sensor tracking the cgroup; the sensor tracking it
and the egress hooks attached (what \`ringfence run\` does; loopback is allowed,
so every connect runs the hook's whole decision). Target: ≤ 5 % slower with the
hooks than without.

| set-up | median wall | ratio |
|---|---|---|
| nothing loaded | ${fmt(connects.noneMs)} ms | 1.000 |
| sensor tracking | ${fmt(connects.sensorMs)} ms | ${fmt(connects.sensorMs / connects.noneMs, 3)} |
| sensor + egress hooks | ${fmt(connects.hooksMs)} ms | ${fmt(connects.hooksVsNone, 3)} |
| **hooks vs sensor only** | | **${fmt(connects.hooksVsSensor, 3)} (${fmt((connects.hooksVsSensor - 1) * 100, 1)} %)** |

CPU time of the storm process (its own report; the hooks run in its context): nothing ${fmt(connects.cpu.noneMs)} ms,
sensor ${fmt(connects.cpu.sensorMs)} ms, sensor + hooks ${fmt(connects.cpu.hooksMs)} ms: hooks vs sensor only
**${fmt(connects.cpu.hooksVsSensor, 3)} (${fmt((connects.cpu.hooksVsSensor - 1) * 100, 1)} %)**.

The kernel's own accounting of our programs during the hooks storm
(kernel.bpf_stats_enabled), per connect: ${Object.entries(connects.perConnectNs).filter(([, ns]) => ns >= 1).map(([name, ns]) => `${name} ${fmt(ns)} ns`).join(', ')}.
The egress hooks take **${fmt(share.hooksNs)} ns** of a connect cycle of ${fmt(share.cycleNs)} ns
(CPU, nothing loaded): **${fmt(share.hooksPct, 1)} %**; the sensor's connect probes
${fmt(share.probesNs)} ns (${fmt(share.probesPct, 1)} %). The wall and CPU ratios above
also carry the scheduling noise of a 2-core VM.`;
    },
  },
  {
    name: 'lockdown',
    async run({ quick, log }) {
      log('lockdown: detection to kill…');
      const kill = await killLatency(quick ? 20 : 100);
      log(`  offender p50 ${fmt(kill.offenderUs.p50)} µs, job p50 ${fmt(kill.jobUs.p50)} µs`);
      log('lockdown: exec storm, lockdown on vs off…');
      const lockStorm = await lockdownExecStorm(quick ? 2000 : 10000, quick ? 3 : 5);
      return `## Lockdown: detection to death

${kill.runs} runs of a job with two background processes whose shell puts a TCP
socket on its stdin (\`exec 0<&3\`), Reverse-Shell listed. Times are kernel
timestamps from the detection (in the dup2 syscall) to the offender's exit (it
is SIGKILLed in that syscall) and to the last exit of the whole job (ended by
the agent with cgroup.kill when the detection record reaches it).

| | p50 | p99 |
|---|---|---|
| offender dead | ${fmt(kill.offenderUs.p50)} µs | ${fmt(kill.offenderUs.p99)} µs |
| whole job dead | ${fmt(kill.jobUs.p50)} µs | ${fmt(kill.jobUs.p99)} µs |

## Lockdown: probe cost

An exec storm (${fmt(lockStorm.count)} × fork + exec of /bin/true) in a tracked cgroup, lockdown
off vs on with every detection listed, medians of ${lockStorm.rounds} alternating rounds:
wall ${fmt(lockStorm.offMs)} ms off, ${fmt(lockStorm.onMs)} ms on (${fmt(lockStorm.onMs / lockStorm.offMs, 3)});
CPU of the storm ${fmt(lockStorm.offCpuMs)} ms off, ${fmt(lockStorm.onCpuMs)} ms on (${fmt(lockStorm.onCpuMs / lockStorm.offCpuMs, 3)}).
A ratio below 1 is the machine's noise: the lockdown checks at exec are a
few hundred nanoseconds against a fork + exec of about half a millisecond.`;
    },
  },
  {
    name: 'store',
    async run({ quick, log }) {
      const agents = 1000;
      const seconds = quick ? 3 : 10;
      const rounds = quick ? 2 : 5;
      const results: ResolveBenchResult[] = [];
      const own = await inProcessResolve(sqliteBenchDb(), 20000);
      log(`policy store: in-process resolve p50 ${fmt(own.p50Us, 1)} µs`);
      for (const [backend, db] of [
        ['SQLite', sqliteBenchDb()],
        ['PostgreSQL', await postgresBenchDb()],
      ] as const) {
        log(`policy store: resolve with ${agents} agents on ${backend}…`);
        const result = await resolveLoad(backend, db, agents, seconds, rounds);
        log(`  saturated ${fmt(result.saturated.rps)} resolves/s; paced p99 by round ${result.paced.map((r) => fmt(r.p99Ms, 2)).join(', ')} ms, pooled ${fmt(result.pacedPooled.p99Ms, 2)} ms`);
        results.push(result);
      }
      return `## Policy store: resolve under load

${agents} simulated agents, each with its own HTTP/2 connection and one agent
token, resolve the policy of jobs in an organization with 100 repository
policies, workflow exemptions and an organization default, against
\`ringfence server\` (its own gRPC transport, docs/policy-store.md) in a
process of its own on 127.0.0.1, ${seconds} s per measurement. The first call
comes from all agents at once, as after a server restart. Every 50th answer is decoded and checked against the policy the
job must get; a wrong answer or an error status counts as an error.

- **paced**: every agent resolves once a second (${fmt(results[0].offeredRps)} resolves/s
  offered, agents starting at random points of the second): the latency an
  agent sees at that load, ${rounds} rounds after one not counted; the table gives the median of the
  rounds' p50 and p99, the range of p99, and the p99 and maximum of all rounds'
  calls pooled. Target: p99 ≤ 5 ms on SQLite (judged on the pooled p99).
- **saturated**: every agent resolves back to back (${agents} requests always in
  flight): the most the server answers on this machine; latency is then
  queueing (in-flight / throughput).

The agents are simulated by bench/grpc-load-client.ts, a minimal gRPC-over-HTTP/2
client on plain sockets, because @grpc/grpc-js clients for ${agents} agents in one
process stall that process for 10-15 ms scavenges several times a second and
those stalls land in the latencies (a real agent is a process of its own making
one call per job). The column "paced, grpc-js clients" is the same paced load
from ${agents} @grpc/grpc-js clients in the one process, for comparison.

The server's own work per resolve (token check and resolution on SQLite,
in-process, no gRPC, 20,000 calls): p50 ${fmt(own.p50Us, 1)} µs, p99 ${fmt(own.p99Us, 1)} µs.

| database | paced p50 | paced p99 (range) | paced p99 / max, pooled | paced resolves/s | paced, grpc-js clients: p50 / p99 | saturated resolves/s | saturated p50 | saturated p99 | errors |
|---|---|---|---|---|---|---|---|---|---|
${results.map((r) => {
  const p99s = r.paced.map((x) => x.p99Ms);
  const errors = r.paced.reduce((n, x) => n + x.errors, 0) + r.pacedGrpcJs.errors + r.saturated.errors;
  return `| ${r.backend} | ${fmt(median(r.paced.map((x) => x.p50Ms)), 2)} ms | ${fmt(median(p99s), 2)} ms (${fmt(Math.min(...p99s), 2)}-${fmt(Math.max(...p99s), 2)}) | ${fmt(r.pacedPooled.p99Ms, 2)} / ${fmt(r.pacedPooled.maxMs, 1)} ms | ${fmt(median(r.paced.map((x) => x.rps)))} | ${fmt(r.pacedGrpcJs.p50Ms, 2)} / ${fmt(r.pacedGrpcJs.p99Ms, 2)} ms | ${fmt(r.saturated.rps)} | ${fmt(r.saturated.p50Ms, 1)} ms | ${fmt(r.saturated.p99Ms, 1)} ms | ${errors} |`;
}).join('\n')}`;
    },
  },
];

/** The sections' texts in a document, by name. */
function readSections(doc: string): Map<string, string> {
  const sections = new Map<string, string>();
  const block = /<!-- bench:([a-z]+) -->\n([\s\S]*?)\n<!-- \/bench:\1 -->/g;
  let match: RegExpExecArray | null;
  while ((match = block.exec(doc))) sections.set(match[1], match[2]);
  return sections;
}

/** The document with its sections in a fixed order: intro, then SECTIONS' order. */
function writeSections(sections: Map<string, string>): string {
  const order = ['intro', ...SECTIONS.map((s) => s.name)];
  const blocks = order.filter((name) => sections.has(name)).map((name) => `<!-- bench:${name} -->\n${sections.get(name)!.trim()}\n<!-- /bench:${name} -->`);
  return `# Benchmarks\n\n${blocks.join('\n\n')}\n`;
}

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick');
  const onlyIndex = process.argv.indexOf('--only');
  const only = onlyIndex > 0 ? process.argv[onlyIndex + 1].split(',') : SECTIONS.map((s) => s.name);
  const unknown = only.filter((name) => !SECTIONS.some((s) => s.name === name));
  if (unknown.length) throw new Error(`unknown section(s) ${unknown.join(', ')}; known: ${SECTIONS.map((s) => s.name).join(', ')}`);
  const log = (line: string) => process.stderr.write(line + '\n');
  const file = path.join(REPO_ROOT, 'docs/benchmarks.md');
  const sections = readSections(fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '');
  const date = new Date().toISOString().slice(0, 10);
  sections.set('intro', `Written by \`npm run bench\` (bench/run.ts; \`-- --only sensor,egress,lockdown,store\`
re-measures some sections, \`-- --quick\` smaller runs). Every figure below was measured by
such a run on the machine and date its section names; nothing is edited by hand.`);
  for (const section of SECTIONS) {
    if (!only.includes(section.name)) continue;
    const text = await section.run({ quick, log });
    sections.set(section.name, `${text}\n\n_Measured ${date}${quick ? ' (--quick)' : ''} on ${machine()}._`);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, writeSections(sections));
    log(`written section ${section.name} of ${file}`);
  }
}

main().catch((error) => {
  process.stderr.write(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
