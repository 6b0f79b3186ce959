/**
 * Bug classes of issue 14 that the rest of the unit suite let through when
 * they were put back (docs: /work/notes/bug-classes.md).
 *
 * A CIDR whose prefix ends inside a byte (/20, /36, /25) is judged right by
 * EgressMatcher (test/unit/mutation-policy.test.ts), but the kernel does not
 * use EgressMatcher: it looks addresses up in the allow4/allow6 LPM tries
 * that JobEgress fills through encodeAllowKey. Every existing test of that
 * path used whole-byte prefixes (/16, /32), so a prefix rounded down to whole
 * bytes on the way to the kernel (/20 written as /16: all of 10.1.0.0/16
 * allowed) passed. These cases look the written keys up as the kernel would
 * and ask which addresses they cover, on both sides of each prefix's edge.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ALLOW_FIXED_BITS, LAYOUT } from '../../src/abi/layout';
import { encodeAllowKey } from '../../src/abi/records';
import { Cgroup } from '../../src/cgroup/cgroup2';
import { JobEgress } from '../../src/enforce/egress';
import { parseIp } from '../../src/net/address';
import { parsePolicy } from '../../src/policy/policy';
import { RecordingKernel } from './enforce-kernel';

/**
 * The key bpf/egress.bpf.c (rf_allowed4/rf_allowed6) looks a connection up
 * with: every bit of policy id, port and address. Built here from the layout,
 * not with encodeAllowKey, so that a bug there cannot shape the lookup too.
 */
function lookupKey(policyId: number, address: string, port: number): Buffer {
  const ip = parseIp(address);
  if (!ip) throw new Error(`test data: '${address}' is no address`);
  const layout = ip.family === 4 ? LAYOUT.rf_allow4_key : LAYOUT.rf_allow6_key;
  const f = layout.fields;
  const key = Buffer.alloc(layout.size);
  key.writeUInt32LE(ALLOW_FIXED_BITS + 8 * ip.bytes.length, f.prefixlen.offset);
  key.writeUInt32LE(policyId, f.policy_id.offset);
  key.writeUInt16LE(port, f.port.offset);
  key.set(ip.bytes, f.addr.offset);
  return key;
}

/**
 * Whether an LPM-trie entry covers a lookup key, as the kernel's lpm_trie
 * decides it: the entry's first `prefixlen` bits of data (everything after the
 * u32 prefixlen), most significant bit of each byte first, equal the key's.
 * Bit by bit on purpose: net/address.ts's networkOf is not what is judged.
 */
function lpmCovers(entry: Buffer, lookup: Buffer): boolean {
  if (entry.length !== lookup.length) return false;
  const bits = entry.readUInt32LE(0);
  if (bits > lookup.readUInt32LE(0)) return false;
  const entryData = entry.subarray(4);
  const lookupData = lookup.subarray(4);
  for (let bit = 0; bit < bits; bit++) {
    const mask = 0x80 >> (bit % 8);
    if ((entryData[bit >> 3] & mask) !== (lookupData[bit >> 3] & mask)) return false;
  }
  return true;
}

/** Whether any allow4/allow6 entry the kernel would hold lets `address`:`port` of `policyId` through. */
function kernelAllows(kernel: RecordingKernel, policyId: number, address: string, port: number): boolean {
  const lookup = lookupKey(policyId, address, port);
  return [...kernel.held('allow4'), ...kernel.held('allow6')].some(([key]) => lpmCovers(key, lookup));
}

// the premise of lpmCovers: the kernel's LPM trie takes its prefix length from a u32 at the key's start
describe('the LPM model these cases rest on', () => {
  it.each([LAYOUT.rf_allow4_key, LAYOUT.rf_allow6_key])('prefixlen is the key’s first u32, the address its last data before padding', (layout) => {
    expect(layout.fields.prefixlen).toEqual({ offset: 0, size: 4 });
    expect(8 * (layout.fields.addr.offset - 4)).toBe(ALLOW_FIXED_BITS);
  });

  it('covers by bits, not bytes: a /20 entry key covers its 4,096 addresses and not the next', () => {
    const entry = lookupKey(1, '10.1.16.0', 22);
    entry.writeUInt32LE(ALLOW_FIXED_BITS + 20, 0);
    expect(lpmCovers(entry, lookupKey(1, '10.1.31.255', 22))).toBe(true);
    expect(lpmCovers(entry, lookupKey(1, '10.1.32.0', 22))).toBe(false);
    expect(lpmCovers(entry, lookupKey(2, '10.1.16.1', 22))).toBe(false);
  });
});

