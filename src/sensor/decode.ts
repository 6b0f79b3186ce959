/**
 * Decodes the batches the native reader hands over (one Buffer, many records)
 * into typed events, with DataView reads at the offsets of layout.ts.
 */
import { ARGS_MAX, DetectionAction, DetectionFlags, DetectionId, SHELL_ON_IPC, DetectionHookNames, EgressHook, EventType, Verdict, ExecFlags, FdKind, FILENAME_MAX, LAYOUT, ProcMemFlags, RECORD_ALIGN, VmAccessFlags } from '../abi/layout';
import { formatIp } from '../net/address';
import type { AddressFamily, DetectionEvent, DetectionName, EgressEvent, EgressVerdict, EventBase, FdInfo, SensorEvent, ShellOnIpcEvent, SocketPeer } from './events';

const H = LAYOUT.rf_event_header.fields;
const HEADER_SIZE = LAYOUT.rf_event_header.size;
const EXEC = LAYOUT.rf_exec_event.fields;
const FORK = LAYOUT.rf_fork_event.fields;
const EXIT = LAYOUT.rf_exit_event.fields;
const CONNECT = LAYOUT.rf_connect_event.fields;
const PTRACE = LAYOUT.rf_ptrace_event.fields;
const VM = LAYOUT.rf_vm_access_event.fields;
const MEM = LAYOUT.rf_proc_mem_event.fields;
const DUP = LAYOUT.rf_stdio_dup_event.fields;
const EGRESS = LAYOUT.rf_egress_event.fields;
const DETECTION = LAYOUT.rf_detection_event.fields;
/** The bytes a record of each type has at least: the struct, but an exec's arguments end after args_len. */
const MIN_SIZE: Record<number, number> = {
  [EventType.EXEC]: EXEC.args.offset,
  [EventType.FORK]: LAYOUT.rf_fork_event.size,
  [EventType.EXIT]: LAYOUT.rf_exit_event.size,
  [EventType.CONNECT]: LAYOUT.rf_connect_event.size,
  [EventType.PTRACE]: LAYOUT.rf_ptrace_event.size,
  [EventType.VM_ACCESS]: LAYOUT.rf_vm_access_event.size,
  [EventType.PROC_MEM_OPEN]: LAYOUT.rf_proc_mem_event.size,
  [EventType.STDIO_DUP]: LAYOUT.rf_stdio_dup_event.size,
  [EventType.EGRESS]: LAYOUT.rf_egress_event.size,
  [EventType.DETECTION]: LAYOUT.rf_detection_event.size,
};

// The names of the enum values of bpf/events.h. A value not named here is
// not decoded at all (UnknownValue), never defaulted to a name.
const EVENT_TYPES = Object.fromEntries(Object.entries(EventType).map(([name, value]) => [value, name.toLowerCase()]));
const DETECTION_NAMES: Record<number, DetectionName> = {};
for (const [name, id] of Object.entries(DetectionId)) DETECTION_NAMES[id] = name as DetectionName;
const EGRESS_HOOKS: Record<number, EgressEvent['hook']> = { [EgressHook.CONNECT]: 'connect', [EgressHook.SENDMSG]: 'sendmsg', [EgressHook.PACKET]: 'packet' };
const VERDICTS: Record<number, EgressVerdict> = { [Verdict.ALLOWED]: 'allowed', [Verdict.BLOCKED]: 'blocked', [Verdict.AUDITED]: 'audited' };
/** A detection is killed or audited; only a shell on IPC is held (bpf/lib/lockdown.h). */
const DETECTION_ACTIONS: Record<number, DetectionEvent['action']> = { [DetectionAction.KILLED]: 'killed', [DetectionAction.AUDITED]: 'audited' };
const SHELL_ACTIONS: Record<number, ShellOnIpcEvent['action']> = { [DetectionAction.AUDITED]: 'audited', [DetectionAction.HELD]: 'held' };
const FD_KINDS: Record<number, FdInfo['kind']> = { [FdKind.NONE]: 'none', [FdKind.OTHER]: 'other', [FdKind.SOCKET]: 'socket' };
/** enum rf_stdio_ipc (no constants of its own in layout.ts) */
const IPC_KINDS: Record<number, ShellOnIpcEvent['stdio'][number]['ipc']> = { 0: 'none', 1: 'pipe', 2: 'unix' };
const FD = LAYOUT.rf_fd_info.fields;
const FD_SIZE = LAYOUT.rf_fd_info.size;
const SOCKADDR = LAYOUT.rf_sockaddr.fields;

