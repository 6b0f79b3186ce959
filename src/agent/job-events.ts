/**
 * The job events of DESIGN.md §5: what `ringfence run --events FILE` writes,
 * one JSON object per line, and what users, tests and tools read.
 */
import type { OutputFile } from './output';
import type { DetectionEvent, EgressEvent, ExecEvent, ShellOnIpcEvent } from '../sensor/events';
import type { Relay } from './relay';
import { readProcFs, type ProcessTree } from '../sensor/process-tree';

export type Verdict = 'allowed' | 'blocked' | 'audited';

export interface ProcessRef {
  pid: number;
  ppid: number;
  exe: string;
  argv: string[];
  uid: number;
  /** Exe of the process, its parent, … up to the job's first process. */
  ancestry: string[];
}

interface Base {
  time: string;
  job: string;
  process?: ProcessRef;
}

export interface ProcessJobEvent extends Base {
  kind: 'process';
  process: ProcessRef;
  container: { inContainer: boolean; privileged: boolean };
}

export interface DnsJobEvent extends Base {
  kind: 'dns';
  name: string;
  type: string;
  answers: string[];
  verdict: Verdict;
  policy: string;
  rcode: string;
  /** Smallest TTL of the answer, in seconds. */
  ttl?: number;
  /** Why the query failed, when upstream did not answer. */
  error?: string;
}

export interface NetworkJobEvent extends Base {
  kind: 'network';
  protocol: string;
  ip: string;
  port: number;
  domain?: string;
  verdict: Verdict;
  policy: string;
  /** Attempts this event stands for (datagram repeats within a second are folded). */
  count: number;
}

export interface DetectionJobEvent extends Base {
  kind: 'detection';
  detection: 'Reverse-Shell' | 'Runner-Worker-Memory-Read' | 'Privileged-Container' | 'Cgroup-Escape' | 'Agent-Tamper';
  /** killed: the offender died in the offending syscall and the job was ended. */
  action: 'killed' | 'audited';
  /** What gave it away: dup, exec, proc_mem_open, process_vm, ptrace, relay. */
  via: string;
  /** Reverse shell through a relay: the process that carried it to the network. */
  relay?: { pid: number; exe: string };
  /** A ptrace kill: what became of the protected process its tracer had attached to (src/enforce/resume.ts). */
  targetAfterKill?: import('../enforce/resume').TargetAfterKill;
  /** The protected process read (memory), the remote end (shell), the capabilities (container). */
  target: { pid: number; exe?: string; argv?: string[] } | { ip: string; port: number; fd: number } | { capabilities: string; pidnsLevel: number } | { cgroupId: number };
  policy: string;
}

export interface JobPhaseEvent extends Base {
  kind: 'job';
  phase: 'started' | 'completed';
  command?: string[];
  policy?: string;
  mode?: 'audit' | 'block';
  status?: { exitCode: number | null; signal: string | null };
  /** Set when lockdown ended the job. */
  killedBy?: string;
  counts?: { processes: number; dns: number; network: number; blocked: number; detections: number };
  /** Sensor records lost because the ring buffer was full (0 in a healthy run). */
  dropped?: number;
  /** What `ringfence run` exits with, and why (docs/cli.md). */
  exitStatus?: number;
  reason?: string;
  /** Events that could not be written before this one (disk full, reader gone). */
  lost?: number;
}

export type JobEvent = ProcessJobEvent | DnsJobEvent | NetworkJobEvent | DetectionJobEvent | JobPhaseEvent;

const CAP_SYS_ADMIN = 1n << 21n;

export function protocolName(protocol: number): string {
  switch (protocol) {
    case 6:
      return 'tcp';
    case 17:
      return 'udp';
    case 1:
      return 'icmp';
    case 58:
      return 'icmpv6';
    default:
      return `ip-proto-${protocol}`;
  }
}

