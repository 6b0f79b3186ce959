/**
 * Every job ringfence starts leaves a record of what it made: its cgroup, its
 * owner (pid and start time, so a recycled pid is not mistaken for it), and
 * the directory under bpffs where its kernel objects are pinned. The kernel
 * objects outlive a ringfence that is killed (so the job stays enforced and
 * cannot run on); the next ringfence finds such a job here and ends it:
 * kills what is left in its cgroup, unpins its programs, removes it.
 *
 * Layout: /run/ringfence/jobs/ID.json, cgroups under CGROUP2/ringfence/jobs/,
 * pins under /sys/fs/bpf/ringfence/ID/. RINGFENCE_INSTANCE=NAME puts all three
 * under `ringfence-NAME` instead: installations (and test runs) that must not
 * sweep each other's jobs.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Cgroup, cgroup2Root } from '../cgroup/cgroup2';
import { RingfenceError } from '../util/errors';
import { statFieldsAfterComm } from '../util/proc-stat';

/** `ringfence`, or `ringfence-NAME` with RINGFENCE_INSTANCE=NAME. Throws a usage error for a bad NAME. */
export function instanceName(env: NodeJS.ProcessEnv = process.env): string {
  const name = env.RINGFENCE_INSTANCE;
  if (name === undefined || name === '') return 'ringfence';
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(name)) {
    throw new RingfenceError(`RINGFENCE_INSTANCE '${name}': expected lower-case letters, digits and '-' (at most 63)`, 'RF_USAGE');
  }
  return `ringfence-${name}`;
}


export interface JobRecord {
  id: string;
  /** The ringfence process that owns the job. */
  ownerPid: number;
  /** Its start time in clock ticks since boot (/proc/PID/stat field 22). */
  ownerStart: number;
  /** The job's cgroup (absent: the record of a supervisor's sensor, which has pins only). */
  cgroup?: string;
  /** Where the job's kernel objects are pinned (absent: nothing pinned). */
  pins?: string;
}

export interface RegistryPaths {
  stateDir: string;
  pinRoot: string;
  cgroupRoot: Cgroup;
}

/** A process's start time, or undefined when it is gone. */
export function processStartTime(pid: number, proc = '/proc'): number | undefined {
  const fields = statFieldsAfterComm(pid, proc);
  return fields && Number(fields[19]);
}

/** Whether the process that wrote `record` is still that process. */
export function ownerAlive(record: Pick<JobRecord, 'ownerPid' | 'ownerStart'>, proc = '/proc'): boolean {
  const start = processStartTime(record.ownerPid, proc);
  return start !== undefined && start === record.ownerStart;
}

let idsIssued = 0;

export class JobRegistry {
  readonly paths: RegistryPaths;

  /** Where job cgroups go, relative to the cgroup2 mount (every cgroup ringfence makes is below its root). */
  readonly jobsCgroup: string;

  constructor(paths: Partial<RegistryPaths> = {}, instance = instanceName()) {
    this.paths = {
      stateDir: paths.stateDir ?? `/run/${instance}/jobs`,
      pinRoot: paths.pinRoot ?? `/sys/fs/bpf/${instance}`,
      cgroupRoot: paths.cgroupRoot ?? new Cgroup(path.join(cgroup2Root(), instance)),
    };
    this.jobsCgroup = `${path.relative(cgroup2Root(), this.paths.cgroupRoot.path)}/jobs`;
  }

  /** The cgroup directory of job `id`. */
  cgroupPathOf(id: string): string {
    return path.join(this.paths.cgroupRoot.path, 'jobs', id);
  }

  /** A new id, unique on this machine: time, a count within this process (many jobs a millisecond), then the owner's pid. */
  static newId(prefix: 'run' | 'trace' | 'sensor'): string {
    return `${prefix}-${Date.now().toString(36)}${(idsIssued++).toString(36)}-${process.pid}`;
  }

  /** Where job `id`'s kernel objects are pinned. */
  pinDirOf(id: string): string {
    return path.join(this.paths.pinRoot, id);
  }

  /** Records that this process owns job `id` (before anything of it exists). */
  register(id: string, cgroup: string | undefined, pins?: string): JobRecord {
    const record: JobRecord = { id, ownerPid: process.pid, ownerStart: processStartTime(process.pid)!, ...(cgroup ? { cgroup } : {}), ...(pins ? { pins } : {}) };
    fs.mkdirSync(this.paths.stateDir, { recursive: true, mode: 0o700 });
    const file = this.recordPath(id);
    fs.writeFileSync(`${file}.tmp`, JSON.stringify(record) + '\n', { mode: 0o600 });
    fs.renameSync(`${file}.tmp`, file);
    return record;
  }

  /** Removes the pin and state directories when nothing is left in them (another ringfence's entries keep them). */
  removeEmptyRoots(): void {
    for (const dir of [this.paths.pinRoot, this.paths.stateDir]) {
      try {
        fs.rmdirSync(dir);
      } catch {
        // not empty (another ringfence runs), or gone already: either way nothing of ours is left in it
      }
    }
  }

  /** Forgets a job that ended cleanly. */
  unregister(id: string): void {
    fs.rmSync(this.recordPath(id), { force: true });
  }

