/**
 * The decoder's walk over a batch (sizes, alignment, what it refuses), the
 * header every record carries, and the address helpers; records built by
 * hand at the offsets of the shared layout. The records' own fields are in
 * mutation-decode.test.ts and decode-records.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { DecodeError, decodeBatch, familyName, formatAddress } from '../../src/sensor/decode';
import { EventType, LAYOUT } from '../../src/abi/layout';

const H = LAYOUT.rf_event_header.fields;
const S = LAYOUT.rf_sockaddr.fields;
const HEADER_SIZE = LAYOUT.rf_event_header.size;
const wall = 0;

/** Writes a record of `size` bytes (padded to 8) with a header; `fill` writes the rest. */
function record(type: number, size: number, fill: (view: DataView, bytes: Uint8Array) => void = () => undefined, comm: Uint8Array = new TextEncoder().encode('bash')): Uint8Array {
  const bytes = new Uint8Array(Math.ceil(size / 8) * 8);
  const view = new DataView(bytes.buffer);
  view.setUint32(H.size.offset, size, true);
  view.setUint16(H.type.offset, type, true);
  view.setBigUint64(H.ktime_ns.offset, 5_000_000n, true);
  view.setBigUint64(H.cgroup_id.offset, 77n, true);
  view.setBigUint64(H.job_cgroup_id.offset, 70n, true);
  view.setUint32(H.pid.offset, 101, true);
  view.setUint32(H.tgid.offset, 100, true);
  view.setUint32(H.ppid.offset, 1, true);
  view.setUint32(H.uid.offset, 1000, true);
  bytes.set(comm, H.comm.offset);
  fill(view, bytes);
  return bytes;
}

const fork = (childTgid = 200) =>
  record(EventType.FORK, LAYOUT.rf_fork_event.size, (view) => view.setUint32(LAYOUT.rf_fork_event.fields.child_tgid.offset, childTgid, true));

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const TYPES = '(rf_event_type: 1 exec, 2 fork, 3 exit, 4 connect, 5 ptrace, 6 vm_access, 7 proc_mem_open, 8 stdio_dup, 9 egress, 10 detection)';

