/**
 * The job events of docs/design.md §5 (docs/events.md): what `ringfence run
 * --events FILE` and `ringfence trace --json` write, one JSON object per
 * line, and what users, tests and tools read. One module builds them for
 * both writers; JobEventWriter adds the envelope every event shares (the
 * job's identity, agentId, sequence) as it writes.
 */
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import type { OutputFile } from './output';
import type { JobIdentity } from './identity';
import type { DetectionEvent, EgressEvent, ExecEvent, FdInfo, SensorEvent, ShellOnIpcEvent } from '../sensor/events';
import type { Relay } from './relay';
import { readProcFs, type ProcessTree } from '../sensor/process-tree';
import { sealedSyscallName } from '../abi/layout';

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

/** The policy as events name it: its name, or null in audit mode without one; the store's version apart. */
export interface PolicyRef {
  name: string | null;
  version?: number;
}

interface Base {
  time: string;
  job: string;
  process?: ProcessRef;
}

/** What the writer adds to every event (docs/events.md, "Every event"). */
export type Envelope = Partial<JobIdentity> & {
  /** The agent process that wrote it: one id per ringfence process (a daemon will keep one for good). */
  agentId: string;
  /** 1, 2, 3… per agent, across all of its jobs, in write order; a gap is an event that could not be written. */
  sequence: number;
};

/** An event as it is in the file. */
export type Written<E extends JobEvent = JobEvent> = E extends unknown ? E & Envelope : never;

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
  policy: string | null;
  policyVersion?: number;
  rcode: string;
  /** udp or tcp: how the job asked. */
  transport: 'udp' | 'tcp';
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
  /** The name whose DNS answer gave this address (allowed or audited answers; block mode's refused names have none). */
  domain?: string;
  verdict: Verdict;
  policy: string | null;
  policyVersion?: number;
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
  target: DetectionTarget;
  policy: string | null;
}

/** What a detection was about (docs/events.md lists which detection has which). */
export type DetectionTarget =
  /**
   * Runner-Worker-Memory-Read: the protected process; Agent-Tamper: ringfence
   * itself, the signal or ptrace request sent to it or the refused syscall,
   * and whether it was refused (never took effect).
   */
  | { pid: number; exe?: string; argv?: string[]; signal?: number; ptraceRequest?: number; syscall?: string; refused?: boolean }
  /** Reverse-Shell: the socket's remote end. */
  | { ip: string; port: number; fd: number }
  /** Privileged-Container. */
  | { capabilities: string; pidnsLevel: number }
  /** Cgroup-Escape: the cgroup it tried to move to. */
  | { cgroupId: number };

export interface JobCounts {
  /** process events. */
  processes: number;
  /** dns events. */
  dns: number;
  /** Sum of `count` over network events. */
  network: number;
  /** dns events and network attempts with verdict blocked. */
  blocked: number;
  /** dns events and network attempts with verdict audited (what block mode would have refused). */
  audited: number;
  /** detection events. */
  detections: number;
}

export interface JobPhaseEvent extends Base {
  kind: 'job';
  phase: 'started' | 'completed';
  command?: string[];
  policy?: string | null;
  policyVersion?: number;
  mode?: 'audit' | 'block';
  status?: { exitCode: number | null; signal: string | null };
  /** Set when lockdown ended the job. */
  killedBy?: string;
  counts?: JobCounts;
  /** Sensor records lost because the ring buffer was full (0 in a healthy run). */
  dropped?: number;
  /** What `ringfence run` exits with, and why (docs/cli.md). */
  exitStatus?: number;
  reason?: string;
  /** Events that could not be written before this one (disk full, reader gone). */
  lost?: number;
}

/* The sensor's own records, which `ringfence trace` writes too. */

/** A socket as events name it: `ip`/`port`/`protocol` for inet families only. */
export interface SocketRef {
  family: string;
  socketType: string;
  ip?: string;
  port?: number;
  protocol?: string;
}

export interface ForkJobEvent extends Base {
  kind: 'fork';
  process: ProcessRef;
  child: { pid: number };
}

export interface ExitJobEvent extends Base {
  kind: 'exit';
  process: ProcessRef;
  /** Set when it exited; null when a signal ended it. */
  exitCode: number | null;
  signal: string | null;
}

