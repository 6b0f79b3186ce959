/**
 * Lockdown in the kernel (src/enforce/lockdown.ts), through src/abi's
 * KernelMaps on a recording stand-in for the addon's handle: which detections
 * a policy kills for, the job_lockdown value as the kernel reads it (offsets
 * from src/abi/layout.ts), and which processes are protected, found in a
 * /proc each case lays out for itself. The encoders themselves:
 * test/unit/abi-records.test.ts.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  configureStdinShells,
  DEFAULT_PROTECTED_PROGRAMS,
  JobLockdown,
  killedDetections,
  protectProcess,
  protectRunnerProcesses,
  STDIN_SHELLS,
} from '../../src/enforce/lockdown';
import { parsePolicy } from '../../src/policy/policy';
import type { DetectionName } from '../../src/sensor/events';
import { DetectionId } from '../../src/abi/layout';
import { commKey } from '../../src/abi/records';
import { cgroupKey, decodeJobLockdown, RecordingKernel } from './enforce-kernel';

/** RF_DETECT_BIT(d) of bpf/events.h: the bit the kernel tests for detection d. */
const bit = (detection: DetectionName) => 2 ** DetectionId[detection];

const policy = (yaml: string) => parsePolicy(yaml);

describe('killedDetections', () => {
  it.each([
    ['audit, lockdown off', 'egress-policy: audit\n', []],
    ['block, lockdown off: leaving the cgroup would escape egress', 'egress-policy: block\n', ['Cgroup-Escape']],
    ['lockdown off with detections listed: none of them', 'egress-policy: audit\nlockdown-mode:\n  enabled: false\n  detections: [Reverse-Shell]\n', []],
    ['audit, lockdown on: its listed ones and Cgroup-Escape', 'egress-policy: audit\nlockdown-mode:\n  enabled: true\n  detections: [Reverse-Shell]\n', ['Reverse-Shell', 'Cgroup-Escape']],
    ['lockdown on with none listed: Cgroup-Escape alone', 'egress-policy: audit\nlockdown-mode:\n  enabled: true\n', ['Cgroup-Escape']],
    [
      'block, lockdown on, all listed: Cgroup-Escape once',
      'egress-policy: block\nlockdown-mode:\n  enabled: true\n  detections: [Privileged-Container, Runner-Worker-Memory-Read, Reverse-Shell]\n',
      ['Privileged-Container', 'Runner-Worker-Memory-Read', 'Reverse-Shell', 'Cgroup-Escape'],
    ],
  ])('%s', (_name, yaml, killed) => {
    expect(killedDetections(policy(yaml))).toEqual(killed);
  });

  it('leaves the policy’s own list as it was', () => {
    const p = policy('egress-policy: block\nlockdown-mode:\n  enabled: true\n  detections: [Reverse-Shell]\n');
    killedDetections(p);
    expect(p.lockdown.detections).toEqual(['Reverse-Shell']);
  });
});

describe('JobLockdown', () => {
  it('writes the job’s kill mask under its cgroup id, and nothing else', () => {
    const kernel = new RecordingKernel();
    new JobLockdown(kernel.maps, 4242, ['Reverse-Shell', 'Cgroup-Escape'], { loopbackIsRemote: true });
    expect(kernel.nonEmptyMaps()).toEqual(['job_lockdown']);
    const [[key, value]] = kernel.held('job_lockdown');
    expect(key).toEqual(cgroupKey(4242));
    expect(decodeJobLockdown(value)).toEqual({ killMask: bit('Reverse-Shell') + bit('Cgroup-Escape'), loopbackRemote: 1 });
  });

  it('without options, loopback peers are not remote', () => {
    const kernel = new RecordingKernel();
    new JobLockdown(kernel.maps, 4242, ['Reverse-Shell']);
    expect(decodeJobLockdown(kernel.held('job_lockdown')[0][1]).loopbackRemote).toBe(0);
  });

  it('kills(): the kernel’s count for this job, 0 before any', () => {
    const kernel = new RecordingKernel();
    const lockdown = new JobLockdown(kernel.maps, 4242, ['Reverse-Shell']);
    expect(lockdown.kills()).toBe(0);
    const count = Buffer.alloc(8);
    count.writeBigUInt64LE(3n);
    kernel.seed('job_kills', cgroupKey(4243), Buffer.from(count)); // another job's
    expect(lockdown.kills()).toBe(0);
    count.writeBigUInt64LE(2n);
    kernel.seed('job_kills', cgroupKey(4242), count);
    expect(lockdown.kills()).toBe(2);
  });

  it('remove() deletes its settings and its kill count, once; another job’s stay', () => {
    const kernel = new RecordingKernel();
    const other = new JobLockdown(kernel.maps, 7, ['Agent-Tamper']);
    const lockdown = new JobLockdown(kernel.maps, 4242, ['Reverse-Shell']);
    kernel.seed('job_kills', cgroupKey(4242), Buffer.alloc(8, 1));
    lockdown.remove();
    expect(kernel.held('job_lockdown').map(([key]) => key)).toEqual([cgroupKey(7)]);
    expect(kernel.held('job_kills')).toEqual([]);
    const calls = kernel.calls.length;
    lockdown.remove();
    expect(kernel.calls).toHaveLength(calls);
    expect(other.killed).toEqual(['Agent-Tamper']);
  });
});

