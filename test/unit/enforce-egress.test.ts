/**
 * A job's egress policy in the kernel (src/enforce/egress.ts), on a recording
 * stand-in for the kernel handle: what JobEgress writes to job_policies and
 * allow4/allow6, decoded with the offsets of src/abi/layout.ts, and that
 * remove() takes all of it away. Each case makes its own kernel, cgroup
 * directory and policy.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Cgroup } from '../../src/cgroup/cgroup2';
import { JobEgress, type DnsProxyAddress } from '../../src/enforce/egress';
import { parseIp, type IpAddress } from '../../src/net/address';
import { parsePolicy } from '../../src/policy/policy';
import { AllowSource, EgressHook, LAYOUT, Verdict } from '../../src/abi/layout';
import { loadNative } from '../../src/sensor/native';
import { allowed, cgroupKey, decodeJobPolicy, RecordingKernel, type KernelCall } from './enforce-kernel';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

/** A directory standing for the job's cgroup: its id is the directory's inode, as for a real one. */
function jobCgroup(): Cgroup {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-egress-'));
  dirs.push(dir);
  return new Cgroup(dir);
}

const policyOf = (mode: 'block' | 'audit', ...endpoints: string[]) =>
  parsePolicy(`egress-policy: ${mode}\nallowed-endpoints: >\n${endpoints.map((e) => `  ${e}\n`).join('')}`);

const ip = (text: string): IpAddress => parseIp(text)!;

// literal bytes, not parseIp: a value computed at collection time would make parseIp's mutants look static to Stryker
const PROXY: DnsProxyAddress = { ip4: Uint8Array.from([127, 0, 0, 1]), ip6: Uint8Array.from([...Array<number>(15).fill(0), 1]), port: 5353 };
const POLICY = AllowSource.POLICY;
const DNS = AllowSource.DNS;

/** The calls that wrote or deleted an allow entry, as "op map key". */
const allowCalls = (calls: KernelCall[], op: 'update' | 'delete') =>
  calls.filter((c) => c.op === op && c.map.startsWith('allow')).map((c) => `${(c as { map: string }).map} ${(c as { key: Buffer }).key.toString('hex')}`);

describe('JobEgress: the job policy entry', () => {
  it('block mode: the job cgroup maps to its policy id, with block set and the DNS proxy to redirect to', () => {
    const kernel = new RecordingKernel();
    const cgroup = jobCgroup();
    const egress = new JobEgress(kernel.maps, cgroup, policyOf('block', 'example.com'), PROXY);
    const entries = kernel.held('job_policies');
    expect(entries).toHaveLength(1);
    expect(entries[0][0]).toEqual(cgroupKey(cgroup.id));
    expect(decodeJobPolicy(entries[0][1])).toEqual({ policyId: egress.policyId, block: 1, dnsPort: 5353, dnsIp4: '127.0.0.1', dnsIp6: '::1' });
  });

  it('audit mode: block is not set', () => {
    const kernel = new RecordingKernel();
    const egress = new JobEgress(kernel.maps, jobCgroup(), policyOf('audit', 'example.com'), PROXY);
    expect(decodeJobPolicy(kernel.held('job_policies')[0][1])).toEqual({ policyId: egress.policyId, block: 0, dnsPort: 5353, dnsIp4: '127.0.0.1', dnsIp6: '::1' });
  });

  it('without a DNS proxy: port 0, nothing is redirected', () => {
    const kernel = new RecordingKernel();
    const egress = new JobEgress(kernel.maps, jobCgroup(), policyOf('block', 'example.com'));
    expect(decodeJobPolicy(kernel.held('job_policies')[0][1])).toEqual({ policyId: egress.policyId, block: 1, dnsPort: 0, dnsIp4: '0.0.0.0', dnsIp6: '::' });
  });

  it('attaches the egress programs to the job cgroup once, after its entries are in place', () => {
    const kernel = new RecordingKernel();
    const cgroup = jobCgroup();
    new JobEgress(kernel.maps, cgroup, policyOf('block', '192.0.2.7'));
    expect(kernel.calls.filter((c) => c.op === 'attach')).toEqual([{ op: 'attach', path: cgroup.path }]);
    expect(kernel.calls.at(-1)).toEqual({ op: 'attach', path: cgroup.path });
  });

  it('gives each job a policy id of its own', () => {
    const kernel = new RecordingKernel();
    const first = new JobEgress(kernel.maps, jobCgroup(), policyOf('block', 'example.com'));
    const second = new JobEgress(kernel.maps, jobCgroup(), policyOf('block', 'example.com'));
    expect(second.policyId).not.toBe(first.policyId);
    const ids = kernel.held('job_policies').map(([, value]) => decodeJobPolicy(value).policyId);
    expect(ids).toEqual([first.policyId, second.policyId]);
  });
});

