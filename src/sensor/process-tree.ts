/**
 * The processes of tracked jobs, kept from fork/exec/exit events, so that any
 * event can name its process's ancestry (the exe chain up to the job root).
 *
 * Processes that existed before tracking began (the job's first process, or
 * anything the agent started to track late) are filled in from /proc on first
 * reference.
 */
import fs from 'node:fs';
import type { SensorEvent } from './events';

export interface ProcessInfo {
  pid: number;
  ppid: number;
  exe: string;
  argv: string[];
  uid: number;
  jobCgroupId: number;
  exited: boolean;
}

/** How many exited processes to remember for events that arrive after the exit. */
const EXITED_KEPT = 4096;
/** Ancestry is cut here: a loop in ppid links would be a bug, not a hang. */
const MAX_ANCESTRY = 64;

export class ProcessTree {
  private readonly processes = new Map<number, ProcessInfo>();
  private readonly exitedOrder: number[] = [];
  /** pids /proc did not know: not read again for every later event of theirs. */
  private readonly unknown = new Set<number>();

  constructor(private readonly readProc: (pid: number) => ProcessInfo | undefined = readProcFs) {}

  /** Updates the tree from one event; call for every event in arrival order. */
  observe(event: SensorEvent): void {
    switch (event.type) {
      case 'fork': {
        const parent = this.get(event.tgid);
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
        const info = this.get(event.tgid);
        if (info && !info.exited) {
          info.exited = true;
          this.exitedOrder.push(event.tgid);
          while (this.exitedOrder.length > EXITED_KEPT) {
            const old = this.exitedOrder.shift()!;
            if (this.processes.get(old)?.exited) this.processes.delete(old);
          }
        }
        break;
      }
      default:
        if (!this.processes.has(event.tgid)) this.get(event.tgid);
    }
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
   * (the job root is the last entry). Unknown processes end the chain.
   */
  ancestry(pid: number): string[] {
    const chain: string[] = [];
    let info = this.get(pid);
    const job = info?.jobCgroupId;
    while (info && chain.length < MAX_ANCESTRY) {
      chain.push(info.exe);
      if (info.ppid === 0 || info.ppid === info.pid) break;
      const parent = this.processes.get(info.ppid);
      if (!parent || (job !== undefined && parent.jobCgroupId !== job)) break;
      info = parent;
    }
    return chain;
  }

  get size(): number {
    return this.processes.size;
  }
}

/** Fills in a process from /proc (for processes that predate tracking). */
export function readProcFs(pid: number): ProcessInfo | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm may hold spaces and parentheses: fields resume after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ppid = Number(fields[1]);
    let exe = '';
    try {
      exe = fs.readlinkSync(`/proc/${pid}/exe`);
    } catch {
      exe = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    }
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    const argv = cmdline.split('\0');
    if (argv[argv.length - 1] === '') argv.pop();
    const uid = Number(/^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? -1);
    return { pid, ppid, exe, argv, uid, jobCgroupId: 0, exited: false };
  } catch {
    return undefined;
  }
}
