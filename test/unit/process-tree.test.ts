import { describe, expect, it } from 'vitest';
import type { SensorEvent } from '../../src/sensor/events';
import { ProcessTree } from '../../src/sensor/process-tree';

const base = { ktimeNs: 0, timeMs: 0, cgroupId: 9, jobCgroupId: 9, uid: 0, comm: 'x' };
const exec = (tgid: number, ppid: number, filename: string): SensorEvent => ({
  ...base, type: 'exec', pid: tgid, tgid, ppid, filename, filenameTruncated: false, argv: [filename], argc: 1, argsTruncated: false,
  container: { pidnsLevel: 0, mntnsInum: 0, mntnsNotInit: false, usernsInum: 0, usernsInit: true, seccompMode: 0, capEffective: 0n, capPermitted: 0n },
  stdio: [{ kind: 'other' }, { kind: 'other' }, { kind: 'other' }],
});
const fork = (tgid: number, child: number): SensorEvent => ({ ...base, type: 'fork', pid: tgid, tgid, ppid: 0, childPid: child, childTgid: child });
const exit = (tgid: number): SensorEvent => ({ ...base, type: 'exit', pid: tgid, tgid, ppid: 0, status: 0, exitCode: 0, signal: null });

describe('ProcessTree', () => {
  const noProc = () => undefined;

  it('names the exe chain up to the job root', () => {
    const tree = new ProcessTree(noProc);
    for (const e of [exec(10, 1, '/bin/bash'), fork(10, 11), exec(11, 10, '/usr/bin/python3'), fork(11, 12), exec(12, 11, '/bin/sh')]) tree.observe(e);
    expect(tree.ancestry(12)).toEqual(['/bin/sh', '/usr/bin/python3', '/bin/bash']);
  });

  it('a forked child without exec carries its parent exe', () => {
    const tree = new ProcessTree(noProc);
    tree.observe(exec(10, 1, '/bin/bash'));
    tree.observe(fork(10, 11));
    expect(tree.ancestry(11)).toEqual(['/bin/bash', '/bin/bash']);
  });

  it('keeps the fork-time parent of a daemon reparented to init', () => {
    const tree = new ProcessTree(noProc);
    tree.observe(exec(10, 1, '/bin/bash'));
    tree.observe(fork(10, 11));
    tree.observe(fork(11, 12));
    tree.observe(exit(11));
    tree.observe(exec(12, 1, '/usr/bin/nc'));
    expect(tree.ancestry(12)).toEqual(['/usr/bin/nc', '/bin/bash', '/bin/bash']);
  });

  it('remembers exited processes for late events and fills unknown ones from /proc', () => {
    const tree = new ProcessTree((pid) => (pid === 50 ? { pid, ppid: 1, exe: '/opt/Runner.Worker', argv: [], uid: 0, jobCgroupId: 9, exited: false } : undefined));
    tree.observe(exec(10, 50, '/bin/bash'));
    tree.observe(exit(10));
    expect(tree.get(10)?.exited).toBe(true);
    expect(tree.get(50)?.exe).toBe('/opt/Runner.Worker');
  });
});
