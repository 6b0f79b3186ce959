/**
 * A lockdown kill must not harm what it protects. The kernel kills a job
 * process that ptraces a protected process at sys_enter_ptrace, but a
 * tracepoint cannot refuse the syscall: PTRACE_ATTACH still attaches and
 * sends the target SIGSTOP, and when the dead tracer is detached the target
 * falls into group stop (state T). A stopped Runner.Worker hangs the run
 * until its timeout instead of failing it at once, so after such a kill the
 * agent resumes the target it named, once the offender is dead and can no
 * longer stop it again.
 *
 * Everything is read from /proc (the root is injectable for tests):
 * per thread, its state (stat field 3), its flags (field 9, PF_EXITING) and
 * its pending signals (SigPnd/ShdPnd of status), and the process's start
 * time (field 22), so that a reused pid is never mistaken for the target.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { DetectionEvent } from '../sensor/events';

/**
 * What became of the protected process after its tracer was killed:
 * - resumed: it was stopped (the attach's SIGSTOP) and got SIGCONT;
 * - running: it was never left stopped (PTRACE_SEIZE does not stop);
 * - killed-by-exitkill: it died with its tracer, as PTRACE_O_EXITKILL asks the kernel to;
 * - exited: it is gone, and not through a PTRACE_SEIZE (nothing of ours);
 * - stopped: it is still stopped when we gave up (traced by another process, or SIGCONT failed).
 */
export type TargetAfterKill = 'resumed' | 'running' | 'killed-by-exitkill' | 'exited' | 'stopped';

export const PTRACE_SEIZE = 0x4206;

/** Signals whose delivery stops or ends a process: while one is pending, its state is about to change. */
const SIGKILL = 9;
const STOP_SIGNALS = [19, 20, 21, 22]; // SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU
const UNSETTLING = [SIGKILL, ...STOP_SIGNALS].reduce((mask, sig) => mask | (1n << BigInt(sig - 1)), 0n);
const PF_EXITING = 0x4;

export interface ThreadState {
  /** stat field 3: R, S, D, T (stopped), t (traced and stopped), Z, X, … */
  state: string;
  /** stat field 9, the task's PF_* flags. */
  flags: number;
  /** Signals pending for the thread or its process (SigPnd | ShdPnd). */
  pending: bigint;
}

export interface ProcessLook {
  /** stat field 22, in clock ticks since boot: with the pid, it names one process. */
  starttime: string;
  threads: ThreadState[];
}

/** The fields of a /proc/PID/stat line we use; the comm (field 2) may hold spaces and parentheses. */
export function parseStat(text: string): { state: string; flags: number; starttime: string } {
  const fields = text.slice(text.lastIndexOf(')') + 2).trim().split(' ');
  if (!text.includes(')') || fields.length < 20) throw new Error(`not a /proc stat line: ${JSON.stringify(text.slice(0, 80))}`);
  return { state: fields[0], flags: Number(fields[6]), starttime: fields[19] };
}

/** SigPnd | ShdPnd of a /proc/PID/status text (hexadecimal masks, bit N-1 for signal N). */
export function parsePending(status: string): bigint {
  const mask = (name: string) => BigInt(`0x${new RegExp(`^${name}:\\s*([0-9a-f]+)`, 'm').exec(status)?.[1] ?? '0'}`);
  return mask('SigPnd') | mask('ShdPnd');
}

function readOrUndefined(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH') return undefined; // gone, or going
    throw error;
  }
}

/** Process `pid` as /proc shows it now, or undefined when it is gone. Threads that end meanwhile are left out. */
export function lookAt(pid: number, proc = '/proc'): ProcessLook | undefined {
  const dir = path.join(proc, String(pid));
  const stat = readOrUndefined(path.join(dir, 'stat'));
  if (stat === undefined) return undefined;
  let tids: string[];
  try {
    tids = fs.readdirSync(path.join(dir, 'task'));
  } catch {
    return undefined;
  }
  const threads: ThreadState[] = [];
  for (const tid of tids) {
    const threadStat = readOrUndefined(path.join(dir, 'task', tid, 'stat'));
    const status = readOrUndefined(path.join(dir, 'task', tid, 'status'));
    if (threadStat === undefined || status === undefined) continue;
    const { state, flags } = parseStat(threadStat);
    threads.push({ state, flags, pending: parsePending(status) });
  }
  return { starttime: parseStat(stat).starttime, threads };
}

/** Dead: gone, or nothing left but zombies (its tracees were detached before it became one). */
export function isDead(look: ProcessLook | undefined): boolean {
  return look === undefined || look.threads.every((t) => t.state === 'Z' || t.state === 'X');
}

/** In group stop (T) or a ptrace stop (t). */
export function isStopped(look: ProcessLook): boolean {
  return look.threads.some((t) => t.state === 'T' || t.state === 't');
}

/** About to change: stopped, exiting, or with a stop signal or SIGKILL not yet acted on. */
export function isUnsettled(look: ProcessLook): boolean {
  return isStopped(look) || look.threads.some((t) => (t.flags & PF_EXITING) !== 0 || (t.pending & UNSETTLING) !== 0n);
}

/** Whether a detection is a ptrace of a protected process: the kind of kill that leaves its target stopped. */
export function leavesTargetStopped(event: DetectionEvent): boolean {
  return event.detection === 'Runner-Worker-Memory-Read' && event.hook === 'ptrace' && event.action === 'killed' && event.targetTgid > 0;
}

/** The offender can no longer stop the target: it is dead, or its pid now names another process. */
export function offenderGone(look: ProcessLook | undefined, offenderStart: string | undefined): boolean {
  return isDead(look) || look!.starttime !== offenderStart;
}