export interface ConnectJobEvent extends Base {
  kind: 'connect';
  process: ProcessRef;
  fd: number;
  socket: SocketRef;
  /** 0 when connect(2) succeeded, else its errno (115, EINPROGRESS, for a non-blocking one). */
  errno: number;
}

export interface PtraceJobEvent extends Base {
  kind: 'ptrace';
  process: ProcessRef;
  /** PTRACE_ATTACH, PTRACE_SEIZE, … */
  request: string;
  /** As the caller named it, in its pid namespace. */
  target: { pid: number };
}

export interface ProcessVmJobEvent extends Base {
  kind: 'process_vm';
  process: ProcessRef;
  /** process_vm_readv or process_vm_writev. */
  operation: 'read' | 'write';
  target: { pid: number };
}

export interface ProcMemOpenJobEvent extends Base {
  kind: 'proc_mem_open';
  process: ProcessRef;
  /** Whose memory /proc/PID/mem exposes. */
  target: { pid: number };
  fd: number;
  /** The opener's own memory (/proc/self/mem). */
  self: boolean;
  writable: boolean;
}

export interface StdioDupJobEvent extends Base {
  kind: 'stdio_dup';
  process: ProcessRef;
  /** 0, 1 or 2: the descriptor that is now a socket. */
  fd: number;
  socket?: SocketRef;
}

export interface ShellOnIpcJobEvent extends Base {
  kind: 'shell_on_ipc';
  process: ProcessRef;
  /** held: stopped until the agent decides (run); audited: running. */
  action: 'held' | 'audited';
  stdio: { ipc: 'none' | 'pipe' | 'unix'; peerInode: number }[];
}

export type SensorJobEvent = ForkJobEvent | ExitJobEvent | ConnectJobEvent | PtraceJobEvent | ProcessVmJobEvent | ProcMemOpenJobEvent | StdioDupJobEvent | ShellOnIpcJobEvent;

export type JobEvent = ProcessJobEvent | DnsJobEvent | NetworkJobEvent | DetectionJobEvent | JobPhaseEvent | SensorJobEvent;

/** The kinds docs/events.md documents, and no other. */
export const JOB_EVENT_KINDS: readonly JobEvent['kind'][] = ['job', 'process', 'dns', 'network', 'detection', 'fork', 'exit', 'connect', 'ptrace', 'process_vm', 'proc_mem_open', 'stdio_dup', 'shell_on_ipc'];

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

const SOCKET_TYPES: Record<number, string> = { 1: 'stream', 2: 'dgram', 3: 'raw', 5: 'seqpacket' };

function socketRef(family: string, socketType: number, protocol: number, ip: string, port: number): SocketRef {
  const type = SOCKET_TYPES[socketType] ?? `type-${socketType}`;
  if (family !== 'inet' && family !== 'inet6') return { family, socketType: type };
  // protocol 0 is the family's default for the type
  const name = protocol !== 0 ? protocolName(protocol) : socketType === 1 ? 'tcp' : socketType === 2 ? 'udp' : 'ip';
  return { family, socketType: type, ip, port, protocol: name };
}

function fdSocket(info: FdInfo): SocketRef | undefined {
  return info.kind === 'socket' ? socketRef(info.peer.family, info.socketType, info.protocol, info.peer.address, info.peer.port) : undefined;
}

const SIGNAL_NAMES = new Map(Object.entries(os.constants.signals).map(([name, number]) => [number as number, name]));

export function signalName(signal: number): string {
  return SIGNAL_NAMES.get(signal) ?? `SIG${signal}`;
}

const isoTime = (timeMs: number) => new Date(timeMs).toISOString();

export function processRef(tree: ProcessTree, pid: number): ProcessRef | undefined {
  const info = tree.get(pid);
  if (!info) return undefined;
  return { pid, ppid: info.ppid, exe: info.exe, argv: info.argv, uid: info.uid, ancestry: tree.ancestry(pid) };
}

/** A process the tree does not know (gone before it could be read): what the record itself says. */
function recordedProcess(tree: ProcessTree, event: SensorEvent): ProcessRef {
  return processRef(tree, event.tgid) ?? { pid: event.tgid, ppid: event.ppid, exe: event.comm, argv: [], uid: event.uid, ancestry: [] };
}

