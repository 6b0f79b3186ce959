/** Resuming a protected process after a ptrace kill, on a /proc the test lays out and moves on itself. */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  afterTimeout,
  describeTargetAfterKill,
  isDead,
  isStopped,
  isUnsettled,
  judgeTargetLook,
  leavesTargetStopped,
  lookAt,
  lookBudget,
  NEW_WATCH,
  offenderGone,
  parsePending,
  parseStat,
  resumeAfterPtraceKill,
  signalIfAlive,
  type ProcessLook,
  type ThreadState,
} from '../../src/enforce/resume';
import type { DetectionEvent } from '../../src/sensor/events';

const OFFENDER = 200;
const TARGET = 100;

interface FakeThread {
  state: string;
  flags?: number;
  sigPnd?: string;
  shdPnd?: string;
}
/** Processes by pid: their start time and threads (the first is the leader); absent = gone. */
type Frame = Record<number, { start: string; threads: FakeThread[] } | undefined>;

const statLine = (pid: number, comm: string, t: FakeThread, start: string) =>
  `${pid} (${comm}) ${t.state} 1 ${pid} ${pid} 0 -1 ${t.flags ?? 0x400000} 0 0 0 0 0 0 0 0 20 0 1 0 ${start} 1000 100 18446744073709551615\n`;

/** A fake /proc showing `frame`; show() replaces what it shows. */
function fakeProc(frame: Frame) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-proc-'));
  const show = (next: Frame) => {
    for (const entry of fs.readdirSync(root)) fs.rmSync(path.join(root, entry), { recursive: true });
    for (const [pid, p] of Object.entries(next)) {
      if (!p) continue;
      const comm = Number(pid) === TARGET ? 'Runner.Worker' : 'evil) (x';
      fs.mkdirSync(path.join(root, pid, 'task'), { recursive: true });
      fs.writeFileSync(path.join(root, pid, 'stat'), statLine(Number(pid), comm, p.threads[0], p.start));
      p.threads.forEach((t, i) => {
        const tid = String(i === 0 ? Number(pid) : Number(pid) + i);
        fs.mkdirSync(path.join(root, pid, 'task', tid));
        fs.writeFileSync(path.join(root, pid, 'task', tid, 'stat'), statLine(Number(tid), comm, t, p.start));
        fs.writeFileSync(path.join(root, pid, 'task', tid, 'status'), `Name:\t${comm}\nState:\t${t.state}\nSigQ:\t0/1\nSigPnd:\t${t.sigPnd ?? '0000000000000000'}\nShdPnd:\t${t.shdPnd ?? '0000000000000000'}\nSigBlk:\t0000000000000000\n`);
      });
    }
  };
  show(frame);
  return { root, show };
}

/**
 * Runs resumeAfterPtraceKill over a timeline: frame 0 at the start, the next
 * at each wait (the last one stays). SIGCONT to a target in T shows it running.
 */
function replay(frames: Frame[], seized = false, timeoutMs = 200) {
  const { root, show } = fakeProc(frames[0]);
  let current = frames[0];
  let step = 0;
  const signals: [number, string][] = [];
  const after = resumeAfterPtraceKill(OFFENDER, TARGET, seized, {
    proc: root,
    pollMs: 1,
    timeoutMs,
    sleep: () => {
      if (step === frames.length - 1) return; // the last frame stays, as signals changed it
      current = frames[++step];
      show(current);
    },
    signal: (pid, signal) => {
      signals.push([pid, signal]);
      const p = current[pid];
      if (signal === 'SIGCONT' && p) {
        current = { ...current, [pid]: { ...p, threads: p.threads.map((t) => (t.state === 'T' ? { ...t, state: 'S' } : t)) } };
        show(current);
      }
    },
  });
  fs.rmSync(root, { recursive: true });
  return { after, signals };
}

const worker = (...states: string[]): Frame[number] => ({ start: '5000', threads: states.map((state) => ({ state })) });
const tracer = (state: string): Frame[number] => ({ start: '9000', threads: [{ state }] });
const SIGSTOP_PENDING = '0000000000040000';
const SIGKILL_PENDING = '0000000000000100';

