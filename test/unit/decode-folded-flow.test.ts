/**
 * egress_flows entries (struct rf_flow_key → rf_flow_state of bpf/events.h)
 * as the egress events their folded repeats stand for: built per case at the
 * offsets of src/abi/layout.ts, enum values as the header's literals.
 */
import { describe, expect, it } from 'vitest';
import { DecodeError, decodeFoldedFlow, flowPolicyId } from '../../src/sensor/decode';
import { LAYOUT } from '../../src/abi/layout';

const K = LAYOUT.rf_flow_key.fields;
const V = LAYOUT.rf_flow_state.fields;
const S = LAYOUT.rf_sockaddr.fields;

interface Flow {
  policyId?: number;
  hook?: number;
  verdict?: number;
  protocol?: number;
  family?: number;
  port?: number;
  address?: number[];
  folded?: number;
}

/**
 * A key and value as the addon hands them over: slices of one larger buffer
 * (as Buffers of a pool are), so that reading from offset 0 of the
 * underlying memory instead of the slice's start is caught.
 */
function entry({ policyId = 0x0a0b0c0d, hook = 2, verdict = 2, protocol = 17, family = 2, port = 53, address = [198, 18, 0, 9], folded = 5 }: Flow): [Buffer, Buffer] {
  const memory = Buffer.alloc(8 + LAYOUT.rf_flow_key.size + 8 + LAYOUT.rf_flow_state.size, 0xee);
  const key = memory.subarray(8, 8 + LAYOUT.rf_flow_key.size).fill(0);
  const value = memory.subarray(16 + LAYOUT.rf_flow_key.size).fill(0);
  key.writeUInt32LE(policyId, K.policy_id.offset);
  key.writeUInt8(hook, K.hook.offset);
  key.writeUInt8(verdict, K.verdict.offset);
  key.writeUInt8(protocol, K.protocol.offset);
  key.writeUInt16LE(family, K.dst.offset + S.family.offset);
  key.writeUInt16LE(port, K.dst.offset + S.port.offset);
  key.set(address, K.dst.offset + S.addr.offset);
  value.writeBigUInt64LE(123_000n, V.last_ns.offset);
  value.writeUInt32LE(folded, V.folded.offset);
  return [key, value];
}

const NOW_BOOT_NS = 42_500_000_000;
const CLOCK_OFFSET_MS = 1_700_000_000_000;

describe('decodeFoldedFlow', () => {
  it('the egress event of the folded repeats: no process, the flow’s fields, now as its time', () => {
    expect(decodeFoldedFlow(...entry({}), CLOCK_OFFSET_MS, NOW_BOOT_NS)).toEqual({
      type: 'egress',
      ktimeNs: NOW_BOOT_NS,
      timeMs: CLOCK_OFFSET_MS + 42_500,
      cgroupId: 0,
      jobCgroupId: 0,
      pid: 0,
      tgid: 0,
      ppid: 0,
      uid: 0,
      comm: '',
      hook: 'sendmsg',
      verdict: 'blocked',
      socketType: 0,
      protocol: 17,
      policyId: 0x0a0b0c0d,
      count: 5,
      family: 'inet',
      address: '198.18.0.9',
      port: 53,
    });
  });

  it('nothing folded: no event', () => {
    expect(decodeFoldedFlow(...entry({ folded: 0 }), CLOCK_OFFSET_MS, NOW_BOOT_NS)).toBeNull();
  });

  it('nothing folded: no event, even of a flow the decoder could not name', () => {
    expect(decodeFoldedFlow(...entry({ folded: 0, verdict: 9 }), CLOCK_OFFSET_MS, NOW_BOOT_NS)).toBeNull();
  });

  // enum rf_egress_hook and rf_verdict
  it.each([
    [1, 'connect', 1, 'allowed'],
    [2, 'sendmsg', 3, 'audited'],
    [3, 'packet', 2, 'blocked'],
    [3, 'packet', 1, 'allowed'],
    [1, 'connect', 3, 'audited'],
  ])('hook %i is %s, verdict %i is %s', (hook, hookName, verdict, verdictName) => {
    expect(decodeFoldedFlow(...entry({ hook, verdict }), CLOCK_OFFSET_MS, NOW_BOOT_NS)).toMatchObject({ hook: hookName, verdict: verdictName });
  });

  it('an IPv6 destination (ICMPv6, no port)', () => {
    const address = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x44];
    expect(decodeFoldedFlow(...entry({ hook: 3, family: 10, port: 0, protocol: 58, address }), CLOCK_OFFSET_MS, NOW_BOOT_NS)).toMatchObject({
      family: 'inet6',
      address: '2001:db8::44',
      port: 0,
      protocol: 58,
    });
  });

  // an unknown verdict counted as audited (or allowed) would misreport what the kernel did
  it.each([
    [{ verdict: 0 }, 'verdict 0 is unknown (rf_verdict: 1 allowed, 2 blocked, 3 audited)'],
    [{ verdict: 4 }, 'verdict 4 is unknown (rf_verdict: 1 allowed, 2 blocked, 3 audited)'],
    [{ hook: 0 }, 'hook 0 is unknown (rf_egress_hook: 1 connect, 2 sendmsg, 3 packet)'],
    [{ hook: 4 }, 'hook 4 is unknown (rf_egress_hook: 1 connect, 2 sendmsg, 3 packet)'],
  ])('%j is refused: %s', (flow, why) => {
    expect(() => decodeFoldedFlow(...entry({ policyId: 77, ...flow }), CLOCK_OFFSET_MS, NOW_BOOT_NS)).toThrow(new DecodeError(`egress_flows entry of policy 77: ${why}`));
  });
});

describe('flowPolicyId', () => {
  it('the policy id of a key', () => {
    expect(flowPolicyId(entry({ policyId: 0xfedcba98 })[0])).toBe(0xfedcba98);
  });
});