const AF_UNIX = 1;
const AF_INET = 2;
const AF_INET6 = 10;

const PTRACE_REQUESTS: Record<number, string> = {
  0: 'PTRACE_TRACEME', 1: 'PTRACE_PEEKTEXT', 2: 'PTRACE_PEEKDATA', 3: 'PTRACE_PEEKUSER',
  4: 'PTRACE_POKETEXT', 5: 'PTRACE_POKEDATA', 6: 'PTRACE_POKEUSER', 7: 'PTRACE_CONT',
  8: 'PTRACE_KILL', 9: 'PTRACE_SINGLESTEP', 12: 'PTRACE_GETREGS', 13: 'PTRACE_SETREGS',
  16: 'PTRACE_ATTACH', 17: 'PTRACE_DETACH', 24: 'PTRACE_SYSCALL', 0x4200: 'PTRACE_SETOPTIONS',
  0x4201: 'PTRACE_GETEVENTMSG', 0x4202: 'PTRACE_GETSIGINFO', 0x4204: 'PTRACE_GETREGSET',
  0x4205: 'PTRACE_SETREGSET', 0x4206: 'PTRACE_SEIZE', 0x4207: 'PTRACE_INTERRUPT',
  0x4208: 'PTRACE_LISTEN',
};


export class DecodeError extends Error {}

/**
 * A type or enum value the decoder does not know: the kernel side and
 * bpf/events.h (or this decoder) disagree. The record is not decoded, not
 * guessed at: a default would turn it into a valid-looking event, e.g. an
 * egress attempt of an unknown verdict into an audited one.
 */
class UnknownValue extends DecodeError {}

function unknownValue(names: Readonly<Record<number, unknown>>, value: number, field: string, enumName: string): UnknownValue {
  const known = Object.entries(names).map(([known, name]) => `${known} ${name}`);
  return new UnknownValue(`${field} ${value} is unknown (${enumName}: ${known.join(', ')})`);
}

/** The name of an enum value; UnknownValue, naming the values known, for any other. */
function nameOf<T>(names: Readonly<Record<number, T>>, value: number, field: string, enumName: string): T {
  const name = names[value];
  if (name === undefined) throw unknownValue(names, value, field, enumName);
  return name;
}

export interface DecodedBatch {
  events: SensorEvent[];
  /**
   * Records not decoded because their type, or an enum value in them, is
   * not one this decoder knows (see UnknownValue). The batch's other records
   * are decoded.
   */
  unknown: number;
  /** The first of them, where it is and what was unknown: one line for an error. */
  firstUnknown: string | undefined;
}

// Stryker disable next-line StringLiteral: a module-level constant, built before this runner activates a mutant; TextDecoder('') throws at load, so no decode would run
const utf8 = new TextDecoder('utf-8');

/**
 * A NUL-terminated string of at most `max` bytes. ASCII (comm, almost every
 * path) is built directly: TextDecoder's per-call cost dominated decoding.
 */
function cString(bytes: Uint8Array, start: number, max: number): string {
  let end = start;
  const limit = start + max;
  // Stryker disable next-line BooleanLiteral: starting non-ASCII only sends every string through TextDecoder, which gives the same text (the fast path is speed, not behaviour)
  let ascii = true;
  while (end < limit && bytes[end] !== 0) {
    // Stryker disable next-line ConditionalExpression,EqualityOperator: TextDecoder gives the same text for 0x7f and for ASCII, so taking the slow path more often changes nothing
    if (bytes[end] > 0x7f) ascii = false;
    end++;
  }
  // Stryker disable next-line ConditionalExpression: TextDecoder decodes ASCII to the same text as the fast path
  if (!ascii) return utf8.decode(bytes.subarray(start, end));
  let text = '';
  for (let i = start; i < end; i++) text += String.fromCharCode(bytes[i]);
  return text;
}