describe('encodeAllowKey: a prefix that ends inside a byte', () => {
  // [entry, inside (first and last), outside (just below, just above, same whole bytes)]
  it.each<[string, number, string[], string[]]>([
    ['10.1.16.0', 20, ['10.1.16.0', '10.1.31.255'], ['10.1.15.255', '10.1.32.0', '10.1.0.1']],
    ['10.8.0.0', 13, ['10.8.0.0', '10.15.255.255'], ['10.7.255.255', '10.16.0.0', '10.0.0.1']],
    ['192.0.2.128', 25, ['192.0.2.128', '192.0.2.255'], ['192.0.2.127', '192.0.2.0']],
    ['192.0.2.6', 31, ['192.0.2.6', '192.0.2.7'], ['192.0.2.5', '192.0.2.8']],
    ['2001:db8:1000::', 36, ['2001:db8:1000::', '2001:db8:1fff:ffff:ffff:ffff:ffff:ffff'], ['2001:db8:fff:ffff::', '2001:db8:2000::', '2001:db8::1']],
    ['2001:db8::80', 121, ['2001:db8::80', '2001:db8::ff'], ['2001:db8::7f', '2001:db8::100']],
  ])('%s/%i: the kernel entry covers exactly the prefix', (network, prefixLength, inside, outside) => {
    const ip = parseIp(network)!;
    const key = encodeAllowKey(7, { family: ip.family, bytes: ip.bytes, prefixLength, port: 443 });
    expect(key.readUInt32LE(LAYOUT.rf_allow4_key.fields.prefixlen.offset)).toBe(ALLOW_FIXED_BITS + prefixLength);
    expect(inside.map((address) => lpmCovers(key, lookupKey(7, address, 443)))).toEqual(inside.map(() => true));
    expect(outside.map((address) => lpmCovers(key, lookupKey(7, address, 443)))).toEqual(outside.map(() => false));
  });
});

describe('JobEgress: a policy CIDR ending inside a byte, as the kernel would judge it', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
  });
  /** A directory standing for the job's cgroup (its id is the directory's inode). */
  const jobCgroup = () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-bug-classes-'));
    dirs.push(dir);
    return new Cgroup(dir);
  };
  const policy = () => parsePolicy('egress-policy: block\nallowed-endpoints: >\n  10.1.16.0/20:22\n  [2001:db8:1000::/36]:8443\n');

  it.each<[string, number, boolean]>([
    ['10.1.16.0', 22, true],
    ['10.1.31.255', 22, true],
    ['10.1.24.7', 0, true], // port-less traffic to the same network
    ['10.1.15.255', 22, false],
    ['10.1.32.0', 22, false],
    ['10.1.0.1', 22, false], // inside the /16 a prefix rounded down to whole bytes would allow
    ['10.1.16.1', 443, false],
    ['2001:db8:1000::1', 8443, true],
    ['2001:db8:1fff:ffff::', 8443, true],
    ['2001:db8:2000::', 8443, false],
    ['2001:db8:fff:ffff::', 8443, false],
    ['2001:db8::1', 8443, false], // inside the /32 a rounded-down /36 would allow
  ])('%s port %i: allowed %s', (address, port, allowed) => {
    const kernel = new RecordingKernel();
    const egress = new JobEgress(kernel.maps, jobCgroup(), policy());
    try {
      expect(kernelAllows(kernel, egress.policyId, address, port)).toBe(allowed);
    } finally {
      egress.remove();
    }
  });

  it('another job’s policy id is not let through by this job’s entries', () => {
    const kernel = new RecordingKernel();
    const egress = new JobEgress(kernel.maps, jobCgroup(), policy());
    try {
      expect(kernelAllows(kernel, egress.policyId, '10.1.16.1', 22)).toBe(true);
      expect(kernelAllows(kernel, egress.policyId + 1, '10.1.16.1', 22)).toBe(false);
    } finally {
      egress.remove();
    }
  });
});
