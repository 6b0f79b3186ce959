/**
 * The processes of tracked jobs, kept from fork/exec/exit events, so that any
 * event can name its process's ancestry (the exe chain up to the job root).
 *
 * Processes that existed before tracking began (the job's first process, or
 * anything the agent started to track late) are filled in from /proc on first
 * reference. /proc names a process's cgroup but not which tracked job that is
 * in, so such a process's job is not known (0) until an event of its own names
 * it: every record with a pid comes from a task in a tracked job, and says which.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { SensorEvent } from './events';

export interface ProcessInfo {
  pid: number;
  ppid: number;
  exe: string;
  argv: string[];
  uid: number;
  /** The tracked cgroup the process is in or below; 0: not known yet (filled from /proc). */
  jobCgroupId: number;
  exited: boolean;
}

/** How many exited processes to remember for events that arrive after the exit. */
const EXITED_KEPT = 4096;
/** Ancestry is cut here: a loop in ppid links would be a bug, not a hang. */
const MAX_ANCESTRY = 64;

export class ProcessTree {
  private readonly processes = new Map<number, ProcessInfo>();
  /** Exited processes, oldest first; a reused pid's new process is a new entry, not to be forgotten for the old one. */
  private readonly exitedOrder: ProcessInfo[] = [];
  /** pids /proc did not know: not read again for every later event of theirs. */
  private readonly unknown = new Set<number>();

  constructor(private readonly readProc: (pid: number) => ProcessInfo | undefined = readProcFs) {}

  /** Updates the tree from one event; call for every event in arrival order. */
  observe(event: SensorEvent): void {
    switch (event.type) {
      case 'fork': {
        const parent = this.subject(event);
        this.unknown.delete(event.childTgid);
        this.processes.set(event.childTgid, {
          pid: event.childTgid,
          ppid: event.tgid,
          exe: parent?.exe ?? event.comm,
          argv: parent?.argv ?? [],
          uid: event.uid,
          jobCgroupId: event.jobCgroupId,
          exited: false,
        });
        break;
      }
      case 'exec': {
        // Keep the parent from fork time: a daemonised process is reparented
        // to init, but its ancestry is still the job's.
        const known = this.processes.get(event.tgid);
        this.unknown.delete(event.tgid);
        this.processes.set(event.tgid, {
          pid: event.tgid,
          ppid: known && !known.exited ? known.ppid : event.ppid,
          exe: event.filename,
          argv: event.argv,
          uid: event.uid,
          jobCgroupId: event.jobCgroupId,
          exited: false,
        });
        break;
      }
      case 'exit': {
        const info = this.subject(event);
        if (info && !info.exited) {
          info.exited = true;
          this.exitedOrder.push(info);
          while (this.exitedOrder.length > EXITED_KEPT) {
            const old = this.exitedOrder.shift()!;
            if (this.processes.get(old.pid) === old) this.processes.delete(old.pid);
          }
        }
        break;
      }
      default:
        this.subject(event);
    }
  }

  /**
   * The process an event comes from, its job taken from the event: that is
   * how a process filled from /proc learns its job (a job root that predates
   * tracking, at its first fork). Packet records without a task have pid 0.
   */
  private subject(event: SensorEvent): ProcessInfo | undefined {
    const info = this.get(event.tgid);
    if (info) info.jobCgroupId = event.jobCgroupId;
    return info;
  }

  get(pid: number): ProcessInfo | undefined {
    let info = this.processes.get(pid);
    if (!info && pid > 0 && !this.unknown.has(pid)) {
      info = this.readProc(pid);
      if (info) this.processes.set(pid, info);
      else {
        if (this.unknown.size >= EXITED_KEPT) this.unknown.clear();
        this.unknown.add(pid);
      }
    }
    return info;
  }

  /**
   * Exe of pid, its parent, grandparent… while they belong to the same job
   * (the job root is the last entry). Unknown processes end the chain (ppid 0
   * is never known), and so does a process whose job is not known yet: its
   * parents may be another job's, or the runner's.
   */
  ancestry(pid: number): string[] {
    const chain: string[] = [];
    let info = this.get(pid);
    const job = info?.jobCgroupId;
    while (info && chain.length < MAX_ANCESTRY) {
      chain.push(info.exe);
      if (info.ppid === info.pid) break;
      const parent = this.processes.get(info.ppid);
      if (!parent || !job || parent.jobCgroupId !== job) break;
      info = parent;
    }
    return chain;
  }

  get size(): number {
    return this.processes.size;
  }
}

/**
 * Fills in a process from /proc (for processes that predate tracking); `proc`
 * is where procfs is mounted. Its job is not known here (0).
 */
export function readProcFs(pid: number, proc = '/proc'): ProcessInfo | undefined {
  const dir = path.join(proc, String(pid));
  try {
    const stat = fs.readFileSync(path.join(dir, 'stat'), 'utf8');
    // comm may hold spaces and parentheses: fields resume after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ppid = Number(fields[1]);
    let exe: string;
    try {
      exe = fs.readlinkSync(path.join(dir, 'exe'));
    } catch {
      // a kernel thread, or another user's process: its comm
      exe = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    }
    const argv = fs.readFileSync(path.join(dir, 'cmdline'), 'utf8').split('\0');
    // each argument ends in a NUL; a process that rewrote its title may not
    if (argv[argv.length - 1] === '') argv.pop();
    // the kernel writes "Uid:\t<real>\t<effective>…" at a line start; the comm
    // (Name:, an earlier line) may hold "Uid:" too. No Uid line: -1, never root.
    const uid = Number(/^Uid:\t(\d+)/m.exec(fs.readFileSync(path.join(dir, 'status'), 'utf8'))?.[1] ?? -1);
    return { pid, ppid, exe, argv, uid, jobCgroupId: 0, exited: false };
  } catch {
    /* gone, or never there: not filled in */
  }
}
