/**
 * Lockdown in the kernel: which detections kill a job's offenders
 * (job_lockdown), and which processes no job may read (protected_tgids,
 * protected_comms). The detections themselves are in bpf/lib/lockdown.h.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Policy } from '../policy/policy';
import type { DetectionName } from '../sensor/events';
import type { KernelMaps } from '../abi/maps';

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

/** A job's lockdown settings in the kernel, removed with remove(). */
export class JobLockdown {
  private removed = false;

  constructor(
    private readonly kernel: KernelMaps,
    private readonly cgroupId: number,
    readonly killed: DetectionName[],
    options: LockdownOptions = {},
  ) {
    kernel.setJobLockdown(cgroupId, { kill: killed, loopbackIsRemote: options.loopbackIsRemote === true });
  }

  /** Offenders the kernel killed in this job (counted even if a record was lost). */
  kills(): number {
    return this.kernel.jobKills(this.cgroupId);
  }

  remove(): void {
    if (this.removed) return;
    this.removed = true;
    this.kernel.removeJobLockdown(this.cgroupId);
  }
}

export function protectProcess(kernel: KernelMaps, tgid: number): void {
  kernel.protectTgid(tgid);
}

/** Tells the kernel which programs are shells (a shell on IPC is judged for relays). */
export function configureStdinShells(kernel: KernelMaps, shells = STDIN_SHELLS): void {
  for (const shell of shells) kernel.addStdinShell(shell);
}

/**
 * Protects the agent itself and every process running one of `programs`,
 * now (found in /proc) and from every later exec of them (the kernel adds
 * those by comm). Returns the pids protected now.
 */
export function protectRunnerProcesses(kernel: KernelMaps, programs = DEFAULT_PROTECTED_PROGRAMS, proc = '/proc'): number[] {
  for (const program of programs) kernel.protectComm(program);
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
