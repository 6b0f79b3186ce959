/**
 * Who is calling the local API (docs/local-api.md, "Who is calling"). A
 * caller is judged by what it is, not by its uid: a process in a job's
 * cgroup, or in any cgroup below it, is that job, root or not; so is a
 * process with a living ancestor there (one that left the job's cgroup is
 * still the job). Everything else is the host, known by its uid.
 *
 * A caller whose identity cannot be read is refused, never taken for the
 * host: a garbled or missing /proc/PID/cgroup, no cgroup v2 line, a path
 * outside this daemon's cgroup namespace, or a process that is gone (or
 * whose pid names another process) by the time it is read.
 *
 * classifyCaller is pure (texts in, identity out); identifyCaller reads /proc
 * for a peer and then classifies it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { RingfenceError } from '../util/errors';

/** A job the daemon runs: its id and the cgroups that are its, relative to the cgroup2 mount (e.g. `ringfence/jobs/run-xyz`). */
export interface JobCgroups {
  jobId: string;
  cgroups: readonly string[];
}

export type CallerIdentity = { kind: 'job'; jobId: string } | { kind: 'host'; uid: number };

/** Why a caller was refused; `message` says what could not be read, and where. */
export class CallerRefusedError extends RingfenceError {
  constructor(message: string) {
    super(message, 'RF_CALLER_UNKNOWN');
    this.name = 'CallerRefusedError';
  }
}

/** At most this many ancestors are looked at; a longer chain is refused (the job could otherwise hide below it). */
export const MAX_ANCESTRY = 128;

// "HIERARCHY-ID:CONTROLLERS:PATH"; PATH may hold ':' itself.
const CGROUP_LINE = /^(\d+):([^:]*):(.*)$/;

/**
 * The cgroup v2 path in a /proc/PID/cgroup text, relative to the cgroup2
 * mount and without the leading '/' ('' for the root cgroup). cgroup v1 lines
 * are skipped; anything else that is not a cgroup line refuses, as does no
 * v2 line, two of them, or a path outside our cgroup namespace (`/..`).
 */
export function cgroupV2Path(text: string, where: string): string {
  const paths: string[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const match = CGROUP_LINE.exec(line);
    if (!match) throw new CallerRefusedError(`${where}: not a cgroup line: ${JSON.stringify(line.slice(0, 80))}`);
    if (match[1] === '0' && match[2] === '') paths.push(match[3]);
  }
  if (paths.length === 0) throw new CallerRefusedError(`${where}: no cgroup v2 line (0::PATH)`);
  if (paths.length > 1) throw new CallerRefusedError(`${where}: ${paths.length} cgroup v2 lines, expected one`);
  const cgroup = paths[0];
  if (!cgroup.startsWith('/')) throw new CallerRefusedError(`${where}: cgroup v2 path ${JSON.stringify(cgroup)} is not absolute`);
  const segments = cgroup.split('/').filter(Boolean);
  // Paths are shown relative to the reader's cgroup namespace: '..' means a
  // process outside ours, which no job of ours can contain but which we cannot place either.
  if (segments.some((s) => s === '..' || s === '.')) {
    throw new CallerRefusedError(`${where}: cgroup ${JSON.stringify(cgroup)} is outside this daemon's cgroup namespace`);
  }
  if (cgroup.endsWith(' (deleted)')) throw new CallerRefusedError(`${where}: cgroup ${JSON.stringify(cgroup)} has been removed`);
  return segments.join('/');
}

/** The job `cgroup` belongs to: the one whose cgroup it is or is below; the deepest such cgroup wins (a job nested in another). */
export function jobOfCgroup(cgroup: string, jobs: Iterable<JobCgroups>): string | undefined {
  let best: { jobId: string; depth: number } | undefined;
  for (const job of jobs) {
    for (const raw of job.cgroups) {
      const jobCgroup = raw.split('/').filter(Boolean).join('/');
      // The root would hold every process: a job with it is a bug upstream, not a caller to judge.
      if (jobCgroup === '') throw new RingfenceError(`job ${job.jobId}: its cgroup is the cgroup2 root`, 'RF_INTERNAL');
      // Whole segments only: ringfence/jobs/run-10 is not below ringfence/jobs/run-1.
      if (cgroup !== jobCgroup && !cgroup.startsWith(`${jobCgroup}/`)) continue;
      // Every cgroup that matched is `cgroup` or a whole-segment prefix of it,
      // so the longer of two is the deeper one.
      const depth = jobCgroup.length;
      if (!best || depth > best.depth) best = { jobId: job.jobId, depth };
    }
  }
  return best?.jobId;
}

export interface CallerFacts {
  /** The caller's effective uid (SO_PEERCRED). */
  uid: number;
  /** Its /proc/PID/cgroup. */
  cgroup: string;
  /** The /proc/PID/cgroup of its living ancestors, parent first (as far as the chain could be followed). */
  ancestors?: readonly string[];
}

