/**
 * ringfenced against a ringfence per job: the real daemon (bin/ringfenced)
 * started here, jobs handed to it through the local API as `ringfence run`
 * does. Measures how fast a job is enforced after it asks, the machine's CPU
 * for 4 concurrent jobs under one daemon against 4 separate in-process
 * `ringfence run`s (same workload, side by side), the daemon's CPU when idle,
 * and its memory after many jobs (no growth per job).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Cgroup } from '../src/cgroup/cgroup2';
import { JOB_API, type StartReply } from '../src/agent/job-api';
import { LocalApiClient } from '../src/agent/local-api';
import { REPO_ROOT } from '../src/util/paths';
import { createTestHost } from '../test/helpers/netns';
import { median, percentile } from './stats';

const FIXTURES = path.join(REPO_ROOT, 'test', 'fixtures', 'bin');
const RINGFENCE = path.join(REPO_ROOT, 'bin', 'ringfence');
const RINGFENCED = path.join(REPO_ROOT, 'bin', 'ringfenced');

export interface DaemonBenchResult {
  jobs: number;
  /** job.start request → its reply (the policy is in the kernel by then), and → the job's first connect refused (spawn included). */
  enforcedMs: { p50: number; p99: number };
  firstRefusedMs: { p50: number; p99: number };
  /** Machine CPU (all cores, ms) for the same 4 concurrent exec storms: under one daemon, and as 4 `ringfence run`s; medians over rounds. */
  cpu: { rounds: number; storm: string; daemonMs: number; separateMs: number; ratio: number };
  /** The daemon's own CPU while idle, as a share of one core. */
  idleCpuPct: number;
  idleSeconds: number;
  /** The daemon's resident memory (MiB) after start and after N jobs. */
  rssMiB: { start: number; points: { jobs: number; mib: number }[] };
}

/** Busy CPU time of the whole machine so far, in ms (from /proc/stat). */
function machineBusyMs(): number {
  const fields = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = fields;
  return ((user + nice + system + irq + softirq + steal) * 1000) / 100; // USER_HZ is 100 on Linux
}

