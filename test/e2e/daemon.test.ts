/**
 * ringfenced, the real daemon, started by the test: jobs handed over by
 * `ringfence run` share its one sensor (the kernel's program count does not
 * grow per job), each under its own policy; a job whose `ringfence run` dies
 * is ended; a job cannot start another; SIGTERM with no job leaves nothing
 * in the kernel.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/jobs/exit-status';
import { findCgroup2Mount } from '../../src/cgroup/cgroup2';
import { createTestHost, type TestHost } from '../helpers/netns';

const RINGFENCE = path.resolve(__dirname, '../../bin/ringfence');
const RINGFENCED = path.resolve(__dirname, '../../bin/ringfenced');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ringfence-daemon-'));
const INSTANCE = `daemon-${process.pid}`;
const ROOT = `ringfence-${INSTANCE}`;
const SOCKET = path.join(work, 'run', 'agent.sock');
const PORT = 8443;
const env = { ...process.env, RINGFENCE_INSTANCE: INSTANCE, RINGFENCE_SOCKET: SOCKET };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until<T>(what: string, probe: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Ids of every BPF program in the kernel now. */
const programIds = () => new Set((JSON.parse(execFileSync('bpftool', ['prog', 'show', '-j'], { encoding: 'utf8' })) as { id: number }[]).map((p) => p.id));
/** The daemon's sensor, as `ringfence status --json` says it: its programs' ids and its job count. */
const status = () => JSON.parse(execFileSync(process.execPath, [RINGFENCE, 'status', '--json'], { env, encoding: 'utf8' })) as { jobs: number; kernel: { programs: number[]; links: number[] } };

interface Daemon {
  child: ChildProcess;
  log: () => string;
  exited: Promise<number | null>;
}

