/**
 * The typed interface to the kernel maps (src/abi/maps.ts): its map names and
 * their key and value types against the declarations in bpf/, each method's
 * exact calls on the addon's handle (a recording stand-in that, like the
 * addon, refuses unknown maps and wrong sizes), and the boundary: nothing
 * outside src/abi/ names a map or touches one.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AllowSource, EgressHook, LAYOUT, Verdict } from '../../src/abi/layout';
import { KERNEL_MAPS, type MapName } from '../../src/abi/maps';
import { parseIp } from '../../src/net/address';
import { DecodeError } from '../../src/sensor/decode';
import { REPO_ROOT } from '../../src/util/paths';
import { allowed, cgroupKey, decodeJobLockdown, decodeJobPolicy, RecordingKernel, sizeOfKernelType } from './enforce-kernel';

/** Every `struct { … } NAME SEC(".maps")` of the BPF sources: name → its key and value types (ring buffers have none). */
function declaredMaps(): Record<string, { key?: string; value?: string }> {
  const maps: Record<string, { key?: string; value?: string }> = {};
  const sources = (dir: string): string[] =>
    fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
      const file = path.join(dir, entry.name);
      if (entry.isDirectory()) return entry.name.startsWith('.') || entry.name === 'vmlinux' ? [] : sources(file);
      return /\.(c|h)$/.test(entry.name) ? [file] : [];
    });
  for (const file of sources(path.join(REPO_ROOT, 'bpf'))) {
    for (const [, body, name] of fs.readFileSync(file, 'utf8').matchAll(/struct\s*\{([^}]*)\}\s*(\w+)\s+SEC\("\.maps"\)/g)) {
      maps[name] = { key: /__type\(key,\s*([^)]+?)\s*\)/.exec(body)?.[1], value: /__type\(value,\s*([^)]+?)\s*\)/.exec(body)?.[1] };
    }
  }
  return maps;
}

const ip = (text: string) => parseIp(text)!;
const u32 = (value: number) => {
  const key = Buffer.alloc(4);
  key.writeUInt32LE(value);
  return key;
};

describe('KERNEL_MAPS: the maps as bpf/ declares them', () => {
  const declared = declaredMaps();

  it('finds the maps of bpf/ (the parse itself works)', () => {
    expect(declared.job_policies).toEqual({ key: '__u64', value: 'struct rf_job_policy' });
    expect(Object.keys(declared)).toContain('tracked_cgroups');
  });

  it.each(Object.entries(KERNEL_MAPS))('%s exists with the key and value types named here', (name, types) => {
    expect(declared[name]).toEqual(types);
  });

  it.each(Object.entries(KERNEL_MAPS))('%s: key and value sizes are known from the layout', (_name, types) => {
    expect(sizeOfKernelType(types.key)).toBeGreaterThan(0);
    expect(sizeOfKernelType(types.value)).toBeGreaterThan(0);
  });
});

describe('the stand-in refuses what the addon refuses', () => {
  it('a map the object does not have', () => {
    const kernel = new RecordingKernel();
    expect(() => kernel.mapUpdate('allow5', Buffer.alloc(16), Buffer.alloc(4))).toThrow('no map named allow5 in the sensor object');
    expect(kernel.calls).toEqual([]);
  });

  it('a key or value of the wrong size', () => {
    const kernel = new RecordingKernel();
    expect(() => kernel.mapUpdate('job_kills', Buffer.alloc(4), Buffer.alloc(8))).toThrow('job_kills: a key of 4 bytes, not 8');
    expect(() => kernel.mapUpdate('protected_tgids', Buffer.alloc(4), Buffer.alloc(4))).toThrow('protected_tgids: a value of 4 bytes, not 1');
    expect(kernel.calls).toEqual([]);
  });
});