export function familyName(family: number): AddressFamily {
  if (family === AF_INET) return 'inet';
  if (family === AF_INET6) return 'inet6';
  if (family === AF_UNIX) return 'unix';
  return `af${family}`;
}

/** Formats the 4 (IPv4) or 16 (IPv6) address bytes at `at`; '' for other families. */
export function formatAddress(family: number, bytes: Uint8Array, at: number): string {
  if (family === AF_INET) return formatIp({ family: 4, bytes: bytes.subarray(at, at + 4) });
  if (family === AF_INET6) return formatIp({ family: 6, bytes: bytes.subarray(at, at + 16) });
  return '';
}

function readPeer(view: DataView, bytes: Uint8Array, at: number): SocketPeer {
  // Stryker disable next-line ArithmeticOperator: SOCKADDR.family.offset is 0, so at - 0 is at + 0
  const family = view.getUint16(at + SOCKADDR.family.offset, true);
  return {
    family: familyName(family),
    address: formatAddress(family, bytes, at + SOCKADDR.addr.offset),
    port: view.getUint16(at + SOCKADDR.port.offset, true),
  };
}

/** `fd` names the descriptor in an unknown kind's error. */
function readFdInfo(view: DataView, bytes: Uint8Array, at: number, fd: string): FdInfo {
  // Stryker disable next-line ArithmeticOperator: FD.kind.offset is 0, so at - 0 is at + 0
  const kind = nameOf(FD_KINDS, view.getUint8(at + FD.kind.offset), `${fd} kind`, 'rf_fd_kind');
  if (kind !== 'socket') return { kind };
  return {
    kind: 'socket',
    socketType: view.getUint8(at + FD.sock_type.offset),
    protocol: view.getUint16(at + FD.protocol.offset, true),
    peer: readPeer(view, bytes, at + FD.peer.offset),
  };
}

function splitArgs(bytes: Uint8Array, start: number, length: number): string[] {
  const argv: string[] = [];
  let from = start;
  const end = start + length;
  for (let i = start; i < end; i++) {
    if (bytes[i] === 0) {
      argv.push(utf8.decode(bytes.subarray(from, i)));
      from = i + 1;
    }
  }
  if (from < end) argv.push(utf8.decode(bytes.subarray(from, end)));
  return argv;
}

/** An unsigned 64-bit field as a number (exact below 2^53: ids, nanoseconds since boot). */
function u64(view: DataView, at: number): number {
  return view.getUint32(at + 4, true) * 4294967296 + view.getUint32(at, true);
}

/**
 * The header fields, in an object that each record type then extends with
 * its own fields. Building it once and adding fields keeps one hidden class
 * per record type in V8; object spread made decoding several times slower.
 */
function readHeader(view: DataView, bytes: Uint8Array, at: number, clockOffsetMs: number): EventBase & { type: string } {
  const ktimeNs = u64(view, at + H.ktime_ns.offset);
  return {
    // Stryker disable next-line StringLiteral: every caller overwrites type with Object.assign
    type: '',
    ktimeNs,
    timeMs: clockOffsetMs + ktimeNs / 1e6,
    cgroupId: u64(view, at + H.cgroup_id.offset),
    jobCgroupId: u64(view, at + H.job_cgroup_id.offset),
    pid: view.getUint32(at + H.pid.offset, true),
    tgid: view.getUint32(at + H.tgid.offset, true),
    ppid: view.getUint32(at + H.ppid.offset, true),
    uid: view.getUint32(at + H.uid.offset, true),
    comm: cString(bytes, at + H.comm.offset, H.comm.size),
  };
}

