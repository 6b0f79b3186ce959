/**
 * Facts about the running kernel the sensor needs, and the checks that turn a
 * machine that cannot run it into one clear sentence instead of a stack trace.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { RingfenceError } from '../util/errors';
import { findCgroup2Mount } from '../cgroup/cgroup2';

/** The oldest kernel with everything the probes use (BPF ring buffer: 5.8). */
export const MIN_KERNEL: [number, number] = [5, 8];

const TRACEFS = '/sys/kernel/tracing';
const BPFFS = '/sys/fs/bpf';
const BTF = '/sys/kernel/btf/vmlinux';

export function parseKernelRelease(release: string): [number, number] | undefined {
  const match = /^(\d+)\.(\d+)/.exec(release);
  return match ? [Number(match[1]), Number(match[2])] : undefined;
}

function isMounted(target: string, fstype: string): boolean {
  const mounts = fs.readFileSync('/proc/self/mounts', 'utf8');
  return mounts.split('\n').some((line) => {
    const [, mountPoint, type] = line.split(' ');
    return mountPoint === target && type === fstype;
  });
}

function mountIfMissing(target: string, fstype: string, why: string): void {
  if (isMounted(target, fstype)) return;
  try {
    execFileSync('mount', ['-t', fstype, fstype, target], { stdio: 'pipe' });
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
    throw new RingfenceError(
      `${fstype} is not mounted at ${target} (${why}) and mounting it failed: ${stderr || String(error)}; ` +
        `mount it with \`mount -t ${fstype} ${fstype} ${target}\``,
      'RF_NO_' + fstype.toUpperCase(),
    );
  }
}

/**
 * Checks everything that would make loading fail for a reason the user can
 * fix, mounting tracefs and bpffs where they are missing. Throws RingfenceError.
 */
export function preflight(): void {
  if (process.geteuid?.() !== 0) {
    throw new RingfenceError('ringfence needs root to load its eBPF sensor (CAP_BPF, CAP_SYS_ADMIN): run it with sudo', 'RF_NOT_ROOT');
  }
  const release = os.release();
  const version = parseKernelRelease(release);
  if (!version || version[0] < MIN_KERNEL[0] || (version[0] === MIN_KERNEL[0] && version[1] < MIN_KERNEL[1])) {
    throw new RingfenceError(
      `kernel ${release} is too old: the sensor needs Linux ${MIN_KERNEL.join('.')} or newer (BPF ring buffer)`,
      'RF_KERNEL_TOO_OLD',
    );
  }
  if (!fs.existsSync(BTF)) {
    throw new RingfenceError(
      `this kernel has no BTF (${BTF} is missing): the sensor needs a kernel built with CONFIG_DEBUG_INFO_BTF=y`,
      'RF_NO_BTF',
    );
  }
  mountIfMissing(TRACEFS, 'tracefs', 'the probes attach to its tracepoints');
  mountIfMissing(BPFFS, 'bpf', 'BPF objects are pinned there');
  if (!findCgroup2Mount()) {
    throw new RingfenceError('no cgroup v2 hierarchy is mounted: jobs are tracked by their cgroup', 'RF_NO_CGROUP2');
  }
}

/**
 * Address of the kernel's mem_open, the open() of /proc/PID/mem files, from
 * /proc/kallsyms; 0n when it cannot be found (addresses hidden by
 * kptr_restrict, or the symbol renamed), and the probe falls back to
 * recognising the file by name on procfs.
 */
export function memOpenAddress(kallsyms = '/proc/kallsyms'): bigint {
  let text: string;
  try {
    text = fs.readFileSync(kallsyms, 'utf8');
  } catch {
    return 0n;
  }
  const match = /^([0-9a-f]+) [tT] mem_open$/m.exec(text);
  return match ? BigInt('0x' + match[1]) : 0n;
}

/**
 * Inode of the host's mount namespace: execs in any other are "in a
 * container". PID 1's, or ours where PID 1's cannot be read (some VM inits
 * deny it even to root); ringfence itself runs on the host.
 */
export function initMountNamespaceInode(): number {
  for (const candidate of ['/proc/1/ns/mnt', '/proc/self/ns/mnt']) {
    try {
      return Number(fs.statSync(candidate).ino);
    } catch {
      /* try the next */
    }
  }
  return 0;
}