function startDaemon(config: string): Daemon {
  const file = path.join(work, `ringfenced-${Date.now()}.yaml`);
  fs.writeFileSync(file, config);
  const child = spawn(process.execPath, [RINGFENCED, '--config', file], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout!.on('data', (d) => (log += d));
  child.stderr!.on('data', (d) => (log += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, log: () => log, exited };
}

interface Run {
  child: ChildProcess;
  done: Promise<{ code: number | null; stderr: string }>;
}

function run(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Run {
  const child = spawn(process.execPath, [RINGFENCE, 'run', ...args], { env: { ...env, ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  child.stdout!.on('data', (d) => (stderr += d));
  return { child, done: new Promise((resolve) => child.on('exit', (code) => resolve({ code, stderr }))) };
}

/** A daemon of its own on SOCKET (the main one stopped by then), once it is ready. */
async function readyDaemon(what: string): Promise<Daemon> {
  const daemon = startDaemon(`socket: ${SOCKET}\nlog-level: info\n`);
  await until(`${what} to be ready`, () => daemon.log().includes('ringfenced ready'));
  return daemon;
}

/**
 * A job under a block policy allowing nothing that waits, once started, until
 * the test lets it go on (`release`); then it leaves `marker` and connects.
 */
async function heldJob(name: string): Promise<{ job: Run; marker: string; release: () => void }> {
  const ready = path.join(work, `${name}-ready`);
  const marker = path.join(work, `${name}-went-on`);
  const job = run(['--policy', policy('nothing'), '--', '/bin/bash', '-c', `touch ${ready}; while [ ! -e ${ready}.go ]; do sleep 0.05; done; touch ${marker}; ${CONNECT()}`]);
  await until('the job to start', () => fs.existsSync(ready));
  return { job, marker, release: () => fs.writeFileSync(`${ready}.go`, '') };
}

const events = (file: string) =>
  fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record<string, unknown>);

let host: TestHost;
let daemon: Daemon;
/** The sensor's programs, read once the daemon is ready: no job may add to them. */
let sensorPrograms: number[];
let named = 0;

/** A policy file allowing `allowed` (ADDRESS:PORT), or nothing. */
function policy(name: string, allowed?: string): string {
  const file = path.join(work, `${name}-${++named}.yml`);
  fs.writeFileSync(file, `name: ${name}\negress-policy: block\n${allowed ? `allowed-endpoints: ${allowed}\n` : ''}`);
  return file;
}

/** A job that connects to the test host and says whether it got through. */
const CONNECT = () => `if exec 3<>/dev/tcp/${host.ip4}/${PORT}; then echo connected; else echo refused; fi`;

beforeAll(async () => {
  host = createTestHost(35);
  const server = host.spawn('/usr/bin/python3', [
    '-u',
    '-c',
    `import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('${host.ip4}', ${PORT}))\ns.listen(64)\nprint('ready')\nwhile True:\n  c,_=s.accept(); c.close()`,
  ]);
  await new Promise<void>((resolve) => server.stdout!.on('data', (d) => String(d).includes('ready') && resolve()));
  daemon = startDaemon(`policy-file: ${policy('daemon-default')}\nsocket: ${SOCKET}\nlog-level: info\n`);
  await until('ringfenced to be ready', () => daemon.log().includes('ringfenced ready'));
  sensorPrograms = status().kernel.programs;
  expect(sensorPrograms.length).toBeGreaterThan(10);
}, 30_000);

afterAll(async () => {
  if (daemon.child.exitCode === null) {
    daemon.child.kill('SIGTERM');
    await daemon.exited;
  }
  host.destroy();
  fs.rmSync(work, { recursive: true, force: true });
});

describe('ringfenced', () => {
  it('runs two jobs at once, each under its own policy, on one sensor', async () => {
    const eventsA = path.join(work, 'a.jsonl');
    const eventsB = path.join(work, 'b.jsonl');
    // both hold on until the test has seen both running: they overlap for sure
    const barrier = path.join(work, 'barrier');
    const script = (me: string) => `touch ${barrier}.${me}; while [ ! -e ${barrier}.go ]; do sleep 0.05; done; ${CONNECT()}`;
    const a = run(['--policy', policy('allows', `${host.ip4}:${PORT}`), '--events', eventsA, '--', '/bin/bash', '-c', script('a')]);
    const b = run(['--policy', policy('denies'), '--events', eventsB, '--', '/bin/bash', '-c', script('b')]);
    await until('both jobs to run', () => fs.existsSync(`${barrier}.a`) && fs.existsSync(`${barrier}.b`));
    const during = status();
    expect(during.jobs).toBe(2);
    expect(during.kernel.programs).toEqual(sensorPrograms);
    fs.writeFileSync(`${barrier}.go`, '');
    const [ra, rb] = await Promise.all([a.done, b.done]);
    expect(ra.stderr).toContain('connected');
    expect(ra.code, ra.stderr).toBe(0);
    expect(rb.stderr).toContain('refused');
    expect(rb.code, rb.stderr).toBe(EXIT.BLOCKED);
    const jobA = events(eventsA)[0].job;
    const jobB = events(eventsB)[0].job;
    expect(jobA).not.toBe(jobB);
    // each job's events are its own: the other's connection is not in them
    expect(events(eventsA).filter((e) => e.kind === 'network').map((e) => [e.job, e.verdict])).toEqual([[jobA, 'allowed']]);
    expect(events(eventsB).filter((e) => e.kind === 'network').map((e) => [e.job, e.verdict])).toEqual([[jobB, 'blocked']]);
    expect(status()).toMatchObject({ jobs: 0, kernel: { programs: sensorPrograms } });
  }, 30_000);

  it('runs three jobs in sequence without loading anything more, under its policy-file when the run names none', async () => {
    const ids = new Set<unknown>();
    for (let i = 0; i < 3; i++) {
      const file = path.join(work, `seq-${i}.jsonl`);
      const result = await run(['--events', file, '--', '/bin/bash', '-c', CONNECT()]).done;
      // daemon-default allows nothing
      expect(result.stderr).toContain("policy daemon-default from ringfenced's policy-file (block)");
      expect(result.code, result.stderr).toBe(EXIT.BLOCKED);
      const written = events(file);
      expect(written[0]).toMatchObject({ kind: 'job', phase: 'started', policy: 'daemon-default' });
      expect(written.at(-1)).toMatchObject({ kind: 'job', phase: 'completed', reason: 'blocked' });
      ids.add(written[0].job);
      expect(status().kernel.programs).toEqual(sensorPrograms);
    }
    expect(ids.size).toBe(3);
  }, 30_000);

  it('ends a job whose ringfence run was killed: nothing of it runs on', async () => {
    const marker = path.join(work, 'went-on');
    const started = path.join(work, 'started');
    const r = run(['--', '/bin/bash', '-c', `touch ${started}; sleep 2; touch ${marker}`]);
    await until('the job to start', () => fs.existsSync(started));
    const jobs = path.join(findCgroup2Mount()!, ROOT, 'jobs');
    const id = await until('its cgroup', () => fs.readdirSync(jobs).find((name) => name.startsWith('run-')));
    r.child.kill('SIGKILL');
    await r.done;
    await until('the job to be ended', () => !fs.existsSync(path.join(jobs, id)));
    await sleep(2500);
    expect(fs.existsSync(marker)).toBe(false);
    expect(daemon.log()).toContain(`the job was ended because its starter (pid ${r.child.pid}) went away`);
  }, 30_000);

  it('refuses a fresh job to a process inside a job (it would leave its job), and the job goes on', async () => {
    const result = await run(['--', '/bin/bash', '-c', `${process.execPath} ${RINGFENCE} run -- /bin/true; echo "nested: $?"`]).done;
    expect(result.stderr).toMatch(/ringfenced \(.*\) refused the job: job\.start: pid \d+ runs inside job run-\S+: a job cannot start another/);
    expect(result.stderr).toContain(`nested: ${EXIT.USAGE}`);
    expect(result.code, result.stderr).toBe(0);
  }, 30_000);

  it('traces a job handed over by ringfence trace, on the same sensor', async () => {
    const file = path.join(work, 'trace.jsonl');
    const child = spawn(process.execPath, [RINGFENCE, 'trace', '--json', '-o', file, '--', '/bin/bash', '-c', '/bin/ls / >/dev/null; exit 3'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    expect(code, stderr).toBe(3);
    const written = events(file);
    expect(written[0]).toMatchObject({ kind: 'job', phase: 'started', command: ['/bin/bash', '-c', '/bin/ls / >/dev/null; exit 3'] });
    expect(written.filter((e) => e.kind === 'process').map((e) => (e.process as { exe: string }).exe)).toEqual(['/bin/bash', '/bin/ls']);
    expect(written.at(-1)).toMatchObject({ kind: 'job', phase: 'completed', status: { exitCode: 3 } });
    expect(new Set(written.map((e) => e.job)).size).toBe(1);
    expect(status().kernel.programs).toEqual(sensorPrograms);
  }, 30_000);

  it('a job that signals ringfenced is refused by its seal: it is ended and reported, ringfenced and the other jobs go on', async () => {
    const other = path.join(work, 'other-job');
    const bystander = run(['--', '/bin/bash', '-c', `sleep 1.5; echo done > ${other}`]);
    const marker = path.join(work, 'after-refusal');
    const result = await run(['--', '/bin/bash', '-c', `kill -USR1 ${daemon.child.pid}; sleep 0.5; touch ${marker}`]).done;
    expect(result.code, result.stderr).toBe(EXIT.LOCKDOWN);
    expect(result.stderr).toContain(`kill aimed at ringfence (pid ${daemon.child.pid}), refused (via seccomp)`);
    expect(fs.existsSync(marker)).toBe(false);
    expect(daemon.child.exitCode).toBeNull();
    expect(daemon.log()).toContain('Agent-Tamper refused: a job process aimed a syscall at ringfenced; its job is ended');
    expect((await bystander.done).code).toBe(0);
    expect(fs.readFileSync(other, 'utf8')).toBe('done\n');
    expect(status().kernel.programs).toEqual(sensorPrograms);
  }, 30_000);

  it('stopped with SIGTERM while no job runs, leaves nothing in the kernel', async () => {
    daemon.child.kill('SIGTERM');
    expect(await daemon.exited).toBe(0);
    const left = programIds();
    expect(sensorPrograms.filter((id) => left.has(id))).toEqual([]);
    expect(fs.existsSync(`/sys/fs/bpf/${ROOT}`)).toBe(false);
    expect(fs.existsSync(SOCKET)).toBe(false);
  }, 30_000);

  it('a signal that reaches ringfenced (through a /proc descriptor) ends every job in the kernel; ringfenced stops (exit 70) and leaves nothing', async () => {
    const tamper = await readyDaemon('the second ringfenced');
    const programs = status().kernel.programs;
    const marker = path.join(work, 'after-tamper');
    const signal = `python3 -c 'import os,signal; signal.pidfd_send_signal(os.open("/proc/${tamper.child.pid}", os.O_RDONLY), signal.SIGUSR1)'`;
    const result = await run(['--', '/bin/bash', '-c', `${signal}; sleep 1; touch ${marker}`]).done;
    expect(await tamper.exited).toBe(70);
    expect(tamper.log()).toContain('Agent-Tamper: a job process acted on ringfenced');
    expect(fs.existsSync(marker)).toBe(false);
    expect(result.code).not.toBe(0);
    const left = programIds();
    expect(programs.filter((id) => left.has(id))).toEqual([]);
  }, 30_000);

  it('killed with SIGKILL mid-job: nothing of the job runs on, its address stays refused, and the restarted ringfenced ends and reports it', async () => {
    const killed = await readyDaemon('the third ringfenced');
    const { job: r, marker, release } = await heldJob('killed');
    const jobs = path.join(findCgroup2Mount()!, ROOT, 'jobs');
    const id = await until('its cgroup', () => fs.readdirSync(jobs).find((name) => name.startsWith('run-')));
    killed.child.kill('SIGKILL');
    await killed.exited;
    release();
    const result = await r.done;
    expect(result.code).toBe(EXIT.AGENT_FAILURE);
    expect(result.stderr).toContain(`the job's report is ringfenced's`);
    await sleep(300);
    expect(fs.existsSync(marker)).toBe(false);
    // the hooks stay attached while nobody has ended the job
    expect(execFileSync('bpftool', ['cgroup', 'show', path.join(jobs, id)], { encoding: 'utf8' })).toMatch(/connect4/);
    const restarted = await readyDaemon('ringfenced, started again,');
    expect(restarted.log()).toContain(`ended job ${id} left by a ringfence that is gone`);
    expect(fs.existsSync(path.join(jobs, id))).toBe(false);
    restarted.child.kill('SIGTERM');
    expect(await restarted.exited).toBe(0);
  }, 40_000);

  it('stopped with SIGSTOP mid-job: past the watchdog nothing of the job runs on; continued, ringfenced reports it and stops (exit 70)', async () => {
    const stopped = await readyDaemon('the fourth ringfenced');
    const { job: r, marker, release } = await heldJob('stopped');
    stopped.child.kill('SIGSTOP');
    await sleep(3800);
    release();
    await sleep(500);
    expect(fs.existsSync(marker), 'the job went on while ringfenced was stopped').toBe(false);
    stopped.child.kill('SIGCONT');
    expect(await stopped.exited).toBe(70);
    expect(stopped.log()).toContain('ringfenced was stopped or stalled for longer than its watchdog (3 s): the kernel ended every job');
    const result = await r.done;
    expect(result.code).toBe(EXIT.AGENT_FAILURE);
    expect(result.stderr).toContain('ringfence was stopped or stalled for longer than its watchdog (3 s): the kernel ended the job');
  }, 40_000);

  it('refuses a bad config with one line naming file, line and key, and starts nothing', async () => {
    const bad = startDaemon(`socket: ${SOCKET}\nsokcet: /tmp/x\n`);
    expect(await bad.exited).toBe(2);
    expect(bad.log()).toMatch(/^ringfenced: \S+\.yaml:2: unknown key 'sokcet'/m);
    expect(fs.existsSync(SOCKET)).toBe(false);
  });
});