  records(): JobRecord[] {
    let names: string[];
    try {
      names = fs.readdirSync(this.paths.stateDir);
    } catch {
      return [];
    }
    const records: JobRecord[] = [];
    for (const name of names.filter((n) => n.endsWith('.json'))) {
      try {
        records.push(JSON.parse(fs.readFileSync(path.join(this.paths.stateDir, name), 'utf8')) as JobRecord);
      } catch {
        // Unreadable (damaged, or from an older ringfence): left out, so that the job is
        // judged like one without a record, by the pid its id ends in and its usual paths.
        continue;
      }
    }
    return records;
  }

  /**
   * Ends every job whose owner is gone: kills its processes, removes its
   * cgroup, unpins its kernel objects, forgets it. Cgroups and pin
   * directories that no record names (left by an older ringfence, or a
   * record lost with its owner) are judged by the pid their name ends in.
   * Returns one line per job ended, for the log.
   */
  async sweep(): Promise<string[]> {
    const lines: string[] = [];
    const live = new Set<string>();
    const seen = new Set<string>();
    const records = this.records();
    const readable = new Set(records.map((r) => r.id));
    const endRecorded = async (record: JobRecord) => {
      seen.add(record.id);
      if (record.ownerPid === process.pid || ownerAlive(record)) {
        live.add(record.id);
        return;
      }
      lines.push(await this.end(record.id, record.cgroup ? new Cgroup(record.cgroup) : undefined, record.pins));
      this.unregister(record.id);
    };
    // jobs first, then the pins of the sensors that enforced them: a job's processes never outlive their enforcement
    for (const record of records.filter((r) => r.cgroup)) await endRecorded(record);
    for (const cgroup of this.unrecordedCgroups()) {
      const id = path.basename(cgroup.path);
      if (live.has(id) || seen.has(id) || pidOfId(id) === process.pid || ownerOfIdAlive(id)) continue;
      lines.push(await this.end(id, cgroup, undefined));
      seen.add(id);
    }
    for (const record of records.filter((r) => !r.cgroup)) await endRecorded(record);
    for (const id of this.pinDirs()) {
      if (live.has(id) || seen.has(id) || pidOfId(id) === process.pid || ownerOfIdAlive(id)) continue;
      lines.push(await this.end(id, undefined, path.join(this.paths.pinRoot, id)));
      seen.add(id);
    }
    // records that could not be read go once their job is ended
    for (const name of this.recordNames()) {
      const id = name.replace(/\.json$/, '');
      if (!readable.has(id) && seen.has(id)) this.unregister(id);
    }
    return lines;
  }

  /**
   * Ends one job; never throws (another ringfence may be sweeping the same
   * job at the same time): what fails is said in the returned line.
   */
  private async end(id: string, cgroup: Cgroup | undefined, pins: string | undefined): Promise<string> {
    const done: string[] = [];
    const failed: string[] = [];
    if (cgroup && fs.existsSync(cgroup.path)) {
      const killed = cgroup.allProcs().length;
      try {
        await cgroup.destroy();
        done.push(`removed its cgroup${killed ? ` and killed its ${killed} process(es)` : ''}`);
      } catch (error) {
        if (fs.existsSync(cgroup.path)) failed.push(`removing ${cgroup.path}: ${(error as Error).message}`);
        else done.push('removed its cgroup');
      }
    }
    const pinDir = pins ?? path.join(this.paths.pinRoot, id);
    if (cgroup && fs.existsSync(cgroup.path)) {
      // its processes may still be there: the pins are what keeps them enforced and unable to run on
      failed.push(`kept ${pinDir} while the cgroup remains`);
    } else if (fs.existsSync(pinDir)) {
      try {
        // unlinking the pins drops the last reference: the kernel detaches and frees them
        fs.rmSync(pinDir, { recursive: true, force: true });
        done.push('unpinned its kernel objects');
      } catch (error) {
        failed.push(`unpinning ${pinDir}: ${(error as Error).message}`);
      }
    }
    const what = done.join(', ') || 'nothing was left';
    const whose = id.startsWith('sensor-') ? `the sensor ${id}` : `job ${id}`;
    return `ringfence: ended ${whose} left by a ringfence that is gone: ${what}${failed.length ? `; failed: ${failed.join('; ')}` : ''}`;
  }

  /** Cgroups of jobs (jobs/ID) and of older ringfence versions (ringfence/trace-PID). */
  private unrecordedCgroups(): Cgroup[] {
    const root = this.paths.cgroupRoot;
    const jobs = root.children().find((c) => path.basename(c.path) === 'jobs');
    return [...(jobs?.children() ?? []), ...root.children().filter((c) => path.basename(c.path) !== 'jobs')];
  }

  private recordNames(): string[] {
    try {
      return fs.readdirSync(this.paths.stateDir).filter((n) => n.endsWith('.json'));
    } catch {
      return [];
    }
  }

  private pinDirs(): string[] {
    try {
      return fs.readdirSync(this.paths.pinRoot);
    } catch {
      return [];
    }
  }

  private recordPath(id: string): string {
    return path.join(this.paths.stateDir, `${id}.json`);
  }
}

/** The owner pid a job id ends in ("run-mwxl0j6l-19170", "trace-4242"). */
export function pidOfId(id: string): number | undefined {
  const pid = Number(/-(\d+)$/.exec(id)?.[1]);
  return pid > 0 ? pid : undefined;
}

/** For ids without a record: alive when a process with that pid exists (pid reuse keeps a job, never ends a live one). */
function ownerOfIdAlive(id: string): boolean {
  const pid = pidOfId(id);
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
