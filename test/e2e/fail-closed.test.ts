/**
 * A job that turns on its ringfence cannot go on unwatched. What its seccomp
 * seal can judge (a signal, a trace, a limit aimed at ringfence's pid) is
 * refused: the attacker dies in that syscall, the rest of the job at its next
 * one, and ringfence reports the job. What reaches ringfence anyway (a
 * signal through a /proc descriptor, SIGIO, or a kill from outside the job)
 * is answered by the kernel: every job process dies at its next syscall, the
 * egress hooks stay attached (pinned), and the next ringfence ends what is
 * left. A job that leaves ringfence alone is untouched.
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
import { EXIT } from '../../src/jobs/exit-status';
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

const PY_TKILL = (signal: number) =>
  `python3 -c 'import ctypes,os,sys; t=[int(x) for x in os.listdir("/proc/"+sys.argv[1]+"/task") if x!=sys.argv[1]][0]; ctypes.CDLL(None).syscall(200, t, ${signal})' $RF`;
const KILL32 = path.resolve(__dirname, '../fixtures/bin/kill32');

/** What the job's seccomp seal refuses (native/seal.c): `syscall` as the event names it. */
const REFUSED: { name: string; attack: string; syscall: string }[] = [
  { name: 'pkill -9 -f (kill(2))', attack: 'pkill -9 -f "$RF_NAME"', syscall: 'kill' },
  { name: 'kill -9 of its process group', attack: 'kill -9 -- -$RF', syscall: 'kill' },
  { name: 'kill -9 -1 (every process it may signal)', attack: 'kill -9 -1', syscall: 'kill' },
  { name: 'kill -STOP', attack: 'kill -STOP $RF', syscall: 'kill' },
  { name: 'SIGTERM (pkill -f)', attack: 'pkill -TERM -f "$RF_NAME"', syscall: 'kill' },
  { name: 'SIGUSR1 (would open the Node inspector)', attack: 'kill -USR1 $RF', syscall: 'kill' },
  { name: 'tkill(2) of one of its threads', attack: PY_TKILL(9), syscall: 'tkill' },
  { name: 'tkill(2) SIGSTOP at one of its threads', attack: PY_TKILL(19), syscall: 'tkill' },
  { name: 'tgkill(2)', attack: `python3 -c 'import ctypes,sys; ctypes.CDLL(None).syscall(234, int(sys.argv[1]), int(sys.argv[1]), 9)' $RF`, syscall: 'tgkill' },
  { name: 'rt_sigqueueinfo(2)', attack: `python3 -c 'import ctypes,sys; ctypes.CDLL(None).syscall(129, int(sys.argv[1]), 19, ctypes.create_string_buffer(128))' $RF`, syscall: 'rt_sigqueueinfo' },
  { name: 'kill(2) through the i386 ABI (int 0x80)', attack: `${KILL32} $RF 9`, syscall: 'kill (i386)' },
  { name: 'pidfd_open(2), for pidfd_send_signal or pidfd_getfd', attack: `python3 -c 'import os,signal,sys; signal.pidfd_send_signal(os.pidfd_open(int(sys.argv[1])), 9)' $RF`, syscall: 'pidfd_open' },
  { name: 'ptrace attach', attack: `python3 -c 'import ctypes,sys; ctypes.CDLL(None).ptrace(16, int(sys.argv[1]), 0, 0)' $RF`, syscall: 'ptrace' },
  { name: 'ptrace seize', attack: `python3 -c 'import ctypes,sys; ctypes.CDLL(None).ptrace(0x4206, int(sys.argv[1]), 0, 0)' $RF`, syscall: 'ptrace' },
  { name: 'process_vm_readv(2) of its memory', attack: `python3 -c 'import ctypes,sys; ctypes.CDLL(None).syscall(310, int(sys.argv[1]), 0, 0, 0, 0, 0)' $RF`, syscall: 'process_vm_readv' },
  { name: 'renice', attack: 'renice -n 19 -p $RF', syscall: 'setpriority' },
  { name: 'prlimit (no descriptors left)', attack: 'prlimit --pid $RF --nofile=0:0', syscall: 'prlimit64' },
  { name: 'taskset', attack: 'taskset -p 1 $RF', syscall: 'sched_setaffinity' },
  { name: 'chrt (idle scheduling)', attack: 'chrt -i -p 0 $RF', syscall: 'sched_setscheduler' },
  { name: 'ionice (idle I/O)', attack: 'ionice -c 3 -p $RF', syscall: 'ioprio_set' },
];

function detectionsIn(events: string): { detection: string }[] {
  return fs
    .readFileSync(events, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line))
    .filter((e) => e.kind === 'detection');
}

