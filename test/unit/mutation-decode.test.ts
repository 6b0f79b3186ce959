/**
 * The egress, detection and exec records decoded field by field. Every record
 * is built from scratch per case at the offsets of src/abi/layout.ts, with
 * a distinct value in each field, so a swapped offset, enum value or flag bit
 * changes the decoded event. Enum values are literals of bpf/events.h: a
 * renumbered constant in layout.ts must not move the expectation with it.
 */
import { describe, expect, it } from 'vitest';
import { decodeBatch } from '../../src/sensor/decode';
import { EventType, ExecFlags, LAYOUT } from '../../src/abi/layout';

const H = LAYOUT.rf_event_header.fields;
const S = LAYOUT.rf_sockaddr.fields;
const F = LAYOUT.rf_fd_info.fields;
const FD_SIZE = LAYOUT.rf_fd_info.size;
const CLOCK_OFFSET_MS = 1_000;

/** The header every record gets: distinct values, a cgroup id above 2^32 to catch a lost high word. */
const HEADER = {
  ktimeNs: 5_000_000,
  timeMs: 1_005,
  cgroupId: 2 ** 40 + 77,
  jobCgroupId: 2 ** 33 + 70,
  pid: 101,
  tgid: 100,
  ppid: 99,
  uid: 1000,
  comm: 'bash',
};

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

