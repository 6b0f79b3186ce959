/**
 * The process and socket records (fork, exit, connect, ptrace, vm_access,
 * proc_mem_open, stdio_dup) decoded field by field: each built from scratch
 * per case at the offsets of src/abi/layout.ts, with a distinct value in
 * each field and flag bits set one at a time. Enum and flag values are the
 * literals of bpf/events.h and Linux's uapi.
 */
import { describe, expect, it } from 'vitest';
import { decodeBatch } from '../../src/sensor/decode';
import { EventType, LAYOUT } from '../../src/abi/layout';

const H = LAYOUT.rf_event_header.fields;
const S = LAYOUT.rf_sockaddr.fields;
const F = LAYOUT.rf_fd_info.fields;

const HEADER = { ktimeNs: 7_000_000, timeMs: 2_007, cgroupId: 2 ** 41 + 5, jobCgroupId: 2 ** 41 + 4, pid: 311, tgid: 310, ppid: 300, uid: 1001, comm: 'node' };

function record(type: number, size: number, flags: number, fill: (view: DataView, bytes: Uint8Array) => void): Uint8Array {
  const bytes = new Uint8Array(Math.ceil(size / 8) * 8);
  const view = new DataView(bytes.buffer);
  view.setUint32(H.size.offset, size, true);
  view.setUint16(H.type.offset, type, true);
  view.setUint16(H.flags.offset, flags, true);
  view.setBigUint64(H.ktime_ns.offset, BigInt(HEADER.ktimeNs), true);
  view.setBigUint64(H.cgroup_id.offset, BigInt(HEADER.cgroupId), true);
  view.setBigUint64(H.job_cgroup_id.offset, BigInt(HEADER.jobCgroupId), true);
  view.setUint32(H.pid.offset, HEADER.pid, true);
  view.setUint32(H.tgid.offset, HEADER.tgid, true);
  view.setUint32(H.ppid.offset, HEADER.ppid, true);
  view.setUint32(H.uid.offset, HEADER.uid, true);
  bytes.set(new TextEncoder().encode(HEADER.comm), H.comm.offset);
  fill(view, bytes);
  return bytes;
}

function decodeOne(bytes: Uint8Array) {
  const { events, unknown } = decodeBatch(bytes, 1, 2_000);
  expect(unknown).toBe(0);
  expect(events).toHaveLength(1);
  return events[0];
}

/** Writes an rf_sockaddr: family, port, then the address bytes. */
function writeSockaddr(view: DataView, bytes: Uint8Array, at: number, family: number, port: number, address: number[]): void {
  view.setUint16(at + S.family.offset, family, true);
  view.setUint16(at + S.port.offset, port, true);
  bytes.set(address, at + S.addr.offset);
}

const V6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x35];

describe('fork record', () => {
  it('the child’s thread and process ids', () => {
    const X = LAYOUT.rf_fork_event.fields;
    const bytes = record(EventType.FORK, LAYOUT.rf_fork_event.size, 0, (view) => {
      view.setUint32(X.child_pid.offset, 4002, true);
      view.setUint32(X.child_tgid.offset, 4001, true);
    });
    expect(decodeOne(bytes)).toEqual({ ...HEADER, type: 'fork', childPid: 4002, childTgid: 4001 });
  });
});

describe('exit record', () => {
  const exit = (status: number) =>
    record(EventType.EXIT, LAYOUT.rf_exit_event.size, 0, (view) => view.setUint32(LAYOUT.rf_exit_event.fields.exit_code.offset, status, true));

  // wait(2) status: code << 8 when it exited, the signal (| 0x80 for a core dump) when killed
  it.each([
    [0, 0, null],
    [1 << 8, 1, null],
    [255 << 8, 255, null],
    [9, null, 9],
    [0x80 | 11, null, 11],
    [15, null, 15],
  ])('status %i: exit code %s, signal %s', (status, exitCode, signal) => {
    expect(decodeOne(exit(status))).toEqual({ ...HEADER, type: 'exit', status, exitCode, signal });
  });
});