describe('a job that turns on its ringfence is refused by its seccomp seal', () => {
  it.each(REFUSED)('$name: refused, the job ends at once and is reported, ringfence is untouched', async ({ attack, syscall }) => {
    const marker = path.join(work, `marker-${++named}`);
    const events = path.join(work, `events-${named}.jsonl`);
    const before = listener.connections();
    const started = startRingfence(['run', '--policy', policyFile(), '--events', events, '--', '/bin/bash', '-c', attackScript(attack, marker)]);
    let stopped = false;
    const watch = setInterval(() => (stopped ||= ['T', 't'].includes((alive(started.pid) && stateOf(started.pid)) || '')), 5);
    const result = await started.done;
    clearInterval(watch);
    // ringfence lived through it, never stopped, and reported the job itself
    expect(result.signal, result.stderr).toBeNull();
    expect(stopped, 'ringfence was stopped').toBe(false);
    expect(result.code, result.stderr).toBe(EXIT.LOCKDOWN);
    expect(result.stderr).toContain(`KILLED Agent-Tamper: `);
    expect(result.stderr).toContain(`${syscall} aimed at ringfence (pid ${started.pid}), refused (via seccomp)`);
    // the job went no further: the shell after the attacker died at its next syscall
    expect(fs.existsSync(marker), 'the job went on after the refusal').toBe(false);
    expect(listener.connections()).toBe(before);
    const detections = detectionsIn(events);
    expect(detections).toHaveLength(1);
    expect(detections[0]).toMatchObject({ detection: 'Agent-Tamper', action: 'killed', via: 'seccomp', target: { pid: started.pid, syscall, refused: true } });
    expect(jobIdOf(started.pid)).toBeUndefined();
    expect(sensorPinsOf(started.pid)).toEqual([]);
  });

  it('bpf(2) that takes or detaches BPF objects by id or pin fails with EPERM; the job goes on', async () => {
    // map 1, prog 1, link 1 by id, a pin, and a link detach: none may reach ringfence's objects
    const script = `python3 -c '
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
out = []
for cmd in (14, 13, 30, 7, 34, 29, 9, 19):
    attr = ctypes.create_string_buffer(128)
    r = libc.syscall(321, cmd, attr, 128)
    out.append("%d:%s" % (cmd, errno.errorcode.get(ctypes.get_errno(), "ok") if r < 0 else "ok"))
print(" ".join(out))
'`;
    const out = path.join(work, `bpf-${++named}.txt`);
    const started = startRingfence(['run', '--', '/bin/bash', '-c', `${script} > ${out}`]);
    const result = await started.done;
    expect(result.code, result.stderr).toBe(0);
    expect(fs.readFileSync(out, 'utf8').trim()).toBe('14:EPERM 13:EPERM 30:EPERM 7:EPERM 34:EPERM 29:EPERM 9:EPERM 19:EPERM');
  });
});

/** What the seal cannot judge (a descriptor, or no signal syscall at all): it reaches ringfence, and the kernel fails closed. */
const REACHING: { name: string; attack: string; via: string; target: Record<string, number>; stops?: boolean; kills?: boolean }[] = [
  {
    name: 'pidfd_send_signal(2) SIGKILL on a /proc/PID descriptor',
    attack: `python3 -c 'import os,signal,sys; signal.pidfd_send_signal(os.open("/proc/"+sys.argv[1], os.O_RDONLY), 9)' $RF`,
    via: 'signal',
    target: { signal: 9 },
    kills: true,
  },
  {
    name: 'pidfd_send_signal(2) SIGSTOP on a /proc/PID descriptor',
    attack: `python3 -c 'import os,signal,sys; signal.pidfd_send_signal(os.open("/proc/"+sys.argv[1], os.O_RDONLY), 19)' $RF`,
    via: 'signal',
    target: { signal: 19 },
    stops: true,
  },
  {
    // no signal syscall at all: the kernel sends SIGIO-as-SIGSTOP to the pipe's owner when the job writes to it
    name: 'F_SETOWN + F_SETSIG + O_ASYNC on a pipe, then a write',
    attack: `python3 -c 'import fcntl,os,sys; r,w=os.pipe(); fcntl.fcntl(r, fcntl.F_SETOWN, int(sys.argv[1])); fcntl.fcntl(r, 10, 19); fcntl.fcntl(r, fcntl.F_SETFL, os.O_ASYNC); os.write(w, b"x")' $RF`,
    via: 'signal',
    target: { signal: 19 },
    stops: true,
  },
  { name: 'writing its memory (/proc/PID/mem), lockdown off', attack: `python3 -c 'import sys; f=open("/proc/%s/mem" % sys.argv[1], "r+b")' $RF`, via: 'proc_mem_open', target: {} },
];