export function processEvent(job: string, tree: ProcessTree, exec: ExecEvent): ProcessJobEvent {
  const c = exec.container;
  const inContainer = c.pidnsLevel > 0 && c.mntnsNotInit;
  return {
    kind: 'process',
    time: isoTime(exec.timeMs),
    job,
    process: processRef(tree, exec.tgid) ?? { pid: exec.tgid, ppid: exec.ppid, exe: exec.filename, argv: exec.argv, uid: exec.uid, ancestry: [exec.filename] },
    container: { inContainer, privileged: inContainer && c.usernsInit && (c.capEffective & CAP_SYS_ADMIN) !== 0n },
  };
}

export function networkEvent(job: string, policy: PolicyRef, tree: ProcessTree, egress: EgressEvent, domain: string | undefined): NetworkJobEvent {
  return {
    kind: 'network',
    time: isoTime(egress.timeMs),
    job,
    process: egress.tgid ? processRef(tree, egress.tgid) : undefined,
    protocol: protocolName(egress.protocol),
    ip: egress.address,
    port: egress.port,
    domain,
    verdict: egress.verdict,
    policy: policy.name,
    policyVersion: policy.version,
    count: egress.count,
  };
}

/** What the DNS proxy answered (src/dns/proxy.ts DnsQueryRecord), and who asked when that could be told. */
export interface DnsAnswered {
  name: string;
  type: string;
  verdict: Verdict;
  answers: string[];
  rcode: string;
  transport: 'udp' | 'tcp';
  ttl?: number;
  error?: string;
}

export function dnsEvent(job: string, policy: PolicyRef, query: DnsAnswered, time: Date, process?: ProcessRef): DnsJobEvent {
  return {
    kind: 'dns',
    time: time.toISOString(),
    job,
    process,
    name: query.name,
    type: query.type,
    answers: query.answers,
    verdict: query.verdict,
    policy: policy.name,
    policyVersion: policy.version,
    rcode: query.rcode,
    transport: query.transport,
    ttl: query.ttl,
    error: query.error,
  };
}

export function detectionEvent(job: string, policy: string | null, tree: ProcessTree, detection: DetectionEvent): DetectionJobEvent {
  let target: DetectionTarget;
  if (detection.detection === 'Runner-Worker-Memory-Read' || detection.detection === 'Agent-Tamper') {
    const info = tree.get(detection.targetTgid) ?? readProcFs(detection.targetTgid);
    target = { pid: detection.targetTgid, exe: info?.exe, argv: info?.argv };
    if (detection.detection === 'Agent-Tamper') {
      target.refused = detection.refused;
      if (detection.hook === 'signal') target.signal = detection.ptraceRequest;
      else if (detection.hook === 'ptrace') target.ptraceRequest = detection.ptraceRequest;
      else if (detection.hook === 'seccomp') target.syscall = sealedSyscallName(detection.ptraceRequest);
    }
  } else if (detection.detection === 'Reverse-Shell') {
    target = { ip: detection.peer.address, port: detection.peer.port, fd: detection.fd };
  } else if (detection.detection === 'Cgroup-Escape') {
    target = { cgroupId: detection.targetCgroupId };
  } else {
    target = { capabilities: `0x${detection.capEffective.toString(16)}`, pidnsLevel: detection.pidnsLevel };
  }
  return {
    kind: 'detection',
    time: isoTime(detection.timeMs),
    job,
    process: recordedProcess(tree, detection),
    detection: detection.detection,
    action: detection.action,
    via: detection.hook,
    target,
    policy,
  };
}

