/**
 * ProcessTree built from observed fork/exec/exit events only: /proc is a
 * stub that knows nothing (or counts its calls), so every answer comes from
 * `observe`. Ancestry names a job's processes and stops at its boundary.
 */
import { describe, expect, it } from 'vitest';
import type { SensorEvent } from '../../src/sensor/events';
import { ProcessTree, type ProcessInfo } from '../../src/sensor/process-tree';

const JOB = 9;
const OTHER_JOB = 4;

const base = (job: number) => ({ ktimeNs: 0, timeMs: 0, cgroupId: job, jobCgroupId: job, uid: 1001, comm: 'comm' });
const exec = (tgid: number, ppid: number, filename: string, job = JOB): SensorEvent => ({
  ...base(job), type: 'exec', pid: tgid, tgid, ppid, filename, filenameTruncated: false, argv: [filename, '-x'], argc: 2, argsTruncated: false,
  container: { pidnsLevel: 0, mntnsInum: 0, mntnsNotInit: false, usernsInum: 0, usernsInit: true, seccompMode: 0, capEffective: 0n, capPermitted: 0n },
  stdio: [{ kind: 'other' }, { kind: 'other' }, { kind: 'other' }],
});
const fork = (tgid: number, child: number, job = JOB): SensorEvent => ({ ...base(job), type: 'fork', pid: tgid, tgid, ppid: 0, childPid: child, childTgid: child });
const exit = (tgid: number, job = JOB): SensorEvent => ({ ...base(job), type: 'exit', pid: tgid, tgid, ppid: 0, status: 0, exitCode: 0, signal: null });
const connect = (tgid: number): SensorEvent => ({
  ...base(JOB), type: 'connect', pid: tgid, tgid, ppid: 0, fd: 3, errno: 0, family: 'inet', address: '198.18.0.1', port: 443, socketType: 1, protocol: 6,
});

/** A tree whose /proc knows nothing, fed `events` in order. */
function treeOf(events: SensorEvent[]): ProcessTree {
  const tree = new ProcessTree(() => undefined);
  for (const event of events) tree.observe(event);
  return tree;
}