describe('parseStat and parsePending', () => {
  it('reads state, flags and start time after a comm with spaces and parentheses', () => {
    expect(parseStat(statLine(7, 'a) (b c', { state: 't', flags: 0x404044 }, '123456'))).toEqual({ state: 't', flags: 0x404044, starttime: '123456' });
  });

  it('refuses a line that is not a stat line, naming it', () => {
    expect(() => parseStat('hello')).toThrow('not a /proc stat line: "hello"');
  });

  it('the shortest line it takes: 20 fields after the comm, the start time last, newline and all', () => {
    expect(parseStat('7 (x) S 1 7 7 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 98765\n')).toEqual({ state: 'S', flags: 4194560, starttime: '98765' });
    expect(() => parseStat('7 (x) S 1 7 7 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0\n')).toThrow('not a /proc stat line: "7 (x) S 1 7 7 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0\\n"');
  });

  it('refuses a line without the comm’s parentheses, however many fields it has', () => {
    const line = '7 x S 1 7 7 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 98765 1000 100';
    expect(() => parseStat(line)).toThrow(`not a /proc stat line: "${line}"`);
  });

  it('names a bad line by its first 80 characters only', () => {
    expect(() => parseStat('y'.repeat(200))).toThrow(`not a /proc stat line: "${'y'.repeat(80)}"`);
  });

  it('no pending masks in the status: nothing pending', () => {
    expect(parsePending('Name:\tx\nState:\tS\n')).toBe(0n);
  });

  it('ORs the thread’s and the process’s pending signals', () => {
    expect(parsePending('SigPnd:\t0000000000000100\nShdPnd:\t0000000000040000\n')).toBe(0x40100n);
  });

  it('reads a real process: this one is alive, running or sleeping, and settled', () => {
    const look = lookAt(process.pid)!;
    expect(look.threads.length).toBeGreaterThan(0);
    expect(isDead(look)).toBe(false);
    expect(isUnsettled(look)).toBe(false);
    expect(lookAt(0x3fffffff)).toBeUndefined();
  });
});

describe('lookAt', () => {
  const roots: string[] = [];
  afterEach(() => {
    vi.restoreAllMocks();
    for (const root of roots.splice(0)) fs.rmSync(root, { recursive: true, force: true });
  });
  const proc = (frame: Frame) => {
    const { root } = fakeProc(frame);
    roots.push(root);
    return root;
  };

  it('reads each thread’s state, flags and pending signals, and the process’s start time', () => {
    const root = proc({ [TARGET]: { start: '5000', threads: [{ state: 'S', flags: 0x400104, shdPnd: SIGSTOP_PENDING }, { state: 'T', sigPnd: SIGKILL_PENDING }] } });
    expect(lookAt(TARGET, root)).toEqual({
      starttime: '5000',
      threads: [
        { state: 'S', flags: 0x400104, pending: 0x40000n },
        { state: 'T', flags: 0x400000, pending: 0x100n },
      ],
    });
  });

  it('a process whose task directory is gone is gone', () => {
    const root = proc({ [TARGET]: worker('S') });
    fs.rmSync(path.join(root, String(TARGET), 'task'), { recursive: true });
    expect(lookAt(TARGET, root)).toBeUndefined();
  });

  it('threads that end while it looks are left out, whichever file went first', () => {
    const root = proc({ [TARGET]: worker('S', 'T', 'R') });
    fs.rmSync(path.join(root, String(TARGET), 'task', String(TARGET + 1), 'status'));
    fs.rmSync(path.join(root, String(TARGET), 'task', String(TARGET + 2), 'stat'));
    expect(lookAt(TARGET, root)?.threads).toEqual([{ state: 'S', flags: 0x400000, pending: 0n }]);
  });

  it('a read that fails with ESRCH (the task is going) counts as gone; any other failure is thrown', () => {
    expect.assertions(2);
    const root = proc({ [TARGET]: worker('S') });
    const stat = path.join(root, String(TARGET), 'stat');
    const read = fs.readFileSync;
    const failWith = (code: string) =>
      vi.spyOn(fs, 'readFileSync').mockImplementation(((file: fs.PathOrFileDescriptor, options?: unknown) => {
        if (file === stat) throw Object.assign(new Error(`${code}: reading ${stat}`), { code });
        return read(file, options as BufferEncoding);
      }) as typeof fs.readFileSync);
    failWith('ESRCH');
    expect(lookAt(TARGET, root)).toBeUndefined();
    vi.restoreAllMocks();
    failWith('EACCES');
    try {
      lookAt(TARGET, root);
    } catch (error) {
      expect((error as Error).message).toBe(`EACCES: reading ${stat}`);
    }
  });
});

