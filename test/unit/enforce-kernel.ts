/**
 * A recording stand-in for the kernel handle (NativeSensorHandle) as
 * src/enforce uses it: map updates, deletes, lookups and entries, and the
 * egress programs' attach and detach. It keeps each map's contents, so a test
 * can ask what the kernel would hold, and every call in order, so it can ask
 * what was done. Everything else of the handle throws: src/enforce must not
 * need it. Also decoders of what src/enforce writes, from the offsets of
 * src/sensor/layout.ts (which test/unit/layout.test.ts checks against the BTF).
 */
import { formatIp, type IpFamily } from '../../src/net/address';
import { ALLOW_FIXED_BITS, LAYOUT } from '../../src/sensor/layout';
import type { NativeSensorHandle } from '../../src/sensor/native';

export type KernelCall =
  | { op: 'update'; map: string; key: Buffer; value: Buffer }
  | { op: 'delete'; map: string; key: Buffer }
  | { op: 'attach'; path: string }
  | { op: 'detach'; cgroupId: bigint };

const unused = (name: string) => () => {
  throw new Error(`src/enforce does not use the kernel handle's ${name}()`);
};

export class RecordingKernel implements NativeSensorHandle {
  readonly calls: KernelCall[] = [];
  private readonly contents = new Map<string, Map<string, Buffer>>();
  /** Thrown by attachCgroup, when set. */
  attachError?: Error;
  /** Thrown by the update that would be number `failUpdateAt` (1 = the first), when set. */
  failUpdateAt?: number;
  private updates = 0;

  track = unused('track');
  untrack = unused('untrack');
  counters = unused('counters');
  start = unused('start');
  stop = unused('stop');
  drain = unused('drain');
  readerStats = unused('readerStats');
  programIds = unused('programIds');
  destroy = unused('destroy');
  agentGone = unused('agentGone');
  pinDir = unused('pinDir');

  attachCgroup(path: string): bigint {
    if (this.attachError) throw this.attachError;
    this.calls.push({ op: 'attach', path });
    return 1n;
  }

  detachCgroup(cgroupId: bigint): boolean {
    this.calls.push({ op: 'detach', cgroupId });
    return true;
  }

  mapUpdate(map: string, key: Buffer, value: Buffer): void {
    if (++this.updates === this.failUpdateAt) throw new Error(`bpf_map_update_elem ${map}: E2BIG`);
    this.calls.push({ op: 'update', map, key: Buffer.from(key), value: Buffer.from(value) });
    this.mapOf(map).set(key.toString('hex'), Buffer.from(value));
  }

  mapDelete(map: string, key: Buffer): boolean {
    this.calls.push({ op: 'delete', map, key: Buffer.from(key) });
    return this.mapOf(map).delete(key.toString('hex'));
  }

  mapLookup(map: string, key: Buffer): Buffer | null {
    return this.contents.get(map)?.get(key.toString('hex')) ?? null;
  }

  mapEntries(map: string): [Buffer, Buffer][] {
    return [...this.mapOf(map)].map(([key, value]) => [Buffer.from(key, 'hex'), value]);
  }

  /** What the kernel would hold in `map`: [key, value] in insertion order. */
  held(map: string): [Buffer, Buffer][] {
    return this.mapEntries(map);
  }

  /** Every map that holds anything, by name. */
  nonEmptyMaps(): string[] {
    return [...this.contents].filter(([, entries]) => entries.size > 0).map(([name]) => name);
  }

  /** Puts an entry in as the BPF programs would (not recorded as a call). */
  seed(map: string, key: Buffer, value: Buffer): void {
    this.mapOf(map).set(key.toString('hex'), value);
  }

  private mapOf(map: string): Map<string, Buffer> {
    let entries = this.contents.get(map);
    if (!entries) this.contents.set(map, (entries = new Map()));
    return entries;
  }
}

export interface DecodedAllowKey {
  family: IpFamily;
  policyId: number;
  port: number;
  address: string;
  prefixLength: number;
}

/** An allow4/allow6 key, checked to be all of its struct (padding zero). */
export function decodeAllowKey(key: Buffer): DecodedAllowKey {
  const family: IpFamily = key.length === LAYOUT.rf_allow4_key.size ? 4 : 6;
  const layout = family === 4 ? LAYOUT.rf_allow4_key : LAYOUT.rf_allow6_key;
  if (key.length !== layout.size) throw new Error(`an allow key is ${LAYOUT.rf_allow4_key.size} or ${LAYOUT.rf_allow6_key.size} bytes, not ${key.length}`);
  const f = layout.fields;
  if (key.subarray(f._pad.offset, f._pad.offset + f._pad.size).some((b) => b !== 0)) throw new Error('allow key padding is not zero');
  return {
    family,
    policyId: key.readUInt32LE(f.policy_id.offset),
    port: key.readUInt16LE(f.port.offset),
    address: formatIp({ family, bytes: key.subarray(f.addr.offset, f.addr.offset + f.addr.size) }),
    prefixLength: key.readUInt32LE(f.prefixlen.offset) - ALLOW_FIXED_BITS,
  };
}

/** allow4 and allow6 as "address/prefix port source" lines, sorted, for the policy id given. */
export function allowed(kernel: RecordingKernel, policyId: number): string[] {
  const lines: string[] = [];
  for (const map of ['allow4', 'allow6']) {
    for (const [key, value] of kernel.held(map)) {
      const entry = decodeAllowKey(key);
      if ((map === 'allow4') !== (entry.family === 4)) throw new Error(`an IPv${entry.family} key in ${map}`);
      if (entry.policyId !== policyId) continue;
      if (value.length !== 4) throw new Error(`an allow value is 4 bytes, not ${value.length}`);
      lines.push(`${entry.address}/${entry.prefixLength} port ${entry.port} source ${value.readUInt32LE(0)}`);
    }
  }
  return lines.sort();
}

/** A job_policies value. */
export function decodeJobPolicy(value: Buffer) {
  const f = LAYOUT.rf_job_policy.fields;
  if (value.length !== LAYOUT.rf_job_policy.size) throw new Error(`a job policy is ${LAYOUT.rf_job_policy.size} bytes, not ${value.length}`);
  return {
    policyId: value.readUInt32LE(f.policy_id.offset),
    block: value.readUInt8(f.block.offset),
    dnsPort: value.readUInt16LE(f.dns_port.offset),
    dnsIp4: formatIp({ family: 4, bytes: value.subarray(f.dns_ip4.offset, f.dns_ip4.offset + f.dns_ip4.size) }),
    dnsIp6: formatIp({ family: 6, bytes: value.subarray(f.dns_ip6.offset, f.dns_ip6.offset + f.dns_ip6.size) }),
  };
}

/** A job_lockdown value. */
export function decodeJobLockdown(value: Buffer) {
  const f = LAYOUT.rf_job_lockdown.fields;
  if (value.length !== LAYOUT.rf_job_lockdown.size) throw new Error(`a job lockdown value is ${LAYOUT.rf_job_lockdown.size} bytes, not ${value.length}`);
  return { killMask: value.readUInt32LE(f.kill_mask.offset), loopbackRemote: value.readUInt8(f.loopback_remote.offset) };
}

/** A cgroup-id key (job_policies, job_lockdown, job_kills): a u64. */
export function cgroupKey(cgroupId: number): Buffer {
  const key = Buffer.alloc(8);
  key.writeBigUInt64LE(BigInt(cgroupId));
  return key;
}