describe('decodeBatch', () => {
  it('walks several records of different sizes in one batch', () => {
    const exit = record(EventType.EXIT, LAYOUT.rf_exit_event.size, (view) => {
      view.setUint32(LAYOUT.rf_exit_event.fields.exit_code.offset, 9, true); // SIGKILL
    });
    const connect = record(EventType.CONNECT, LAYOUT.rf_connect_event.size, (view, bytes) => {
      const addr = LAYOUT.rf_connect_event.fields.addr.offset;
      view.setInt32(LAYOUT.rf_connect_event.fields.ret.offset, -111, true);
      view.setUint16(addr + S.family.offset, 10, true); // AF_INET6
      view.setUint16(addr + S.port.offset, 443, true);
      bytes.set([0x20, 0x01, 0x0d, 0xb8], addr + S.addr.offset);
      bytes[addr + S.addr.offset + 15] = 1;
    });
    const unknownType = record(99, HEADER_SIZE);
    const { events, unknown, firstUnknown } = decodeBatch(concat(fork(), exit, unknownType, connect), 4, wall);
    expect(unknown).toBe(1);
    expect(firstUnknown).toBe(`record 2 at offset ${LAYOUT.rf_fork_event.size + LAYOUT.rf_exit_event.size}: type 99 is unknown ${TYPES}`);
    expect(events.map((e) => e.type)).toEqual(['fork', 'exit', 'connect']);
    expect(events[0]).toMatchObject({ childTgid: 200 });
    expect(events[1]).toMatchObject({ signal: 9, exitCode: null });
    expect(events[2]).toMatchObject({ family: 'inet6', address: '2001:db8::1', port: 443, errno: 111 });
  });

  it('an empty batch has no events', () => {
    expect(decodeBatch(new Uint8Array(0), 0, wall)).toEqual({ events: [], unknown: 0, firstUnknown: undefined });
  });

  it('only the records it is told of: bytes after them are not read', () => {
    const { events } = decodeBatch(concat(fork(201), fork(202)), 1, wall);
    expect(events).toMatchObject([{ type: 'fork', childTgid: 201 }]);
  });

  it('the next record starts at the size rounded up to 8 (RECORD_ALIGN)', () => {
    const E = LAYOUT.rf_exec_event.fields;
    const exec = record(EventType.EXEC, E.args.offset + 3, (view, bytes) => {
      bytes.set(new TextEncoder().encode('sh\0'), E.args.offset);
      view.setUint16(E.args_len.offset, 3, true);
    });
    expect(exec.length).toBe(E.args.offset + 4); // 447 bytes, padded to 448
    const { events, unknown } = decodeBatch(concat(exec, fork(203)), 2, wall);
    expect(unknown).toBe(0);
    expect(events).toMatchObject([{ type: 'exec', argv: ['sh'] }, { type: 'fork', childTgid: 203 }]);
  });

  it('a batch that is a subarray of a larger buffer (a Buffer of the addon’s pool) is read from its own start', () => {
    const pool = concat(fork(1), fork(204));
    const batch = pool.subarray(LAYOUT.rf_fork_event.size);
    expect(decodeBatch(batch, 1, wall).events).toMatchObject([{ type: 'fork', childTgid: 204 }]);
  });

  it('a record that ends exactly at the batch’s end, and a header-only record of unknown type', () => {
    const { events, unknown } = decodeBatch(concat(fork(205), record(99, HEADER_SIZE)), 2, wall);
    expect(events).toMatchObject([{ type: 'fork', childTgid: 205 }]);
    expect(unknown).toBe(1);
  });

  it('refuses a batch whose records run past its end instead of skipping', () => {
    expect.assertions(3);
    const batch = fork();
    expect(() => decodeBatch(batch.subarray(0, 40), 1, wall)).toThrow(new DecodeError('batch ends after 0 of 1 records'));
    expect(() => decodeBatch(batch, 2, wall)).toThrow(new DecodeError('batch ends after 1 of 2 records'));
    // a header's worth of bytes is left, and the record claims more
    expect(() => decodeBatch(batch.subarray(0, LAYOUT.rf_fork_event.size - 1), 1, wall)).toThrow(
      new DecodeError(`record 0 at offset 0 has size ${LAYOUT.rf_fork_event.size}, batch is ${LAYOUT.rf_fork_event.size - 1} bytes`),
    );
  });

  it('refuses a record smaller than a header (the walk could not go on)', () => {
    const batch = concat(fork(), record(99, HEADER_SIZE));
    new DataView(batch.buffer).setUint32(LAYOUT.rf_fork_event.size + H.size.offset, HEADER_SIZE - 1, true);
    expect(() => decodeBatch(batch, 2, wall)).toThrow(
      new DecodeError(`record 1 at offset ${LAYOUT.rf_fork_event.size} has size ${HEADER_SIZE - 1}, batch is ${batch.length} bytes`),
    );
  });

  it('refuses a record of size 0 rather than reading it forever', () => {
    const batch = record(99, HEADER_SIZE);
    new DataView(batch.buffer).setUint32(H.size.offset, 0, true);
    expect(() => decodeBatch(batch, 2, wall)).toThrow(new DecodeError(`record 0 at offset 0 has size 0, batch is ${HEADER_SIZE} bytes`));
  });

  // a record shorter than its struct: the layouts disagree, and its fields would be read from the next one
  it.each([
    ['exec', EventType.EXEC, LAYOUT.rf_exec_event.fields.args.offset],
    ['fork', EventType.FORK, LAYOUT.rf_fork_event.size],
    ['exit', EventType.EXIT, LAYOUT.rf_exit_event.size],
    ['connect', EventType.CONNECT, LAYOUT.rf_connect_event.size],
    ['ptrace', EventType.PTRACE, LAYOUT.rf_ptrace_event.size],
    ['vm_access', EventType.VM_ACCESS, LAYOUT.rf_vm_access_event.size],
    ['proc_mem_open', EventType.PROC_MEM_OPEN, LAYOUT.rf_proc_mem_event.size],
    ['stdio_dup', EventType.STDIO_DUP, LAYOUT.rf_stdio_dup_event.size],
    ['egress', EventType.EGRESS, LAYOUT.rf_egress_event.size],
    ['detection', EventType.DETECTION, LAYOUT.rf_detection_event.size],
  ])('refuses a %s record one byte short of its %i-byte minimum, and decodes one of it', (name, type, minimum) => {
    const valid = (view: DataView) => {
      // enum values the decoder knows, where the record has them
      const E = LAYOUT.rf_egress_event.fields;
      const D = LAYOUT.rf_detection_event.fields;
      if (type === EventType.EGRESS) [E.hook, E.verdict].forEach((field) => view.setUint8(field.offset, 1));
      if (type === EventType.DETECTION) [D.detection, D.action, D.hook].forEach((field) => view.setUint8(field.offset, 1));
    };
    const short = record(type, minimum - 1, valid);
    expect(() => decodeBatch(short, 1, wall)).toThrow(new DecodeError(`record 0 at offset 0 (${name}) is ${minimum - 1} bytes, expected ${minimum}`));
    const { events, unknown } = decodeBatch(record(type, minimum, valid), 1, wall);
    expect(unknown).toBe(0);
    expect(events.map((event) => [event.type, event.pid])).toEqual([[name, 101]]);
  });

  describe('header', () => {
    it('every field, and the wall-clock time from the boot-time stamp', () => {
      const batch = fork();
      const view = new DataView(batch.buffer);
      view.setBigUint64(H.ktime_ns.offset, 2n ** 34n + 250_000n, true); // the high word matters
      view.setBigUint64(H.cgroup_id.offset, 2n ** 40n + 7n, true);
      view.setBigUint64(H.job_cgroup_id.offset, 2n ** 36n + 3n, true);
      const [event] = decodeBatch(batch, 1, 1_700_000_000_000).events;
      expect(event).toEqual({
        type: 'fork',
        ktimeNs: 2 ** 34 + 250_000,
        timeMs: 1_700_000_000_000 + (2 ** 34 + 250_000) / 1e6,
        cgroupId: 2 ** 40 + 7,
        jobCgroupId: 2 ** 36 + 3,
        pid: 101,
        tgid: 100,
        ppid: 1,
        uid: 1000,
        comm: 'bash',
        childPid: 0,
        childTgid: 200,
      });
    });

    const commOf = (comm: Uint8Array) => {
      // the field after comm is child_pid: 'XXXX' there must not join the name
      const batch = record(EventType.FORK, LAYOUT.rf_fork_event.size, (view) => view.setUint32(LAYOUT.rf_fork_event.fields.child_pid.offset, 0x58585858, true), comm);
      return decodeBatch(batch, 1, wall).events[0].comm;
    };
    const bytes = (text: string) => new TextEncoder().encode(text);

    it.each([
      ['a name of all 16 bytes, without NUL', bytes('abcdefghijklmnop'), 'abcdefghijklmnop'],
      ['the bytes after the NUL', bytes('sh\0stale-name'), 'sh'],
      ['UTF-8', bytes('grüße'), 'grüße'],
      ['UTF-8 filling the field', bytes('é'.repeat(8)), 'é'.repeat(8)],
      ['empty', bytes(''), ''],
    ])('comm: %s', (_what, comm, name) => {
      expect(commOf(comm)).toBe(name);
    });
  });
});

describe('familyName', () => {
  it.each([
    [2, 'inet'],
    [10, 'inet6'],
    [1, 'unix'],
    [0, 'af0'],
    [17, 'af17'],
  ])('family %i is %s', (family, name) => expect(familyName(family)).toBe(name));
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
  it('the 4 or 16 bytes at the offset given, no more', () => {
    const bytes = new Uint8Array(40).fill(0xff);
    bytes.set([198, 51, 100, 1], 3);
    expect(formatAddress(2, bytes, 3)).toBe('198.51.100.1');
    bytes.set(v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 2]), 20);
    expect(formatAddress(10, bytes, 20)).toBe('2001:db8::2');
  });
  it.each([1, 0, 17])('family %i has no address text', (family) => {
    expect(formatAddress(family, new Uint8Array([10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), 0)).toBe('');
  });
});
