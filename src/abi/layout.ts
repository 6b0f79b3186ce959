/**
 * The ring-buffer record layouts of bpf/events.h, for the decoder.
 *
 * Hand-written so that reading a record costs nothing but DataView reads;
 * test/unit/layout.test.ts checks every offset and size here against the BTF
 * of the compiled BPF object, so a change to events.h that is not mirrored
 * here fails the suite.
 */

export interface FieldLayout {
  offset: number;
  size: number;
}

export interface StructLayout {
  size: number;
  fields: Record<string, FieldLayout>;
}

const f = (offset: number, size: number): FieldLayout => ({ offset, size });

export const LAYOUT_VERSION = 1;
export const COMM_LEN = 16;
export const FILENAME_MAX = 256;
export const ARGS_MAX = 1024;
export const RECORD_ALIGN = 8;

export const LAYOUT = {
  rf_event_header: {
    size: 64,
    fields: {
      size: f(0, 4),
      type: f(4, 2),
      flags: f(6, 2),
      ktime_ns: f(8, 8),
      cgroup_id: f(16, 8),
      job_cgroup_id: f(24, 8),
      pid: f(32, 4),
      tgid: f(36, 4),
      ppid: f(40, 4),
      uid: f(44, 4),
      comm: f(48, COMM_LEN),
    },
  },
  rf_sockaddr: {
    size: 20,
    fields: { family: f(0, 2), port: f(2, 2), addr: f(4, 16) },
  },
  rf_fd_info: {
    size: 28,
    fields: { kind: f(0, 1), sock_type: f(1, 1), protocol: f(2, 2), _pad: f(4, 4), peer: f(8, 20) },
  },
  rf_exec_event: {
    size: 1472,
    fields: {
      hdr: f(0, 64),
      cap_effective: f(64, 8),
      cap_permitted: f(72, 8),
      pidns_level: f(80, 4),
      seccomp_mode: f(84, 4),
      mntns_inum: f(88, 4),
      userns_inum: f(92, 4),
      argc: f(96, 4),
      filename_len: f(100, 2),
      args_len: f(102, 2),
      stdio: f(104, 3 * 28),
      filename: f(188, FILENAME_MAX),
      args: f(444, ARGS_MAX),
    },
  },
  rf_fork_event: {
    size: 72,
    fields: { hdr: f(0, 64), child_pid: f(64, 4), child_tgid: f(68, 4) },
  },
  rf_exit_event: {
    size: 72,
    fields: { hdr: f(0, 64), exit_code: f(64, 4), _pad: f(68, 4) },
  },
  rf_connect_event: {
    size: 104,
    fields: {
      hdr: f(0, 64),
      fd: f(64, 4),
      ret: f(68, 4),
      sock_type: f(72, 1),
      _pad: f(73, 1),
      protocol: f(74, 2),
      _pad2: f(76, 4),
      addr: f(80, 20),
      _pad3: f(100, 4),
    },
  },
  rf_ptrace_event: {
    size: 80,
    fields: { hdr: f(0, 64), request: f(64, 8), target_pid: f(72, 4), _pad: f(76, 4) },
  },
  rf_vm_access_event: {
    size: 72,
    fields: { hdr: f(0, 64), target_pid: f(64, 4), _pad: f(68, 4) },
  },
  rf_proc_mem_event: {
    size: 72,
    fields: { hdr: f(0, 64), target_tgid: f(64, 4), fd: f(68, 4) },
  },
  rf_stdio_dup_event: {
    size: 104,
    fields: { hdr: f(0, 64), fd: f(64, 4), _pad: f(68, 4), info: f(72, 28) },
  },
  rf_egress_event: {
    size: 96,
    fields: {
      hdr: f(0, 64),
      hook: f(64, 1),
      verdict: f(65, 1),
      sock_type: f(66, 1),
      protocol: f(67, 1),
      policy_id: f(68, 4),
      count: f(72, 4),
      dst: f(76, 20),
    },
  },
  rf_job_policy: {
    size: 28,
    fields: { policy_id: f(0, 4), block: f(4, 1), _pad: f(5, 1), dns_port: f(6, 2), dns_ip4: f(8, 4), dns_ip6: f(12, 16) },
  },
  rf_allow4_key: {
    size: 16,
    fields: { prefixlen: f(0, 4), policy_id: f(4, 4), port: f(8, 2), addr: f(10, 4), _pad: f(14, 2) },
  },
  rf_allow6_key: {
    size: 28,
    fields: { prefixlen: f(0, 4), policy_id: f(4, 4), port: f(8, 2), addr: f(10, 16), _pad: f(26, 2) },
  },
  rf_detection_event: {
    size: 144,
    fields: {
      hdr: f(0, 64),
      detection: f(64, 1),
      action: f(65, 1),
      hook: f(66, 1),
      fd: f(67, 1),
      target_tgid: f(68, 4),
      ptrace_request: f(72, 8),
      cap_effective: f(80, 8),
      pidns_level: f(88, 4),
      _pad: f(92, 4),
      peer: f(96, 20),
      stdio_ipc: f(116, 3),
      _pad2: f(119, 1),
      stdio_peer: f(120, 24),
    },
  },
  rf_job_lockdown: {
    size: 8,
    fields: { kill_mask: f(0, 4), loopback_remote: f(4, 1), _pad: f(5, 3) },
  },
  rf_flow_key: {
    size: 28,
    fields: { policy_id: f(0, 4), hook: f(4, 1), verdict: f(5, 1), protocol: f(6, 1), _pad: f(7, 1), dst: f(8, 20) },
  },
  rf_flow_state: {
    size: 16,
    fields: { last_ns: f(0, 8), folded: f(8, 4), _pad: f(12, 4) },
  },
  rf_counter: {
    size: 32,
    fields: { hits: f(0, 8), seen: f(8, 8), emitted: f(16, 8), dropped: f(24, 8) },
  },
} satisfies Record<string, StructLayout>;