describe('resumeAfterPtraceKill', () => {
  it('PTRACE_ATTACH: waits for the tracer to die, then resumes the target left in T, once', () => {
    const { after, signals } = replay([
      { [OFFENDER]: tracer('R'), [TARGET]: worker('t', 'S') },
      { [OFFENDER]: tracer('R'), [TARGET]: worker('t', 'S') },
      { [OFFENDER]: tracer('Z'), [TARGET]: worker('T', 'T') },
    ]);
    expect(after).toBe('resumed');
    expect(signals).toEqual([[TARGET, 'SIGCONT']]);
  });

  it('never signals while the tracer lives, even when the target shows T', () => {
    const { after, signals } = replay([
      { [OFFENDER]: tracer('R'), [TARGET]: worker('T') },
      { [OFFENDER]: tracer('D'), [TARGET]: worker('T') },
      { [OFFENDER]: tracer('D'), [TARGET]: worker('T') },
      { [TARGET]: worker('T') },
    ]);
    expect(after).toBe('resumed');
    expect(signals).toEqual([[TARGET, 'SIGCONT']]);
  });

  it('waits for a SIGSTOP still pending when the tracer died, and resumes the stop it causes', () => {
    const pending = { start: '5000', threads: [{ state: 'S', sigPnd: SIGSTOP_PENDING }] };
    const { after, signals } = replay([
      { [TARGET]: pending },
      { [TARGET]: pending },
      { [TARGET]: pending },
      { [TARGET]: worker('T') },
    ]);
    expect(after).toBe('resumed');
    expect(signals).toEqual([[TARGET, 'SIGCONT']]);
  });

  it('PTRACE_SEIZE: a target that was never stopped is left alone', () => {
    const { after, signals } = replay([{ [OFFENDER]: tracer('Z'), [TARGET]: worker('S', 'S') }], true);
    expect(after).toBe('running');
    expect(signals).toEqual([]);
  });

  it('PTRACE_O_EXITKILL: a target with SIGKILL pending is not called running; its death is reported as the EXITKILL', () => {
    const dying = { start: '5000', threads: [{ state: 'S', sigPnd: SIGKILL_PENDING }] };
    const exiting = { start: '5000', threads: [{ state: 'R', flags: 0x400004 }] };
    const { after, signals } = replay([{ [TARGET]: dying }, { [TARGET]: dying }, { [TARGET]: dying }, { [TARGET]: exiting }, { [TARGET]: exiting }, { [TARGET]: worker('Z') }], true);
    expect(after).toBe('killed-by-exitkill');
    expect(signals).toEqual([]);
  });

  it('a target gone after a PTRACE_ATTACH kill has exited (not an EXITKILL)', () => {
    const { after } = replay([{ [TARGET]: worker('S') }, {}], false);
    expect(after).toBe('exited');
  });

  it('a target already gone at the first look: its death is the EXITKILL after PTRACE_SEIZE, an exit otherwise', () => {
    expect(replay([{ [OFFENDER]: tracer('Z') }], true)).toEqual({ after: 'killed-by-exitkill', signals: [] });
    expect(replay([{ [OFFENDER]: tracer('Z') }], false)).toEqual({ after: 'exited', signals: [] });
  });

  it('an offender that outlives the time allowed (stuck in D): the target still gets a look and its SIGCONT, and, not seen running since, is reported stopped', () => {
    const { after, signals } = replay([{ [OFFENDER]: tracer('D'), [TARGET]: worker('T') }], false, 3);
    expect(signals).toEqual([[TARGET, 'SIGCONT']]);
    expect(after).toBe('stopped');
  });

  it('a pid reused by another process is not the target: never signalled', () => {
    const { after, signals } = replay([{ [TARGET]: worker('S') }, { [TARGET]: { start: '7777', threads: [{ state: 'T' }] } }]);
    expect(after).toBe('exited');
    expect(signals).toEqual([]);
  });

  it('a ptrace stop that outlives the offender (another tracer) is not signalled, and reported as stopped', () => {
    const { after, signals } = replay([{ [TARGET]: worker('t') }], false, 20);
    expect(after).toBe('stopped');
    expect(signals).toEqual([]);
  });

  it('a target that stays in T despite SIGCONT is reported as stopped', () => {
    const { root } = fakeProc({ [TARGET]: worker('T') });
    const signals: string[] = [];
    const after = resumeAfterPtraceKill(OFFENDER, TARGET, false, { proc: root, pollMs: 1, timeoutMs: 5, sleep: () => undefined, signal: (_pid, s) => void signals.push(s) });
    expect(after).toBe('stopped');
    expect(signals.length).toBeGreaterThan(1);
  });

  it('waits for real between looks when no sleep is given (it blocks: the report waits for it)', () => {
    const { root } = fakeProc({ [TARGET]: worker('t') });
    const started = process.hrtime.bigint();
    expect(resumeAfterPtraceKill(OFFENDER, TARGET, false, { proc: root, pollMs: 5, timeoutMs: 40, signal: () => undefined })).toBe('stopped');
    expect(Number(process.hrtime.bigint() - started) / 1e6).toBeGreaterThanOrEqual(40);
  });

  it('a failing SIGCONT is thrown, not swallowed', () => {
    expect.assertions(1);
    const { root } = fakeProc({ [TARGET]: worker('T') });
    const signal = () => {
      throw Object.assign(new Error('kill EPERM'), { code: 'EPERM' });
    };
    try {
      resumeAfterPtraceKill(OFFENDER, TARGET, false, { proc: root, pollMs: 1, sleep: () => undefined, signal });
    } catch (error) {
      expect((error as Error).message).toBe('kill EPERM');
    }
  });
});