/** One record, at least MIN_SIZE of its type, as its event; UnknownValue (see there). */
function decodeRecord(view: DataView, bytes: Uint8Array, at: number, type: number, size: number, clockOffsetMs: number): SensorEvent {
  const flags = view.getUint16(at + H.flags.offset, true);
  switch (type) {
    case EventType.EXEC: {
      const filenameLength = Math.min(view.getUint16(at + EXEC.filename_len.offset, true), FILENAME_MAX);
      const argsLength = Math.min(view.getUint16(at + EXEC.args_len.offset, true), ARGS_MAX, size - EXEC.args.offset);
      const stdioAt = at + EXEC.stdio.offset;
      return Object.assign(readHeader(view, bytes, at, clockOffsetMs), {
        type: 'exec' as const,
        filename: utf8.decode(bytes.subarray(at + EXEC.filename.offset, at + EXEC.filename.offset + filenameLength)),
        filenameTruncated: (flags & ExecFlags.FILENAME_TRUNCATED) !== 0,
        argv: splitArgs(bytes, at + EXEC.args.offset, argsLength),
        argc: view.getUint32(at + EXEC.argc.offset, true),
        argsTruncated: (flags & ExecFlags.ARGS_TRUNCATED) !== 0,
        container: {
          pidnsLevel: view.getUint32(at + EXEC.pidns_level.offset, true),
          mntnsInum: view.getUint32(at + EXEC.mntns_inum.offset, true),
          mntnsNotInit: (flags & ExecFlags.MNTNS_NOT_INIT) !== 0,
          usernsInum: view.getUint32(at + EXEC.userns_inum.offset, true),
          usernsInit: (flags & ExecFlags.USERNS_INIT) !== 0,
          seccompMode: view.getUint32(at + EXEC.seccomp_mode.offset, true),
          capEffective: view.getBigUint64(at + EXEC.cap_effective.offset, true),
          capPermitted: view.getBigUint64(at + EXEC.cap_permitted.offset, true),
        },
        stdio: [
          readFdInfo(view, bytes, stdioAt, 'fd 0'),
          readFdInfo(view, bytes, stdioAt + FD_SIZE, 'fd 1'),
          readFdInfo(view, bytes, stdioAt + 2 * FD_SIZE, 'fd 2'),
        ] as [FdInfo, FdInfo, FdInfo],
      });
    }
    case EventType.FORK:
      return Object.assign(readHeader(view, bytes, at, clockOffsetMs), {
        type: 'fork' as const,
        childPid: view.getUint32(at + FORK.child_pid.offset, true),
        childTgid: view.getUint32(at + FORK.child_tgid.offset, true),
      });
    case EventType.EXIT: {
      const status = view.getUint32(at + EXIT.exit_code.offset, true);
      const signal = status & 0x7f;
      return Object.assign(readHeader(view, bytes, at, clockOffsetMs), {
        type: 'exit' as const,
        status,
        exitCode: signal === 0 ? (status >> 8) & 0xff : null,
        signal: signal === 0 ? null : signal,
      });
    }
    case EventType.CONNECT: {
      const addrAt = at + CONNECT.addr.offset;
      // Stryker disable next-line ArithmeticOperator: SOCKADDR.family.offset is 0, so addrAt - 0 is addrAt + 0
      const family = view.getUint16(addrAt + SOCKADDR.family.offset, true);
      const ret = view.getInt32(at + CONNECT.ret.offset, true);
      return Object.assign(readHeader(view, bytes, at, clockOffsetMs), {
        type: 'connect' as const,
        fd: view.getInt32(at + CONNECT.fd.offset, true),
        errno: ret < 0 ? -ret : 0,
        family: familyName(family),
        address: formatAddress(family, bytes, addrAt + SOCKADDR.addr.offset),
        port: view.getUint16(addrAt + SOCKADDR.port.offset, true),
        socketType: view.getUint8(at + CONNECT.sock_type.offset),
        protocol: view.getUint16(at + CONNECT.protocol.offset, true),
      });
    }
    case EventType.PTRACE: {
      const request = Number(view.getBigInt64(at + PTRACE.request.offset, true));
      return Object.assign(readHeader(view, bytes, at, clockOffsetMs), {
        type: 'ptrace' as const,
        request,
        requestName: PTRACE_REQUESTS[request] ?? `PTRACE_${request}`,
        targetPid: view.getUint32(at + PTRACE.target_pid.offset, true),
      });
    }
    case EventType.VM_ACCESS:
      return Object.assign(readHeader(view, bytes, at, clockOffsetMs), {
        type: 'vm_access' as const,
        write: (flags & VmAccessFlags.WRITE) !== 0,
        targetPid: view.getUint32(at + VM.target_pid.offset, true),
      });
    case EventType.PROC_MEM_OPEN:
      return Object.assign(readHeader(view, bytes, at, clockOffsetMs), {
        type: 'proc_mem_open' as const,
        targetTgid: view.getUint32(at + MEM.target_tgid.offset, true),
        fd: view.getInt32(at + MEM.fd.offset, true),
        self: (flags & ProcMemFlags.SELF) !== 0,
        writable: (flags & ProcMemFlags.WRITABLE) !== 0,
      });
    case EventType.STDIO_DUP:
      return Object.assign(readHeader(view, bytes, at, clockOffsetMs), {
        type: 'stdio_dup' as const,
        fd: view.getInt32(at + DUP.fd.offset, true),
        socket: readFdInfo(view, bytes, at + DUP.info.offset, 'dup fd'),
      });
    case EventType.EGRESS: {
      const dstAt = at + EGRESS.dst.offset;
      // Stryker disable next-line ArithmeticOperator: SOCKADDR.family.offset is 0, so dstAt - 0 is dstAt + 0
      const family = view.getUint16(dstAt + SOCKADDR.family.offset, true);
      const hook = nameOf(EGRESS_HOOKS, view.getUint8(at + EGRESS.hook.offset), 'egress hook', 'rf_egress_hook');
      const verdict = nameOf(VERDICTS, view.getUint8(at + EGRESS.verdict.offset), 'egress verdict', 'rf_verdict');
      return Object.assign(readHeader(view, bytes, at, clockOffsetMs), {
        type: 'egress' as const,
        hook,
        verdict,
        socketType: view.getUint8(at + EGRESS.sock_type.offset),
        protocol: view.getUint8(at + EGRESS.protocol.offset),
        policyId: view.getUint32(at + EGRESS.policy_id.offset, true),
        count: view.getUint32(at + EGRESS.count.offset, true),
        family: familyName(family),
        address: formatAddress(family, bytes, dstAt + SOCKADDR.addr.offset),
        port: view.getUint16(dstAt + SOCKADDR.port.offset, true),
      });
    }
    case EventType.DETECTION: {
      const detectionId = view.getUint8(at + DETECTION.detection.offset);
      const action = view.getUint8(at + DETECTION.action.offset);
      if (detectionId === SHELL_ON_IPC) {
        return Object.assign(readHeader(view, bytes, at, clockOffsetMs), {
          type: 'shell_on_ipc' as const,
          action: nameOf(SHELL_ACTIONS, action, 'shell-on-IPC action', 'rf_detection_action'),
          stdio: [0, 1, 2].map((fd) => ({
            ipc: nameOf(IPC_KINDS, view.getUint8(at + DETECTION.stdio_ipc.offset + fd), `fd ${fd} IPC kind`, 'rf_stdio_ipc'),
            peerInode: u64(view, at + DETECTION.stdio_peer.offset + 8 * fd),
          })),
        });
      }
      return Object.assign(readHeader(view, bytes, at, clockOffsetMs), {
        type: 'detection' as const,
        detection: nameOf(DETECTION_NAMES, detectionId, 'detection', 'rf_detection'),
        action: nameOf(DETECTION_ACTIONS, action, 'detection action', 'rf_detection_action'),
        refused: (flags & DetectionFlags.REFUSED) !== 0,
        hook: nameOf(DetectionHookNames, view.getUint8(at + DETECTION.hook.offset), 'detection hook', 'rf_detection_hook'),
        targetTgid: view.getUint32(at + DETECTION.target_tgid.offset, true),
        ptraceRequest: Number(view.getBigInt64(at + DETECTION.ptrace_request.offset, true)),
        fd: view.getUint8(at + DETECTION.fd.offset),
        peer: readPeer(view, bytes, at + DETECTION.peer.offset),
        capEffective: view.getBigUint64(at + DETECTION.cap_effective.offset, true),
        targetCgroupId: u64(view, at + DETECTION.cap_effective.offset),
        pidnsLevel: view.getUint32(at + DETECTION.pidns_level.offset, true),
      });
    }
    default:
      throw unknownValue(EVENT_TYPES, type, 'type', 'rf_event_type');
  }
}