describe('connect record', () => {
  const C = LAYOUT.rf_connect_event.fields;
  const connect = (ret: number, family: number, address: number[], port = 5432) =>
    record(EventType.CONNECT, LAYOUT.rf_connect_event.size, 0, (view, bytes) => {
      view.setInt32(C.fd.offset, 7, true);
      view.setInt32(C.ret.offset, ret, true);
      view.setUint8(C.sock_type.offset, 1); // SOCK_STREAM
      view.setUint16(C.protocol.offset, 6, true); // IPPROTO_TCP
      writeSockaddr(view, bytes, C.addr.offset, family, port, address);
    });

  it('every field of an IPv4 connect that succeeded', () => {
    expect(decodeOne(connect(0, 2, [192, 0, 2, 44]))).toEqual({
      ...HEADER,
      type: 'connect',
      fd: 7,
      errno: 0,
      family: 'inet',
      address: '192.0.2.44',
      port: 5432,
      socketType: 1,
      protocol: 6,
    });
  });

  it.each([
    [-115, 115], // EINPROGRESS, a non-blocking connect
    [-111, 111], // ECONNREFUSED
    [-1, 1], // EPERM: refused by the egress policy
  ])('ret %i is errno %i', (ret, errno) => {
    expect(decodeOne(connect(ret, 10, V6))).toMatchObject({ errno, family: 'inet6', address: '2001:db8::35' });
  });

  it('a negative descriptor (connect on a bad fd) stays negative', () => {
    const bytes = connect(-9, 2, [192, 0, 2, 1]);
    new DataView(bytes.buffer).setInt32(C.fd.offset, -1, true);
    expect(decodeOne(bytes)).toMatchObject({ fd: -1, errno: 9 });
  });

  it.each([
    [1, 'unix'],
    [0, 'af0'],
    [16, 'af16'],
  ])('family %i is %s, without address text', (family, name) => {
    expect(decodeOne(connect(0, family, [10, 0, 0, 1], 0))).toMatchObject({ family: name, address: '', port: 0 });
  });
});

describe('ptrace record', () => {
  const P = LAYOUT.rf_ptrace_event.fields;
  const ptrace = (request: bigint) =>
    record(EventType.PTRACE, LAYOUT.rf_ptrace_event.size, 0, (view) => {
      view.setBigInt64(P.request.offset, request, true);
      view.setUint32(P.target_pid.offset, 812, true);
    });

  it('every field', () => {
    expect(decodeOne(ptrace(16n))).toEqual({ ...HEADER, type: 'ptrace', request: 16, requestName: 'PTRACE_ATTACH', targetPid: 812 });
  });

  // linux/ptrace.h and asm/ptrace-abi.h (x86_64)
  it.each([
    [0, 'PTRACE_TRACEME'],
    [1, 'PTRACE_PEEKTEXT'],
    [2, 'PTRACE_PEEKDATA'],
    [3, 'PTRACE_PEEKUSER'],
    [4, 'PTRACE_POKETEXT'],
    [5, 'PTRACE_POKEDATA'],
    [6, 'PTRACE_POKEUSER'],
    [7, 'PTRACE_CONT'],
    [8, 'PTRACE_KILL'],
    [9, 'PTRACE_SINGLESTEP'],
    [12, 'PTRACE_GETREGS'],
    [13, 'PTRACE_SETREGS'],
    [16, 'PTRACE_ATTACH'],
    [17, 'PTRACE_DETACH'],
    [24, 'PTRACE_SYSCALL'],
    [0x4200, 'PTRACE_SETOPTIONS'],
    [0x4201, 'PTRACE_GETEVENTMSG'],
    [0x4202, 'PTRACE_GETSIGINFO'],
    [0x4204, 'PTRACE_GETREGSET'],
    [0x4205, 'PTRACE_SETREGSET'],
    [0x4206, 'PTRACE_SEIZE'],
    [0x4207, 'PTRACE_INTERRUPT'],
    [0x4208, 'PTRACE_LISTEN'],
  ])('request %i is %s', (request, name) => {
    expect(decodeOne(ptrace(BigInt(request)))).toMatchObject({ request, requestName: name });
  });

  it.each([
    [10, 'PTRACE_10'],
    [0x4203, 'PTRACE_16899'],
    [-1, 'PTRACE_-1'],
  ])('a request without a name (%i) is named by its number', (request, name) => {
    expect(decodeOne(ptrace(BigInt(request)))).toMatchObject({ request, requestName: name });
  });
});