describe('which detections and what the summary says', () => {
  const detection = (over: Partial<DetectionEvent>): DetectionEvent => ({
    type: 'detection', detection: 'Runner-Worker-Memory-Read', action: 'killed', refused: false, hook: 'ptrace', targetCgroupId: 0, targetTgid: TARGET, ptraceRequest: 16,
    fd: -1, peer: { family: 'inet', address: '', port: 0 } as DetectionEvent['peer'], capEffective: 0n, pidnsLevel: 0, ktimeNs: 0, timeMs: 0, cgroupId: 1, jobCgroupId: 1, pid: OFFENDER, tgid: OFFENDER, ppid: 1, uid: 0, comm: 'gdb',
    ...over,
  }) as DetectionEvent;

  it('only a killed ptrace of a protected process', () => {
    expect(leavesTargetStopped(detection({}))).toBe(true);
    expect(leavesTargetStopped(detection({ action: 'audited' }))).toBe(false);
    expect(leavesTargetStopped(detection({ hook: 'process_vm' }))).toBe(false);
    expect(leavesTargetStopped(detection({ detection: 'Agent-Tamper' }))).toBe(false);
    expect(leavesTargetStopped(detection({ targetTgid: 0 }))).toBe(false); // no target named: nothing to resume
  });

  it('names the EXITKILL and a resume, and says nothing for a target left running', () => {
    expect(describeTargetAfterKill('killed-by-exitkill')).toBe('; the protected process was killed by the kernel with its tracer (PTRACE_O_EXITKILL)');
    expect(describeTargetAfterKill('resumed')).toBe('; it had been stopped by the attach, ringfence resumed it');
    expect(describeTargetAfterKill('exited')).toBe('; the protected process has exited');
    expect(describeTargetAfterKill('stopped')).toBe('; the protected process is still stopped (ringfence could not resume it)');
    expect(describeTargetAfterKill('running')).toBe('');
    expect(describeTargetAfterKill(undefined)).toBe('');
  });
});