export function processRef(tree: ProcessTree, pid: number): ProcessRef | undefined {
  const info = tree.get(pid);
  if (!info) return undefined;
  return { pid, ppid: info.ppid, exe: info.exe, argv: info.argv, uid: info.uid, ancestry: tree.ancestry(pid) };
}

export function processEvent(job: string, tree: ProcessTree, exec: ExecEvent): ProcessJobEvent {
  const c = exec.container;
  const inContainer = c.pidnsLevel > 0 && c.mntnsNotInit;
  return {
    kind: 'process',
    time: new Date(exec.timeMs).toISOString(),
    job,
    process: processRef(tree, exec.tgid) ?? { pid: exec.tgid, ppid: exec.ppid, exe: exec.filename, argv: exec.argv, uid: exec.uid, ancestry: [exec.filename] },
    container: { inContainer, privileged: inContainer && c.usernsInit && (c.capEffective & CAP_SYS_ADMIN) !== 0n },
  };
}

export function networkEvent(job: string, policy: string, tree: ProcessTree, egress: EgressEvent, domain: string | undefined): NetworkJobEvent {
  return {
    kind: 'network',
    time: new Date(egress.timeMs).toISOString(),
    job,
    process: egress.tgid ? processRef(tree, egress.tgid) : undefined,
    protocol: protocolName(egress.protocol),
    ip: egress.address,
    port: egress.port,
    domain,
    verdict: egress.verdict,
    policy,
    count: egress.count,
  };
}

export function detectionEvent(job: string, policy: string, tree: ProcessTree, detection: DetectionEvent): DetectionJobEvent {
  let target: DetectionJobEvent['target'];
  if (detection.detection === 'Runner-Worker-Memory-Read') {
    const info = tree.get(detection.targetTgid) ?? readProcFs(detection.targetTgid);
    target = { pid: detection.targetTgid, exe: info?.exe, argv: info?.argv };
  } else if (detection.detection === 'Reverse-Shell') {
    target = { ip: detection.peer.address, port: detection.peer.port, fd: detection.fd };
  } else if (detection.detection === 'Cgroup-Escape') {
    target = { cgroupId: detection.targetCgroupId };
  } else {
    target = { capabilities: `0x${detection.capEffective.toString(16)}`, pidnsLevel: detection.pidnsLevel };
  }
  return {
    kind: 'detection',
    time: new Date(detection.timeMs).toISOString(),
    job,
    process: processRef(tree, detection.tgid) ?? { pid: detection.tgid, ppid: detection.ppid, exe: detection.comm, argv: [], uid: detection.uid, ancestry: [] },
    detection: detection.detection,
    action: detection.action,
    via: detection.hook,
    target,
    policy,
  };
}

/** Reverse-Shell through a relay: the shell on IPC whose other end is `relay`, with its remote peer. */
export function relayDetectionEvent(job: string, policy: string, tree: ProcessTree, shell: ShellOnIpcEvent, relay: Relay): DetectionJobEvent {
  return {
    kind: 'detection',
    time: new Date(shell.timeMs).toISOString(),
    job,
    process: processRef(tree, shell.tgid),
    detection: 'Reverse-Shell',
    action: shell.action === 'held' ? 'killed' : 'audited',
    via: 'relay',
    target: { ip: relay.ip, port: relay.port, fd: relay.fd },
    relay: { pid: relay.pid, exe: relay.exe },
    policy,
  };
}

/**
 * Writes JSON lines to an output (or nowhere), in order. A line that cannot
 * be written is counted, never thrown: losing the record must not end the job's enforcement.
 */
export class JobEventWriter {
  constructor(private readonly out: OutputFile | undefined) {}

  write(event: JobEvent): void {
    this.out?.write(JSON.stringify(event) + '\n');
  }

  /** Events that could not be written. */
  get lost(): number {
    return this.out?.lost ?? 0;
  }

  /** Why the first one was lost. */
  get error(): string | undefined {
    return this.out?.firstError;
  }

  close(): void {
    this.out?.close();
  }
}
