/**
 * A job that turns on its ringfence (kills it, stops it, by any signal
 * syscall) cannot go on unwatched: the kernel kills the sender at once and
 * every other job process at its next syscall, the egress hooks stay
 * attached (pinned), and the next ringfence ends what is left. A job that
 * leaves ringfence alone is untouched.
 *
 * Each ringfence runs under a name of its own (a symlink), in a process
 * group of its own, so that `pkill -f NAME` and `kill -- -PGID` from a job
 * reach that ringfence only, never another test's.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { findCgroup2Mount } from '../../src/cgroup/cgroup2';
import { EXIT } from '../../src/agent/exit-status';
import { createTestHost, type TestHost } from '../helpers/netns';

const RINGFENCE = path.resolve(__dirname, '../../bin/ringfence');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ringfence-fail-closed-'));
let named = 0;
/** Every ringfence a test started: none may outlive it, stopped or not (afterEach). */
const startedPids: number[] = [];

interface Started {
  name: string;
  pid: number;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

/** Starts `ringfence ARGS` as a process whose command line holds a unique name. */
function startRingfence(args: string[]): Started {
  const name = `rf-under-test-${process.pid}-${++named}`;
  const link = path.join(work, name);
  fs.symlinkSync(RINGFENCE, link);
  // RF_NAME reaches the job through the environment ringfence passes on
  const child = spawn(process.execPath, [link, ...args], { stdio: ['ignore', 'ignore', 'pipe'], detached: true, env: { ...process.env, RF_NAME: name, RINGFENCE_INSTANCE: INSTANCE } });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  // 'exit', not 'close': job processes parked in a syscall still hold the stderr pipe
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) =>
    child.on('exit', (code, signal) => setTimeout(() => resolve({ code, signal, stderr }), 50)),
  );
  startedPids.push(child.pid!);
  return { name, pid: child.pid!, done };
}

/**
 * An instance of its own (RINGFENCE_INSTANCE): the jobs these tests leave
 * behind on purpose are swept by the test's own next ringfence, not by one
 * that another test file happens to start meanwhile.
 */
