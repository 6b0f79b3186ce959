/**
 * The bytes of the kernel maps' keys and values (src/abi/records.ts), read
 * back with the offsets of src/abi/layout.ts (checked against the BTF by
 * test/unit/layout.test.ts) and with literal expectations where the layout
 * is the kernel's own (a u64, a u32, a comm).
 */
import { describe, expect, it } from 'vitest';
import { AllowSource, COMM_LEN, DetectionId, LAYOUT } from '../../src/abi/layout';
import { commKey, decodeKillCount, encodeAllowKey, encodeAllowValue, encodeCgroupKey, encodeJobLockdown, encodeJobPolicy, encodeU32Key, present } from '../../src/abi/records';
import { parseIp } from '../../src/net/address';
import type { DetectionName } from '../../src/sensor/events';
import { decodeAllowKey, decodeJobLockdown, decodeJobPolicy } from './enforce-kernel';

/** RF_DETECT_BIT(d) of bpf/events.h: the bit the kernel tests for detection d. */
const bit = (detection: DetectionName) => 2 ** DetectionId[detection];

describe('integer keys', () => {
  it('a cgroup id is a little-endian u64, all 64 bits of it', () => {
    expect(encodeCgroupKey(0x0102030405)).toEqual(Buffer.from([5, 4, 3, 2, 1, 0, 0, 0]));
    expect(encodeCgroupKey(2 ** 53 - 1)).toEqual(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0]));
  });

  it('a tgid or tid is a little-endian u32', () => {
    expect(encodeU32Key(0x01020304)).toEqual(Buffer.from([4, 3, 2, 1]));
    expect(encodeU32Key(70000)).toEqual(Buffer.from([0x70, 0x11, 1, 0]));
  });

  it('a set-like map’s value is the one byte 1, a fresh buffer each time', () => {
    const first = present();
    expect(first).toEqual(Buffer.from([1]));
    first[0] = 7;
    expect(present()).toEqual(Buffer.from([1]));
  });

  it('a job_kills value is read as a little-endian u64', () => {
    expect(decodeKillCount(Buffer.from([3, 1, 0, 0, 0, 0, 0, 0]))).toBe(259);
    expect(decodeKillCount(Buffer.from([0, 0, 0, 0, 1, 0, 0, 0]))).toBe(2 ** 32);
  });
});

describe('encodeJobPolicy', () => {
  const dns = { ip4: Uint8Array.from([127, 0, 0, 53]), ip6: Uint8Array.from([...Array<number>(15).fill(0), 1]), port: 5353 };

  it('policy id, block, and the DNS proxy at their offsets; nothing in the padding', () => {
    const value = encodeJobPolicy({ policyId: 0x01020304, block: true, dns });
    expect(value).toHaveLength(LAYOUT.rf_job_policy.size);
    expect(decodeJobPolicy(value)).toEqual({ policyId: 0x01020304, block: 1, dnsPort: 5353, dnsIp4: '127.0.0.53', dnsIp6: '::1' });
    expect(value[LAYOUT.rf_job_policy.fields._pad.offset]).toBe(0);
  });

  it('audit: block clear', () => {
    expect(decodeJobPolicy(encodeJobPolicy({ policyId: 9, block: false, dns })).block).toBe(0);
  });
});

describe('encodeAllowKey and encodeAllowValue', () => {
  const v4 = parseIp('10.1.0.0')!;
  const v6 = parseIp('2001:db8::')!;

  it('an IPv4 entry: rf_allow4_key, its prefix counted past the policy id and port', () => {
    const key = encodeAllowKey(0x0a0b0c0d, { family: 4, bytes: v4.bytes, prefixLength: 16, port: 22 });
    expect(key).toHaveLength(LAYOUT.rf_allow4_key.size);
    expect(key.readUInt32LE(0)).toBe(48 + 16);
    expect(decodeAllowKey(key)).toEqual({ family: 4, policyId: 0x0a0b0c0d, port: 22, address: '10.1.0.0', prefixLength: 16 });
  });

  it('an IPv6 entry: rf_allow6_key', () => {
    const key = encodeAllowKey(7, { family: 6, bytes: v6.bytes, prefixLength: 32, port: 8443 });
    expect(key).toHaveLength(LAYOUT.rf_allow6_key.size);
    expect(decodeAllowKey(key)).toEqual({ family: 6, policyId: 7, port: 8443, address: '2001:db8::', prefixLength: 32 });
  });

  it.each(Object.entries(AllowSource))('the value is the source, %s, as a little-endian u32', (_name, source) => {
    expect(encodeAllowValue(source)).toEqual(Buffer.from([source, 0, 0, 0]));
  });
});

describe('encodeJobLockdown', () => {
  it.each(Object.keys(DetectionId) as DetectionName[])('%s alone sets its bit and no other', (detection) => {
    const value = encodeJobLockdown({ kill: [detection], loopbackIsRemote: false });
    expect(value).toHaveLength(LAYOUT.rf_job_lockdown.size);
    expect(decodeJobLockdown(value)).toEqual({ killMask: bit(detection), loopbackRemote: 0 });
  });

  it('several detections set each of their bits', () => {
    expect(decodeJobLockdown(encodeJobLockdown({ kill: ['Reverse-Shell', 'Agent-Tamper', 'Cgroup-Escape'], loopbackIsRemote: false })).killMask).toBe(
      bit('Reverse-Shell') + bit('Agent-Tamper') + bit('Cgroup-Escape'),
    );
  });

  it('nothing to kill: an empty mask', () => {
    expect(decodeJobLockdown(encodeJobLockdown({ kill: [], loopbackIsRemote: false }))).toEqual({ killMask: 0, loopbackRemote: 0 });
  });

  it('loopbackIsRemote sets loopback_remote; false leaves it clear', () => {
    expect(decodeJobLockdown(encodeJobLockdown({ kill: ['Reverse-Shell'], loopbackIsRemote: true }))).toEqual({ killMask: bit('Reverse-Shell'), loopbackRemote: 1 });
    expect(decodeJobLockdown(encodeJobLockdown({ kill: ['Reverse-Shell'], loopbackIsRemote: false })).loopbackRemote).toBe(0);
  });
});

describe('commKey', () => {
  const expected = (bytes: Buffer) => Buffer.concat([bytes, Buffer.alloc(COMM_LEN - bytes.length)]);

  it('a short name, NUL padded to the kernel’s comm size', () => {
    expect(commKey('bash')).toEqual(expected(Buffer.from('bash')));
  });

  it('a name of exactly 15 bytes keeps all of them and its NUL', () => {
    expect(commKey('Runner.Listener')).toEqual(expected(Buffer.from('Runner.Listener')));
  });

  it('a longer name is cut at 15 bytes, as the kernel cuts it', () => {
    expect(commKey('containerd-shim-runc-v2')).toEqual(expected(Buffer.from('containerd-shim')));
  });

  it('counts bytes, not characters: a UTF-8 name is cut inside a character like the kernel does', () => {
    const name = 'é'.repeat(8); // 16 bytes
    expect(commKey(name)).toEqual(expected(Buffer.from(name).subarray(0, 15)));
  });
});