/** What the watch of the target has seen so far. */
export interface TargetWatch {
  /** SIGCONT was sent at least once. */
  resumed: boolean;
  /** Settled looks in a row. */
  quiet: number;
}

export const NEW_WATCH: TargetWatch = { resumed: false, quiet: 0 };

/** What to do after one look at the target: report how it ended, or send SIGCONT and look again, or just look again. */
export type TargetStep = { report: TargetAfterKill } | { sigcont: boolean; watch: TargetWatch };

/**
 * One look at the target, judged. Group stop (T) gets SIGCONT; a ptrace stop
 * (t) or anything else unsettled waits; two settled looks in a row end the
 * watch. A target that died, or whose pid names another process now, is
 * reported as dead (by EXITKILL when the request was PTRACE_SEIZE).
 */
export function judgeTargetLook(look: ProcessLook | undefined, targetStart: string, seized: boolean, watch: TargetWatch): TargetStep {
  if (isDead(look) || look!.starttime !== targetStart) return { report: seized ? 'killed-by-exitkill' : 'exited' };
  if (look!.threads.some((t) => t.state === 'T')) return { sigcont: true, watch: { resumed: true, quiet: 0 } };
  if (isUnsettled(look!)) return { sigcont: false, watch: { ...watch, quiet: 0 } };
  if (watch.quiet + 1 >= 2) return { report: watch.resumed ? 'resumed' : 'running' };
  return { sigcont: false, watch: { ...watch, quiet: watch.quiet + 1 } };
}

/** How the target ended when time ran out before it settled: `last` is the last look, of a live target. */
export function afterTimeout(last: ProcessLook, watch: TargetWatch): TargetAfterKill {
  return isStopped(last) ? 'stopped' : watch.resumed ? 'resumed' : 'running';
}

/** Looks that fit in the time allowed: enough to cover it, and at least one. */
export function lookBudget(timeoutMs: number, pollMs: number): number {
  return Math.max(1, Math.ceil(timeoutMs / pollMs));
}

export interface ResumeOptions {
  /** Where /proc is; a test's own tree in unit tests. */
  proc?: string;
  /** Sends a signal; the default is process.kill, with a process that is already gone ignored. */
  signal?: (pid: number, signal: NodeJS.Signals) => void;
  /** Waits between looks (blocking: see resumeAfterPtraceKill). */
  sleep?: (ms: number) => void;
  pollMs?: number;
  /** How long, in all, before giving up on the offender dying or the target settling. */
  timeoutMs?: number;
}

/** process.kill, with a process that is already gone (ESRCH) ignored; any other failure is thrown. */
export function signalIfAlive(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

/** Sleeps without spinning, blocking the thread. */
function blockFor(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * After `offender` was killed for ptracing `target`: wait until the offender
 * is dead (its tracees are detached by then), then watch the target until it
 * has settled (judgeTargetLook), sending SIGCONT whenever it is in group stop
 * (T). A ptrace stop (t) is left alone: after the detach it becomes T or runs
 * on; one that stays belongs to another tracer. Settled means two looks in a
 * row with no thread stopped, exiting, or with a stop signal or SIGKILL
 * pending (a SIGSTOP from PTRACE_ATTACH may still be pending when the tracer
 * dies, and PTRACE_O_EXITKILL's SIGKILL is sent during the tracer's exit).
 * `seized`: the request was PTRACE_SEIZE, whose options may include EXITKILL.
 *
 * Synchronous, so that it is over before the detection is reported however
 * late its event comes (the sensor drains its last events at the job's end,
 * when nothing waits for work they start). It blocks the agent for ~10-20 ms
 * after a kill (offender dead, two quiet looks), 2 s at worst (a target held
 * by another tracer); the job is being killed meanwhile (cgroup.kill is written
 * before this starts).
 */
export function resumeAfterPtraceKill(offender: number, target: number, seized: boolean, options: ResumeOptions = {}): TargetAfterKill {
  const proc = options.proc ?? '/proc';
  const signal = options.signal ?? signalIfAlive;
  const sleep = options.sleep ?? blockFor;
  const pollMs = options.pollMs ?? 5;
  const maxPolls = lookBudget(options.timeoutMs ?? 2000, pollMs);

  const first = lookAt(target, proc);
  if (first === undefined) return seized ? 'killed-by-exitkill' : 'exited';
  const offenderStart = lookAt(offender, proc)?.starttime;
  let polls = 0;
  for (; polls < maxPolls && !offenderGone(lookAt(offender, proc), offenderStart); polls++) sleep(pollMs);

  // the offender's wait and the target's watch share the budget; the target gets at least one look
  let watch = NEW_WATCH;
  let last = first;
  for (; polls <= maxPolls; polls++) {
    const look = lookAt(target, proc);
    const step = judgeTargetLook(look, first.starttime, seized, watch);
    if ('report' in step) return step.report;
    last = look!;
    if (step.sigcont) signal(target, 'SIGCONT');
    watch = step.watch;
    sleep(pollMs);
  }
  return afterTimeout(last, watch);
}

/** The summary's words for it, after the detection line. */
export function describeTargetAfterKill(after: TargetAfterKill | undefined): string {
  switch (after) {
    case 'resumed':
      return '; it had been stopped by the attach, ringfence resumed it';
    case 'killed-by-exitkill':
      return '; the protected process was killed by the kernel with its tracer (PTRACE_O_EXITKILL)';
    case 'exited':
      return '; the protected process has exited';
    case 'stopped':
      return '; the protected process is still stopped (ringfence could not resume it)';
    default:
      return '';
  }
}