/** Who a caller is, from its facts: `where` names it in refusals (e.g. `caller pid 123`). */
export function classifyCaller(facts: CallerFacts, jobs: Iterable<JobCgroups>, where: string): CallerIdentity {
  const list = [...jobs];
  const own = jobOfCgroup(cgroupV2Path(facts.cgroup, `${where}: /proc cgroup`), list);
  if (own !== undefined) return { kind: 'job', jobId: own };
  for (const [index, text] of (facts.ancestors ?? []).entries()) {
    const jobId = jobOfCgroup(cgroupV2Path(text, `${where}: ancestor ${index + 1}'s /proc cgroup`), list);
    if (jobId !== undefined) return { kind: 'job', jobId };
  }
  return { kind: 'host', uid: facts.uid };
}

/** What identifyCaller needs of a peer: the native peerCredentials() answer. */
export interface CallerPeer {
  pid: number;
  uid: number;
  /** Clock ticks since boot (/proc/PID/stat field 22). */
  startTime: number;
}

interface StatFacts {
  ppid: number;
  startTime: number;
}

/** ppid (field 4) and start time (field 22) of a /proc/PID/stat line; undefined when it is not one. */
export function parseStatFacts(text: string): StatFacts | undefined {
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  // comm (field 2) may hold spaces and parentheses: fields are counted from its last ')'
  const fields = text.slice(close + 2).trim().split(' ');
  // Stryker disable next-line ConditionalExpression: a shorter line has no fields[19]; Number(undefined) fails the integer check below as well
  if (fields.length < 20) return undefined;
  const ppid = Number(fields[1]);
  const startTime = Number(fields[19]);
  if (!Number.isSafeInteger(ppid) || ppid < 0 || fields[19] === '' || !Number.isSafeInteger(startTime)) return undefined;
  return { ppid, startTime };
}

/** Reads a whole file as UTF-8 text; throws as fs does (an errno `code`). */
export type ProcReader = (file: string) => string;

const readUtf8: ProcReader = (file) => fs.readFileSync(file, 'utf8');

/** A /proc file of a process, or undefined when the process is gone. */
function readProcFile(read: ProcReader, proc: string, pid: number, file: string): string | undefined {
  try {
    return read(path.join(proc, String(pid), file));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH') return undefined;
    throw new CallerRefusedError(`cannot read /proc/${pid}/${file}: ${(error as Error).message}`);
  }
}

/** The stat facts of `pid`, or undefined when it is gone; a garbled line refuses. */
function readStat(read: ProcReader, proc: string, pid: number, where: string): StatFacts | undefined {
  const text = readProcFile(read, proc, pid, 'stat');
  if (text === undefined) return undefined;
  const facts = parseStatFacts(text);
  if (!facts) throw new CallerRefusedError(`${where}: /proc/${pid}/stat is not a stat line`);
  return facts;
}

export interface IdentifyOptions {
  /** Where /proc is (tests pass a directory of their own). */
  procRoot?: string;
  /** How its files are read (tests pass one that fails as the kernel does for an exiting process, ESRCH, or whose answer changes between two reads). */
  readFile?: ProcReader;
}

/**
 * Reads who `peer` is from /proc and classifies it. Each /proc file is read
 * between two looks at the process's start time (the peer's own is known
 * from accept), so a pid that died and was reused meanwhile is noticed: for
 * the caller that refuses, for an ancestor it ends the chain (its parent is
 * gone; ancestry only ever adds a job, it never makes a caller the host).
 */
export function identifyCaller(peer: CallerPeer, jobs: Iterable<JobCgroups>, options: IdentifyOptions = {}): CallerIdentity {
  const proc = options.procRoot ?? '/proc';
  const read = options.readFile ?? readUtf8;
  const where = `caller pid ${peer.pid}`;
  const gone = () => new CallerRefusedError(`${where} exited before it could be identified`);
  const cgroup = readProcFile(read, proc, peer.pid, 'cgroup');
  if (cgroup === undefined) throw gone();
  const stat = readStat(read, proc, peer.pid, where);
  if (!stat) throw gone();
  if (stat.startTime !== peer.startTime) throw new CallerRefusedError(`${where} exited before it could be identified (the pid now names another process)`);

  const ancestors: string[] = [];
  let child = stat;
  while (child.ppid > 1) {
    if (ancestors.length === MAX_ANCESTRY) throw new CallerRefusedError(`${where}: more than ${MAX_ANCESTRY} ancestors`);
    const pid = child.ppid;
    const before = readStat(read, proc, pid, where);
    // A parent starts before its child: a later start means the parent exited and its pid was reused.
    if (!before || before.startTime > child.startTime) break;
    const text = readProcFile(read, proc, pid, 'cgroup');
    const after = readStat(read, proc, pid, where);
    if (text === undefined || !after || after.startTime !== before.startTime) break;
    ancestors.push(text);
    child = before;
  }
  return classifyCaller({ uid: peer.uid, cgroup, ancestors }, jobs, where);
}