const INSTANCE = `failclosed-${process.pid}`;
const ROOT = `ringfence-${INSTANCE}`;
const jobCgroup = (id: string) => path.join(findCgroup2Mount()!, ROOT, 'jobs', id);
/** The pins of the sensor a ringfence process loaded (its supervisor's record: sensor-…-PID). */
const sensorPinsOf = (pid: number) => {
  try {
    return fs.readdirSync(`/sys/fs/bpf/${ROOT}`).filter((name) => name.startsWith('sensor-') && name.endsWith(`-${pid}`));
  } catch {
    return [];
  }
};
const jobIdOf = (pid: number) => {
  try {
    return fs.readdirSync(path.join(findCgroup2Mount()!, ROOT, 'jobs')).find((id) => id.endsWith(`-${pid}`));
  } catch {
    return undefined;
  }
};
const stateOf = (pid: number) => /^State:\s+(\S)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
/** Running or parked; a zombie waits only for its reaper. */
const alive = (pid: number) => {
  try {
    return stateOf(pid) !== 'Z';
  } catch {
    return false;
  }
};
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until<T>(what: string, probe: () => T | undefined, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** A listener in the test host's namespace that counts connections. */
function countingListener(host: TestHost, port: number): { connections: () => number; ready: Promise<void> } {
  const server = host.spawn('/usr/bin/python3', [
    '-u',
    '-c',
    `import socket\ns=socket.socket(socket.AF_INET6 if ':' in '${host.ip4}' else socket.AF_INET)\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('${host.ip4}', ${port}))\ns.listen(16)\nprint('ready')\nwhile True:\n  c,_=s.accept(); print('conn'); c.close()`,
  ]);
  let out = '';
  server.stdout!.on('data', (d) => (out += d));
  return { connections: () => out.split('\n').filter((l) => l === 'conn').length, ready: until('the listener', () => out.includes('ready')).then(() => undefined) };
}

let host: TestHost;
let listener: { connections: () => number; ready: Promise<void> };
const PORT = 8443;

beforeAll(async () => {
  host = createTestHost(31);
  listener = countingListener(host, PORT);
  await listener.ready;
});

afterEach(() => {
  // a failed case may leave its ringfence stopped: continue it, then end it
  for (const pid of startedPids.splice(0)) {
    for (const signal of ['SIGCONT', 'SIGKILL'] as const) {
      try {
        process.kill(pid, signal);
      } catch {
        /* gone */
      }
    }
  }
});

afterAll(async () => {
  host.destroy();
  // the instance's roots go with the tests (a last sweep ends anything a failed case left)
  const { JobRegistry } = await import('../../src/jobs/registry');
  const registry = new JobRegistry({}, ROOT);
  await registry.sweep();
  await registry.paths.cgroupRoot.destroy();
  fs.rmSync(registry.paths.pinRoot, { recursive: true, force: true });
  fs.rmSync(path.dirname(registry.paths.stateDir), { recursive: true, force: true });
  fs.rmSync(work, { recursive: true, force: true });
});

/** A block policy that allows the listener: what the job could reach if it ran on. */
function policyFile(): string {
  const file = path.join(work, `policy-${++named}.yml`);
  fs.writeFileSync(file, `name: fail-closed\negress-policy: block\nallowed-endpoints: ${host.ip4}:${PORT}\n`);
  return file;
}

/**
 * The job: find its ringfence (the oldest process with its name) and signal
 * it with `attack` (a shell line; $RF is ringfence's pid, $RF_NAME its name),
 * then, if it is still alive, leave a marker and connect to the listener.
 * `sleep 30 &` stands for the rest of the job.
 */
function attackScript(attack: string, marker: string): string {
  return `RF=$(pgrep -of -- "$RF_NAME"); sleep 30 & ${attack}; touch ${marker}; exec 3<>/dev/tcp/${host.ip4}/${PORT}`;
}

const ATTACKS: { name: string; attack: string }[] = [
  { name: 'pkill -9 -f (kill(2))', attack: 'pkill -9 -f "$RF_NAME"' },
  { name: 'kill -9 of its process group', attack: 'kill -9 -- -$RF' },
  {
    name: 'tkill(2) of one of its threads',
    attack: `python3 -c 'import ctypes,os,sys; t=[int(x) for x in os.listdir("/proc/"+sys.argv[1]+"/task") if x!=sys.argv[1]][0]; ctypes.CDLL(None).syscall(200, t, 9)' $RF`,
  },
  { name: 'pidfd_send_signal(2)', attack: `python3 -c 'import os,signal,sys; signal.pidfd_send_signal(os.pidfd_open(int(sys.argv[1])), 9)' $RF` },
];

describe('a job that kills its ringfence', () => {
  it.each(ATTACKS)('$name: makes no progress, reaches nothing, and the next ringfence ends what is left', async ({ attack }) => {
    const marker = path.join(work, `marker-${++named}`);
    const before = listener.connections();
    const started = startRingfence(['run', '--policy', policyFile(), '--', '/bin/bash', '-c', attackScript(attack, marker)]);
    const result = await started.done;
    // ringfence itself was SIGKILLed: nobody could report, the shell's 137
    expect(result.signal, result.stderr).toBe('SIGKILL');
    await sleep(300);
    expect(fs.existsSync(marker), 'the job went on after killing ringfence').toBe(false);
    expect(listener.connections()).toBe(before);

    const id = jobIdOf(started.pid)!;
    expect(id).toBeDefined();
    // the job's processes are gone (the sender at once, `sleep 30` at its next syscall is later: it is parked)
    const left = fs.readFileSync(path.join(jobCgroup(id), 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
    for (const pid of left) expect(['S', 'D'], `job process ${pid} runs on`).toContain(stateOf(pid));
    // egress stays enforced: the hooks are still attached to the job's cgroup
    const hooks = execFileSync('bpftool', ['cgroup', 'show', jobCgroup(id)], { encoding: 'utf8' });
    expect(hooks).toMatch(/connect4/);
    expect(sensorPinsOf(started.pid)).toHaveLength(1);

    // the next ringfence ends it: processes killed, cgroup and pins removed
    const next = startRingfence(['run', '--', '/bin/true']);
    const after = await next.done;
    expect(after.code, after.stderr).toBe(0);
    expect(after.stderr).toContain(`ringfence: ended job ${id} left by a ringfence that is gone`);
    expect(fs.existsSync(jobCgroup(id))).toBe(false);
    expect(sensorPinsOf(started.pid)).toEqual([]);
    for (const pid of left) expect(alive(pid), `job process ${pid} survived the sweep`).toBe(false);
  });
});

/** `stops`: the attack leaves ringfence stopped (T) until something continues it. */
type Stop = { name: string; attack: string; via: string; target: Record<string, number>; stops?: boolean };
const STOPS: Stop[] = [
  { name: 'kill -STOP (kill(2))', attack: 'kill -STOP $RF', via: 'signal', target: { signal: 19 }, stops: true },
  {
    name: 'tkill(2) SIGSTOP at one of its threads',
    attack: `python3 -c 'import ctypes,os,sys; t=[int(x) for x in os.listdir("/proc/"+sys.argv[1]+"/task") if x!=sys.argv[1]][0]; ctypes.CDLL(None).syscall(200, t, 19)' $RF`,
    via: 'signal',
    target: { signal: 19 },
    stops: true,
  },
  { name: 'pidfd_send_signal(2) SIGSTOP', attack: `python3 -c 'import os,signal,sys; signal.pidfd_send_signal(os.pidfd_open(int(sys.argv[1])), 19)' $RF`, via: 'signal', target: { signal: 19 }, stops: true },
  { name: 'SIGTERM (pkill -f)', attack: 'pkill -TERM -f "$RF_NAME"', via: 'signal', target: { signal: 15 } },
  { name: 'SIGUSR1 (would open the Node inspector)', attack: 'kill -USR1 $RF', via: 'signal', target: { signal: 10 } },
  {
    // no signal syscall at all: the kernel sends SIGIO-as-SIGSTOP to the pipe's owner when the job writes to it
    name: 'F_SETOWN + F_SETSIG + O_ASYNC on a pipe, then a write',
    attack: `python3 -c 'import fcntl,os,sys; r,w=os.pipe(); fcntl.fcntl(r, fcntl.F_SETOWN, int(sys.argv[1])); fcntl.fcntl(r, 10, 19); fcntl.fcntl(r, fcntl.F_SETFL, os.O_ASYNC); os.write(w, b"x")' $RF`,
    via: 'signal',
    target: { signal: 19 },
    stops: true,
  },
  { name: 'ptrace attach', attack: `python3 -c 'import ctypes,sys; ctypes.CDLL(None).ptrace(16, int(sys.argv[1]), 0, 0)' $RF`, via: 'ptrace', target: { ptraceRequest: 16 }, stops: true },
  { name: 'ptrace seize', attack: `python3 -c 'import ctypes,sys; ctypes.CDLL(None).ptrace(0x4206, int(sys.argv[1]), 0, 0)' $RF`, via: 'ptrace', target: { ptraceRequest: 0x4206 } },
  { name: "writing its memory (/proc/PID/mem), lockdown off", attack: `python3 -c 'import sys; f=open("/proc/%s/mem" % sys.argv[1], "r+b")' $RF`, via: 'proc_mem_open', target: {} },
];

describe('a job that stops, signals or traces its ringfence', () => {
  it.each(STOPS)('$name: the job ends in the kernel, and ringfence reports Agent-Tamper once it runs again', async ({ attack, via, target, stops }) => {
    const marker = path.join(work, `marker-${++named}`);
    const events = path.join(work, `events-${named}.jsonl`);
    const before = listener.connections();
    const started = startRingfence(['run', '--policy', policyFile(), '--events', events, '--', '/bin/bash', '-c', attackScript(attack, marker)]);
    const id = await until('the job cgroup', () => jobIdOf(started.pid));
    // the job ends while ringfence may be stopped: nothing of it runs on but what is parked in a syscall
    await until('the job to end', () => {
      const procs = fs.readFileSync(path.join(jobCgroup(id), 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
      return procs.every((pid) => !alive(pid) || ['S', 'D'].includes(stateOf(pid) ?? '')) && procs.length <= 2 ? true : undefined;
    });
    // the attack has happened (the job's processes may have looked ended before it, while they waited)
    if (stops) await until('ringfence to be stopped', () => ['T', 't'].includes(stateOf(started.pid) ?? ''));
    await sleep(300);
    expect(fs.existsSync(marker), 'the job went on after stopping ringfence').toBe(false);
    expect(listener.connections()).toBe(before);
    try {
      process.kill(started.pid, 'SIGCONT'); // the stopped ones go on; a ptrace-stopped one is let go by its tracer's death
    } catch {
      /* it ended already (SIGTERM) */
    }
    const result = await started.done;
    expect(result.code, result.stderr).toBe(EXIT.LOCKDOWN);
    expect(result.stderr).toMatch(/killed by lockdown: Agent-Tamper by \S+ \(pid \d+\)/);
    const detections = fs
      .readFileSync(events, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line))
      .filter((e) => e.kind === 'detection');
    expect(detections).toHaveLength(1);
    expect(detections[0]).toMatchObject({ detection: 'Agent-Tamper', action: 'killed', via, target: { pid: started.pid, ...target } });
    expect(fs.existsSync(jobCgroup(id))).toBe(false);
    expect(sensorPinsOf(started.pid)).toEqual([]);
  });

  it('a job that leaves ringfence alone is untouched: signal 0, and signals to its own processes and process group', async () => {
    const events = path.join(work, `events-${++named}.jsonl`);
    const before = listener.connections();
    const script = [
      'RF=$(pgrep -of -- "$RF_NAME")',
      'kill -0 $RF', // a liveness probe is no signal
      'sleep 30 & kill -TERM $!', // its own child
      "trap '' TERM; kill -TERM 0", // its own process group (the job has a session of its own)
      `exec 3<>/dev/tcp/${host.ip4}/${PORT}`,
    ].join('; ');
    const started = startRingfence(['run', '--policy', policyFile(), '--events', events, '--', '/bin/bash', '-c', script]);
    const result = await started.done;
    expect(result.code, result.stderr).toBe(0);
    expect(listener.connections()).toBe(before + 1);
    expect(fs.readFileSync(events, 'utf8')).not.toContain('"detection"');
  });
});

describe('signals from outside the job', () => {
  it('SIGUSR1 does not open the Node inspector (a job could reach it on loopback); the job runs on', async () => {
    const started = startRingfence(['run', '--', '/bin/sleep', '1']);
    await until('the job cgroup', () => jobIdOf(started.pid));
    process.kill(started.pid, 'SIGUSR1');
    await sleep(300);
    const listening = execFileSync('ss', ['-Hltnp', 'sport = :9229'], { encoding: 'utf8' });
    expect(listening).not.toMatch(new RegExp(`pid=${started.pid},`));
    const result = await started.done;
    expect(result.code, result.stderr).toBe(0);
  });
});