describe('a job that reaches its ringfence where the seal cannot judge', () => {
  it.each(REACHING.filter((r) => r.kills))('$name: makes no progress, reaches nothing, and the next ringfence ends what is left', async ({ attack }) => {
    const marker = path.join(work, `marker-${++named}`);
    const before = listener.connections();
    const started = startRingfence(['run', '--policy', policyFile(), '--', '/bin/bash', '-c', attackScript(attack, marker)]);
    const result = await started.done;
    // ringfence itself was SIGKILLed: nobody could report
    expect(result.signal, result.stderr).toBe('SIGKILL');
    await expectEndedInKernel(started, marker, before);
  });

  it.each(REACHING.filter((r) => !r.kills))('$name: the job ends in the kernel, and ringfence reports Agent-Tamper once it runs again', async ({ attack, via, target, stops }) => {
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
      process.kill(started.pid, 'SIGCONT');
    } catch {
      /* it ended already */
    }
    const result = await started.done;
    expect(result.code, result.stderr).toBe(EXIT.LOCKDOWN);
    expect(result.stderr).toMatch(/killed by lockdown: Agent-Tamper by \S+ \(pid \d+\)/);
    const detections = detectionsIn(events);
    expect(detections).toHaveLength(1);
    expect(detections[0]).toMatchObject({ detection: 'Agent-Tamper', action: 'killed', via, target: { pid: started.pid, refused: false, ...target } });
    expect(fs.existsSync(jobCgroup(id))).toBe(false);
    expect(sensorPinsOf(started.pid)).toEqual([]);
  });
});

describe('a ringfence killed from outside its job (an operator, the OOM killer, a crash)', () => {
  it('SIGKILL mid-job: the job makes no progress, reaches nothing, and the next ringfence ends what is left', async () => {
    const marker = path.join(work, `marker-${++named}`);
    const ready = path.join(work, `ready-${named}`);
    const before = listener.connections();
    const script = `sleep 30 & touch ${ready}; while [ ! -e ${ready}.go ]; do sleep 0.05; done; touch ${marker}; exec 3<>/dev/tcp/${host.ip4}/${PORT}`;
    const started = startRingfence(['run', '--policy', policyFile(), '--', '/bin/bash', '-c', script]);
    await until('the job to run', () => fs.existsSync(ready));
    process.kill(started.pid, 'SIGKILL');
    const result = await started.done;
    expect(result.signal).toBe('SIGKILL');
    fs.writeFileSync(`${ready}.go`, '');
    await expectEndedInKernel(started, marker, before);
  });
});

describe('a ringfence stopped from outside its job (SIGSTOP, a frozen cgroup, a debugger)', () => {
  it('past the watchdog the job dies at its next syscall and reaches nothing; continued, ringfence reports it (exit 70)', async () => {
    const marker = path.join(work, `marker-${++named}`);
    const ready = path.join(work, `ready-${named}`);
    const before = listener.connections();
    const script = `touch ${ready}; while [ ! -e ${ready}.go ]; do sleep 0.05; done; touch ${marker}; exec 3<>/dev/tcp/${host.ip4}/${PORT}`;
    const started = startRingfence(['run', '--policy', policyFile(), '--', '/bin/bash', '-c', script]);
    await until('the job to run', () => fs.existsSync(ready));
    const id = jobIdOf(started.pid)!;
    process.kill(started.pid, 'SIGSTOP');
    // within the watchdog (3 s) the job runs on: its loop polls
    await sleep(1000);
    expect(jobProcesses(id).length).toBeGreaterThan(0);
    await sleep(2800);
    fs.writeFileSync(`${ready}.go`, '');
    await until('the job to die', () => jobProcesses(id).length === 0 || undefined, 3000);
    expect(fs.existsSync(marker), 'the job went on while ringfence was stopped').toBe(false);
    expect(listener.connections()).toBe(before);
    process.kill(started.pid, 'SIGCONT');
    const result = await started.done;
    expect(result.code, result.stderr).toBe(EXIT.AGENT_FAILURE);
    expect(result.stderr).toContain('ringfence was stopped or stalled for longer than its watchdog (3 s): the kernel ended the job');
    expect(fs.existsSync(jobCgroup(id))).toBe(false);
  }, 20_000);
});

const jobProcesses = (id: string) => {
  try {
    return fs.readFileSync(path.join(jobCgroup(id), 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).filter((pid) => alive(Number(pid)));
  } catch {
    return [];
  }
};

/** The job of a ringfence that was killed: nothing of it ran on, its hooks stayed, and the next ringfence ends it. */
async function expectEndedInKernel(started: Started, marker: string, connectionsBefore: number): Promise<void> {
  await sleep(300);
  expect(fs.existsSync(marker), 'the job went on after ringfence was killed').toBe(false);
  expect(listener.connections()).toBe(connectionsBefore);
  const id = jobIdOf(started.pid)!;
  expect(id).toBeDefined();
  // the job's processes are gone, or parked in a syscall they will die leaving
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
}

describe('a job that leaves ringfence alone', () => {
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