/** The pending mask with signal `n` set (bit n-1, as /proc shows it). */
const pendingOf = (...signals: number[]) => signals.reduce((mask, n) => mask | (1n << BigInt(n - 1)), 0n);
const thread = (state: string, over: Partial<ThreadState> = {}): ThreadState => ({ state, flags: 0x400000, pending: 0n, ...over });
const look = (...threads: ThreadState[]): ProcessLook => ({ starttime: '5000', threads });
const SIGKILL = 9;
const SIGTERM = 15;
const SIGCONT = 18;
const SIGSTOP = 19;
const SIGTSTP = 20;
const SIGTTIN = 21;
const SIGTTOU = 22;
const PF_EXITING = 0x4;

describe('what a look at a process means', () => {
  it('dead: gone, or nothing but zombies and dead threads; one live thread keeps it alive', () => {
    expect(isDead(undefined)).toBe(true);
    expect(isDead(look(thread('Z'), thread('X')))).toBe(true);
    expect(isDead(look(thread('Z'), thread('R')))).toBe(false);
    expect(isDead(look(thread('S')))).toBe(false);
  });

  it('stopped: any thread in group stop (T) or a ptrace stop (t)', () => {
    expect(isStopped(look(thread('S'), thread('T')))).toBe(true);
    expect(isStopped(look(thread('t')))).toBe(true);
    expect(isStopped(look(thread('S'), thread('R'), thread('D')))).toBe(false);
  });

  it.each([
    ['SIGKILL', SIGKILL],
    ['SIGSTOP', SIGSTOP],
    ['SIGTSTP', SIGTSTP],
    ['SIGTTIN', SIGTTIN],
    ['SIGTTOU', SIGTTOU],
  ])('unsettled while %s is pending on any thread', (_name, signal) => {
    expect(isUnsettled(look(thread('S'), thread('S', { pending: pendingOf(signal) })))).toBe(true);
  });

  it('settled with other signals pending (SIGTERM, SIGCONT): they neither stop nor end it at once', () => {
    expect(isUnsettled(look(thread('S', { pending: pendingOf(SIGTERM, SIGCONT) })))).toBe(false);
  });

  it('unsettled while a thread is exiting (PF_EXITING), settled with other flags', () => {
    expect(isUnsettled(look(thread('R', { flags: 0x400000 | PF_EXITING })))).toBe(true);
    expect(isUnsettled(look(thread('R', { flags: 0x404040 })))).toBe(false);
  });

  it('unsettled while stopped', () => {
    expect(isUnsettled(look(thread('t')))).toBe(true);
  });
});

describe('offenderGone', () => {
  it('gone when its pid shows nothing, only zombies, or another process', () => {
    expect(offenderGone(undefined, '9000')).toBe(true);
    expect(offenderGone({ starttime: '9000', threads: [thread('Z')] }, '9000')).toBe(true);
    expect(offenderGone({ starttime: '9100', threads: [thread('R')] }, '9000')).toBe(true);
    expect(offenderGone({ starttime: '9100', threads: [thread('R')] }, undefined)).toBe(true);
  });

  it('not gone while it lives, whatever its state', () => {
    expect(offenderGone({ starttime: '9000', threads: [thread('D')] }, '9000')).toBe(false);
    expect(offenderGone({ starttime: '9000', threads: [thread('Z'), thread('R')] }, '9000')).toBe(false);
  });
});