describe('protected processes and shells', () => {
  it('protectProcess marks one tgid (a u32 key) protected', () => {
    const kernel = new RecordingKernel();
    protectProcess(kernel.maps, 70000);
    const key = Buffer.alloc(4);
    key.writeUInt32LE(70000);
    expect(kernel.held('protected_tgids')).toEqual([[key, Buffer.from([1])]]);
  });

  it('configureStdinShells names every stdin shell by comm', () => {
    const kernel = new RecordingKernel();
    configureStdinShells(kernel.maps);
    expect(kernel.held('stdin_shells')).toEqual(STDIN_SHELLS.map((shell) => [commKey(shell), Buffer.from([1])]));
    expect(STDIN_SHELLS).toEqual(['sh', 'bash', 'dash', 'zsh', 'ksh', 'mksh', 'ash', 'busybox']);
  });

  it('configureStdinShells takes another list', () => {
    const kernel = new RecordingKernel();
    configureStdinShells(kernel.maps, ['fish']);
    expect(kernel.held('stdin_shells')).toEqual([[commKey('fish'), Buffer.from([1])]]);
  });
});

describe('protectRunnerProcesses', () => {
  const roots: string[] = [];
  afterEach(() => {
    for (const root of roots.splice(0)) fs.rmSync(root, { recursive: true, force: true });
  });

  /** A /proc: entry name → where its exe link points (undefined: a directory with no exe, as for a kernel thread). */
  function fakeProc(entries: Record<string, string | undefined>): string {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-protect-'));
    roots.push(root);
    for (const [name, exe] of Object.entries(entries)) {
      fs.mkdirSync(path.join(root, name));
      if (exe !== undefined) fs.symlinkSync(exe, path.join(root, name, 'exe'));
    }
    fs.writeFileSync(path.join(root, 'uptime'), '1.0 1.0\n');
    return root;
  }

  /** The tgids in protected_tgids. */
  const tgids = (kernel: RecordingKernel) => kernel.held('protected_tgids').map(([key]) => key.readUInt32LE(0));

  // pids past pid_max (2^22): never this process's
  const WORKER = 5000001;
  const LISTENER = 5000002;
  const SHELL = 5000003;
  const THREAD = 5000004;
  const NODE_IN_RUNNER_DIR = 5000005;

  it('protects the agent and every Runner.Worker and Runner.Listener running now, by their exe links', () => {
    const kernel = new RecordingKernel();
    const proc = fakeProc({
      [WORKER]: '/home/runner/bin/Runner.Worker',
      [LISTENER]: '/home/runner/bin/Runner.Listener',
      [SHELL]: '/usr/bin/bash',
      [THREAD]: undefined,
      [NODE_IN_RUNNER_DIR]: '/home/runner/Runner.Worker/node',
    });
    const now = protectRunnerProcesses(kernel.maps, DEFAULT_PROTECTED_PROGRAMS, proc);
    expect(now[0]).toBe(process.pid);
    expect(now.slice(1).sort()).toEqual([WORKER, LISTENER]);
    expect(tgids(kernel).sort()).toEqual([WORKER, LISTENER, process.pid].sort());
  });

  it('names the programs by comm, so the kernel protects their later execs too', () => {
    const kernel = new RecordingKernel();
    protectRunnerProcesses(kernel.maps, DEFAULT_PROTECTED_PROGRAMS, fakeProc({}));
    expect(kernel.held('protected_comms')).toEqual([
      [commKey('Runner.Worker'), Buffer.from([1])],
      [commKey('Runner.Listener'), Buffer.from([1])],
    ]);
    expect(DEFAULT_PROTECTED_PROGRAMS).toEqual(['Runner.Worker', 'Runner.Listener']);
  });

  it('only pid directories count: self, thread-self and names with digits in them are not processes', () => {
    const kernel = new RecordingKernel();
    const proc = fakeProc({ self: '/home/runner/bin/Runner.Worker', 'thread-self': '/home/runner/bin/Runner.Worker', net4: '/home/runner/bin/Runner.Worker', '4net': '/home/runner/bin/Runner.Worker' });
    expect(protectRunnerProcesses(kernel.maps, DEFAULT_PROTECTED_PROGRAMS, proc)).toEqual([process.pid]);
    expect(tgids(kernel)).toEqual([process.pid]);
  });

  it('an exe link it cannot read for another reason is skipped; the rest are still protected', () => {
    const kernel = new RecordingKernel();
    const proc = fakeProc({ [WORKER]: '/home/runner/bin/Runner.Worker', [LISTENER]: undefined });
    fs.writeFileSync(path.join(proc, String(LISTENER), 'exe'), 'Runner.Listener'); // not a link: readlink fails with EINVAL
    expect(protectRunnerProcesses(kernel.maps, DEFAULT_PROTECTED_PROGRAMS, proc)).toEqual([process.pid, WORKER]);
  });

  it('another list of programs replaces the default', () => {
    const kernel = new RecordingKernel();
    const proc = fakeProc({ [WORKER]: '/home/runner/bin/Runner.Worker', [SHELL]: '/usr/local/bin/vault-agent' });
    expect(protectRunnerProcesses(kernel.maps, ['vault-agent'], proc)).toEqual([process.pid, SHELL]);
    expect(kernel.held('protected_comms')).toEqual([[commKey('vault-agent'), Buffer.from([1])]]);
  });

  it('reads /proc by default: this process is among those it sees', () => {
    const kernel = new RecordingKernel();
    const self = path.basename(fs.readlinkSync('/proc/self/exe'));
    const now = protectRunnerProcesses(kernel.maps, [self]);
    expect(now[0]).toBe(process.pid);
    expect(now.slice(1)).toContain(process.pid);
  });
});