describe('KernelMaps: each method’s calls', () => {
  const dns = { ip4: Uint8Array.from([127, 0, 0, 1]), ip6: Uint8Array.from([...Array<number>(15).fill(0), 1]), port: 5353 };

  it('setJobPolicy / deleteJobPolicy: job_policies under the cgroup id', () => {
    const kernel = new RecordingKernel();
    kernel.maps.setJobPolicy(4242, { policyId: 17, block: true, dns });
    expect(kernel.calls).toHaveLength(1);
    const [[key, value]] = kernel.held('job_policies');
    expect(key).toEqual(cgroupKey(4242));
    expect(decodeJobPolicy(value)).toEqual({ policyId: 17, block: 1, dnsPort: 5353, dnsIp4: '127.0.0.1', dnsIp6: '::1' });
    expect(kernel.maps.deleteJobPolicy(4242)).toBe(true);
    expect(kernel.maps.deleteJobPolicy(4242)).toBe(false);
    expect(kernel.calls.slice(1)).toEqual([
      { op: 'delete', map: 'job_policies', key: cgroupKey(4242) },
      { op: 'delete', map: 'job_policies', key: cgroupKey(4242) },
    ]);
  });

  it('allowAddress / disallowAddress: an IPv4 entry in allow4, an IPv6 one in allow6, under the policy id', () => {
    const kernel = new RecordingKernel();
    const v4 = { family: 4 as const, bytes: ip('192.0.2.0').bytes, prefixLength: 24, port: 443 };
    const v6 = { family: 6 as const, bytes: ip('2001:db8::5').bytes, prefixLength: 128, port: 0 };
    kernel.maps.allowAddress(3, v4, AllowSource.POLICY);
    kernel.maps.allowAddress(3, v6, AllowSource.DNS);
    expect(kernel.held('allow4')).toHaveLength(1);
    expect(kernel.held('allow6')).toHaveLength(1);
    expect(allowed(kernel, 3)).toEqual([`192.0.2.0/24 port 443 source ${AllowSource.POLICY}`, `2001:db8::5/128 port 0 source ${AllowSource.DNS}`]);
    expect(kernel.maps.disallowAddress(3, v4)).toBe(true);
    expect(kernel.maps.disallowAddress(3, v6)).toBe(true);
    expect(kernel.maps.disallowAddress(3, v6)).toBe(false);
    expect(kernel.nonEmptyMaps()).toEqual([]);
    expect(kernel.calls.map((c) => `${c.op} ${'map' in c ? c.map : ''}`)).toEqual(['update allow4', 'update allow6', 'delete allow4', 'delete allow6', 'delete allow6']);
  });

  it('attachEgress / detachEgress: the cgroup’s path, then its id', () => {
    const kernel = new RecordingKernel();
    kernel.maps.attachEgress('/sys/fs/cgroup/ringfence/job-1');
    expect(kernel.maps.detachEgress(77)).toBe(true);
    expect(kernel.calls).toEqual([
      { op: 'attach', path: '/sys/fs/cgroup/ringfence/job-1' },
      { op: 'detach', cgroupId: 77n },
    ]);
  });

  it('setJobLockdown / jobKills / removeJobLockdown: job_lockdown and job_kills under the cgroup id', () => {
    const kernel = new RecordingKernel();
    kernel.maps.setJobLockdown(4242, { kill: ['Reverse-Shell'], loopbackIsRemote: true });
    const [[key, value]] = kernel.held('job_lockdown');
    expect(key).toEqual(cgroupKey(4242));
    expect(decodeJobLockdown(value)).toEqual({ killMask: 2, loopbackRemote: 1 });
    expect(kernel.maps.jobKills(4242)).toBe(0);
    kernel.seed('job_kills', cgroupKey(4242), Buffer.from([5, 0, 0, 0, 0, 0, 0, 0]));
    kernel.seed('job_kills', cgroupKey(4243), Buffer.from([9, 0, 0, 0, 0, 0, 0, 0]));
    expect(kernel.maps.jobKills(4242)).toBe(5);
    kernel.maps.removeJobLockdown(4242);
    expect(kernel.held('job_lockdown')).toEqual([]);
    expect(kernel.held('job_kills')).toEqual([[cgroupKey(4243), Buffer.from([9, 0, 0, 0, 0, 0, 0, 0])]]);
    expect(kernel.calls.slice(1)).toEqual([
      { op: 'delete', map: 'job_lockdown', key: cgroupKey(4242) },
      { op: 'delete', map: 'job_kills', key: cgroupKey(4242) },
    ]);
  });

  it.each([
    ['protectTgid', 'protected_tgids', 70000, u32(70000)],
    ['addAgentThread', 'agent_threads', 4711, u32(4711)],
    ['protectComm', 'protected_comms', 'Runner.Worker', Buffer.from('Runner.Worker\0\0\0')],
    ['addStdinShell', 'stdin_shells', 'bash', Buffer.from('bash'.padEnd(16, '\0'))],
  ] as const)('%s: %s gets the key, present', (method, map, argument, key) => {
    const kernel = new RecordingKernel();
    (kernel.maps[method] as (value: typeof argument) => void)(argument);
    expect(kernel.calls).toEqual([{ op: 'update', map, key, value: Buffer.from([1]) }]);
    expect(kernel.nonEmptyMaps()).toEqual([map]);
  });
});