describe('judgeTargetLook: what to do after one look at the target', () => {
  it('a dead target is reported: exited after PTRACE_ATTACH, killed by EXITKILL after PTRACE_SEIZE', () => {
    expect(judgeTargetLook(undefined, '5000', false, NEW_WATCH)).toEqual({ report: 'exited' });
    expect(judgeTargetLook(undefined, '5000', true, NEW_WATCH)).toEqual({ report: 'killed-by-exitkill' });
    expect(judgeTargetLook(look(thread('Z')), '5000', true, { resumed: true, quiet: 1 })).toEqual({ report: 'killed-by-exitkill' });
  });

  it('a pid that names another process now is the target gone, even in T: never signalled', () => {
    expect(judgeTargetLook({ starttime: '7777', threads: [thread('T')] }, '5000', false, NEW_WATCH)).toEqual({ report: 'exited' });
  });

  it('group stop on any thread: SIGCONT, and the quiet looks start again', () => {
    expect(judgeTargetLook(look(thread('S'), thread('T')), '5000', false, { resumed: false, quiet: 1 })).toEqual({ sigcont: true, watch: { resumed: true, quiet: 0 } });
  });

  it('a ptrace stop is waited on, not signalled', () => {
    expect(judgeTargetLook(look(thread('t')), '5000', false, { resumed: true, quiet: 1 })).toEqual({ sigcont: false, watch: { resumed: true, quiet: 0 } });
  });

  it('a pending SIGSTOP is waited on: the stop it brings is still to come', () => {
    expect(judgeTargetLook(look(thread('S', { pending: pendingOf(SIGSTOP) })), '5000', false, { resumed: false, quiet: 1 })).toEqual({ sigcont: false, watch: { resumed: false, quiet: 0 } });
  });

  it('one settled look is not enough; the second in a row reports it, running or resumed', () => {
    expect(judgeTargetLook(look(thread('S')), '5000', false, NEW_WATCH)).toEqual({ sigcont: false, watch: { resumed: false, quiet: 1 } });
    expect(judgeTargetLook(look(thread('S')), '5000', false, { resumed: false, quiet: 1 })).toEqual({ report: 'running' });
    expect(judgeTargetLook(look(thread('R')), '5000', true, { resumed: true, quiet: 1 })).toEqual({ report: 'resumed' });
  });

  it('a first settled look after a SIGCONT keeps the resume in mind', () => {
    expect(judgeTargetLook(look(thread('S')), '5000', false, { resumed: true, quiet: 0 })).toEqual({ sigcont: false, watch: { resumed: true, quiet: 1 } });
  });
});

describe('afterTimeout and lookBudget', () => {
  it('out of time: stopped if any thread still is, else whether it was resumed', () => {
    expect(afterTimeout(look(thread('t')), { resumed: true, quiet: 0 })).toBe('stopped');
    expect(afterTimeout(look(thread('S'), thread('T')), NEW_WATCH)).toBe('stopped');
    expect(afterTimeout(look(thread('S', { pending: pendingOf(SIGKILL) })), { resumed: true, quiet: 0 })).toBe('resumed');
    expect(afterTimeout(look(thread('R', { flags: PF_EXITING })), NEW_WATCH)).toBe('running');
  });

  it('enough looks to cover the time allowed, and at least one', () => {
    expect(lookBudget(2000, 5)).toBe(400);
    expect(lookBudget(5, 2)).toBe(3);
    expect(lookBudget(0, 5)).toBe(1);
    expect(lookBudget(1, 5)).toBe(1);
  });
});

describe('signalIfAlive', () => {
  it('a process that is gone (ESRCH) is no error', () => {
    expect(() => signalIfAlive(5000001, 'SIGCONT')).not.toThrow(); // past pid_max: never a process
  });

  it('any other failure is thrown', () => {
    expect(() => signalIfAlive(5000001, 'SIGNOPE' as NodeJS.Signals)).toThrow(expect.objectContaining({ code: 'ERR_UNKNOWN_SIGNAL' }));
  });
});

describe('resumeAfterPtraceKill on real processes, with its defaults (/proc, process.kill, a real wait)', () => {
  const children: ChildProcess[] = [];
  afterEach(() => {
    for (const child of children.splice(0)) child.kill('SIGKILL');
  });

  const GONE = 5000001; // the offender: past pid_max, never a process

  /** A child that sleeps; when `stopped`, it is in group stop (T) before this returns. */
  async function sleeper(stopped: boolean): Promise<number> {
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    children.push(child);
    await new Promise((resolve) => child.once('spawn', resolve));
    const pid = child.pid!;
    if (stopped) process.kill(pid, 'SIGSTOP');
    for (let i = 0; i < 200 && !(lookAt(pid) && isStopped(lookAt(pid)!) === stopped); i++) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(isStopped(lookAt(pid)!)).toBe(stopped);
    return pid;
  }

  it('a target left in group stop is resumed, and runs again', async () => {
    const pid = await sleeper(true);
    expect(resumeAfterPtraceKill(GONE, pid, false)).toBe('resumed');
    expect(isStopped(lookAt(pid)!)).toBe(false);
  });

  it('a running target is left running', async () => {
    const pid = await sleeper(false);
    expect(resumeAfterPtraceKill(GONE, pid, true)).toBe('running');
  });
});