describe('JobEgress: allow entries from the policy', () => {
  it('each IP and CIDR entry on its port and on port 0, with its prefix, under the job’s policy id; names write nothing', () => {
    const kernel = new RecordingKernel();
    const egress = new JobEgress(kernel.maps, jobCgroup(), policyOf('block', '10.1.0.0/16:22', '192.0.2.7', '[2001:db8::/32]:8443', 'registry.npmjs.org:443'), PROXY);
    expect(allowed(kernel, egress.policyId)).toEqual([
      `10.1.0.0/16 port 0 source ${POLICY}`,
      `10.1.0.0/16 port 22 source ${POLICY}`,
      `192.0.2.7/32 port 0 source ${POLICY}`,
      `192.0.2.7/32 port 443 source ${POLICY}`,
      `2001:db8::/32 port 0 source ${POLICY}`,
      `2001:db8::/32 port 8443 source ${POLICY}`,
    ]);
    expect(kernel.held('allow4')).toHaveLength(4);
    expect(kernel.held('allow6')).toHaveLength(2);
  });

  it('two entries for one network on different ports share its port-0 entry, written once', () => {
    const kernel = new RecordingKernel();
    const egress = new JobEgress(kernel.maps, jobCgroup(), policyOf('block', '192.0.2.0/24:80', '192.0.2.0/24:443'));
    expect(allowed(kernel, egress.policyId)).toEqual([`192.0.2.0/24 port 0 source ${POLICY}`, `192.0.2.0/24 port 443 source ${POLICY}`, `192.0.2.0/24 port 80 source ${POLICY}`]);
    expect(allowCalls(kernel.calls, 'update')).toHaveLength(3);
  });

  it('an audit policy’s IP entries are allowed the same way (its verdicts say audited, not allowed, otherwise)', () => {
    const kernel = new RecordingKernel();
    const egress = new JobEgress(kernel.maps, jobCgroup(), policyOf('audit', '198.51.100.0/24:53'));
    expect(allowed(kernel, egress.policyId)).toEqual([`198.51.100.0/24 port 0 source ${POLICY}`, `198.51.100.0/24 port 53 source ${POLICY}`]);
  });
});

describe('JobEgress.learn: addresses from allowed names’ answers', () => {
  it('allows the one address (/32) on the name’s ports and port 0, nothing more, as learned from DNS', () => {
    const kernel = new RecordingKernel();
    const egress = new JobEgress(kernel.maps, jobCgroup(), policyOf('block', 'example.com:443', 'example.com:8080'));
    egress.learn(ip('203.0.113.5'), [443, 8080]);
    expect(allowed(kernel, egress.policyId)).toEqual([`203.0.113.5/32 port 0 source ${DNS}`, `203.0.113.5/32 port 443 source ${DNS}`, `203.0.113.5/32 port 8080 source ${DNS}`]);
  });

  it('an IPv6 answer is one address (/128) in allow6', () => {
    const kernel = new RecordingKernel();
    const egress = new JobEgress(kernel.maps, jobCgroup(), policyOf('block', 'example.com'));
    egress.learn(ip('2001:db8::53'), [443]);
    expect(allowed(kernel, egress.policyId)).toEqual([`2001:db8::53/128 port 0 source ${DNS}`, `2001:db8::53/128 port 443 source ${DNS}`]);
    expect(kernel.held('allow4')).toEqual([]);
  });

  it('an address learned again, or with a port twice, is written once', () => {
    const kernel = new RecordingKernel();
    const egress = new JobEgress(kernel.maps, jobCgroup(), policyOf('block', 'example.com'));
    egress.learn(ip('203.0.113.5'), [443, 443]);
    egress.learn(ip('203.0.113.5'), [443]);
    expect(allowCalls(kernel.calls, 'update')).toHaveLength(2);
    expect(allowed(kernel, egress.policyId)).toEqual([`203.0.113.5/32 port 0 source ${DNS}`, `203.0.113.5/32 port 443 source ${DNS}`]);
  });

  it('an address the policy names itself stays a policy entry when a name also answers it', () => {
    const kernel = new RecordingKernel();
    const egress = new JobEgress(kernel.maps, jobCgroup(), policyOf('block', '192.0.2.7:443', 'example.com:443'));
    egress.learn(ip('192.0.2.7'), [443]);
    expect(allowed(kernel, egress.policyId)).toEqual([`192.0.2.7/32 port 0 source ${POLICY}`, `192.0.2.7/32 port 443 source ${POLICY}`]);
  });

  it('learns for its own job only: another job’s policy id gets nothing', () => {
    const kernel = new RecordingKernel();
    const mine = new JobEgress(kernel.maps, jobCgroup(), policyOf('block', 'example.com'));
    const other = new JobEgress(kernel.maps, jobCgroup(), policyOf('block', 'example.com'));
    mine.learn(ip('203.0.113.5'), [443]);
    expect(allowed(kernel, other.policyId)).toEqual([]);
    expect(allowed(kernel, mine.policyId)).toHaveLength(2);
  });
});

