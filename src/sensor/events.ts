/** Typed sensor events: what the kernel probes report, decoded. */

export type ProbeName =
  | 'exec'
  | 'fork'
  | 'exit'
  | 'connect'
  | 'ptrace'
  | 'vm_access'
  | 'proc_mem_open'
  | 'stdio_dup'
  | 'egress'
  | 'detection'
  | 'agent';

export interface EventBase {
  /** Nanoseconds since boot (CLOCK_BOOTTIME) when the probe ran (exact for 104 days of uptime). */
  ktimeNs: number;
  /** Wall-clock milliseconds since the epoch, derived from ktimeNs. */
  timeMs: number;
  /** cgroup v2 id of the task, and of the tracked (job) cgroup it is in or below. */
  cgroupId: number;
  jobCgroupId: number;
  /** Thread id and process id in the initial pid namespace; ppid is the real parent's tgid. */
  pid: number;
  tgid: number;
  ppid: number;
  uid: number;
  comm: string;
}

export type AddressFamily = 'inet' | 'inet6' | 'unix' | `af${number}`;

export interface SocketPeer {
  family: AddressFamily;
  /** Textual IPv4/IPv6 address ('' for non-inet families). */
  address: string;
  port: number;
}

export type FdInfo =
  | { kind: 'none' }
  | { kind: 'other' }
  | { kind: 'socket'; socketType: number; protocol: number; peer: SocketPeer };

export interface ContainerFacts {
  /** Depth of the pid namespace: 0 is the initial one. */
  pidnsLevel: number;
  mntnsInum: number;
  /** The mount namespace differs from PID 1's. */
  mntnsNotInit: boolean;
  usernsInum: number;
  /** The credentials belong to the initial user namespace (capabilities are real). */
  usernsInit: boolean;
  seccompMode: number;
  capEffective: bigint;
  capPermitted: bigint;
}

export interface ExecEvent extends EventBase {
  type: 'exec';
  filename: string;
  filenameTruncated: boolean;
  argv: string[];
  argc: number;
  argsTruncated: boolean;
  container: ContainerFacts;
  stdio: [FdInfo, FdInfo, FdInfo];
}

export interface ForkEvent extends EventBase {
  type: 'fork';
  childPid: number;
  childTgid: number;
}

export interface ExitEvent extends EventBase {
  type: 'exit';
  /** wait(2) status as the kernel keeps it. */
  status: number;
  /** Exit code when the process exited, else null. */
  exitCode: number | null;
  /** Terminating signal number when it was killed, else null. */
  signal: number | null;
}

export interface ConnectEvent extends EventBase {
  type: 'connect';
  fd: number;
  /** 0 on success, else the positive errno (EINPROGRESS for non-blocking). */
  errno: number;
  family: AddressFamily;
  address: string;
  port: number;
  socketType: number;
  protocol: number;
}

export interface PtraceEvent extends EventBase {
  type: 'ptrace';
  request: number;
  requestName: string;
  /** As the caller named it, in its pid namespace. */
  targetPid: number;
}

export interface VmAccessEvent extends EventBase {
  type: 'vm_access';
  write: boolean;
  targetPid: number;
}

export interface ProcMemOpenEvent extends EventBase {
  type: 'proc_mem_open';
  /** The process whose memory the file exposes (initial pid namespace). */
  targetTgid: number;
  fd: number;
  /** The file is the opener's own memory (e.g. /proc/self/mem). */
  self: boolean;
  writable: boolean;
}

export interface StdioDupEvent extends EventBase {
  type: 'stdio_dup';
  /** 0, 1 or 2: the descriptor that is now a socket. */
  fd: number;
  socket: FdInfo;
}

export type EgressVerdict = 'allowed' | 'blocked' | 'audited';

/** An egress attempt judged by the job's policy in the kernel. */
export interface EgressEvent extends EventBase {
  type: 'egress';
  /** connect(2); sendto/sendmsg with an address; a packet no socket hook saw (ICMP, raw). */
  hook: 'connect' | 'sendmsg' | 'packet';
  verdict: EgressVerdict;
  socketType: number;
  protocol: number;
  policyId: number;
  /** Attempts this record stands for (repeats of a datagram flow within 1 s are folded). */
  count: number;
  family: AddressFamily;
  address: string;
  port: number;
}

/** The policy's detections, and Cgroup-Escape (leaving the job's cgroup), which lockdown or block mode kills. */
export type DetectionName = 'Reverse-Shell' | 'Runner-Worker-Memory-Read' | 'Privileged-Container' | 'Cgroup-Escape' | 'Agent-Tamper';

/**
 * Not a detection yet: a shell reading commands from a pipe or socketpair
 * while its output goes to one. The agent decides (src/jobs/relay.ts).
 */
export interface ShellOnIpcEvent extends EventBase {
  type: 'shell_on_ipc';
  /** held: stopped (SIGSTOP) until the agent resumes or kills it; audited: running. */
  action: 'held' | 'audited';
  /** For fd 0-2: what it is, and the inode naming its other end in /proc/PID/fd links. */
  stdio: { ipc: 'none' | 'pipe' | 'unix'; peerInode: number }[];
}

/** A lockdown detection, judged (and answered, if `killed`) in the kernel. */
export interface DetectionEvent extends EventBase {
  type: 'detection';
  detection: DetectionName;
  /** killed: SIGKILL in the offending syscall; audited: recorded only. */
  action: 'killed' | 'audited';
  /** The act was refused (the job's seccomp filter): it never took effect. */
  refused: boolean;
  /** What gave the offender away. */
  hook: 'dup' | 'exec' | 'proc_mem_open' | 'process_vm' | 'ptrace' | 'cgroup_open' | 'clone_into' | 'signal' | 'seccomp';
  /** Cgroup escape: the cgroup it tried to reach. */
  targetCgroupId: number;
  /** Memory read: the protected process (initial pid namespace); Agent-Tamper: the agent. */
  targetTgid: number;
  /** The ptrace request; for hook 'signal' (Agent-Tamper) the signal number, for 'seccomp' the refused syscall's. */
  ptraceRequest: number;
  /** Reverse shell: the descriptor and its remote end. */
  fd: number;
  peer: SocketPeer;
  /** Privileged container: its capabilities and pid-namespace depth. */
  capEffective: bigint;
  pidnsLevel: number;
}

export type SensorEvent =
  | ExecEvent
  | ForkEvent
  | ExitEvent
  | ConnectEvent
  | PtraceEvent
  | VmAccessEvent
  | ProcMemOpenEvent
  | StdioDupEvent
  | EgressEvent
  | DetectionEvent
  | ShellOnIpcEvent;

export type SensorEventType = SensorEvent['type'];
