/**
 * Address parsing and prefix matching (src/net/address.ts), at the edges a
 * small bug moves: prefixes that end inside a byte, the last address in and
 * the first one out, IPv4-mapped IPv6, RFC 5952 text. Every case builds its
 * own data.
 */
import { describe, expect, it } from 'vitest';
import { formatIp, isLoopback, networkOf, parseIp, parseIPv4, parseIPv6, parseProcNetAddress, prefixMatches, unmapIPv4, type IpAddress } from '../../src/net/address';

const bytesOf = (text: string): Uint8Array => {
  const address = parseIp(text);
  if (!address) throw new Error(`test data: '${text}' is not an address`);
  return address.bytes;
};
const hex = (bytes: Uint8Array | undefined) => (bytes ? Buffer.from(bytes).toString('hex') : undefined);

describe('prefixMatches', () => {
  // [network, prefix length, address, inside]
  it.each([
    // /20: the prefix ends after 4 bits of the third byte
    ['10.1.16.0', 20, '10.1.16.0', true],
    ['10.1.16.0', 20, '10.1.31.255', true],
    ['10.1.16.0', 20, '10.1.15.255', false],
    ['10.1.16.0', 20, '10.1.32.0', false],
    ['10.1.16.0', 20, '10.1.48.1', false],
    // /13: the prefix ends after 5 bits of the second byte
    ['10.8.0.0', 13, '10.8.0.0', true],
    ['10.8.0.0', 13, '10.15.255.255', true],
    ['10.8.0.0', 13, '10.7.255.255', false],
    ['10.8.0.0', 13, '10.16.0.0', false],
    // /31 and /25: one bit, seven bits of the last byte
    ['192.0.2.6', 31, '192.0.2.7', true],
    ['192.0.2.6', 31, '192.0.2.5', false],
    ['192.0.2.6', 31, '192.0.2.8', false],
    ['192.0.2.128', 25, '192.0.2.255', true],
    ['192.0.2.128', 25, '192.0.2.127', false],
    // /1: only the top bit
    ['128.0.0.0', 1, '255.255.255.255', true],
    ['128.0.0.0', 1, '127.255.255.255', false],
    // whole bytes
    ['10.1.0.0', 16, '10.1.255.255', true],
    ['10.1.0.0', 16, '10.0.255.255', false],
    ['10.1.0.0', 16, '11.1.0.0', false],
    ['192.0.2.7', 32, '192.0.2.7', true],
    ['192.0.2.7', 32, '192.0.2.6', false],
    ['0.0.0.0', 0, '203.0.113.9', true],
    // /121 in IPv6: 1 bit of the last byte
    ['2001:db8::80', 121, '2001:db8::80', true],
    ['2001:db8::80', 121, '2001:db8::ff', true],
    ['2001:db8::80', 121, '2001:db8::7f', false],
    ['2001:db8::80', 121, '2001:db8::180', false],
    // /36: the prefix ends inside the fifth byte
    ['2001:db8:1000::', 36, '2001:db8:1fff:ffff::1', true],
    ['2001:db8:1000::', 36, '2001:db8:2000::', false],
    ['2001:db8:1000::', 36, '2001:db8:fff:ffff::', false],
    ['2001:db8::', 32, '2001:db8:ffff::1', true],
    ['2001:db8::', 32, '2001:db9::', false],
    ['2001:db8::1', 128, '2001:db8::1', true],
    ['2001:db8::1', 128, '2001:db8::2', false],
  ])('%s/%d vs %s → %s', (network, length, address, inside) => {
    expect(prefixMatches(bytesOf(network), bytesOf(address), length)).toBe(inside);
  });
});