/**
 * Decodes `records` records from a batch. Throws DecodeError when the batch
 * is inconsistent (a record claims more bytes than the batch holds, or fewer
 * than its type has), which would mean the layouts disagree: never silently
 * skip. A record whose type or enum values are unknown is counted in
 * `unknown` instead, and the rest decoded. `clockOffsetMs` is wall-clock ms
 * at boot (CLOCK_REALTIME - CLOCK_BOOTTIME).
 */
export function decodeBatch(batch: Uint8Array, records: number, clockOffsetMs: number): DecodedBatch {
  const view = new DataView(batch.buffer, batch.byteOffset, batch.byteLength);
  const events: SensorEvent[] = [];
  let unknown = 0;
  let firstUnknown: string | undefined;
  let at = 0;
  for (let i = 0; i < records; i++) {
    if (at + HEADER_SIZE > batch.byteLength) {
      throw new DecodeError(`batch ends after ${i} of ${records} records`);
    }
    // Stryker disable next-line ArithmeticOperator: H.size.offset is 0, so at - 0 is at + 0
    const size = view.getUint32(at + H.size.offset, true);
    if (size < HEADER_SIZE || at + size > batch.byteLength) {
      throw new DecodeError(`record ${i} at offset ${at} has size ${size}, batch is ${batch.byteLength} bytes`);
    }
    const type = view.getUint16(at + H.type.offset, true);
    const expected = MIN_SIZE[type] ?? HEADER_SIZE;
    if (size < expected) throw new DecodeError(`record ${i} at offset ${at} (${EVENT_TYPES[type]}) is ${size} bytes, expected ${expected}`);
    try {
      events.push(decodeRecord(view, batch, at, type, size, clockOffsetMs));
    } catch (error) {
      // Stryker disable next-line ConditionalExpression: decodeRecord throws nothing else (sizes are checked above); this passes on a bug in it
      if (!(error instanceof UnknownValue)) throw error;
      unknown++;
      firstUnknown ??= `record ${i} at offset ${at}: ${error.message}`;
    }
    at += Math.ceil(size / RECORD_ALIGN) * RECORD_ALIGN;
  }
  return { events, unknown, firstUnknown };
}