/** Reverse-Shell through a relay: the shell on IPC whose other end is `relay`, with its remote peer. */
export function relayDetectionEvent(job: string, policy: string | null, tree: ProcessTree, shell: ShellOnIpcEvent, relay: Relay): DetectionJobEvent {
  return {
    kind: 'detection',
    time: isoTime(shell.timeMs),
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

export function jobStartedEvent(job: string, time: string, command: string[], policy: PolicyRef, mode?: 'audit' | 'block'): JobPhaseEvent {
  return { kind: 'job', time, job, phase: 'started', command, policy: policy.name, policyVersion: policy.version, mode };
}

export interface JobEnd {
  status: { exitCode: number | null; signal: string | null };
  killedBy?: string;
  counts?: JobCounts;
  dropped: number;
  exitStatus?: number;
  reason?: string;
  lost: number;
}

export function jobCompletedEvent(job: string, time: string, end: JobEnd): JobPhaseEvent {
  return { kind: 'job', time, job, phase: 'completed', ...end };
}

/**
 * Any sensor record as the job event `trace` writes: exec is `process`,
 * egress `network`, a detection `detection`, as `run` writes them; the
 * rest are the sensor's own kinds.
 */
export function sensorJobEvent(job: string, policy: PolicyRef, tree: ProcessTree, event: SensorEvent): JobEvent {
  const base = { time: isoTime(event.timeMs), job };
  switch (event.type) {
    case 'exec':
      return processEvent(job, tree, event);
    case 'egress':
      return networkEvent(job, policy, tree, event, undefined);
    case 'detection':
      return detectionEvent(job, policy.name, tree, event);
    case 'fork':
      return { kind: 'fork', ...base, process: recordedProcess(tree, event), child: { pid: event.childTgid } };
    case 'exit':
      return { kind: 'exit', ...base, process: recordedProcess(tree, event), exitCode: event.exitCode, signal: event.signal === null ? null : signalName(event.signal) };
    case 'connect':
      return { kind: 'connect', ...base, process: recordedProcess(tree, event), fd: event.fd, socket: socketRef(event.family, event.socketType, event.protocol, event.address, event.port), errno: event.errno };
    case 'ptrace':
      return { kind: 'ptrace', ...base, process: recordedProcess(tree, event), request: event.requestName, target: { pid: event.targetPid } };
    case 'vm_access':
      return { kind: 'process_vm', ...base, process: recordedProcess(tree, event), operation: event.write ? 'write' : 'read', target: { pid: event.targetPid } };
    case 'proc_mem_open':
      return { kind: 'proc_mem_open', ...base, process: recordedProcess(tree, event), target: { pid: event.targetTgid }, fd: event.fd, self: event.self, writable: event.writable };
    case 'stdio_dup':
      return { kind: 'stdio_dup', ...base, process: recordedProcess(tree, event), fd: event.fd, socket: fdSocket(event.socket) };
    case 'shell_on_ipc':
      return { kind: 'shell_on_ipc', ...base, process: recordedProcess(tree, event), action: event.action, stdio: event.stdio.map((s) => ({ ipc: s.ipc, peerInode: s.peerInode })) };
  }
}

/** One agent process: its id, and the sequence its events are numbered in. */
export class EventAgent {
  private last = 0;
  constructor(readonly id: string = randomUUID()) {}

  next(): number {
    return ++this.last;
  }
}

/** This process, as the agent that writes every job's events (until the daemon gives it a lasting id). */
export const THIS_AGENT = new EventAgent();

/**
 * Writes JSON lines to an output (or nowhere), in order, each with the
 * envelope: kind, time, job, the job's identity, agentId, sequence. A line
 * that cannot be written is counted, never thrown: losing the record must
 * not end the job's enforcement.
 */
export class JobEventWriter {
  private ended = false;

  constructor(
    private readonly out: OutputFile | undefined,
    private readonly envelope: { identity?: JobIdentity; agent?: EventAgent } = {},
  ) {}

  /** The event as written (undefined without an output, or after close: a DNS answer of a job already ended). */
  write(event: JobEvent): Written | undefined {
    if (!this.out || this.ended) return undefined;
    const agent = this.envelope.agent ?? THIS_AGENT;
    // kind, time and job lead the line; the event's own fields keep these keys' places
    const lead = { kind: event.kind, time: event.time, job: event.job };
    const written = Object.assign(lead, this.envelope.identity, { agentId: agent.id, sequence: agent.next() }, event) as Written;
    this.out.write(JSON.stringify(written) + '\n');
    return written;
  }

  /** Events that could not be written. */
  get lost(): number {
    return this.out?.lost ?? 0;
  }

  /** Why the first one was lost. */
  get error(): string | undefined {
    return this.out?.firstError;
  }

  /** Closed: the job's `completed` event is written; what comes later is neither written nor counted. */
  get closed(): boolean {
    return this.ended;
  }

  close(): void {
    this.ended = true;
    this.out?.close();
  }
}