describe('ProcessTree.observe → ancestry', () => {
  it.each<[string, () => SensorEvent[], number, string[]]>([
    ['exec chain to the job root', () => [exec(10, 1, '/bin/bash'), fork(10, 11), exec(11, 10, '/usr/bin/make'), fork(11, 12), exec(12, 11, '/bin/sh')], 12, ['/bin/sh', '/usr/bin/make', '/bin/bash']],
    ['a forked child without exec carries its parent’s exe', () => [exec(10, 1, '/bin/bash'), fork(10, 11)], 11, ['/bin/bash', '/bin/bash']],
    ['a fork of an unknown parent names the parent’s comm', () => [fork(50, 51)], 51, ['comm']],
    ['an exited parent still names the chain of a late event', () => [exec(10, 1, '/bin/bash'), fork(10, 11), exec(11, 10, '/usr/bin/nc'), exit(10)], 11, ['/usr/bin/nc', '/bin/bash']],
    ['a daemon reparented to init keeps its fork-time parent', () => [exec(10, 1, '/bin/bash'), fork(10, 11), fork(11, 12), exit(11), exec(12, 1, '/usr/bin/nc')], 12, ['/usr/bin/nc', '/bin/bash', '/bin/bash']],
    ['a reused pid (exited, then exec’d anew) takes the exec’s parent', () => [exec(10, 1, '/bin/bash'), exec(20, 1, '/usr/bin/node'), fork(10, 11), exit(11), exec(11, 20, '/bin/sh')], 11, ['/bin/sh', '/usr/bin/node']],
    ['ppid 0 ends the chain', () => [exec(10, 0, '/sbin/init')], 10, ['/sbin/init']],
    ['a process that is its own parent ends the chain', () => [exec(10, 10, '/bin/odd')], 10, ['/bin/odd']],
    ['an unknown pid has no ancestry', () => [exec(10, 1, '/bin/bash')], 77, []],
  ])('%s', (_label, events, pid, chain) => {
    expect(treeOf(events()).ancestry(pid)).toEqual(chain);
  });

  it.each<[string, () => SensorEvent[], number, string[]]>([
    // The runner (another job's cgroup, or none) starts the job's root: the root is the last entry.
    ['a parent in another job’s cgroup is not part of the ancestry', () => [exec(5, 1, '/opt/runner/Runner.Worker', OTHER_JOB), fork(5, 10, OTHER_JOB), exec(10, 5, '/bin/bash', JOB), fork(10, 11), exec(11, 10, '/usr/bin/curl')], 11, ['/usr/bin/curl', '/bin/bash']],
    ['a grandparent in another job’s cgroup is cut too', () => [exec(5, 1, '/usr/bin/sshd', OTHER_JOB), exec(10, 5, '/bin/bash', JOB), exec(11, 10, '/bin/sh', JOB), exec(12, 11, '/bin/ls', JOB)], 12, ['/bin/ls', '/bin/sh', '/bin/bash']],
    ['a job with a process from the other job under it: the other job’s chain stops at it', () => [exec(10, 1, '/bin/bash', JOB), exec(11, 10, '/usr/bin/docker', OTHER_JOB), exec(12, 11, '/bin/sh', OTHER_JOB)], 12, ['/bin/sh', '/usr/bin/docker']],
    ['a child exec’d into another job is judged by its own job', () => [exec(10, 1, '/bin/bash', JOB), fork(10, 11, JOB), exec(11, 10, '/bin/sh', OTHER_JOB)], 11, ['/bin/sh']],
  ])('job boundary: %s', (_label, events, pid, chain) => {
    expect(treeOf(events()).ancestry(pid)).toEqual(chain);
  });

  // A job root that predates tracking is filled from /proc, which cannot tell
  // its job (0): its own events name it (issue 14: it was cut as another job's).
  it('a job root filled from /proc (predates tracking) is the last entry of its children’s ancestry', () => {
    const root: ProcessInfo = { pid: 10, ppid: 1, exe: '/bin/bash', argv: ['bash'], uid: 1001, jobCgroupId: 0, exited: false };
    const tree = new ProcessTree((pid) => (pid === 10 ? { ...root } : undefined));
    tree.observe(fork(10, 11));
    tree.observe(exec(11, 10, '/usr/bin/curl'));
    expect(tree.ancestry(11)).toEqual(['/usr/bin/curl', '/bin/bash']);
  });

  it('a process filled from /proc takes its job from its own first event, whatever the event', () => {
    const fromProc = (pid: number): ProcessInfo => ({ pid, ppid: pid - 1, exe: `/bin/p${pid}`, argv: [], uid: 1001, jobCgroupId: 0, exited: false });
    const tree = new ProcessTree((pid) => (pid === 10 || pid === 11 ? fromProc(pid) : undefined));
    tree.observe(connect(10));
    tree.observe(exit(11, OTHER_JOB));
    expect(tree.get(10)?.jobCgroupId).toBe(JOB);
    expect(tree.get(11)?.jobCgroupId).toBe(OTHER_JOB);
  });

  it('job boundary: a parent filled from /proc whose own event names another job is cut', () => {
    const runner: ProcessInfo = { pid: 5, ppid: 1, exe: '/opt/runner/Runner.Worker', argv: [], uid: 1001, jobCgroupId: 0, exited: false };
    const tree = new ProcessTree((pid) => (pid === 5 ? { ...runner } : undefined));
    tree.observe(fork(5, 10, OTHER_JOB));
    tree.observe(exec(10, 5, '/bin/bash', JOB));
    expect(tree.ancestry(10)).toEqual(['/bin/bash']);
  });

  it('job boundary: a process whose job is not known yet names itself only, not a parent of unknown job (the runner)', () => {
    // both looked up from outside the event stream (a DNS asker, a detection's target): neither job known
    const known: Record<number, ProcessInfo> = {
      5: { pid: 5, ppid: 1, exe: '/opt/runner/Runner.Worker', argv: [], uid: 1001, jobCgroupId: 0, exited: false },
      10: { pid: 10, ppid: 5, exe: '/bin/bash', argv: [], uid: 1001, jobCgroupId: 0, exited: false },
    };
    const tree = new ProcessTree((pid) => (known[pid] ? { ...known[pid] } : undefined));
    tree.get(5);
    expect(tree.ancestry(10)).toEqual(['/bin/bash']);
  });

  it('a ppid loop is cut at 64 entries', () => {
    const tree = treeOf([exec(10, 11, '/a'), exec(11, 10, '/b')]);
    const chain = tree.ancestry(10);
    expect(chain).toHaveLength(64);
    expect(chain.slice(0, 4)).toEqual(['/a', '/b', '/a', '/b']);
  });

  it('a chain deeper than 64 is cut at 64, nearest first', () => {
    const events = [exec(1000, 1, '/p0')];
    for (let i = 1; i <= 80; i++) events.push(exec(1000 + i, 1000 + i - 1, `/p${i}`));
    const chain = treeOf(events).ancestry(1080);
    expect(chain).toHaveLength(64);
    expect(chain[0]).toBe('/p80');
    expect(chain[63]).toBe('/p17');
  });
});

