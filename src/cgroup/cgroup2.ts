/**
 * cgroup v2 for jobs: find the hierarchy, make a cgroup per job, put
 * processes in it, end them all at once, remove it.
 *
 * Machines differ in where cgroup2 is mounted (/sys/fs/cgroup, or
 * /sys/fs/cgroup/unified in the hybrid layout), so it is always looked up in
 * /proc/self/mountinfo.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { RingfenceError } from '../util/errors';

/** Where the cgroup2 hierarchy is mounted, or undefined. */
export function findCgroup2Mount(mountinfo = fs.readFileSync('/proc/self/mountinfo', 'utf8')): string | undefined {
  for (const line of mountinfo.split('\n')) {
    // "36 35 0:31 / /sys/fs/cgroup/unified rw,... shared:9 - cgroup2 cgroup2 rw"
    const separator = line.indexOf(' - ');
    if (separator < 0) continue;
    const fstype = line.slice(separator + 3).split(' ')[0];
    if (fstype === 'cgroup2') return line.slice(0, separator).split(' ')[4].replace(/\\040/g, ' ');
  }
  return undefined;
}

export function cgroup2Root(): string {
  const mount = findCgroup2Mount();
  if (!mount) {
    throw new RingfenceError(
      'no cgroup v2 hierarchy is mounted: mount one with `mount -t cgroup2 none /sys/fs/cgroup/unified`',
      'RF_NO_CGROUP2',
    );
  }
  return mount;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class Cgroup {
  constructor(readonly path: string) {}

  /** Creates (or reuses) ROOT/relative, making parents as needed. */
  static create(relative: string, root = cgroup2Root()): Cgroup {
    const dir = path.join(root, relative);
    fs.mkdirSync(dir, { recursive: true });
    return new Cgroup(dir);
  }

  /** The cgroup id the kernel uses (bpf_get_current_cgroup_id): the directory's inode. */
  get id(): number {
    const ino = fs.statSync(this.path, { bigint: true }).ino;
    if (ino > BigInt(Number.MAX_SAFE_INTEGER)) throw new RingfenceError(`cgroup id ${ino} of ${this.path} exceeds 2^53`, 'RF_CGROUP_ID');
    return Number(ino);
  }

  exists(): boolean {
    return fs.existsSync(path.join(this.path, 'cgroup.procs'));
  }

  /** Process ids in this cgroup (not its descendants). */
  procs(): number[] {
    try {
      return fs
        .readFileSync(path.join(this.path, 'cgroup.procs'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map(Number);
    } catch {
      return [];
    }
  }

  /** Process ids in this cgroup and every cgroup below it. */
  allProcs(): number[] {
    const pids = this.procs();
    for (const child of this.children()) pids.push(...child.allProcs());
    return pids;
  }

  children(): Cgroup[] {
    try {
      return fs
        .readdirSync(this.path, { withFileTypes: true })
        .filter((entry) => entry.isDirectory())
        .map((entry) => new Cgroup(path.join(this.path, entry.name)));
    } catch {
      return [];
    }
  }

  /**
   * SIGKILLs every process in the cgroup and below, at once where the kernel
   * has cgroup.kill (5.14+), else process by process until none is left.
   */
  async kill(timeoutMs = 5000): Promise<void> {
    const killFile = path.join(this.path, 'cgroup.kill');
    const deadline = Date.now() + timeoutMs;
    const hasKill = fs.existsSync(killFile);
    if (hasKill) fs.writeFileSync(killFile, '1');
    for (let left = this.allProcs(); left.length > 0; left = this.allProcs()) {
      if (!hasKill) {
        for (const pid of left) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            /* already gone */
          }
        }
      }
      if (Date.now() > deadline) {
        throw new RingfenceError(`processes of ${this.path} survived SIGKILL for ${timeoutMs} ms`, 'RF_CGROUP_KILL');
      }
      await sleep(5);
    }
  }

  /** Kills what is left and removes this cgroup and its descendants. */
  async destroy(): Promise<void> {
    if (!fs.existsSync(this.path)) return;
    await this.kill();
    await this.removeTree();
  }

  private async removeTree(): Promise<void> {
    for (const child of this.children()) await child.removeTree();
    // rmdir fails with EBUSY for a moment after the last process is reaped.
    for (let attempt = 0; ; attempt++) {
      try {
        fs.rmdirSync(this.path);
        return;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') return;
        if (code !== 'EBUSY' || attempt >= 200) throw error;
        await sleep(5);
      }
    }
  }

  /**
   * Starts command inside this cgroup. A shell moves itself in and then execs
   * the command, so the command and everything it starts are in the cgroup
   * from their first instruction. `prefix` (a program and its arguments that
   * exec the rest, like the job's seal) runs first, before the cgroup: the
   * job's first exec inside it is the command's.
   */
  spawn(command: string, args: string[], options: SpawnOptions = {}, prefix: string[] = []): ChildProcess {
    const script = 'echo $$ > "$0/cgroup.procs" && exec "$@"';
    const argv = [...prefix, '/bin/sh', '-c', script, this.path, command, ...args];
    return spawn(argv[0], argv.slice(1), options);
  }
}
