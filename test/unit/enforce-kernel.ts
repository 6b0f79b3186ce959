/**
 * A recording stand-in for what src/abi/maps.ts's KernelMaps drives of the
 * addon's handle (MapHandle: map updates, deletes, lookups and entries, and
 * the egress programs' attach and detach), so that tests run the real
 * KernelMaps above it and see exactly the bytes that would reach the kernel.
 * Like the addon, it refuses a map the BPF object does not have and a key or
 * value of the wrong size for its map (src/abi/maps.ts's KERNEL_MAPS, whose
 * types test/unit/abi-maps.test.ts checks against bpf/). It keeps each map's
 * contents, so a test can ask what the kernel would hold, and every call in
 * order, so it can ask what was done. Also decoders of what src/abi writes,
 * from the offsets of src/abi/layout.ts (which test/unit/layout.test.ts
 * checks against the BTF).
 */
import { formatIp, type IpFamily } from '../../src/net/address';
import { ALLOW_FIXED_BITS, COMM_LEN, LAYOUT } from '../../src/abi/layout';
import { KERNEL_MAPS, KernelMaps, type MapHandle, type MapName } from '../../src/abi/maps';

export type KernelCall =
  | { op: 'update'; map: string; key: Buffer; value: Buffer }
  | { op: 'delete'; map: string; key: Buffer }
  | { op: 'attach'; path: string }
  | { op: 'detach'; cgroupId: bigint };

/** Bytes of a key or value type as bpf/ declares it. */
export function sizeOfKernelType(type: string): number {
  const scalar: Record<string, number> = { __u8: 1, __u16: 2, __u32: 4, __u64: 8, 'char[RF_COMM_LEN]': COMM_LEN };
  if (type in scalar) return scalar[type];
  const struct = /^struct (\w+)$/.exec(type)?.[1];
  if (struct && struct in LAYOUT) return LAYOUT[struct as keyof typeof LAYOUT].size;
  throw new Error(`no size known for ${type}`);
}

export class RecordingKernel implements MapHandle {
  /** The typed interface over this stand-in: what src/enforce is given. */
  readonly maps = new KernelMaps(this);
  readonly calls: KernelCall[] = [];
  private readonly contents = new Map<string, Map<string, Buffer>>();
  /** Thrown by attachCgroup, when set. */
  attachError?: Error;
  /** Thrown by the update that would be number `failUpdateAt` (1 = the first), when set. */
  failUpdateAt?: number;
  private updates = 0;

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
    this.check(map, 'key', key);
    this.check(map, 'value', value);
    if (++this.updates === this.failUpdateAt) throw new Error(`bpf_map_update_elem ${map}: E2BIG`);
    this.calls.push({ op: 'update', map, key: Buffer.from(key), value: Buffer.from(value) });
    this.mapOf(map).set(key.toString('hex'), Buffer.from(value));
  }

  mapDelete(map: string, key: Buffer): boolean {
    this.check(map, 'key', key);
    this.calls.push({ op: 'delete', map, key: Buffer.from(key) });
    return this.mapOf(map).delete(key.toString('hex'));
  }

  mapLookup(map: string, key: Buffer): Buffer | null {
    this.check(map, 'key', key);
    const value = this.contents.get(map)?.get(key.toString('hex'));
    return value ? Buffer.from(value) : null;
  }

  mapEntries(map: string): [Buffer, Buffer][] {
    this.check(map);
    return [...this.mapOf(map)].map(([key, value]) => [Buffer.from(key, 'hex'), Buffer.from(value)]);
  }

  /** What the kernel would hold in `map`: [key, value] in insertion order. */
  held(map: MapName): [Buffer, Buffer][] {
    return this.mapEntries(map);
  }

  /** Every map that holds anything, by name. */
  nonEmptyMaps(): string[] {
    return [...this.contents].filter(([, entries]) => entries.size > 0).map(([name]) => name);
  }

  /** Puts an entry in as the BPF programs would (not recorded as a call). */
  seed(map: MapName, key: Buffer, value: Buffer): void {
    this.check(map, 'key', key);
    this.check(map, 'value', value);
    this.mapOf(map).set(key.toString('hex'), value);
  }

  /** The addon's checks: a map of the object (MapNamed), a key or value of its size (CheckSize). */
  private check(map: string, part?: 'key' | 'value', bytes?: Buffer): void {
    if (!(map in KERNEL_MAPS)) throw new Error(`no map named ${map} in the sensor object`);
    if (!part) return;
    const size = sizeOfKernelType(KERNEL_MAPS[map as MapName][part]);
    if (bytes!.length !== size) throw new Error(`${map}: a ${part} of ${bytes!.length} bytes, not ${size}`);
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
  for (const map of ['allow4', 'allow6'] as const) {
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
