/**
 * The kernel maps user space shares with the sensor's BPF object, behind one
 * typed interface: every map name, and every key and value as the kernel lays
 * it out, is known here and nowhere above (test/unit/abi-boundary.test.ts
 * keeps it so). KernelMaps has one method per thing the agent does to the
 * kernel's state; each takes typed values, never a Buffer or a map name.
 */
import type { NativeSensorHandle } from '../sensor/native';
import type { EgressEvent } from '../sensor/events';
import { decodeFoldedFlow, flowPolicyId } from '../sensor/decode';
import {
  type AllowEntry,
  type AllowSourceId,
  commKey,
  decodeKillCount,
  encodeAllowKey,
  encodeAllowValue,
  encodeCgroupKey,
  encodeJobLockdown,
  encodeJobPolicy,
  encodeU32Key,
  type JobLockdownSettings,
  type JobPolicy,
  present,
} from './records';

/**
 * The maps user space reads or writes, by the names bpf/ gives them, with the
 * key and value types they are declared with there (test/unit/abi-maps.test.ts
 * reads the declarations from bpf/ and compares).
 */
export const KERNEL_MAPS = {
  /** job cgroup id -> how the job's egress is judged (bpf/egress.bpf.c). */
  job_policies: { key: '__u64', value: 'struct rf_job_policy' },
  /** (policy id, port, address) -> enum rf_allow_source: the LPM tries of allowed networks. */
  allow4: { key: 'struct rf_allow4_key', value: '__u32' },
  allow6: { key: 'struct rf_allow6_key', value: '__u32' },
  /** Datagram and packet flows recently recorded, with the repeats folded into their next record. */
  egress_flows: { key: 'struct rf_flow_key', value: 'struct rf_flow_state' },
  /** job cgroup id -> what lockdown kills for (bpf/lib/maps.h). */
  job_lockdown: { key: '__u64', value: 'struct rf_job_lockdown' },
  /** job cgroup id -> offenders the kernel killed. */
  job_kills: { key: '__u64', value: '__u64' },
  /** tgid -> 1: processes whose memory no job may read. */
  protected_tgids: { key: '__u32', value: '__u8' },
  /** comm -> 1: programs protected from their first exec on. */
  protected_comms: { key: 'char[RF_COMM_LEN]', value: '__u8' },
  /** comm -> 1: shells that read commands from stdin when started without one. */
  stdin_shells: { key: 'char[RF_COMM_LEN]', value: '__u8' },
  /** tid -> 1: the agent's threads other than its main one. */
  agent_threads: { key: '__u32', value: '__u8' },
} as const;

export type MapName = keyof typeof KERNEL_MAPS;

const ALLOW_MAP = { 4: 'allow4', 6: 'allow6' } as const satisfies Record<AllowEntry['family'], MapName>;

/** What KernelMaps needs of the addon's handle (and all a test's stand-in has to be). */
export type MapHandle = Pick<NativeSensorHandle, 'mapUpdate' | 'mapDelete' | 'mapLookup' | 'mapEntries' | 'attachCgroup' | 'detachCgroup'>;

export type { AllowEntry, AllowSourceId, DnsRedirect, JobLockdownSettings, JobPolicy } from './records';

export class KernelMaps {
  constructor(private readonly handle: MapHandle) {}

  /** job_policies: the job cgroup's egress is judged by `policy` (replacing any before). */
  setJobPolicy(jobCgroupId: number, policy: JobPolicy): void {
    this.update('job_policies', encodeCgroupKey(jobCgroupId), encodeJobPolicy(policy));
  }

  /** false when the job had no policy. */
  deleteJobPolicy(jobCgroupId: number): boolean {
    return this.delete('job_policies', encodeCgroupKey(jobCgroupId));
  }

  /** allow4/allow6: policy `policyId` may reach `entry`, allowed for `source`. */
  allowAddress(policyId: number, entry: AllowEntry, source: AllowSourceId): void {
    this.update(ALLOW_MAP[entry.family], encodeAllowKey(policyId, entry), encodeAllowValue(source));
  }

  /** false when the entry was not there. */
  disallowAddress(policyId: number, entry: AllowEntry): boolean {
    return this.delete(ALLOW_MAP[entry.family], encodeAllowKey(policyId, entry));
  }

  /**
   * egress_flows of policy `policyId`, taken out of the kernel: the attempts
   * folded into a next record that never came, as egress events at
   * `nowBootNs` (CLOCK_BOOTTIME); flows with nothing folded are deleted all
   * the same. An entry that does not decode is thrown (DecodeError) and left.
   */
  takeEgressFlows(policyId: number, clockOffsetMs: number, nowBootNs: number): EgressEvent[] {
    const repeats: EgressEvent[] = [];
    for (const [key, value] of this.handle.mapEntries('egress_flows')) {
      if (flowPolicyId(key) !== policyId) continue;
      const event = decodeFoldedFlow(key, value, clockOffsetMs, nowBootNs);
      if (event) repeats.push(event);
      this.delete('egress_flows', key);
    }
    return repeats;
  }

  /** Attaches the egress programs to a cgroup directory (covering its subtree). */
  attachEgress(cgroupPath: string): void {
    this.handle.attachCgroup(cgroupPath);
  }

  /** false when nothing of ours was attached to that cgroup. */
  detachEgress(cgroupId: number): boolean {
    return this.handle.detachCgroup(BigInt(cgroupId));
  }

  /** job_lockdown: what the kernel kills the job cgroup's offenders for. */
  setJobLockdown(jobCgroupId: number, settings: JobLockdownSettings): void {
    this.update('job_lockdown', encodeCgroupKey(jobCgroupId), encodeJobLockdown(settings));
  }

  /** Deletes the job's lockdown settings and its kill count (job_lockdown, job_kills). */
  removeJobLockdown(jobCgroupId: number): void {
    this.delete('job_lockdown', encodeCgroupKey(jobCgroupId));
    this.delete('job_kills', encodeCgroupKey(jobCgroupId));
  }

  /** job_kills: offenders the kernel killed in the job (0 before any). */
  jobKills(jobCgroupId: number): number {
    const value = this.handle.mapLookup('job_kills', encodeCgroupKey(jobCgroupId));
    return value ? decodeKillCount(value) : 0;
  }

  /** protected_tgids: no job may read this process's memory. */
  protectTgid(tgid: number): void {
    this.update('protected_tgids', encodeU32Key(tgid), present());
  }

  /** protected_comms: every process that execs `program` from now on is protected. */
  protectComm(program: string): void {
    this.update('protected_comms', commKey(program), present());
  }

  /** stdin_shells: `program` is a shell (one on IPC is judged for relays). */
  addStdinShell(program: string): void {
    this.update('stdin_shells', commKey(program), present());
  }

  /** agent_threads: a thread of the agent (signals at it are Agent-Tamper). */
  addAgentThread(tid: number): void {
    this.update('agent_threads', encodeU32Key(tid), present());
  }

  private update(map: MapName, key: Buffer, value: Buffer): void {
    this.handle.mapUpdate(map, key, value);
  }

  private delete(map: MapName, key: Buffer): boolean {
    return this.handle.mapDelete(map, key);
  }
}
