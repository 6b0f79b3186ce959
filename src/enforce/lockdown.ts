/**
 * Lockdown in the kernel: which detections kill a job's offenders
 * (job_lockdown), and which processes no job may read (protected_tgids,
 * protected_comms). The detections themselves are in bpf/lib/lockdown.h.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Policy } from '../policy/policy';
import type { DetectionName } from '../sensor/events';
import { COMM_LEN, DetectionId, LAYOUT } from '../sensor/layout';
import type { NativeSensorHandle } from '../sensor/native';
import { encodeCgroupKey } from './maps';

/** Shells that read commands from stdin when started without one (for relay detection). */
export const STDIN_SHELLS = ['sh', 'bash', 'dash', 'zsh', 'ksh', 'mksh', 'ash', 'busybox'];

/** Programs protected from memory reads by any job (configurable). */
export const DEFAULT_PROTECTED_PROGRAMS = ['Runner.Worker', 'Runner.Listener'];

export interface LockdownOptions {
  /** A loopback peer counts as remote for Reverse-Shell (default false). */
  loopbackIsRemote?: boolean;
}

/**
 * The detections a policy kills for: its listed ones when lockdown is
 * enabled; and leaving the job's cgroup whenever lockdown is enabled or
 * egress is blocked, since that would escape both.
 */
export function killedDetections(policy: Policy): DetectionName[] {
  const killed: DetectionName[] = policy.lockdown.enabled ? [...policy.lockdown.detections] : [];
  if (policy.lockdown.enabled || policy.egressPolicy === 'block') killed.push('Cgroup-Escape');
  return killed;
}

export function encodeJobLockdown(detections: DetectionName[], options: LockdownOptions = {}): Buffer {
  const f = LAYOUT.rf_job_lockdown.fields;
  const value = Buffer.alloc(LAYOUT.rf_job_lockdown.size);
  const mask = detections.reduce((bits, d) => bits | (1 << DetectionId[d]), 0);
  value.writeUInt32LE(mask >>> 0, f.kill_mask.offset);
  value.writeUInt8(options.loopbackIsRemote ? 1 : 0, f.loopback_remote.offset);
  return value;
}

/** A job's lockdown settings in the kernel, removed with remove(). */
export class JobLockdown {
  private removed = false;

  constructor(
    private readonly kernel: NativeSensorHandle,
    private readonly cgroupId: number,
    readonly killed: DetectionName[],
    options: LockdownOptions = {},
  ) {
    kernel.mapUpdate('job_lockdown', encodeCgroupKey(cgroupId), encodeJobLockdown(killed, options));
  }

  /** Offenders the kernel killed in this job (counted even if a record was lost). */
  kills(): number {
    const value = this.kernel.mapLookup('job_kills', encodeCgroupKey(this.cgroupId));
    return value ? Number(value.readBigUInt64LE(0)) : 0;
  }

  remove(): void {
    if (this.removed) return;
    this.removed = true;
    this.kernel.mapDelete('job_lockdown', encodeCgroupKey(this.cgroupId));
    this.kernel.mapDelete('job_kills', encodeCgroupKey(this.cgroupId));
  }
}

function tgidKey(tgid: number): Buffer {
  const key = Buffer.alloc(4);
  key.writeUInt32LE(tgid);
  return key;
}

export function protectProcess(kernel: NativeSensorHandle, tgid: number): void {
  kernel.mapUpdate('protected_tgids', tgidKey(tgid), Buffer.from([1]));
}

/**
 * comm as the kernel keeps it: the first 15 bytes of the program's name, NUL
 * padded. Bytes, not characters, and cut where the kernel cuts, even inside a
 * multi-byte character.
 */
export function commKey(program: string): Buffer {
  const key = Buffer.alloc(COMM_LEN);
  Buffer.from(program, 'utf8').copy(key, 0, 0, COMM_LEN - 1);
  return key;
}

/** Tells the kernel which programs are shells (a shell on IPC is judged for relays). */
export function configureStdinShells(kernel: NativeSensorHandle, shells = STDIN_SHELLS): void {
  for (const shell of shells) kernel.mapUpdate('stdin_shells', commKey(shell), Buffer.from([1]));
}

/**
 * Protects the agent itself and every process running one of `programs`,
 * now (found in /proc) and from every later exec of them (the kernel adds
 * those by comm). Returns the pids protected now.
 */
export function protectRunnerProcesses(kernel: NativeSensorHandle, programs = DEFAULT_PROTECTED_PROGRAMS, proc = '/proc'): number[] {
  for (const program of programs) kernel.mapUpdate('protected_comms', commKey(program), Buffer.from([1]));
  const protectedNow = [process.pid];
  protectProcess(kernel, process.pid);
  const wanted = new Set(programs);
  for (const entry of fs.readdirSync(proc)) {
    if (!/^\d+$/.test(entry)) continue;
    let name: string;
    try {
      name = path.basename(fs.readlinkSync(path.join(proc, entry, 'exe')));
      // Stryker disable next-line BlockStatement: without the continue, name stays undefined, which no program equals: skipped all the same
    } catch {
      // gone, a kernel thread, or unreadable even to root (EACCES, as for a sandbox's PID 1): nothing to tell it is
      // a runner by, and refusing every job for it would protect nothing
      continue;
    }
    if (!wanted.has(name)) continue;
    protectProcess(kernel, Number(entry));
    protectedNow.push(Number(entry));
  }
  return protectedNow;
}