describe('ProcessTree.observe → process facts', () => {
  it('exec records exe, argv, uid, job and parent; exit marks it exited', () => {
    const tree = treeOf([exec(10, 3, '/bin/bash')]);
    const info: ProcessInfo = { pid: 10, ppid: 3, exe: '/bin/bash', argv: ['/bin/bash', '-x'], uid: 1001, jobCgroupId: JOB, exited: false };
    expect(tree.get(10)).toEqual(info);
    tree.observe(exit(10));
    expect(tree.get(10)).toEqual({ ...info, exited: true });
  });

  it('fork of a parent nobody knows: the event’s comm, no arguments', () => {
    expect(treeOf([fork(50, 51)]).get(51)).toEqual({ pid: 51, ppid: 50, exe: 'comm', argv: [], uid: 1001, jobCgroupId: JOB, exited: false });
  });

  it('fork gives the child its parent’s exe and argv, the forking pid as parent, and the event’s job', () => {
    const tree = treeOf([exec(10, 3, '/bin/bash'), fork(10, 11, OTHER_JOB)]);
    expect(tree.get(11)).toEqual({ pid: 11, ppid: 10, exe: '/bin/bash', argv: ['/bin/bash', '-x'], uid: 1001, jobCgroupId: OTHER_JOB, exited: false });
  });

  it('reads /proc once for a pid it does not know, not again for each later event', () => {
    const asked: number[] = [];
    const tree = new ProcessTree((pid) => {
      asked.push(pid);
      return undefined;
    });
    tree.observe(connect(70));
    tree.observe(connect(70));
    tree.observe(connect(70));
    expect(asked).toEqual([70]);
    expect(tree.size).toBe(0);
  });

  it('asks /proc once per unknown pid, for each new one', () => {
    const asked: number[] = [];
    const tree = new ProcessTree((pid) => {
      asked.push(pid);
      return undefined;
    });
    for (const pid of [70, 71, 70, 71]) tree.observe(connect(pid));
    expect(asked).toEqual([70, 71]);
  });

  it('records without a process (pid 0: packets outside any task) do not read /proc', () => {
    const asked: number[] = [];
    const tree = new ProcessTree((pid) => {
      asked.push(pid);
      return undefined;
    });
    tree.observe(connect(0));
    expect(asked).toEqual([]);
    expect(tree.ancestry(0)).toEqual([]);
  });

  it('remembers at most 4096 pids /proc did not know, then starts over', () => {
    const asked: number[] = [];
    const tree = new ProcessTree((pid) => {
      asked.push(pid);
      return undefined;
    });
    for (let pid = 1000; pid < 1000 + 4096; pid++) tree.observe(connect(pid));
    tree.observe(connect(1000)); // still remembered: not asked again
    expect(asked).toHaveLength(4096);
    tree.observe(connect(9000)); // the 4097th: the set starts over with it
    tree.observe(connect(1000));
    tree.observe(connect(9000));
    expect(asked.slice(4096)).toEqual([9000, 1000]);
  });

  it('a pid /proc did not know is known once it execs', () => {
    const tree = new ProcessTree(() => undefined);
    tree.observe(connect(70));
    tree.observe(exec(70, 1, '/bin/late'));
    expect(tree.ancestry(70)).toEqual(['/bin/late']);
  });

  it('forgets the oldest exited processes beyond 4096, keeps the living', () => {
    const tree = treeOf([exec(1, 0, '/init')]);
    for (let pid = 100; pid < 100 + 4097; pid++) {
      tree.observe(exec(pid, 1, `/bin/p${pid}`));
      tree.observe(exit(pid));
    }
    expect(tree.get(100)).toBeUndefined();
    expect(tree.get(101)?.exited).toBe(true);
    expect(tree.get(1)?.exited).toBe(false);
    expect(tree.size).toBe(4097);
  });

  it('a pid reused by a living process is not forgotten when its earlier exit ages out', () => {
    const tree = treeOf([exec(1, 0, '/init'), exec(100, 1, '/bin/first'), exit(100), exec(100, 1, '/bin/second')]);
    for (let pid = 200; pid < 200 + 4096; pid++) {
      tree.observe(exec(pid, 1, `/bin/p${pid}`));
      tree.observe(exit(pid));
    }
    expect(tree.get(100)).toEqual({ pid: 100, ppid: 1, exe: '/bin/second', argv: ['/bin/second', '-x'], uid: 1001, jobCgroupId: JOB, exited: false });
  });

  it('a reused pid that exited again is kept for its own last 4096 exits, not forgotten with its first process', () => {
    const tree = treeOf([exec(1, 0, '/init'), exec(100, 1, '/bin/first'), exit(100), exec(100, 1, '/bin/second'), exit(100)]);
    for (let pid = 200; pid < 200 + 4095; pid++) {
      tree.observe(exec(pid, 1, `/bin/p${pid}`));
      tree.observe(exit(pid));
    }
    // 4096 exits since /bin/second's: all kept, it among them
    expect(tree.get(100)).toEqual({ pid: 100, ppid: 1, exe: '/bin/second', argv: ['/bin/second', '-x'], uid: 1001, jobCgroupId: JOB, exited: true });
  });

  it('an exit of an already exited process is not counted twice', () => {
    const tree = treeOf([exec(1, 0, '/init'), exec(100, 1, '/bin/first'), exit(100), exit(100)]);
    for (let pid = 200; pid < 200 + 4095; pid++) {
      tree.observe(exec(pid, 1, `/bin/p${pid}`));
      tree.observe(exit(pid));
    }
    // 4096 distinct exits: all kept, the first among them
    expect(tree.get(100)?.exe).toBe('/bin/first');
  });
});