/** enum rf_event_type */
export const EventType = {
  EXEC: 1,
  FORK: 2,
  EXIT: 3,
  CONNECT: 4,
  PTRACE: 5,
  VM_ACCESS: 6,
  PROC_MEM_OPEN: 7,
  STDIO_DUP: 8,
  EGRESS: 9,
  DETECTION: 10,
} as const;

/** enum rf_detection, by the names policies use. */
export const DetectionId = {
  'Reverse-Shell': 1,
  'Runner-Worker-Memory-Read': 2,
  'Privileged-Container': 3,
  'Cgroup-Escape': 5,
  'Agent-Tamper': 6,
} as const;
/** RF_DETECT_SHELL_ON_IPC: not a detection of its own but a shell held for the agent's verdict. */
export const SHELL_ON_IPC = 4;
/** enum rf_detection_action */
export const DetectionAction = { KILLED: 1, AUDITED: 2, HELD: 3 } as const;
/** enum rf_detection_hook */
export const DetectionHookNames: Record<number, 'dup' | 'exec' | 'proc_mem_open' | 'process_vm' | 'ptrace' | 'cgroup_open' | 'clone_into' | 'signal' | 'seccomp'> = {
  1: 'dup',
  2: 'exec',
  3: 'proc_mem_open',
  4: 'process_vm',
  5: 'ptrace',
  6: 'cgroup_open',
  7: 'clone_into',
  8: 'signal',
  9: 'seccomp',
};
/**
 * The syscalls the job's seccomp seal kills for (native/seal.c), by number
 * on each ABI, as a seccomp Agent-Tamper record names them (bpf/agent.bpf.c:
 * RF_SECCOMP_I386 marks the i386 ABI, X32_SYSCALL_BIT the x32 one).
 */
export const SEALED_SYSCALLS = {
  x86_64: { 62: 'kill', 200: 'tkill', 234: 'tgkill', 129: 'rt_sigqueueinfo', 297: 'rt_tgsigqueueinfo', 101: 'ptrace', 310: 'process_vm_readv', 311: 'process_vm_writev', 434: 'pidfd_open', 302: 'prlimit64', 141: 'setpriority', 251: 'ioprio_set', 144: 'sched_setscheduler', 142: 'sched_setparam', 203: 'sched_setaffinity', 314: 'sched_setattr' },
  i386: { 37: 'kill', 238: 'tkill', 270: 'tgkill', 178: 'rt_sigqueueinfo', 335: 'rt_tgsigqueueinfo', 26: 'ptrace', 347: 'process_vm_readv', 348: 'process_vm_writev', 434: 'pidfd_open', 340: 'prlimit64', 97: 'setpriority', 289: 'ioprio_set', 156: 'sched_setscheduler', 154: 'sched_setparam', 241: 'sched_setaffinity', 351: 'sched_setattr' },
  /** x32's own numbers; its others are x86_64's with X32_SYSCALL_BIT */
  x32: { 521: 'ptrace', 524: 'rt_sigqueueinfo', 536: 'rt_tgsigqueueinfo', 539: 'process_vm_readv', 540: 'process_vm_writev' },
} as const;
export const SECCOMP_I386 = 2 ** 32;
export const X32_SYSCALL_BIT = 0x4000_0000;

/** A seccomp record's syscall, named with its ABI when that is not x86_64's: `kill`, `kill (i386)`; its number when unknown. */
export function sealedSyscallName(detail: number): string {
  const table = (abi: keyof typeof SEALED_SYSCALLS, nr: number) => (SEALED_SYSCALLS[abi] as Record<number, string>)[nr];
  if (detail >= SECCOMP_I386) {
    const nr = detail - SECCOMP_I386;
    return table('i386', nr) ? `${table('i386', nr)} (i386)` : `syscall ${nr} (i386)`;
  }
  if (detail & X32_SYSCALL_BIT) {
    const nr = detail - X32_SYSCALL_BIT;
    const name = table('x32', nr) ?? table('x86_64', nr);
    return name ? `${name} (x32)` : `syscall ${nr} (x32)`;
  }
  return table('x86_64', detail) ?? `syscall ${detail}`;
}

/** enum rf_detection_flags (a detection's header flags) */
export const DetectionFlags = { REFUSED: 1 << 0 } as const;
/** enum rf_agent_gone */
export const AgentGone = { EXITED: 1 << 0, TAMPERED: 1 << 1, STALLED: 1 << 2 } as const;

/** enum rf_egress_hook */
export const EgressHook = { CONNECT: 1, SENDMSG: 2, PACKET: 3 } as const;
/** enum rf_verdict */
export const Verdict = { ALLOWED: 1, BLOCKED: 2, AUDITED: 3 } as const;
/** enum rf_allow_source */
export const AllowSource = { POLICY: 1, DNS: 2, SERVICE: 3 } as const;
/** Bits of an allow key before the address: policy id and port. */
export const ALLOW_FIXED_BITS = 48;

/** enum rf_fd_kind */
export const FdKind = { NONE: 0, OTHER: 1, SOCKET: 2 } as const;

export const ExecFlags = {
  ARGS_TRUNCATED: 1 << 0,
  FILENAME_TRUNCATED: 1 << 1,
  MNTNS_NOT_INIT: 1 << 2,
  USERNS_INIT: 1 << 3,
} as const;

export const VmAccessFlags = { WRITE: 1 << 0 } as const;
export const ProcMemFlags = { SELF: 1 << 0, WRITABLE: 1 << 1 } as const;
