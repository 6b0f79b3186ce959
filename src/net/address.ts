/** IPv4/IPv6 text ⇄ bytes, and prefix matching, for policy entries and kernel maps. */
import os from 'node:os';

export type IpFamily = 4 | 6;

export interface IpAddress {
  family: IpFamily;
  /** 4 or 16 bytes, network order. */
  bytes: Uint8Array;
}

export function parseIPv4(text: string): Uint8Array | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  const bytes = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    if (!/^(0|[1-9]\d{0,2})$/.test(parts[i])) return undefined;
    const value = Number(parts[i]);
    if (value > 255) return undefined;
    bytes[i] = value;
  }
  return bytes;
}

export function parseIPv6(text: string): Uint8Array | undefined {
  // an embedded IPv4 tail (::ffff:1.2.3.4) stands for the last two groups
  const lastColon = text.lastIndexOf(':');
  const tailText = text.slice(lastColon + 1);
  let tail: Uint8Array | undefined;
  let body = text;
  if (tailText.includes('.')) {
    tail = parseIPv4(tailText);
    if (!tail) return undefined;
    body = text.slice(0, lastColon + 1) + '0:0';
  }
  const groups = expandGroups(body);
  if (groups?.length !== 8) return undefined;
  const bytes = new Uint8Array(16);
  // every character that is not a hex digit or a ':' (white space, '%eth0', a third ':') fails here
  for (const [i, group] of groups.entries()) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(group)) return undefined;
    const value = parseInt(group, 16);
    bytes[2 * i] = value >> 8;
    bytes[2 * i + 1] = value & 0xff;
  }
  if (tail) bytes.set(tail, 12);
  return bytes;
}

/** The groups of an IPv6 text with its '::' written out as zero groups; undefined for a second '::' or no room for one. */
function expandGroups(body: string): string[] | undefined {
  const halves = body.split('::');
  if (halves.length === 1) return body.split(':');
  if (halves.length !== 2) return undefined;
  const head = halves[0] === '' ? [] : halves[0].split(':');
  const rest = halves[1] === '' ? [] : halves[1].split(':');
  // '::' stands for at least one group: with 8 or more around it, it is no address (and no negative Array length)
  const missing = 8 - head.length - rest.length;
  if (missing < 1) return undefined;
  return [...head, ...Array<string>(missing).fill('0'), ...rest];
}

export function parseIp(text: string): IpAddress | undefined {
  const v4 = parseIPv4(text);
  if (v4) return { family: 4, bytes: v4 };
  const v6 = parseIPv6(text);
  return v6 ? { family: 6, bytes: v6 } : undefined;
}

/** ::ffff:a.b.c.d is the IPv4 address a.b.c.d; anything else is itself. */
export function unmapIPv4(address: IpAddress): IpAddress {
  const b = address.bytes;
  const mapped = address.family === 6 && b.subarray(0, 12).every((byte, i) => byte === (i < 10 ? 0 : 0xff));
  return mapped ? { family: 4, bytes: b.slice(12) } : address;
}

/** `bytes` with every bit past the first `prefixLength` cleared: the network a prefix names. */
export function networkOf(bytes: Uint8Array, prefixLength: number): Uint8Array {
  // byte i holds between 0 and 8 of the prefix's bits
  return bytes.map((byte, i) => byte & (0xff << (8 - Math.min(8, Math.max(0, prefixLength - 8 * i)))));
}

/** Whether the first `prefixLength` bits of a and b agree; an IPv4 and an IPv6 address never do (their lengths differ). */
export function prefixMatches(a: Uint8Array, b: Uint8Array, prefixLength: number): boolean {
  return Buffer.compare(networkOf(a, prefixLength), networkOf(b, prefixLength)) === 0;
}

/** 127.0.0.0/8, ::1, or 127.x as IPv4-mapped IPv6. */
export function isLoopback(address: IpAddress): boolean {
  const plain = unmapIPv4(address);
  if (plain.family === 4) return plain.bytes[0] === 127;
  return plain.bytes.every((b, i) => (i < 15 ? b === 0 : b === 1));
}

/** Text form: dotted quad, or RFC 5952 IPv6 (IPv4-mapped with its IPv4 tail). */
export function formatIp(address: IpAddress): string {
  const b = address.bytes;
  if (address.family === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  if (unmapIPv4(address) !== address) return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) groups.push(((b[2 * i] << 8) | b[2 * i + 1]).toString(16));
  // RFC 5952: the longest run of two or more zero groups, the first of equal ones, becomes '::'
  let best = -1;
  let bestLength = 1;
  let run = 0;
  groups.forEach((group, i) => {
    run = group === '0' ? run + 1 : 0;
    if (run > bestLength) {
      bestLength = run;
      best = i + 1 - run;
    }
  });
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLength).join(':')}`;
}

/**
 * A local or remote address column of /proc/net/{tcp,udp}{,6}: "0100007F:1F90"
 * (IPv4) or 32 hex digits (IPv6), then the port; each 32-bit word of the
 * address is in the machine's byte order (`byteOrder`, for tests of the other one).
 */
export function parseProcNetAddress(text: string, byteOrder: 'BE' | 'LE' = os.endianness()): { address: IpAddress; port: number } {
  const [hex, portHex] = text.split(':');
  // the kernel prints whole 32-bit words (8 or 32 digits); a column header has no hex digits at all
  const bytes = Buffer.from(hex, 'hex');
  if (byteOrder === 'LE') bytes.swap32();
  return { address: { family: bytes.length === 4 ? 4 : 6, bytes: Uint8Array.from(bytes) }, port: parseInt(portHex, 16) };
}
