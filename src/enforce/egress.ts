/**
 * A job's egress policy in the kernel: its entry in job_policies, its allowed
 * networks in allow4/allow6, and the egress programs attached to its cgroup.
 * Everything added here is removed again by remove().
 */
import type { IpAddress } from '../net/address';
import type { IpEndpoint } from '../policy/endpoint';
import type { Policy } from '../policy/policy';
import type { Cgroup } from '../cgroup/cgroup2';
import { AllowSource } from '../sensor/layout';
import type { NativeSensorHandle } from '../sensor/native';
import { decodeFoldedFlow, flowPolicyId } from '../sensor/decode';
import type { EgressEvent } from '../sensor/events';
import { loadNative } from '../sensor/native';
import { ALLOW_MAP, EGRESS_FLOWS_MAP, encodeAllowKey, encodeAllowValue, encodeCgroupKey, encodeJobPolicy, JOB_POLICIES_MAP, type AllowEntry } from './maps';

export interface DnsProxyAddress {
  ip4: Uint8Array;
  ip6: Uint8Array;
  port: number;
}

const NO_DNS: DnsProxyAddress = { ip4: new Uint8Array(4), ip6: new Uint8Array(16), port: 0 };

let nextPolicyId = 1;

export class JobEgress {
  readonly policyId = nextPolicyId++;
  private readonly keys = new Map<string, { map: string; key: Buffer }>();
  private attached = false;
  private removed = false;
  private readonly cgroupId: number;

  constructor(
    private readonly kernel: NativeSensorHandle,
    cgroup: Cgroup,
    readonly policy: Policy,
    dns: DnsProxyAddress = NO_DNS,
  ) {
    this.cgroupId = cgroup.id;
    this.kernel.mapUpdate(JOB_POLICIES_MAP, encodeCgroupKey(this.cgroupId), encodeJobPolicy({ policyId: this.policyId, block: policy.egressPolicy === 'block', dns }));
    try {
      for (const endpoint of policy.allowedEndpoints) {
        if (endpoint.kind === 'ip') this.allowEndpoint(endpoint, AllowSource.POLICY);
      }
      this.kernel.attachCgroup(cgroup.path);
      this.attached = true;
    } catch (error) {
      this.remove();
      throw error;
    }
  }

  /** Allows a policy entry, and port-less traffic (ICMP) to the same network. */
  private allowEndpoint(endpoint: IpEndpoint, source: number): void {
    const entry = { family: endpoint.family, bytes: endpoint.bytes, prefixLength: endpoint.prefixLength };
    this.allow({ ...entry, port: endpoint.port }, source);
    this.allow({ ...entry, port: 0 }, source);
  }

  /** Allows an address learned from an allowed name's DNS answer, on the name's ports. */
  learn(address: IpAddress, ports: number[]): void {
    const prefixLength = address.family === 4 ? 32 : 128;
    for (const port of new Set([...ports, 0])) this.allow({ family: address.family, bytes: address.bytes, prefixLength, port }, AllowSource.DNS);
  }

  private allow(entry: AllowEntry, source: number): void {
    // after remove() nothing would delete it: an answer that comes as the job ends allows nothing
    if (this.removed) return;
    const key = encodeAllowKey(this.policyId, entry);
    const id = key.toString('hex');
    if (this.keys.has(id)) return;
    const map = ALLOW_MAP[entry.family];
    this.kernel.mapUpdate(map, key, encodeAllowValue(source));
    this.keys.set(id, { map, key });
  }

  /**
   * Datagram and packet attempts the kernel folded into a flow's next record
   * that never came (the job ended within the flow's second), as egress
   * events, once: their flows are forgotten. Call after the job's processes
   * are gone, so that nothing is folded after the last look. `bootTimeNs`
   * reads CLOCK_BOOTTIME, the kernel's clock for the flows' times.
   */
  unrecordedRepeats(clockOffsetMs: number, bootTimeNs: () => bigint = () => loadNative().clocks().boottimeNs): EgressEvent[] {
    const nowBootNs = Number(bootTimeNs());
    const repeats: EgressEvent[] = [];
    for (const [key, value] of this.kernel.mapEntries(EGRESS_FLOWS_MAP)) {
      if (flowPolicyId(key) !== this.policyId) continue;
      const event = decodeFoldedFlow(key, value, clockOffsetMs, nowBootNs);
      if (event) repeats.push(event);
      this.kernel.mapDelete(EGRESS_FLOWS_MAP, key);
    }
    return repeats;
  }

  /** Detaches the programs and deletes every map entry of this job (once). */
  remove(): void {
    if (this.removed) return;
    this.removed = true;
    if (this.attached) this.kernel.detachCgroup(BigInt(this.cgroupId));
    this.kernel.mapDelete(JOB_POLICIES_MAP, encodeCgroupKey(this.cgroupId));
    for (const { map, key } of this.keys.values()) this.kernel.mapDelete(map, key);
    this.keys.clear();
  }
}