const FLOW_KEY = LAYOUT.rf_flow_key.fields;
const FLOW_STATE = LAYOUT.rf_flow_state.fields;

/**
 * An egress_flows entry whose folded repeats no record carries yet, as the
 * egress event the next record of that flow would have been (no process: the
 * repeats may come from several). Null when nothing is folded; DecodeError
 * for a hook or verdict the decoder does not know (see UnknownValue).
 */
export function decodeFoldedFlow(key: Buffer, value: Buffer, clockOffsetMs: number, nowBootNs: number): EgressEvent | null {
  const keyView = new DataView(key.buffer, key.byteOffset, key.byteLength);
  const valueView = new DataView(value.buffer, value.byteOffset, value.byteLength);
  const folded = valueView.getUint32(FLOW_STATE.folded.offset, true);
  if (folded === 0) return null;
  const policyId = keyView.getUint32(FLOW_KEY.policy_id.offset, true);
  let hook: EgressEvent['hook'];
  let verdict: EgressVerdict;
  try {
    hook = nameOf(EGRESS_HOOKS, keyView.getUint8(FLOW_KEY.hook.offset), 'hook', 'rf_egress_hook');
    verdict = nameOf(VERDICTS, keyView.getUint8(FLOW_KEY.verdict.offset), 'verdict', 'rf_verdict');
  } catch (error) {
    throw new DecodeError(`egress_flows entry of policy ${policyId}: ${(error as Error).message}`);
  }
  const peer = readPeer(keyView, key, FLOW_KEY.dst.offset);
  return {
    type: 'egress',
    ktimeNs: nowBootNs,
    timeMs: nowBootNs / 1e6 + clockOffsetMs,
    cgroupId: 0,
    jobCgroupId: 0,
    pid: 0,
    tgid: 0,
    ppid: 0,
    uid: 0,
    comm: '',
    hook,
    verdict,
    socketType: 0,
    protocol: keyView.getUint8(FLOW_KEY.protocol.offset),
    policyId,
    count: folded,
    family: peer.family,
    address: peer.address,
    port: peer.port,
  };
}

/** The policy id of an egress_flows key. */
export function flowPolicyId(key: Buffer): number {
  return key.readUInt32LE(FLOW_KEY.policy_id.offset);
}