describe('vm_access record', () => {
  const vm = (flags: number) =>
    record(EventType.VM_ACCESS, LAYOUT.rf_vm_access_event.size, flags, (view) => view.setUint32(LAYOUT.rf_vm_access_event.fields.target_pid.offset, 913, true));

  it.each([
    [0, false], // process_vm_readv
    [1 << 0, true], // RF_VM_F_WRITE: process_vm_writev
  ])('flags %i: write %s', (flags, write) => {
    expect(decodeOne(vm(flags))).toEqual({ ...HEADER, type: 'vm_access', write, targetPid: 913 });
  });
});

describe('proc_mem_open record', () => {
  const mem = (flags: number) =>
    record(EventType.PROC_MEM_OPEN, LAYOUT.rf_proc_mem_event.size, flags, (view) => {
      view.setUint32(LAYOUT.rf_proc_mem_event.fields.target_tgid.offset, 1014, true);
      view.setInt32(LAYOUT.rf_proc_mem_event.fields.fd.offset, 5, true);
    });

  // RF_MEM_F_SELF and RF_MEM_F_WRITABLE, each alone
  it.each([
    [0, false, false],
    [1 << 0, true, false],
    [1 << 1, false, true],
    [(1 << 0) | (1 << 1), true, true],
  ])('flags %i: self %s, writable %s', (flags, self, writable) => {
    expect(decodeOne(mem(flags))).toEqual({ ...HEADER, type: 'proc_mem_open', targetTgid: 1014, fd: 5, self, writable });
  });
});

describe('stdio_dup record', () => {
  const D = LAYOUT.rf_stdio_dup_event.fields;
  const dup = (fd: number, fill: (view: DataView, bytes: Uint8Array, info: number) => void) =>
    record(EventType.STDIO_DUP, LAYOUT.rf_stdio_dup_event.size, 0, (view, bytes) => {
      view.setInt32(D.fd.offset, fd, true);
      fill(view, bytes, D.info.offset);
    });

  it('a socket duplicated onto fd 1: its type, protocol and peer', () => {
    const bytes = dup(1, (view, b, info) => {
      view.setUint8(info + F.kind.offset, 2); // RF_FD_SOCKET
      view.setUint8(info + F.sock_type.offset, 1);
      view.setUint16(info + F.protocol.offset, 6, true);
      writeSockaddr(view, b, info + F.peer.offset, 10, 4444, V6);
    });
    expect(decodeOne(bytes)).toEqual({
      ...HEADER,
      type: 'stdio_dup',
      fd: 1,
      socket: { kind: 'socket', socketType: 1, protocol: 6, peer: { family: 'inet6', address: '2001:db8::35', port: 4444 } },
    });
  });

  it.each([
    [0, 'none'],
    [1, 'other'],
  ] as const)('fd kind %i is %s', (kind, name) => {
    expect(decodeOne(dup(2, (view, _b, info) => view.setUint8(info + F.kind.offset, kind)))).toEqual({ ...HEADER, type: 'stdio_dup', fd: 2, socket: { kind: name } });
  });

  it('an unknown fd kind is counted unknown, not taken for another file', () => {
    const bytes = dup(0, (view, _b, info) => view.setUint8(info + F.kind.offset, 9));
    expect(decodeBatch(bytes, 1, 2_000)).toEqual({ events: [], unknown: 1, firstUnknown: 'record 0 at offset 0: dup fd kind 9 is unknown (rf_fd_kind: 0 none, 1 other, 2 socket)' });
  });
});
