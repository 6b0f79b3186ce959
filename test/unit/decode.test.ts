/** The decoder on records built by hand at the offsets of the shared layout. */
import { describe, expect, it } from 'vitest';
import { DecodeError, decodeBatch, formatAddress } from '../../src/sensor/decode';
import { EventType, ExecFlags, LAYOUT } from '../../src/sensor/layout';

const H = LAYOUT.rf_event_header.fields;
const wall = 0;

/** Writes a record of `size` bytes with a header; `fill` writes the rest. */
function record(type: number, size: number, fill: (view: DataView, bytes: Uint8Array) => void, flags = 0): Uint8Array {
  const bytes = new Uint8Array(Math.ceil(size / 8) * 8);
  const view = new DataView(bytes.buffer);
  view.setUint32(H.size.offset, size, true);
  view.setUint16(H.type.offset, type, true);
  view.setUint16(H.flags.offset, flags, true);
  view.setBigUint64(H.ktime_ns.offset, 5_000_000n, true);
  view.setBigUint64(H.cgroup_id.offset, 77n, true);
  view.setBigUint64(H.job_cgroup_id.offset, 70n, true);
  view.setUint32(H.pid.offset, 101, true);
  view.setUint32(H.tgid.offset, 100, true);
  view.setUint32(H.ppid.offset, 1, true);
  view.setUint32(H.uid.offset, 1000, true);
  bytes.set(new TextEncoder().encode('bash'), H.comm.offset);
  fill(view, bytes);
  return bytes;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

describe('decodeBatch', () => {
  it('decodes an exec with argv, container facts and a socket on stdin', () => {
    const E = LAYOUT.rf_exec_event.fields;
    const args = new TextEncoder().encode('curl\0-s\0http://x\0');
    const rec = record(EventType.EXEC, E.args.offset + args.length, (view, bytes) => {
      const filename = new TextEncoder().encode('/usr/bin/curl');
      bytes.set(filename, E.filename.offset);
      view.setUint16(E.filename_len.offset, filename.length, true);
      bytes.set(args, E.args.offset);
      view.setUint16(E.args_len.offset, args.length, true);
      view.setUint32(E.argc.offset, 3, true);
      view.setBigUint64(E.cap_effective.offset, 0x1ffffffffffn, true);
      view.setUint32(E.pidns_level.offset, 1, true);
      const fd0 = E.stdio.offset;
      const F = LAYOUT.rf_fd_info.fields;
      const S = LAYOUT.rf_sockaddr.fields;
      view.setUint8(fd0 + F.kind.offset, 2);
      view.setUint8(fd0 + F.sock_type.offset, 1);
      view.setUint16(fd0 + F.protocol.offset, 6, true);
      view.setUint16(fd0 + F.peer.offset + S.family.offset, 2, true);
      view.setUint16(fd0 + F.peer.offset + S.port.offset, 4444, true);
      bytes.set([10, 1, 2, 3], fd0 + F.peer.offset + S.addr.offset);
      view.setUint8(fd0 + LAYOUT.rf_fd_info.size + F.kind.offset, 1);
    }, ExecFlags.MNTNS_NOT_INIT | ExecFlags.USERNS_INIT);

    const { events, unknown } = decodeBatch(rec, 1, wall);
    expect(unknown).toBe(0);
    expect(events[0]).toMatchObject({
      type: 'exec',
      pid: 101,
      tgid: 100,
      ppid: 1,
      uid: 1000,
      comm: 'bash',
      cgroupId: 77,
      jobCgroupId: 70,
      timeMs: 5,
      filename: '/usr/bin/curl',
      argv: ['curl', '-s', 'http://x'],
      argc: 3,
      argsTruncated: false,
      container: { pidnsLevel: 1, mntnsNotInit: true, usernsInit: true, capEffective: 0x1ffffffffffn },
      stdio: [
        { kind: 'socket', socketType: 1, protocol: 6, peer: { family: 'inet', address: '10.1.2.3', port: 4444 } },
        { kind: 'other' },
        { kind: 'none' },
      ],
    });
  });

  it('walks several records of different sizes in one batch', () => {
    const fork = record(EventType.FORK, LAYOUT.rf_fork_event.size, (view) => {
      view.setUint32(LAYOUT.rf_fork_event.fields.child_tgid.offset, 200, true);
    });
    const exit = record(EventType.EXIT, LAYOUT.rf_exit_event.size, (view) => {
      view.setUint32(LAYOUT.rf_exit_event.fields.exit_code.offset, 9, true); // SIGKILL
    });
    const connect = record(EventType.CONNECT, LAYOUT.rf_connect_event.size, (view, bytes) => {
      const C = LAYOUT.rf_connect_event.fields;
      view.setInt32(C.ret.offset, -111, true);
      view.setUint16(C.addr.offset, 10, true);
      view.setUint16(C.addr.offset + 2, 443, true);
      bytes.set([0x20, 0x01, 0x0d, 0xb8], C.addr.offset + 4);
      bytes[C.addr.offset + 4 + 15] = 1;
    });
    const unknownType = record(99, LAYOUT.rf_event_header.size, () => undefined);
    const { events, unknown } = decodeBatch(concat(fork, exit, unknownType, connect), 4, wall);
    expect(unknown).toBe(1);
    expect(events.map((e) => e.type)).toEqual(['fork', 'exit', 'connect']);
    expect(events[0]).toMatchObject({ childTgid: 200 });
    expect(events[1]).toMatchObject({ signal: 9, exitCode: null });
    expect(events[2]).toMatchObject({ family: 'inet6', address: '2001:db8::1', port: 443, errno: 111 });
  });

  it('refuses a batch whose records run past its end instead of skipping', () => {
    const fork = record(EventType.FORK, LAYOUT.rf_fork_event.size, () => undefined);
    expect(() => decodeBatch(fork.subarray(0, 40), 1, wall)).toThrow(DecodeError);
    expect(() => decodeBatch(fork, 2, wall)).toThrow(/batch ends after 1 of 2/);
  });
});

describe('formatAddress', () => {
  const v6 = (groups: number[]) => new Uint8Array(groups.flatMap((g) => [g >> 8, g & 0xff]));
  it.each([
    [[0, 0, 0, 0, 0, 0, 0, 1], '::1'],
    [[0, 0, 0, 0, 0, 0, 0, 0], '::'],
    [[0x2001, 0xdb8, 0, 0, 1, 0, 0, 1], '2001:db8::1:0:0:1'],
    [[0xfe80, 0, 0, 0, 0, 0, 0, 0x10], 'fe80::10'],
    [[1, 2, 3, 4, 5, 6, 7, 8], '1:2:3:4:5:6:7:8'],
    [[0, 0, 0, 0, 0, 0xffff, 0x7f00, 1], '::ffff:127.0.0.1'],
  ])('IPv6 %j is %s', (groups, text) => {
    expect(formatAddress(10, v6(groups), 0)).toBe(text);
  });
  it('IPv4', () => expect(formatAddress(2, new Uint8Array([192, 0, 2, 7]), 0)).toBe('192.0.2.7'));
});
