/**
 * The bytes of the kernel maps' keys and values (bpf/events.h, bpf/lib/maps.h,
 * bpf/egress.bpf.c), from typed values. Offsets come from ./layout.ts, which
 * test/unit/layout.test.ts checks against the BTF. Only ./maps.ts writes
 * these to the kernel; nothing above src/abi/ sees a Buffer of them.
 */
import type { IpFamily } from '../net/address';
import type { DetectionName } from '../sensor/events';
import { ALLOW_FIXED_BITS, type AllowSource, COMM_LEN, DetectionId, LAYOUT } from './layout';

const POLICY = LAYOUT.rf_job_policy;
const ALLOW4 = LAYOUT.rf_allow4_key;
const ALLOW6 = LAYOUT.rf_allow6_key;
const LOCKDOWN = LAYOUT.rf_job_lockdown;

/** Where a job's DNS is redirected to (its proxy); port 0: nowhere, nothing is redirected. */
export interface DnsRedirect {
  ip4: Uint8Array;
  ip6: Uint8Array;
  port: number;
}

/** struct rf_job_policy: how a job cgroup's egress is judged. */
export interface JobPolicy {
  /** The key prefix of the job's allow4/allow6 entries. */
  policyId: number;
  block: boolean;
  dns: DnsRedirect;
}

/** An allow4/allow6 entry of one policy id (struct rf_allow4_key / rf_allow6_key but the id). */
export interface AllowEntry {
  family: IpFamily;
  bytes: Uint8Array;
  /** Bits of the address that must match: 32/128 for one address. */
  prefixLength: number;
  /** 0: port-less traffic (ICMP, raw sockets). */
  port: number;
}

/** enum rf_allow_source: why an address is allowed. */
export type AllowSourceId = (typeof AllowSource)[keyof typeof AllowSource];

/** struct rf_job_lockdown: what the kernel kills a job's offenders for. */
export interface JobLockdownSettings {
  kill: readonly DetectionName[];
  /** A loopback peer counts as remote for Reverse-Shell. */
  loopbackIsRemote: boolean;
}

/** A u64 key: a job cgroup's id (job_policies, job_lockdown, job_kills). */
export function encodeCgroupKey(cgroupId: number): Buffer {
  const key = Buffer.alloc(8);
  key.writeBigUInt64LE(BigInt(cgroupId));
  return key;
}

/** A u32 key: a tgid or tid (protected_tgids, agent_threads). */
export function encodeU32Key(value: number): Buffer {
  const key = Buffer.alloc(4);
  key.writeUInt32LE(value);
  return key;
}

/**
 * char[RF_COMM_LEN], comm as the kernel keeps it: the first 15 bytes of the
 * program's name, NUL padded. Bytes, not characters, and cut where the kernel
 * cuts, even inside a multi-byte character.
 */
export function commKey(program: string): Buffer {
  const key = Buffer.alloc(COMM_LEN);
  Buffer.from(program, 'utf8').copy(key, 0, 0, COMM_LEN - 1);
  return key;
}

/** The __u8 value of the set-like maps (protected_*, stdin_shells, agent_threads): present. */
export function present(): Buffer {
  return Buffer.from([1]);
}

export function encodeJobPolicy(value: JobPolicy): Buffer {
  const out = Buffer.alloc(POLICY.size);
  const f = POLICY.fields;
  out.writeUInt32LE(value.policyId, f.policy_id.offset);
  out.writeUInt8(value.block ? 1 : 0, f.block.offset);
  out.writeUInt16LE(value.dns.port, f.dns_port.offset);
  out.set(value.dns.ip4, f.dns_ip4.offset);
  out.set(value.dns.ip6, f.dns_ip6.offset);
  return out;
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

/** The __u32 value of an allow entry: where it came from. */
export function encodeAllowValue(source: AllowSourceId): Buffer {
  const value = Buffer.alloc(4);
  value.writeUInt32LE(source);
  return value;
}

/** RF_DETECT_BIT(d) for each detection to kill for, and loopback_remote. */
export function encodeJobLockdown(settings: JobLockdownSettings): Buffer {
  const f = LOCKDOWN.fields;
  const value = Buffer.alloc(LOCKDOWN.size);
  const mask = settings.kill.reduce((bits, d) => bits | (1 << DetectionId[d]), 0);
  value.writeUInt32LE(mask >>> 0, f.kill_mask.offset);
  value.writeUInt8(settings.loopbackIsRemote ? 1 : 0, f.loopback_remote.offset);
  return value;
}

/** A job_kills value: the __u64 count of offenders killed. */
export function decodeKillCount(value: Buffer): number {
  return Number(value.readBigUInt64LE(0));
}
