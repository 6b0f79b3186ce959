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
  if (!/^[0-9a-fA-F:.]+$/.test(text) || text.includes(':::')) return undefined;
  let tail: Uint8Array | undefined;
  let body = text;
  // an embedded IPv4 tail (::ffff:1.2.3.4)
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    tail = parseIPv4(text.slice(lastColon + 1));
    if (!tail) return undefined;
    body = text.slice(0, lastColon + 1) + '0:0';
  }
  const halves = body.split('::');
  if (halves.length > 2) return undefined;
  const parse = (half: string) => (half === '' ? [] : half.split(':'));
  const head = parse(halves[0]);
  const rest = halves.length === 2 ? parse(halves[1]) : [];
  // '::' stands for at least one group: more than 7 around it is no address (and no negative Array length)
  if (halves.length === 2 && head.length + rest.length > 7) return undefined;
  const groups = halves.length === 2 ? [...head, ...Array(8 - head.length - rest.length).fill('0'), ...rest] : head;
  if (groups.length !== 8) return undefined;
  const bytes = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(groups[i])) return undefined;
    const value = parseInt(groups[i], 16);
    bytes[2 * i] = value >> 8;
    bytes[2 * i + 1] = value & 0xff;
  }
  if (tail) bytes.set(tail, 12);
  return bytes;
}

export function parseIp(text: string): IpAddress | undefined {
  const v4 = parseIPv4(text);
  if (v4) return { family: 4, bytes: v4 };
  const v6 = text.includes(':') ? parseIPv6(text) : undefined;
  return v6 ? { family: 6, bytes: v6 } : undefined;
}

/** ::ffff:a.b.c.d is the IPv4 address a.b.c.d; anything else is itself. */
export function unmapIPv4(address: IpAddress): IpAddress {
  if (address.family !== 6) return address;
  const b = address.bytes;
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return address;
  if (b[10] !== 0xff || b[11] !== 0xff) return address;
  return { family: 4, bytes: b.slice(12) };
}

/** Whether the first `prefixLength` bits of a and b agree. */
export function prefixMatches(a: Uint8Array, b: Uint8Array, prefixLength: number): boolean {
  const whole = prefixLength >> 3;
  for (let i = 0; i < whole; i++) if (a[i] !== b[i]) return false;
  const bits = prefixLength & 7;
  if (bits === 0) return true;
  const mask = (0xff << (8 - bits)) & 0xff;
  return (a[whole] & mask) === (b[whole] & mask);
}

/** Text form: dotted quad, or RFC 5952 IPv6 (IPv4-mapped with its IPv4 tail). */
/** 127.0.0.0/8, ::1, or 127.x as IPv4-mapped IPv6. */
export function isLoopback(address: IpAddress): boolean {
  const plain = unmapIPv4(address);
  if (plain.family === 4) return plain.bytes[0] === 127;
  return plain.bytes.every((b, i) => (i < 15 ? b === 0 : b === 1));
}

export function formatIp(address: IpAddress): string {
  const b = address.bytes;
  if (address.family === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  if (unmapIPv4(address) !== address) return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) groups.push(((b[2 * i] << 8) | b[2 * i + 1]).toString(16));
  let best = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLength) {
      best = i;
      bestLength = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLength).join(':')}`;
}

/**
 * A local or remote address column of /proc/net/{tcp,udp}{,6}: "0100007F:1F90"
 * (IPv4) or 32 hex digits (IPv6), then the port; each 32-bit word of the
 * address is in the machine's byte order.
 */
export function parseProcNetAddress(text: string): { address: IpAddress; port: number } {
  const [hex, portHex] = text.split(':');
  const bytes: number[] = [];
  const littleEndian = os.endianness() === 'LE';
  for (let word = 0; word < hex.length / 8; word++) {
    const w = hex.slice(word * 8, word * 8 + 8);
    const wordBytes = [0, 1, 2, 3].map((b) => parseInt(w.slice(b * 2, b * 2 + 2), 16));
    bytes.push(...(littleEndian ? wordBytes.reverse() : wordBytes));
  }
  return { address: { family: bytes.length === 4 ? 4 : 6, bytes: Uint8Array.from(bytes) }, port: parseInt(portHex, 16) };
}