function writeInet(view: DataView, bytes: Uint8Array, at: number, port: number, address: number[]): void {
  view.setUint16(at + S.family.offset, 2, true); // AF_INET
  view.setUint16(at + S.port.offset, port, true);
  bytes.set(address, at + S.addr.offset);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function decodeOne(bytes: Uint8Array) {
  const { events, unknown, firstUnknown } = decodeBatch(bytes, 1, CLOCK_OFFSET_MS);
  expect({ unknown, firstUnknown }).toEqual({ unknown: 0, firstUnknown: undefined });
  expect(events).toHaveLength(1);
  return events[0];
}

/** A record the decoder must not turn into an event: counted unknown, with why. */
function expectUnknown(bytes: Uint8Array, why: string): void {
  expect(decodeBatch(bytes, 1, CLOCK_OFFSET_MS)).toEqual({ events: [], unknown: 1, firstUnknown: `record 0 at offset 0: ${why}` });
}

const HOOKS = '(rf_egress_hook: 1 connect, 2 sendmsg, 3 packet)';
const VERDICTS = '(rf_verdict: 1 allowed, 2 blocked, 3 audited)';

describe('egress record', () => {
  const E = LAYOUT.rf_egress_event.fields;
  const egress = (hook: number, verdict: number) =>
    record(EventType.EGRESS, LAYOUT.rf_egress_event.size, 0, (view, bytes) => {
      view.setUint8(E.hook.offset, hook);
      view.setUint8(E.verdict.offset, verdict);
      view.setUint8(E.sock_type.offset, 2);
      view.setUint8(E.protocol.offset, 17);
      view.setUint32(E.policy_id.offset, 0x01020304, true);
      view.setUint32(E.count.offset, 7, true);
      writeInet(view, bytes, E.dst.offset, 8443, [198, 18, 5, 6]);
    });

  // enum rf_egress_hook and enum rf_verdict of bpf/events.h
  it.each([
    [1, 'connect', 1, 'allowed'],
    [1, 'connect', 2, 'blocked'],
    [1, 'connect', 3, 'audited'],
    [2, 'sendmsg', 2, 'blocked'],
    [2, 'sendmsg', 1, 'allowed'],
    [3, 'packet', 2, 'blocked'],
    [3, 'packet', 3, 'audited'],
  ] as const)('hook %i (%s), verdict %i (%s)', (hook, hookName, verdict, verdictName) => {
    expect(decodeOne(egress(hook, verdict))).toEqual({
      ...HEADER,
      type: 'egress',
      hook: hookName,
      verdict: verdictName,
      socketType: 2,
      protocol: 17,
      policyId: 0x01020304,
      count: 7,
      family: 'inet',
      address: '198.18.5.6',
      port: 8443,
    });
  });

  it('an IPv6 destination', () => {
    const bytes = record(EventType.EGRESS, LAYOUT.rf_egress_event.size, 0, (view, b) => {
      view.setUint8(E.hook.offset, 1);
      view.setUint8(E.verdict.offset, 2);
      view.setUint16(E.dst.offset + S.family.offset, 10, true); // AF_INET6
      view.setUint16(E.dst.offset + S.port.offset, 443, true);
      b.set([0x20, 0x01, 0x0d, 0xb8], E.dst.offset + S.addr.offset);
      b[E.dst.offset + S.addr.offset + 15] = 9;
    });
    expect(decodeOne(bytes)).toMatchObject({ family: 'inet6', address: '2001:db8::9', port: 443, verdict: 'blocked' });
  });

  // a verdict the decoder does not know must not pass for allowed/audited (nor a hook for another)
  it.each([0, 4, 255])('verdict %i is not decoded as any verdict, but counted unknown', (verdict) => {
    expectUnknown(egress(1, verdict), `egress verdict ${verdict} is unknown ${VERDICTS}`);
  });

  it.each([0, 4, 255])('hook %i is not decoded as any hook, but counted unknown', (hook) => {
    expectUnknown(egress(hook, 2), `egress hook ${hook} is unknown ${HOOKS}`);
  });

  it('a record with an unknown verdict is left out; the batch’s other records are decoded', () => {
    const fork = record(EventType.FORK, LAYOUT.rf_fork_event.size, 0, () => undefined);
    const { events, unknown, firstUnknown } = decodeBatch(concat(egress(1, 1), egress(1, 9), fork), 3, CLOCK_OFFSET_MS);
    expect(events.map((e) => e.type === 'egress' ? `egress ${e.verdict}` : e.type)).toEqual(['egress allowed', 'fork']);
    expect(unknown).toBe(1);
    expect(firstUnknown).toBe(`record 1 at offset ${LAYOUT.rf_egress_event.size}: egress verdict 9 is unknown ${VERDICTS}`);
  });

  it('of several unknown records, the first is named and all are counted', () => {
    const { events, unknown, firstUnknown } = decodeBatch(concat(egress(1, 1), egress(7, 1), egress(1, 0)), 3, CLOCK_OFFSET_MS);
    expect(events).toHaveLength(1);
    expect(unknown).toBe(2);
    expect(firstUnknown).toBe(`record 1 at offset ${LAYOUT.rf_egress_event.size}: egress hook 7 is unknown ${HOOKS}`);
  });
});

describe('detection record', () => {
  const D = LAYOUT.rf_detection_event.fields;
  const detection = (id: number, action: number, hook: number) =>
    record(EventType.DETECTION, LAYOUT.rf_detection_event.size, 0, (view, bytes) => {
      view.setUint8(D.detection.offset, id);
      view.setUint8(D.action.offset, action);
      view.setUint8(D.hook.offset, hook);
      view.setUint8(D.fd.offset, 2);
      view.setUint32(D.target_tgid.offset, 4321, true);
      view.setBigInt64(D.ptrace_request.offset, 16n, true);
      // cgroup escape carries the target cgroup's id here (bpf/events.h)
      view.setBigUint64(D.cap_effective.offset, 0x1_0000_003fn, true);
      view.setUint32(D.pidns_level.offset, 3, true);
      writeInet(view, bytes, D.peer.offset, 4444, [203, 0, 113, 9]);
    });

  const expected = (name: string, action: string, hook: string) => ({
    ...HEADER,
    type: 'detection',
    detection: name,
    action,
    hook,
    targetTgid: 4321,
    ptraceRequest: 16,
    fd: 2,
    peer: { family: 'inet', address: '203.0.113.9', port: 4444 },
    capEffective: 0x1_0000_003fn,
    targetCgroupId: 0x1_0000_003f,
    refused: false,
    pidnsLevel: 3,
  });

  // enum rf_detection, rf_detection_action (KILLED 1, AUDITED 2, HELD 3) and rf_detection_hook
  const DETECTIONS = [
    ['Reverse-Shell', 1],
    ['Runner-Worker-Memory-Read', 2],
    ['Privileged-Container', 3],
    ['Cgroup-Escape', 5],
    ['Agent-Tamper', 6],
  ] as const;

  it.each(DETECTIONS)('detection %s (%i), killed', (name, id) => {
    expect(decodeOne(detection(id, 1, 2))).toEqual(expected(name, 'killed', 'exec'));
  });

  // enum rf_detection_flags: a refused act (the job's seccomp filter) says so in the header's flags
  it.each([
    [1, true],
    [0, false],
    [2, false],
    [3, true],
  ])('header flags %i: refused is %s', (flags, refused) => {
    const bytes = detection(6, 1, 9);
    new DataView(bytes.buffer, bytes.byteOffset).setUint16(LAYOUT.rf_event_header.fields.flags.offset, flags, true);
    expect(decodeOne(bytes)).toMatchObject({ detection: 'Agent-Tamper', hook: 'seccomp', refused });
  });

  it.each(DETECTIONS)('detection %s (%i), audited', (name, id) => {
    expect(decodeOne(detection(id, 2, 2))).toEqual(expected(name, 'audited', 'exec'));
  });

  it.each([
    [1, 'dup'],
    [2, 'exec'],
    [3, 'proc_mem_open'],
    [4, 'process_vm'],
    [5, 'ptrace'],
    [6, 'cgroup_open'],
    [7, 'clone_into'],
    [8, 'signal'],
  ] as const)('hook %i is %s', (hook, name) => {
    expect(decodeOne(detection(1, 1, hook))).toEqual(expected('Reverse-Shell', 'killed', name));
  });

  it.each([0, 7, 200])('an unknown detection id %i is counted unknown, not decoded as some detection', (id) => {
    expectUnknown(
      detection(id, 1, 2),
      `detection ${id} is unknown (rf_detection: 1 Reverse-Shell, 2 Runner-Worker-Memory-Read, 3 Privileged-Container, 5 Cgroup-Escape, 6 Agent-Tamper)`,
    );
  });

  // HELD is a shell on IPC's (stopped for the agent's verdict): a detection is killed or audited
  it.each([0, 3, 4])('action %i of a detection is counted unknown, not taken for audited', (action) => {
    expectUnknown(detection(1, action, 2), `detection action ${action} is unknown (rf_detection_action: 1 killed, 2 audited)`);
  });

  it.each([0, 10])('hook %i of a detection is counted unknown, not taken for exec', (hook) => {
    expectUnknown(
      detection(3, 1, hook),
      `detection hook ${hook} is unknown (rf_detection_hook: 1 dup, 2 exec, 3 proc_mem_open, 4 process_vm, 5 ptrace, 6 cgroup_open, 7 clone_into, 8 signal, 9 seccomp)`,
    );
  });

  it('a negative ptrace request (the memory hooks write -1) stays negative', () => {
    const bytes = detection(2, 1, 3);
    new DataView(bytes.buffer).setBigInt64(D.ptrace_request.offset, -1n, true);
    expect(decodeOne(bytes)).toMatchObject({ detection: 'Runner-Worker-Memory-Read', hook: 'proc_mem_open', ptraceRequest: -1 });
  });

  describe('shell on IPC', () => {
    const shellOnIpc = (action: number, ipc: [number, number, number]) =>
      record(EventType.DETECTION, LAYOUT.rf_detection_event.size, 0, (view) => {
        view.setUint8(D.detection.offset, 4); // RF_DETECT_SHELL_ON_IPC
        view.setUint8(D.action.offset, action);
        view.setUint8(D.hook.offset, 2);
        ipc.forEach((kind, fd) => view.setUint8(D.stdio_ipc.offset + fd, kind));
        view.setBigUint64(D.stdio_peer.offset, 100n, true);
        view.setBigUint64(D.stdio_peer.offset + 8, 2n ** 36n + 200n, true);
        view.setBigUint64(D.stdio_peer.offset + 16, 300n, true);
      });

    it.each([
      [3, 'held'],
      [2, 'audited'],
    ] as const)('action %i is %s, with each fd’s IPC kind and peer', (action, actionName) => {
      expect(decodeOne(shellOnIpc(action, [1, 2, 0]))).toEqual({
        ...HEADER,
        type: 'shell_on_ipc',
        action: actionName,
        stdio: [
          { ipc: 'pipe', peerInode: 100 },
          { ipc: 'unix', peerInode: 2 ** 36 + 200 },
          { ipc: 'none', peerInode: 300 },
        ],
      });
    });

    it('each fd’s IPC kind is its own', () => {
      const event = decodeOne(shellOnIpc(3, [2, 0, 1]));
      expect(event.type === 'shell_on_ipc' && event.stdio.map((fd) => fd.ipc)).toEqual(['unix', 'none', 'pipe']);
    });

    // held means stopped: taken for audited, the shell would stay stopped; taken for held, it would be judged
    it.each([0, 1, 4])('action %i is counted unknown, not taken for held or audited', (action) => {
      expectUnknown(shellOnIpc(action, [1, 1, 1]), `shell-on-IPC action ${action} is unknown (rf_detection_action: 2 audited, 3 held)`);
    });

    it.each([0, 1, 2])('an unknown IPC kind on fd %i is counted unknown, not taken for none', (fd) => {
      const ipc: [number, number, number] = [1, 1, 1];
      ipc[fd] = 3;
      expectUnknown(shellOnIpc(3, ipc), `fd ${fd} IPC kind 3 is unknown (rf_stdio_ipc: 0 none, 1 pipe, 2 unix)`);
    });
  });
});

describe('exec record', () => {
  const X = LAYOUT.rf_exec_event.fields;
  const encode = (text: string) => new TextEncoder().encode(text);
  /** An exec of `filename` with NUL-separated `args`, the record ending after them as the kernel writes it. */
  const exec = (flags: number, filename = '/bin/sh', args = encode('sh\0'), fill: (view: DataView, bytes: Uint8Array) => void = () => undefined) =>
    record(EventType.EXEC, X.args.offset + args.length, flags, (view, bytes) => {
      const name = encode(filename);
      bytes.set(name, X.filename.offset);
      view.setUint16(X.filename_len.offset, name.length, true);
      bytes.set(args, X.args.offset);
      view.setUint16(X.args_len.offset, args.length, true);
      view.setUint32(X.argc.offset, 1, true);
      fill(view, bytes);
    });
  const execEvent = (bytes: Uint8Array) => {
    const event = decodeOne(bytes);
    if (event.type !== 'exec') throw new Error(`decoded a ${event.type}`);
    return event;
  };
  const none = { argsTruncated: false, filenameTruncated: false, mntnsNotInit: false, usernsInit: false };

  // the RF_EXEC_F_* bits of bpf/events.h, each set alone
  it.each([
    ['no flag', 0, {}],
    ['RF_EXEC_F_ARGS_TRUNCATED', 1 << 0, { argsTruncated: true }],
    ['RF_EXEC_F_FILENAME_TRUNCATED', 1 << 1, { filenameTruncated: true }],
    ['RF_EXEC_F_MNTNS_NOT_INIT', 1 << 2, { mntnsNotInit: true }],
    ['RF_EXEC_F_USERNS_INIT', 1 << 3, { usernsInit: true }],
  ])('%s alone', (_name, flags, set) => {
    const event = execEvent(exec(flags));
    expect({
      argsTruncated: event.argsTruncated,
      filenameTruncated: event.filenameTruncated,
      mntnsNotInit: event.container.mntnsNotInit,
      usernsInit: event.container.usernsInit,
    }).toEqual({ ...none, ...set });
    expect(event.filename).toBe('/bin/sh');
    expect(event.argv).toEqual(['sh']);
  });

  it('the flag values are the bits of bpf/events.h', () => {
    expect(ExecFlags).toEqual({ ARGS_TRUNCATED: 1, FILENAME_TRUNCATED: 2, MNTNS_NOT_INIT: 4, USERNS_INIT: 8 });
  });

  it('each container field at its own offset', () => {
    const bytes = exec(0, '/bin/sh', encode('sh\0'), (view) => {
      view.setUint32(X.pidns_level.offset, 2, true);
      view.setUint32(X.seccomp_mode.offset, 3, true);
      view.setUint32(X.mntns_inum.offset, 4026531840, true);
      view.setUint32(X.userns_inum.offset, 4026531837, true);
      view.setBigUint64(X.cap_effective.offset, 0x1ffffffffffn, true);
      view.setBigUint64(X.cap_permitted.offset, 0x3n, true);
    });
    expect(execEvent(bytes).container).toEqual({
      pidnsLevel: 2,
      mntnsInum: 4026531840,
      mntnsNotInit: false,
      usernsInum: 4026531837,
      usernsInit: false,
      seccompMode: 3,
      capEffective: 0x1ffffffffffn,
      capPermitted: 0x3n,
    });
  });

  it('the whole event: header, file, argv and argc, container facts, stdio', () => {
    const event = execEvent(exec(0, '/usr/bin/curl', encode('curl\0-s\0http://x\0'), (view) => view.setUint32(X.argc.offset, 3, true)));
    expect(event).toEqual({
      ...HEADER,
      type: 'exec',
      filename: '/usr/bin/curl',
      filenameTruncated: false,
      argv: ['curl', '-s', 'http://x'],
      argc: 3,
      argsTruncated: false,
      container: { pidnsLevel: 0, mntnsInum: 0, mntnsNotInit: false, usernsInum: 0, usernsInit: false, seccompMode: 0, capEffective: 0n, capPermitted: 0n },
      stdio: [{ kind: 'none' }, { kind: 'none' }, { kind: 'none' }],
    });
  });

  it.each([
    ['a last argument without its NUL', 'sh\0-c', ['sh', '-c']],
    ['an empty argument', 'printf\0\0x\0', ['printf', '', 'x']],
    ['no arguments', '', []],
    ['UTF-8', 'echo\0grüße\0', ['echo', 'grüße']],
  ])('argv: %s', (_what, args, argv) => {
    expect(execEvent(exec(0, '/bin/sh', encode(args))).argv).toEqual(argv);
  });

  it('a UTF-8 filename', () => {
    expect(execEvent(exec(0, '/tmp/büro/run')).filename).toBe('/tmp/büro/run');
  });

  it('filename_len beyond the filename field is cut at its end, not read into the arguments', () => {
    const bytes = exec(0, 'f'.repeat(LAYOUT.rf_exec_event.fields.filename.size), encode('sh\0'), (view) => view.setUint16(X.filename_len.offset, 300, true));
    expect(execEvent(bytes).filename).toBe('f'.repeat(256));
  });

  it('args_len beyond the record is cut at the record’s end', () => {
    const bytes = exec(0, '/bin/sh', encode('sh\0-c'), (view) => view.setUint16(X.args_len.offset, 100, true));
    expect(execEvent(bytes).argv).toEqual(['sh', '-c']);
  });

  it('args_len beyond the args field is cut at its end, even where the record goes on', () => {
    // a full-size record: its last bytes (after args[1024]) are the struct's tail padding
    const args = encode('a'.repeat(LAYOUT.rf_exec_event.size - X.args.offset));
    const bytes = exec(0, '/bin/sh', args, (view) => view.setUint16(X.args_len.offset, 2000, true));
    expect(execEvent(bytes).argv).toEqual(['a'.repeat(1024)]);
  });

  it('a record that ends right where args begin has no arguments', () => {
    expect(execEvent(exec(0, '/bin/true', encode(''))).argv).toEqual([]);
  });

  describe('stdio', () => {
    const withStdio = (...fds: ((view: DataView, bytes: Uint8Array, at: number) => void)[]) =>
      exec(0, '/bin/sh', encode('sh\0'), (view, bytes) => fds.forEach((fill, fd) => fill(view, bytes, X.stdio.offset + fd * FD_SIZE)));
    const socket = (type: number, protocol: number, port: number, address: number[]) => (view: DataView, bytes: Uint8Array, at: number) => {
      view.setUint8(at + F.kind.offset, 2); // RF_FD_SOCKET
      view.setUint8(at + F.sock_type.offset, type);
      view.setUint16(at + F.protocol.offset, protocol, true);
      writeInet(view, bytes, at + F.peer.offset, port, address);
    };
    const kind = (value: number) => (view: DataView, _bytes: Uint8Array, at: number) => view.setUint8(at + F.kind.offset, value);

    it('each of fd 0-2 at its own place: a socket, another file, none', () => {
      expect(execEvent(withStdio(kind(1), socket(1, 6, 4444, [10, 1, 2, 3]), kind(0))).stdio).toEqual([
        { kind: 'other' },
        { kind: 'socket', socketType: 1, protocol: 6, peer: { family: 'inet', address: '10.1.2.3', port: 4444 } },
        { kind: 'none' },
      ]);
    });

    it('a socket on fd 2, and fd 0 open on another file', () => {
      expect(execEvent(withStdio(kind(1), kind(0), socket(2, 17, 53, [192, 0, 2, 1]))).stdio).toEqual([
        { kind: 'other' },
        { kind: 'none' },
        { kind: 'socket', socketType: 2, protocol: 17, peer: { family: 'inet', address: '192.0.2.1', port: 53 } },
      ]);
    });

    it.each([0, 1, 2])('an unknown fd kind on fd %i is counted unknown, not taken for another file', (fd) => {
      const fills = [kind(1), kind(1), kind(1)];
      fills[fd] = kind(3);
      expectUnknown(withStdio(...fills), `fd ${fd} kind 3 is unknown (rf_fd_kind: 0 none, 1 other, 2 socket)`);
    });
  });
});