describe('JobEgress.remove', () => {
  it('detaches the programs and deletes every key it wrote: the kernel holds nothing of the job', () => {
    const kernel = new RecordingKernel();
    const cgroup = jobCgroup();
    const egress = new JobEgress(kernel.maps, cgroup, policyOf('block', '10.1.0.0/16:22', '[2001:db8::/32]:443', 'example.com'), PROXY);
    egress.learn(ip('203.0.113.5'), [443]);
    egress.learn(ip('2001:db8:1::5'), [443]);
    egress.remove();
    expect(kernel.nonEmptyMaps()).toEqual([]);
    expect(allowCalls(kernel.calls, 'delete').sort()).toEqual(allowCalls(kernel.calls, 'update').sort());
    expect(kernel.calls.filter((c) => c.op === 'delete' && c.map === 'job_policies')).toEqual([{ op: 'delete', map: 'job_policies', key: cgroupKey(cgroup.id) }]);
    expect(kernel.calls.filter((c) => c.op === 'detach')).toEqual([{ op: 'detach', cgroupId: BigInt(cgroup.id) }]);
  });

  it('leaves another job’s entries alone', () => {
    const kernel = new RecordingKernel();
    const other = new JobEgress(kernel.maps, jobCgroup(), policyOf('block', '192.0.2.7'));
    const mine = new JobEgress(kernel.maps, jobCgroup(), policyOf('block', '192.0.2.7'));
    mine.remove();
    expect(allowed(kernel, other.policyId)).toEqual([`192.0.2.7/32 port 0 source ${POLICY}`, `192.0.2.7/32 port 443 source ${POLICY}`]);
    expect(kernel.held('job_policies')).toHaveLength(1);
  });

  it('a second remove does nothing', () => {
    const kernel = new RecordingKernel();
    const egress = new JobEgress(kernel.maps, jobCgroup(), policyOf('block', '192.0.2.7'));
    egress.remove();
    const calls = kernel.calls.length;
    egress.remove();
    expect(kernel.calls).toHaveLength(calls);
  });

  it('an address learned after remove (an answer as the job ends) is not written, so none is left behind', () => {
    const kernel = new RecordingKernel();
    const egress = new JobEgress(kernel.maps, jobCgroup(), policyOf('block', 'example.com'));
    egress.remove();
    const calls = kernel.calls.length;
    egress.learn(ip('203.0.113.5'), [443]);
    expect(kernel.calls).toHaveLength(calls);
    expect(kernel.nonEmptyMaps()).toEqual([]);
  });

  it('a failed attach throws its error and removes what was written, detaching nothing', () => {
    expect.assertions(3);
    const kernel = new RecordingKernel();
    kernel.attachError = new Error('bpf_prog_attach: EBUSY');
    try {
      new JobEgress(kernel.maps, jobCgroup(), policyOf('block', '10.1.0.0/16:22', '[2001:db8::1]:443'));
    } catch (error) {
      expect((error as Error).message).toBe('bpf_prog_attach: EBUSY');
    }
    expect(kernel.nonEmptyMaps()).toEqual([]);
    expect(kernel.calls.filter((c) => c.op === 'detach')).toEqual([]);
  });

  it('a failed allow entry throws its error and removes the job policy and the entries written before it', () => {
    expect.assertions(3);
    const kernel = new RecordingKernel();
    kernel.failUpdateAt = 4; // job_policies, then 10.1.0.0/16 on 22 and on 0, then the failing one
    try {
      new JobEgress(kernel.maps, jobCgroup(), policyOf('block', '10.1.0.0/16:22', '192.0.2.7'));
    } catch (error) {
      expect((error as Error).message).toBe('bpf_map_update_elem allow4: E2BIG');
    }
    expect(kernel.nonEmptyMaps()).toEqual([]);
    expect(kernel.calls.filter((c) => c.op === 'attach' || c.op === 'detach')).toEqual([]);
  });
});

