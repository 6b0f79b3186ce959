/**
 * Encoders for the egress maps' keys and values (bpf/events.h), so that
 * nothing outside this file needs to know their byte layout. Offsets come
 * from src/sensor/layout.ts, which a test checks against the BTF.
 */
import type { IpFamily } from '../net/address';
import { ALLOW_FIXED_BITS, LAYOUT } from '../sensor/layout';

const POLICY = LAYOUT.rf_job_policy;
const ALLOW4 = LAYOUT.rf_allow4_key;
const ALLOW6 = LAYOUT.rf_allow6_key;

export const ALLOW_MAP: Record<IpFamily, string> = { 4: 'allow4', 6: 'allow6' };
export const JOB_POLICIES_MAP = 'job_policies';
export const EGRESS_FLOWS_MAP = 'egress_flows';

export interface JobPolicyValue {
  policyId: number;
  block: boolean;
  /** The job's DNS proxy; port 0: no redirection. */
  dns: { ip4: Uint8Array; ip6: Uint8Array; port: number };
}

/** Key of job_policies: the job cgroup's id, a u64. */
export function encodeCgroupKey(cgroupId: number): Buffer {
  const key = Buffer.alloc(8);
  key.writeBigUInt64LE(BigInt(cgroupId));
  return key;
}

export function encodeJobPolicy(value: JobPolicyValue): Buffer {
  const out = Buffer.alloc(POLICY.size);
  const f = POLICY.fields;
  out.writeUInt32LE(value.policyId, f.policy_id.offset);
  out.writeUInt8(value.block ? 1 : 0, f.block.offset);
  out.writeUInt16LE(value.dns.port, f.dns_port.offset);
  out.set(value.dns.ip4, f.dns_ip4.offset);
  out.set(value.dns.ip6, f.dns_ip6.offset);
  return out;
}

export interface AllowEntry {
  family: IpFamily;
  bytes: Uint8Array;
  /** Bits of the address that must match: 32/128 for one address. */
  prefixLength: number;
  /** 0: port-less traffic (ICMP, raw sockets). */
  port: number;
}

export function encodeAllowKey(policyId: number, entry: AllowEntry): Buffer {
  const layout = entry.family === 4 ? ALLOW4 : ALLOW6;
  const f = layout.fields;
  const key = Buffer.alloc(layout.size);
  key.writeUInt32LE(ALLOW_FIXED_BITS + entry.prefixLength, f.prefixlen.offset);
  key.writeUInt32LE(policyId, f.policy_id.offset);
  key.writeUInt16LE(entry.port, f.port.offset);
  key.set(entry.bytes, f.addr.offset);
  return key;
}

/** Value of an allow entry: where it came from (enum rf_allow_source). */
export function encodeAllowValue(source: number): Buffer {
  const value = Buffer.alloc(4);
  value.writeUInt32LE(source);
  return value;
}