describe('networkOf', () => {
  // [address, prefix length, network]
  it.each([
    ['10.1.31.255', 20, '10.1.16.0'],
    ['10.1.31.255', 23, '10.1.30.0'],
    ['10.1.31.255', 8, '10.0.0.0'],
    ['10.1.31.255', 1, '0.0.0.0'],
    ['192.0.2.255', 25, '192.0.2.128'],
    ['10.1.31.255', 32, '10.1.31.255'],
    ['10.1.31.255', 0, '0.0.0.0'],
    ['2001:db8::ff', 121, '2001:db8::80'],
    ['2001:db8:1fff:ffff::1', 36, '2001:db8:1000::'],
    ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 127, 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe'],
    ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 128, 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'],
    ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 96, 'ffff:ffff:ffff:ffff:ffff:ffff::'],
  ])('%s/%d → %s', (address, length, network) => {
    const parsed = parseIp(address)!;
    expect(formatIp({ family: parsed.family, bytes: networkOf(parsed.bytes, length) })).toBe(network);
  });

  it('leaves the address it is given as it is', () => {
    const bytes = Uint8Array.from([10, 1, 31, 255]);
    networkOf(bytes, 20);
    expect([...bytes]).toEqual([10, 1, 31, 255]);
  });
});

describe('parseIPv4', () => {
  it.each([
    ['0.0.0.0', '00000000'],
    ['255.255.255.255', 'ffffffff'],
    ['192.0.2.7', 'c0000207'],
    ['10.200.3.99', '0ac80363'],
  ])('%s → %s', (text, expected) => {
    expect(hex(parseIPv4(text))).toBe(expected);
  });

  it.each(['256.0.0.1', '1.2.3.1000', '01.2.3.4', '1.2.3', '1.2.3.4.5', '1.2.3.', '', '1.2.3.-1', '1.2.3.4 ', 'a.b.c.d', '1.2.3.0x1'])('refuses %j', (text) => {
    expect(parseIPv4(text)).toBeUndefined();
  });
});

describe('parseIPv6', () => {
  it.each([
    ['::', '00000000000000000000000000000000'],
    ['::1', '00000000000000000000000000000001'],
    ['1::', '00010000000000000000000000000000'],
    ['2001:db8::1', '20010db8000000000000000000000001'],
    ['2001:DB8:0:0:1:0:0:1', '20010db8000000000001000000000001'],
    ['1:2:3:4:5:6:7:8', '00010002000300040005000600070008'],
    ['1:2:3:4:5:6:7::', '00010002000300040005000600070000'],
    ['::2:3:4:5:6:7:8', '00000002000300040005000600070008'],
    ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'ffffffffffffffffffffffffffffffff'],
    ['::ffff:192.0.2.7', '00000000000000000000ffffc0000207'],
    ['64:ff9b::10.0.0.1', '0064ff9b00000000000000000a000001'],
    ['1:2:3:4:5:6:10.0.0.1', '0001000200030004000500060a000001'],
    ['::10.0.0.1', '0000000000000000000000000a000001'],
  ])('%s → %s', (text, expected) => {
    expect(hex(parseIPv6(text))).toBe(expected);
  });

  it.each([
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7',
    '1:2:3:4:5:6:7:8::',
    '::1:2:3:4:5:6:7:8',
    '1::2::3',
    ':::1',
    '12345::',
    'g::1',
    '::ffff:192.0.2.256',
    '::ffff:1.2.3',
    'fe80::1%eth0',
    '',
    ':',
    ' ::1',
    '::1 ',
    '1:2:3:4:5:6:7:10.0.0.1',
    '1:2:3:4:5:10.0.0.1',
    '::ffff:10.0.0.1.5',
    '::ffff:10.0.0.1:1',
    '10.0.0.1::',
    '1.2::3',
    '10.0.0.1',
  ])('refuses %j', (text) => {
    expect(parseIPv6(text)).toBeUndefined();
  });
});

// Once a crash: more than 8 groups around '::' made Array() a negative
// length (RangeError) instead of answering undefined.
describe('parseIPv6 with more than 8 groups around ::', () => {
  it.each(['1:2::3:4:5:6:7:8:9', '::1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7:8:9::'])('refuses %j', (text) => {
    expect(parseIPv6(text)).toBeUndefined();
  });
});