function processCpuMs(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

function rssMiB(pid: number): number {
  const kb = Number(/^VmRSS:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
  return kb / 1024;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Daemon {
  child: ChildProcess;
  socket: string;
  stop(): Promise<void>;
}

async function startDaemon(work: string, env: NodeJS.ProcessEnv): Promise<Daemon> {
  const socket = path.join(work, 'run', 'agent.sock');
  fs.writeFileSync(path.join(work, 'policy.yml'), 'name: bench\negress-policy: block\n');
  fs.writeFileSync(path.join(work, 'ringfenced.yaml'), `policy-file: ${path.join(work, 'policy.yml')}\nsocket: ${socket}\nlog-level: warn\n`);
  const child = spawn(process.execPath, [RINGFENCED, '--config', path.join(work, 'ringfenced.yaml')], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  for (let waited = 0; !fs.existsSync(socket); waited += 20) {
    if (child.exitCode !== null || waited > 20_000) throw new Error(`ringfenced did not start: ${stderr}`);
    await sleep(20);
  }
  return {
    child,
    socket,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** One job as `ringfence run` hands it over: start, its command in the job's cgroup, finish. */
async function runVia(socket: string, command: string[], onStdout?: (text: string) => void): Promise<{ startedAt: bigint; enforcedAt: bigint }> {
  const client = await LocalApiClient.connect(socket);
  try {
    const startedAt = process.hrtime.bigint();
    const reply = await client.call<StartReply>(JOB_API.start, { command, events: false, summary: false });
    const enforcedAt = process.hrtime.bigint();
    const child = new Cgroup(reply.cgroup).spawn(command[0], command.slice(1), { stdio: ['ignore', 'pipe', 'ignore'] });
    child.stdout!.on('data', (d) => onStdout?.(String(d)));
    const [exitCode, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('exit', (code, sig) => resolve([code, sig])));
    await client.call(JOB_API.finish, { id: reply.id, exitCode, signal });
    return { startedAt, enforcedAt };
  } finally {
    client.close();
  }
}

/** 4 exec storms as 4 separate, in-process `ringfence run`s (no daemon at their socket). */
async function separateRuns(storm: string[], env: NodeJS.ProcessEnv, count: number): Promise<void> {
  await Promise.all(
    Array.from({ length: count }, () => {
      const child = spawn(process.execPath, [RINGFENCE, 'run', '--', ...storm], { env: { ...env, RINGFENCE_SOCKET: '/nonexistent/agent.sock' }, stdio: 'ignore' });
      return new Promise<void>((resolve) => child.on('exit', () => resolve()));
    }),
  );
}

export async function daemonBench(options: { jobs: number; rounds: number; stormCount: number; idleSeconds: number }, log: (line: string) => void): Promise<DaemonBenchResult> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ringfence-bench-daemon-'));
  const env = { ...process.env, RINGFENCE_INSTANCE: `bench-daemon-${process.pid}` };
  const host = createTestHost(61);
  const storm = [path.join(FIXTURES, 'syscall_flood'), 'exec', String(options.stormCount)];
  const CONCURRENT = 4;
  try {
    // CPU first, side by side in each round: one daemon for 4 jobs, then 4 separate runs
    const daemonCpu: number[] = [];
    const separateCpu: number[] = [];
    for (let round = 0; round < options.rounds; round++) {
      const daemon = await startDaemon(work, env);
      let before = machineBusyMs();
      await Promise.all(Array.from({ length: CONCURRENT }, () => runVia(daemon.socket, storm)));
      daemonCpu.push(machineBusyMs() - before);
      await daemon.stop();
      before = machineBusyMs();
      await separateRuns(storm, env, CONCURRENT);
      separateCpu.push(machineBusyMs() - before);
      log(`  round ${round + 1}/${options.rounds}: 4 jobs under ringfenced ${daemonCpu[round].toFixed(0)} ms CPU, 4 ringfence runs ${separateCpu[round].toFixed(0)} ms`);
    }

    const daemon = await startDaemon(work, env);
    try {
      await sleep(1000); // past the start's own work
      const idleBefore = processCpuMs(daemon.child.pid!);
      await sleep(options.idleSeconds * 1000);
      const idleCpuPct = ((processCpuMs(daemon.child.pid!) - idleBefore) / (options.idleSeconds * 1000)) * 100;
      log(`  idle: ${idleCpuPct.toFixed(2)} % of a core`);

      const start = rssMiB(daemon.child.pid!);
      const enforced: number[] = [];
      const refused: number[] = [];
      const points: { jobs: number; mib: number }[] = [];
      const probe = [path.join(FIXTURES, 'connect_to'), host.ip4, '9'];
      for (let job = 1; job <= options.jobs; job++) {
        let refusedAt: bigint | undefined;
        const { startedAt, enforcedAt } = await runVia(daemon.socket, probe, (text) => {
          if (text.includes('errno 1')) refusedAt ??= process.hrtime.bigint();
        });
        if (refusedAt === undefined) throw new Error(`job ${job}: its connect to ${host.ip4} was not refused (EPERM)`);
        enforced.push(Number(enforcedAt - startedAt) / 1e6);
        refused.push(Number(refusedAt - startedAt) / 1e6);
        if (job === 100 || job === options.jobs || job % 500 === 0) {
          points.push({ jobs: job, mib: rssMiB(daemon.child.pid!) });
          log(`  ${job} jobs: RSS ${points.at(-1)!.mib.toFixed(1)} MiB, enforced p50 ${median(enforced).toFixed(1)} ms`);
        }
      }
      const daemonMs = median(daemonCpu);
      const separateMs = median(separateCpu);
      return {
        jobs: options.jobs,
        enforcedMs: { p50: median(enforced), p99: percentile(enforced, 99) },
        firstRefusedMs: { p50: median(refused), p99: percentile(refused, 99) },
        cpu: { rounds: options.rounds, storm: `syscall_flood exec ${options.stormCount}`, daemonMs, separateMs, ratio: daemonMs / separateMs },
        idleCpuPct,
        idleSeconds: options.idleSeconds,
        rssMiB: { start, points },
      };
    } finally {
      await daemon.stop();
    }
  } finally {
    host.destroy();
    fs.rmSync(work, { recursive: true, force: true });
  }
}