describe('KernelMaps.takeEgressFlows', () => {
  const FLOW_KEY = LAYOUT.rf_flow_key;
  const FLOW_STATE = LAYOUT.rf_flow_state;
  const SOCKADDR = LAYOUT.rf_sockaddr.fields;

  function flow(policyId: number, port: number, folded: number, verdict: number = Verdict.BLOCKED): [Buffer, Buffer] {
    const key = Buffer.alloc(FLOW_KEY.size);
    key.writeUInt32LE(policyId, FLOW_KEY.fields.policy_id.offset);
    key.writeUInt8(EgressHook.SENDMSG, FLOW_KEY.fields.hook.offset);
    key.writeUInt8(verdict, FLOW_KEY.fields.verdict.offset);
    key.writeUInt8(17, FLOW_KEY.fields.protocol.offset);
    key.writeUInt16LE(2, FLOW_KEY.fields.dst.offset + SOCKADDR.family.offset);
    key.writeUInt16LE(port, FLOW_KEY.fields.dst.offset + SOCKADDR.port.offset);
    key.set([198, 51, 100, 9], FLOW_KEY.fields.dst.offset + SOCKADDR.addr.offset);
    const value = Buffer.alloc(FLOW_STATE.size);
    value.writeUInt32LE(folded, FLOW_STATE.fields.folded.offset);
    return [key, value];
  }

  it('the policy’s flows with repeats as events at the time given; all its flows deleted, others left', () => {
    const kernel = new RecordingKernel();
    const [folded, quiet, other] = [flow(5, 53, 4), flow(5, 54, 0), flow(6, 53, 2)];
    for (const entry of [folded, quiet, other]) kernel.seed('egress_flows', ...entry);
    const events = kernel.maps.takeEgressFlows(5, 1_000, 2_000_000_000);
    expect(events).toEqual([expect.objectContaining({ type: 'egress', policyId: 5, count: 4, port: 53, address: '198.51.100.9', verdict: 'blocked', hook: 'sendmsg', ktimeNs: 2_000_000_000, timeMs: 3_000 })]);
    expect(events).toHaveLength(1);
    expect(kernel.calls).toEqual([
      { op: 'delete', map: 'egress_flows', key: folded[0] },
      { op: 'delete', map: 'egress_flows', key: quiet[0] },
    ]);
    expect(kernel.held('egress_flows')).toEqual([other]);
  });

  it('an entry that does not decode is thrown, and left in the kernel', () => {
    expect.assertions(2);
    const kernel = new RecordingKernel();
    const bad = flow(5, 53, 1, 99);
    kernel.seed('egress_flows', ...bad);
    try {
      kernel.maps.takeEgressFlows(5, 0, 0);
    } catch (error) {
      expect(error).toBeInstanceOf(DecodeError);
    }
    expect(kernel.held('egress_flows')).toEqual([bad]);
  });
});

describe('the boundary: map names and map calls live in src/abi/ only', () => {
  const files = (dir: string): string[] =>
    fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
      const file = path.join(dir, entry.name);
      return entry.isDirectory() ? files(file) : entry.name.endsWith('.ts') ? [file] : [];
    });
  const outside = files(path.join(REPO_ROOT, 'src')).filter((file) => !file.startsWith(path.join(REPO_ROOT, 'src/abi') + path.sep));
  // every map of bpf/ but those named like ordinary words ('events', 'counters', 'detections')
  const names = [...new Set([...Object.keys(KERNEL_MAPS), ...Object.keys(declaredMaps())])].filter((name) => /[_\d]/.test(name));

  it('looks at the files it should', () => {
    expect(outside.map((file) => path.relative(REPO_ROOT, file))).toEqual(expect.arrayContaining(['src/enforce/egress.ts', 'src/enforce/lockdown.ts', 'src/sensor/sensor.ts']));
    expect(names).toEqual(expect.arrayContaining(Object.keys(KERNEL_MAPS) as MapName[]));
  });

  it('no file outside src/abi/ has a map name in quotes or calls the handle’s map methods', () => {
    const offences: string[] = [];
    for (const file of outside) {
      const text = fs.readFileSync(file, 'utf8');
      for (const name of names) if (new RegExp(`['"\`]${name}['"\`]`).test(text)) offences.push(`${path.relative(REPO_ROOT, file)}: '${name}'`);
      for (const [call] of text.matchAll(/\.map(Update|Delete|Lookup|Entries)\(/g)) offences.push(`${path.relative(REPO_ROOT, file)}: ${call}`);
    }
    expect(offences).toEqual([]);
  });
});
