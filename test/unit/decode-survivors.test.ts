/**
 * Exec records whose args_len and record size disagree: the decoder takes
 * the smaller, so that bytes the kernel did not count as arguments never
 * become an argument. Each record is built from scratch per case at the
 * offsets of src/abi/layout.ts.
 */
import { describe, expect, it } from 'vitest';
import { EventType, LAYOUT } from '../../src/abi/layout';
import { decodeBatch } from '../../src/sensor/decode';

const H = LAYOUT.rf_event_header.fields;
const X = LAYOUT.rf_exec_event.fields;
const encode = (text: string) => new TextEncoder().encode(text);

/** An exec record of `size` bytes (8-aligned in its batch) with `args` at args and `argsLength` as args_len. */
function exec(size: number, args: Uint8Array, argsLength: number): Uint8Array {
  const bytes = new Uint8Array(Math.ceil(size / 8) * 8);
  const view = new DataView(bytes.buffer);
  view.setUint32(H.size.offset, size, true);
  view.setUint16(H.type.offset, EventType.EXEC, true);
  const filename = encode('/bin/sh');
  bytes.set(filename, X.filename.offset);
  view.setUint16(X.filename_len.offset, filename.length, true);
  bytes.set(args, X.args.offset);
  view.setUint16(X.args_len.offset, argsLength, true);
  view.setUint32(X.argc.offset, 2, true);
  return bytes;
}

function argvOf(bytes: Uint8Array): string[] {
  const { events, unknown } = decodeBatch(bytes, 1, 0);
  expect(unknown).toBe(0);
  const [event] = events;
  if (event?.type !== 'exec') throw new Error(`decoded ${event?.type}`);
  return event.argv;
}

describe('exec arguments when args_len and the record size disagree', () => {
  it('args_len shorter than the record: the bytes after args_len are no argument', () => {
    const args = encode('sh\0-c\0id\0');
    // args_len counts 'sh\0-c\0' (6 bytes); the record goes on with 'id\0'
    expect(argvOf(exec(X.args.offset + args.length, args, 6))).toEqual(['sh', '-c']);
  });

  it('args_len is little-endian: 300 bytes of arguments are 300, not 0x2c01', () => {
    const args = encode(`${'a'.repeat(299)}\0tail`);
    expect(argvOf(exec(X.args.offset + args.length, args, 300))).toEqual(['a'.repeat(299)]);
  });
});

describe('the layout facts that decode.ts\'s Stryker disables rest on', () => {
  // decode.ts disables the `+ offset` to `- offset` mutants of these fields as
  // equivalent because each offset is 0: if a struct is reordered they are not,
  // and the disables must go.
  it.each([
    ['rf_sockaddr', 'family'],
    ['rf_fd_info', 'kind'],
    ['rf_event_header', 'size'],
  ] as const)('%s.%s is at offset 0', (struct, field) => {
    expect((LAYOUT[struct].fields as Record<string, { offset: number }>)[field].offset).toBe(0);
  });
});
