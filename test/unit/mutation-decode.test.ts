/**
 * The egress, detection and exec records decoded field by field. Every record
 * is built from scratch per case at the offsets of src/sensor/layout.ts, with
 * a distinct value in each field, so a swapped offset, enum value or flag bit
 * changes the decoded event.
 */
import { describe, expect, it } from 'vitest';
import { decodeBatch } from '../../src/sensor/decode';
import { EventType, ExecFlags, LAYOUT } from '../../src/sensor/layout';

const H = LAYOUT.rf_event_header.fields;
const S = LAYOUT.rf_sockaddr.fields;
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
  view.setUint16(at + S.family.offset, 2, true);
  view.setUint16(at + S.port.offset, port, true);
  bytes.set(address, at + S.addr.offset);
}

function decodeOne(bytes: Uint8Array) {
  const { events, unknown } = decodeBatch(bytes, 1, CLOCK_OFFSET_MS);
  expect(unknown).toBe(0);
  expect(events).toHaveLength(1);
  return events[0];
}

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

  // enum rf_egress_hook and enum rf_verdict of bpf/events.h, as literals: a
  // renumbered constant in layout.ts must not move the expectation with it.
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
      view.setUint16(E.dst.offset + S.family.offset, 10, true);
      view.setUint16(E.dst.offset + S.port.offset, 443, true);
      b.set([0x20, 0x01, 0x0d, 0xb8], E.dst.offset + S.addr.offset);
      b[E.dst.offset + S.addr.offset + 15] = 9;
    });
    expect(decodeOne(bytes)).toMatchObject({ family: 'inet6', address: '2001:db8::9', port: 443, verdict: 'blocked' });
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
    pidnsLevel: 3,
  });

  // enum rf_detection, rf_detection_action (KILLED 1, AUDITED 2, HELD 3) and
  // rf_detection_hook of bpf/events.h, as literals.
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
    expect(decodeBatch(detection(id, 1, 2), 1, CLOCK_OFFSET_MS)).toEqual({ events: [], unknown: 1 });
  });

  it.each([
    [3, 'held'],
    [2, 'audited'],
  ] as const)('shell on IPC, action %i is %s, with each fd’s IPC kind and peer', (action, actionName) => {
    const bytes = record(EventType.DETECTION, LAYOUT.rf_detection_event.size, 0, (view) => {
      view.setUint8(D.detection.offset, 4); // RF_DETECT_SHELL_ON_IPC
      view.setUint8(D.action.offset, action);
      view.setUint8(D.stdio_ipc.offset + 0, 1);
      view.setUint8(D.stdio_ipc.offset + 1, 2);
      view.setUint8(D.stdio_ipc.offset + 2, 0);
      view.setBigUint64(D.stdio_peer.offset, 100n, true);
      view.setBigUint64(D.stdio_peer.offset + 8, 2n ** 36n + 200n, true);
      view.setBigUint64(D.stdio_peer.offset + 16, 300n, true);
    });
    expect(decodeOne(bytes)).toEqual({
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
});

describe('exec record flags', () => {
  const X = LAYOUT.rf_exec_event.fields;
  const exec = (flags: number) =>
    record(EventType.EXEC, X.args.offset + 4, flags, (view, bytes) => {
      bytes.set(new TextEncoder().encode('/bin/sh'), X.filename.offset);
      view.setUint16(X.filename_len.offset, 7, true);
      bytes.set(new TextEncoder().encode('sh\0'), X.args.offset);
      view.setUint16(X.args_len.offset, 3, true);
      view.setUint32(X.argc.offset, 1, true);
    });
  const none = { argsTruncated: false, filenameTruncated: false, mntnsNotInit: false, usernsInit: false };

  // the RF_EXEC_F_* bits of bpf/events.h, as literals, each set alone
  it.each([
    ['no flag', 0, {}],
    ['RF_EXEC_F_ARGS_TRUNCATED', 1 << 0, { argsTruncated: true }],
    ['RF_EXEC_F_FILENAME_TRUNCATED', 1 << 1, { filenameTruncated: true }],
    ['RF_EXEC_F_MNTNS_NOT_INIT', 1 << 2, { mntnsNotInit: true }],
    ['RF_EXEC_F_USERNS_INIT', 1 << 3, { usernsInit: true }],
  ])('%s alone', (_name, flags, set) => {
    const event = decodeOne(exec(flags));
    if (event.type !== 'exec') throw new Error(`decoded a ${event.type}`);
    const want = { ...none, ...set };
    expect({
      argsTruncated: event.argsTruncated,
      filenameTruncated: event.filenameTruncated,
      mntnsNotInit: event.container.mntnsNotInit,
      usernsInit: event.container.usernsInit,
    }).toEqual(want);
    expect(event.filename).toBe('/bin/sh');
    expect(event.argv).toEqual(['sh']);
  });

  it('the flag values are the bits of bpf/events.h', () => {
    expect(ExecFlags).toEqual({ ARGS_TRUNCATED: 1, FILENAME_TRUNCATED: 2, MNTNS_NOT_INIT: 4, USERNS_INIT: 8 });
  });

  it('each container field at its own offset', () => {
    const bytes = exec(0);
    const view = new DataView(bytes.buffer);
    view.setUint32(X.pidns_level.offset, 2, true);
    view.setUint32(X.seccomp_mode.offset, 3, true);
    view.setUint32(X.mntns_inum.offset, 4026531840, true);
    view.setUint32(X.userns_inum.offset, 4026531837, true);
    view.setBigUint64(X.cap_effective.offset, 0x1ffffffffffn, true);
    view.setBigUint64(X.cap_permitted.offset, 0x3n, true);
    const event = decodeOne(bytes);
    expect(event.type === 'exec' && event.container).toEqual({
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
});
