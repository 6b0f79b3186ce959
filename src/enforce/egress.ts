/**
 * A job's egress policy in the kernel: its entry in job_policies, its allowed
 * networks in allow4/allow6, and the egress programs attached to its cgroup.
 * Everything added here is removed again by remove().
 */
import type { IpAddress } from '../net/address';
import type { IpEndpoint } from '../policy/endpoint';
import type { Policy } from '../policy/policy';
import type { Cgroup } from '../cgroup/cgroup2';
import { AllowSource } from '../abi/layout';
import type { AllowEntry, AllowSourceId, KernelMaps } from '../abi/maps';
import type { EgressEvent } from '../sensor/events';
import { loadNative } from '../sensor/native';

export interface DnsProxyAddress {
  ip4: Uint8Array;
  ip6: Uint8Array;
  port: number;
}

const NO_DNS: DnsProxyAddress = { ip4: new Uint8Array(4), ip6: new Uint8Array(16), port: 0 };

let nextPolicyId = 1;

export class JobEgress {
  readonly policyId = nextPolicyId++;
  /** Every allow entry written, by entryId. */
  private readonly entries = new Map<string, AllowEntry>();
  private attached = false;
  private removed = false;
  private readonly cgroupId: number;

  constructor(
    private readonly kernel: KernelMaps,
    cgroup: Cgroup,
    readonly policy: Policy,
    dns: DnsProxyAddress = NO_DNS,
  ) {
    this.cgroupId = cgroup.id;
    this.kernel.setJobPolicy(this.cgroupId, { policyId: this.policyId, block: policy.egressPolicy === 'block', dns });
    try {
      for (const endpoint of policy.allowedEndpoints) {
        if (endpoint.kind === 'ip') this.allowEndpoint(endpoint, AllowSource.POLICY);
      }
      this.kernel.attachEgress(cgroup.path);
      this.attached = true;
    } catch (error) {
      this.remove();
      throw error;
    }
  }

  /** Allows a policy entry, and port-less traffic (ICMP) to the same network. */
  private allowEndpoint(endpoint: IpEndpoint, source: AllowSourceId): void {
    const entry = { family: endpoint.family, bytes: endpoint.bytes, prefixLength: endpoint.prefixLength };
    this.allow({ ...entry, port: endpoint.port }, source);
    this.allow({ ...entry, port: 0 }, source);
  }

  /** Allows an address learned from an allowed name's DNS answer, on the name's ports. */
  learn(address: IpAddress, ports: number[]): void {
    const prefixLength = address.family === 4 ? 32 : 128;
    for (const port of new Set([...ports, 0])) this.allow({ family: address.family, bytes: address.bytes, prefixLength, port }, AllowSource.DNS);
  }

  private allow(entry: AllowEntry, source: AllowSourceId): void {
    // after remove() nothing would delete it: an answer that comes as the job ends allows nothing
    if (this.removed) return;
    const id = entryId(entry);
    // the first source stays: an address the policy names is not made a learned one by an answer
    if (this.entries.has(id)) return;
    this.kernel.allowAddress(this.policyId, entry, source);
    this.entries.set(id, { ...entry, bytes: Uint8Array.from(entry.bytes) });
  }

  /**
   * Datagram and packet attempts the kernel folded into a flow's next record
   * that never came (the job ended within the flow's second), as egress
   * events, once: their flows are forgotten. Call after the job's processes
   * are gone, so that nothing is folded after the last look. `bootTimeNs`
   * reads CLOCK_BOOTTIME, the kernel's clock for the flows' times.
   */
  unrecordedRepeats(clockOffsetMs: number, bootTimeNs: () => bigint = () => loadNative().clocks().boottimeNs): EgressEvent[] {
    return this.kernel.takeEgressFlows(this.policyId, clockOffsetMs, Number(bootTimeNs()));
  }

  /** Detaches the programs and deletes every map entry of this job (once). */
  remove(): void {
    if (this.removed) return;
    this.removed = true;
    if (this.attached) this.kernel.detachEgress(this.cgroupId);
    this.kernel.deleteJobPolicy(this.cgroupId);
    for (const entry of this.entries.values()) this.kernel.disallowAddress(this.policyId, entry);
    this.entries.clear();
  }
}

/** One allow entry of a policy, as the kernel tells entries apart: family, address, prefix and port. */
function entryId(entry: AllowEntry): string {
  return [entry.family, ...entry.bytes, entry.prefixLength, entry.port].join();
}
