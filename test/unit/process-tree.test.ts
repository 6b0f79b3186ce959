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

  it('an exited process still names the ancestry of a late event; a root that predates tracking comes from /proc', () => {
    const tree = new ProcessTree((pid) => (pid === 50 ? { pid, ppid: 1, exe: '/usr/bin/bash', argv: ['bash'], uid: 0, jobCgroupId: 0, exited: false } : undefined));
    tree.observe(fork(50, 10));
    tree.observe(exec(10, 50, '/usr/bin/make'));
    tree.observe(exit(10));
    tree.observe(exit(50));
    expect(tree.ancestry(10)).toEqual(['/usr/bin/make', '/usr/bin/bash']);
  });
});