describe('parseIp', () => {
  it.each([
    ['192.0.2.7', 4],
    ['::1', 6],
    ['::ffff:192.0.2.7', 6],
  ])('%s is IPv%d', (text, family) => {
    expect(parseIp(text)?.family).toBe(family);
  });

  it.each(['abc', 'example.com', '1.2.3', '1.2.3.4/8', '[::1]', ''])('refuses %j', (text) => {
    expect(parseIp(text)).toBeUndefined();
  });
});

describe('unmapIPv4', () => {
  it('turns ::ffff:a.b.c.d into the IPv4 address', () => {
    expect(unmapIPv4(parseIp('::ffff:192.0.2.7')!)).toEqual({ family: 4, bytes: Uint8Array.from([192, 0, 2, 7]) });
  });

  it.each([
    '::192.0.2.7', // IPv4-compatible, not mapped
    '::fffe:192.0.2.7',
    '::feff:192.0.2.7',
    '1::ffff:192.0.2.7',
    '100::ffff:192.0.2.7',
    '0:0:0:0:1:ffff:c000:207',
    '::1',
  ])('leaves %s as IPv6', (text) => {
    const address = parseIp(text)!;
    expect(unmapIPv4(address)).toBe(address);
  });

  it.each([
    [10, 0, 0, 1],
    // four zero bytes are no ::ffff: prefix
    [0, 0, 0, 0],
  ])('leaves IPv4 %d.%d.%d.%d as it is', (...bytes) => {
    const address: IpAddress = { family: 4, bytes: Uint8Array.from(bytes) };
    expect(unmapIPv4(address)).toBe(address);
  });
});

describe('isLoopback', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.255.255.254', true],
    ['126.255.255.255', false],
    ['128.0.0.1', false],
    ['::1', true],
    ['::', false],
    ['::2', false],
    ['1::1', false],
    ['::101', false],
    ['::ffff:127.0.0.1', true],
    ['::ffff:10.0.0.1', false],
  ])('%s → %s', (text, loopback) => {
    expect(isLoopback(parseIp(text)!)).toBe(loopback);
  });
});

describe('formatIp', () => {
  it.each([
    ['192.0.2.7', '192.0.2.7'],
    ['::', '::'],
    ['::1', '::1'],
    ['1::', '1::'],
    ['2001:0DB8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    // the first of two equally long runs is the one shortened
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    // the longest run, not the first
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'],
    // a single zero group stays
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
    ['::ffff:192.0.2.7', '::ffff:192.0.2.7'],
    ['::ffff:c000:207', '::ffff:192.0.2.7'],
  ])('%s → %s', (text, expected) => {
    expect(formatIp(parseIp(text)!)).toBe(expected);
  });
});

describe('parseProcNetAddress', () => {
  // [column, byte order of the machine that wrote it, family, address, port]
  it.each([
    ['0100007F:1F90', 'LE', 4, '127.0.0.1', 8080],
    ['7F000001:1F90', 'BE', 4, '127.0.0.1', 8080],
    ['076433C6:115C', 'LE', 4, '198.51.100.7', 4444],
    ['C6336407:115C', 'BE', 4, '198.51.100.7', 4444],
    ['00000000000000000000000001000000:0035', 'LE', 6, '::1', 53],
    ['00000000000000000000000000000001:0035', 'BE', 6, '::1', 53],
    ['B80D0120000000000000000001000000:01BB', 'LE', 6, '2001:db8::1', 443],
    ['0000000000000000FFFF00000100000A:0050', 'LE', 6, '::ffff:10.0.0.1', 80],
  ] as const)('%s (%s) is IPv%d %s port %d', (column, byteOrder, family, address, port) => {
    const parsed = parseProcNetAddress(column, byteOrder);
    expect({ family: parsed.address.family, address: formatIp(parsed.address), port: parsed.port }).toEqual({ family, address, port });
  });
});