const FLOW_KEY = LAYOUT.rf_flow_key;
const FLOW_STATE = LAYOUT.rf_flow_state;
const SOCKADDR = LAYOUT.rf_sockaddr.fields;
const AF_INET = 2;
const IPPROTO_UDP = 17;

/** An egress_flows key and value as the kernel writes them: a flow of `policyId` to 4-address:port, `folded` repeats not yet recorded. */
function flow(policyId: number, address: string, port: number, folded: number): [Buffer, Buffer] {
  const key = Buffer.alloc(FLOW_KEY.size);
  key.writeUInt32LE(policyId, FLOW_KEY.fields.policy_id.offset);
  key.writeUInt8(EgressHook.SENDMSG, FLOW_KEY.fields.hook.offset);
  key.writeUInt8(Verdict.BLOCKED, FLOW_KEY.fields.verdict.offset);
  key.writeUInt8(IPPROTO_UDP, FLOW_KEY.fields.protocol.offset);
  const dst = FLOW_KEY.fields.dst.offset;
  key.writeUInt16LE(AF_INET, dst + SOCKADDR.family.offset);
  key.writeUInt16LE(port, dst + SOCKADDR.port.offset);
  key.set(ip(address).bytes, dst + SOCKADDR.addr.offset);
  const value = Buffer.alloc(FLOW_STATE.size);
  value.writeBigUInt64LE(1_000_000n, FLOW_STATE.fields.last_ns.offset);
  value.writeUInt32LE(folded, FLOW_STATE.fields.folded.offset);
  return [key, value];
}

describe('JobEgress.unrecordedRepeats', () => {
  it('reports its own flows’ folded repeats once, at the clock’s time, and forgets its flows; another job’s stay', () => {
    const kernel = new RecordingKernel();
    const egress = new JobEgress(kernel.maps, jobCgroup(), policyOf('block', 'example.com'));
    const otherPolicyId = egress.policyId + 1000;
    const [foldedKey, foldedValue] = flow(egress.policyId, '198.51.100.9', 9999, 3);
    const [quietKey, quietValue] = flow(egress.policyId, '198.51.100.10', 9999, 0);
    const [otherKey, otherValue] = flow(otherPolicyId, '198.51.100.9', 9999, 5);
    kernel.seed('egress_flows', foldedKey, foldedValue);
    kernel.seed('egress_flows', quietKey, quietValue);
    kernel.seed('egress_flows', otherKey, otherValue);

    const repeats = egress.unrecordedRepeats(1_700_000_000_000, () => 42_000_000_000n);
    expect(repeats).toHaveLength(1);
    expect(repeats[0]).toMatchObject({ type: 'egress', verdict: 'blocked', hook: 'sendmsg', protocol: IPPROTO_UDP, policyId: egress.policyId, count: 3, address: '198.51.100.9', port: 9999, ktimeNs: 42_000_000_000, timeMs: 1_700_000_042_000 });
    expect(kernel.held('egress_flows')).toEqual([[otherKey, otherValue]]);
    expect(egress.unrecordedRepeats(0, () => 43_000_000_000n)).toEqual([]);
  });

  it('reads CLOCK_BOOTTIME from the addon when no clock is given', () => {
    const kernel = new RecordingKernel();
    const egress = new JobEgress(kernel.maps, jobCgroup(), policyOf('block', 'example.com'));
    kernel.seed('egress_flows', ...flow(egress.policyId, '198.51.100.9', 9999, 2));
    const before = Number(loadNative().clocks().boottimeNs);
    const [repeat] = egress.unrecordedRepeats(0);
    const after = Number(loadNative().clocks().boottimeNs);
    expect(repeat.ktimeNs).toBeGreaterThanOrEqual(before);
    expect(repeat.ktimeNs).toBeLessThanOrEqual(after);
  });
});
