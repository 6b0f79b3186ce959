/** Who a local API caller is: cgroup v2 membership of a job (or below it), ancestry, refusals (src/agent/caller.ts). */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  CallerRefusedError,
  MAX_ANCESTRY,
  cgroupV2Path,
  classifyCaller,
  identifyCaller,
  jobOfCgroup,
  parseStatFacts,
  type JobCgroups,
} from '../../src/agent/caller';
import { findCgroup2Mount } from '../../src/cgroup/cgroup2';

const jobs = (...entries: [string, ...string[]][]): JobCgroups[] => entries.map(([jobId, ...cgroups]) => ({ jobId, cgroups }));

/** A /proc/PID/stat line with 52 fields, as the kernel writes it. */
function statLine(pid: number, ppid: number, startTime: number, comm = 'sh'): string {
  const rest = Array.from({ length: 48 }, (_, i) => (i === 17 ? String(startTime) : '0'));
  return `${pid} (${comm}) S ${ppid} ${rest.join(' ')}\n`;
}

function refusal(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(CallerRefusedError);
    expect((error as CallerRefusedError).code).toBe('RF_CALLER_UNKNOWN');
    expect((error as Error).name).toBe('CallerRefusedError');
    return (error as Error).message;
  }
  throw new Error('expected a refusal');
}

describe('cgroupV2Path', () => {
  it('reads the 0:: line of a pure cgroup v2 system, without the leading slash', () => {
    expect(cgroupV2Path('0::/ringfence/jobs/run-1\n', 'x')).toBe('ringfence/jobs/run-1');
    expect(cgroupV2Path('0::/\n', 'x')).toBe('');
  });

  it('skips the cgroup v1 lines of a hybrid layout', () => {
    const text = '12:pids:/user.slice/user-0.slice\n1:name=systemd:/ringfence/jobs/run-9\n0::/system.slice/ssh.service\n';
    expect(cgroupV2Path(text, 'x')).toBe('system.slice/ssh.service');
  });

  it('takes only hierarchy 0 with no controllers as the v2 line', () => {
    // a named v1 hierarchy may have no controllers; a v1 line may not claim hierarchy 0
    expect(cgroupV2Path('3::/ringfence/jobs/run-9\n0::/user.slice\n', 'x')).toBe('user.slice');
    expect(cgroupV2Path('0:pids:/ringfence/jobs/run-9\n0::/user.slice\n', 'x')).toBe('user.slice');
    expect(refusal(() => cgroupV2Path('3::/ringfence/jobs/run-9\n0:pids:/ringfence/jobs/run-9\n', 'w'))).toBe('w: no cgroup v2 line (0::PATH)');
  });

  it('keeps a colon inside the path', () => {
    expect(cgroupV2Path('0::/a:b/c\n', 'x')).toBe('a:b/c');
  });

  it('refuses a pure cgroup v1 text (no 0:: line), naming where', () => {
    expect(refusal(() => cgroupV2Path('12:pids:/user.slice\n3:cpu,cpuacct:/\n', 'caller pid 7'))).toBe('caller pid 7: no cgroup v2 line (0::PATH)');
  });

  it('refuses an empty text', () => {
    expect(refusal(() => cgroupV2Path('', 'w'))).toBe('w: no cgroup v2 line (0::PATH)');
  });

  it('refuses a garbled line, even next to a good one', () => {
    expect(refusal(() => cgroupV2Path('0::/ringfence/jobs/run-1\ngarbage\n', 'w'))).toBe('w: not a cgroup line: "garbage"');
    expect(refusal(() => cgroupV2Path('x::/a\n', 'w'))).toBe('w: not a cgroup line: "x::/a"');
    // the whole line must be one: nothing before the hierarchy id, no line break inside the path
    expect(refusal(() => cgroupV2Path('x0::/a\n', 'w'))).toBe('w: not a cgroup line: "x0::/a"');
    expect(refusal(() => cgroupV2Path('0::/a\rb\n', 'w'))).toBe('w: not a cgroup line: "0::/a\\rb"');
  });

  it('quotes at most 80 characters of a garbled line', () => {
    const long = 'x'.repeat(200);
    expect(refusal(() => cgroupV2Path(`${long}\n`, 'w'))).toBe(`w: not a cgroup line: "${'x'.repeat(80)}"`);
  });

  it('refuses two cgroup v2 lines', () => {
    expect(refusal(() => cgroupV2Path('0::/a\n0::/b\n', 'w'))).toBe('w: 2 cgroup v2 lines, expected one');
  });

  it('refuses a relative path', () => {
    expect(refusal(() => cgroupV2Path('0::ringfence/jobs/run-1\n', 'w'))).toBe('w: cgroup v2 path "ringfence/jobs/run-1" is not absolute');
    expect(refusal(() => cgroupV2Path('0::\n', 'w'))).toBe('w: cgroup v2 path "" is not absolute');
  });

  it('refuses a path outside our cgroup namespace', () => {
    expect(refusal(() => cgroupV2Path('0::/../../ringfence/jobs/run-1\n', 'w'))).toBe(
      'w: cgroup "/../../ringfence/jobs/run-1" is outside this daemon\'s cgroup namespace',
    );
    // '.' segments are refused too: such a path is not one the kernel writes, so it is not placed
    expect(refusal(() => cgroupV2Path('0::/ringfence/./jobs/run-1\n', 'w'))).toBe(
      'w: cgroup "/ringfence/./jobs/run-1" is outside this daemon\'s cgroup namespace',
    );
    // empty segments are not '.': a doubled slash is the same path
    expect(cgroupV2Path('0::/ringfence//jobs/run-1\n', 'w')).toBe('ringfence/jobs/run-1');
  });

  it('refuses a removed cgroup', () => {
    expect(refusal(() => cgroupV2Path('0::/ringfence/jobs/run-1 (deleted)\n', 'w'))).toBe('w: cgroup "/ringfence/jobs/run-1 (deleted)" has been removed');
  });
});

describe('jobOfCgroup', () => {
  it("is the job whose cgroup it is, or that it is below (any depth)", () => {
    const list = jobs(['run-1', 'ringfence/jobs/run-1'], ['run-2', 'ringfence/jobs/run-2']);
    expect(jobOfCgroup('ringfence/jobs/run-1', list)).toBe('run-1');
    expect(jobOfCgroup('ringfence/jobs/run-2/payload', list)).toBe('run-2');
    expect(jobOfCgroup('ringfence/jobs/run-2/a/b/c', list)).toBe('run-2');
  });

  it('matches whole path segments only: run-10 is not below run-1, nor run-1 below run-10', () => {
    expect(jobOfCgroup('ringfence/jobs/run-10', jobs(['run-1', 'ringfence/jobs/run-1']))).toBeUndefined();
    expect(jobOfCgroup('ringfence/jobs/run-10/x', jobs(['run-1', 'ringfence/jobs/run-1']))).toBeUndefined();
    expect(jobOfCgroup('ringfence/jobs/run-1', jobs(['run-10', 'ringfence/jobs/run-10']))).toBeUndefined();
    expect(jobOfCgroup('ringfence/jobs/run-10', jobs(['run-1', 'ringfence/jobs/run-1'], ['run-10', 'ringfence/jobs/run-10']))).toBe('run-10');
  });

  it('is nothing for the root, a parent of the jobs, or another tree', () => {
    const list = jobs(['run-1', 'ringfence/jobs/run-1']);
    expect(jobOfCgroup('', list)).toBeUndefined();
    expect(jobOfCgroup('ringfence/jobs', list)).toBeUndefined();
    expect(jobOfCgroup('system.slice/ringfenced.service', list)).toBeUndefined();
    expect(jobOfCgroup('other/ringfence/jobs/run-1', list)).toBeUndefined();
  });

  it('takes the deepest job cgroup when jobs nest', () => {
    const list = jobs(['outer', 'ringfence/jobs/outer'], ['inner', 'ringfence/jobs/outer/inner']);
    expect(jobOfCgroup('ringfence/jobs/outer/inner/x', list)).toBe('inner');
    expect(jobOfCgroup('ringfence/jobs/outer/other', list)).toBe('outer');
    // the order of the list does not matter
    expect(jobOfCgroup('ringfence/jobs/outer/inner', [...list].reverse())).toBe('inner');
  });

  it("counts every cgroup of a job (a container's, tracked as the job's)", () => {
    const list = jobs(['run-1', 'ringfence/jobs/run-1', 'system.slice/docker-abc.scope']);
    expect(jobOfCgroup('system.slice/docker-abc.scope', list)).toBe('run-1');
    expect(jobOfCgroup('system.slice/docker-abd.scope', list)).toBeUndefined();
  });

  it('ignores slashes around a job cgroup as given', () => {
    expect(jobOfCgroup('ringfence/jobs/run-1/x', jobs(['run-1', '/ringfence/jobs/run-1/']))).toBe('run-1');
  });

  it('throws for a job whose cgroup is the root (it would hold every caller)', () => {
    let thrown: unknown;
    try {
      jobOfCgroup('system.slice', jobs(['run-1', '/']));
    } catch (error) {
      thrown = error;
    }
    // an internal error, not a refusal of the caller
    expect(thrown).not.toBeInstanceOf(CallerRefusedError);
    expect(thrown).toMatchObject({ message: 'job run-1: its cgroup is the cgroup2 root', code: 'RF_INTERNAL' });
  });

  it('gives a cgroup two jobs claim to the first one listed (a later one of the same depth does not take it over)', () => {
    const list = jobs(['first', 'ringfence/jobs/shared'], ['second', 'ringfence/jobs/shared']);
    expect(jobOfCgroup('ringfence/jobs/shared/x', list)).toBe('first');
    expect(jobOfCgroup('ringfence/jobs/shared/x', [...list].reverse())).toBe('second');
  });
});

describe('classifyCaller', () => {
  const list = jobs(['run-1', 'ringfence/jobs/run-1']);

  it('a root process in a job is the job, not uid 0', () => {
    expect(classifyCaller({ uid: 0, cgroup: '0::/ringfence/jobs/run-1/step\n' }, list, 'c')).toEqual({ kind: 'job', jobId: 'run-1' });
  });

  it('a process outside every job is the host, with its uid', () => {
    expect(classifyCaller({ uid: 1001, cgroup: '0::/user.slice/user-1001.slice/session-3.scope\n' }, list, 'c')).toEqual({ kind: 'host', uid: 1001 });
    expect(classifyCaller({ uid: 0, cgroup: '0::/\n' }, list, 'c')).toEqual({ kind: 'host', uid: 0 });
  });

  it('a process with an ancestor in a job is the job (it left the cgroup, not the job)', () => {
    const facts = { uid: 0, cgroup: '0::/\n', ancestors: ['0::/user.slice\n', '0::/ringfence/jobs/run-1\n', '0::/\n'] };
    expect(classifyCaller(facts, list, 'c')).toEqual({ kind: 'job', jobId: 'run-1' });
  });

  it('its own cgroup comes before its ancestry', () => {
    const two = jobs(['run-1', 'ringfence/jobs/run-1'], ['run-2', 'ringfence/jobs/run-2']);
    const facts = { uid: 0, cgroup: '0::/ringfence/jobs/run-2\n', ancestors: ['0::/ringfence/jobs/run-1\n'] };
    expect(classifyCaller(facts, two, 'c')).toEqual({ kind: 'job', jobId: 'run-2' });
  });

  it('with no jobs at all, everyone is the host', () => {
    expect(classifyCaller({ uid: 5, cgroup: '0::/ringfence/jobs/run-1\n' }, [], 'c')).toEqual({ kind: 'host', uid: 5 });
  });

  it("refuses a garbled ancestor's cgroup, naming which", () => {
    expect(refusal(() => classifyCaller({ uid: 0, cgroup: '0::/\n', ancestors: ['0::/\n', 'junk'] }, list, 'caller pid 9'))).toBe(
      'caller pid 9: ancestor 2\'s /proc cgroup: not a cgroup line: "junk"',
    );
  });

  it("refuses a caller whose own cgroup is unreadable text, however its ancestors look", () => {
    expect(refusal(() => classifyCaller({ uid: 0, cgroup: '12:pids:/\n', ancestors: ['0::/ringfence/jobs/run-1\n'] }, list, 'caller pid 9'))).toBe(
      'caller pid 9: /proc cgroup: no cgroup v2 line (0::PATH)',
    );
  });
});

describe('parseStatFacts', () => {
  it('reads ppid and start time, whatever the comm holds', () => {
    expect(parseStatFacts(statLine(42, 7, 123456, 'a) b (c'))).toEqual({ ppid: 7, startTime: 123456 });
  });

  it('reads a ppid of 0 (pid 1 and kernel threads have it)', () => {
    expect(parseStatFacts(statLine(1, 0, 5))).toEqual({ ppid: 0, startTime: 5 });
  });

  it('needs fields 3 to 22 and nothing after them', () => {
    const fields = statLine(42, 7, 99).trim().split(' ');
    // pid, comm, then fields 3..22: the line ends at the start time
    expect(fields[21]).toBe('99');
    expect(parseStatFacts(`${fields.slice(0, 22).join(' ')}\n`)).toEqual({ ppid: 7, startTime: 99 });
    // one field short, trailing blank or not: no start time
    expect(parseStatFacts(`${fields.slice(0, 21).join(' ')}\n`)).toBeUndefined();
    expect(parseStatFacts(`${fields.slice(0, 21).join(' ')} \n`)).toBeUndefined();
  });

  it('counts fields from the last ")", wherever it is', () => {
    const afterComm = statLine(42, 7, 99).slice('42 (sh)'.length);
    expect(parseStatFacts(`)${afterComm}`)).toEqual({ ppid: 7, startTime: 99 });
    // no ')' at all: not a stat line, even if what follows would parse
    expect(parseStatFacts(`X${afterComm}`)).toBeUndefined();
  });

  it('is undefined for what is not a stat line', () => {
    expect(parseStatFacts('42 sh S 7 0 0')).toBeUndefined();
    expect(parseStatFacts('42 (sh) S 7 0 0')).toBeUndefined();
    expect(parseStatFacts(statLine(42, 7, 1).replace(' 7 ', ' x '))).toBeUndefined();
    expect(parseStatFacts(statLine(42, 7, 1).replace(' 7 ', ' -1 '))).toBeUndefined();
    expect(parseStatFacts(statLine(42, 7, 1).replace(' 7 ', ' 1.5 '))).toBeUndefined();
    // an empty start time (two blanks before it) is not 0
    const fields = statLine(42, 7, 1).trim().split(' ');
    fields[21] = '';
    expect(parseStatFacts(`${fields.join(' ')}\n`)).toBeUndefined();
    fields[21] = '1e400';
    expect(parseStatFacts(`${fields.join(' ')}\n`)).toBeUndefined();
  });
});

describe('identifyCaller (a /proc of our own)', () => {
  let proc: string;
  beforeEach(() => {
    proc = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-caller-'));
  });
  afterEach(() => fs.rmSync(proc, { recursive: true, force: true }));

  function processAt(pid: number, ppid: number, startTime: number, cgroup: string | undefined) {
    fs.mkdirSync(path.join(proc, String(pid)), { recursive: true });
    fs.writeFileSync(path.join(proc, String(pid), 'stat'), statLine(pid, ppid, startTime));
    if (cgroup !== undefined) fs.writeFileSync(path.join(proc, String(pid), 'cgroup'), cgroup);
  }
  const list = jobs(['run-1', 'ringfence/jobs/run-1']);

  it('a caller in a job cgroup is the job', () => {
    processAt(100, 1, 500, '0::/ringfence/jobs/run-1/x\n');
    expect(identifyCaller({ pid: 100, uid: 0, startTime: 500 }, list, { procRoot: proc })).toEqual({ kind: 'job', jobId: 'run-1' });
  });

  it('a caller outside, whose ancestors are outside too, is the host', () => {
    processAt(100, 50, 500, '0::/user.slice\n');
    processAt(50, 1, 400, '0::/user.slice\n');
    expect(identifyCaller({ pid: 100, uid: 1000, startTime: 500 }, list, { procRoot: proc })).toEqual({ kind: 'host', uid: 1000 });
  });

  it('a caller that left the job cgroup is the job while an ancestor is in it', () => {
    processAt(100, 60, 500, '0::/\n');
    processAt(60, 50, 450, '0::/\n');
    processAt(50, 1, 400, '0::/ringfence/jobs/run-1\n');
    expect(identifyCaller({ pid: 100, uid: 0, startTime: 500 }, list, { procRoot: proc })).toEqual({ kind: 'job', jobId: 'run-1' });
  });

  it('is refused when the caller is gone by the time /proc is read', () => {
    expect(refusal(() => identifyCaller({ pid: 100, uid: 0, startTime: 500 }, list, { procRoot: proc }))).toBe(
      'caller pid 100 exited before it could be identified',
    );
  });

  it('is refused when the pid now names another process (a different start time)', () => {
    processAt(100, 1, 501, '0::/\n');
    expect(refusal(() => identifyCaller({ pid: 100, uid: 0, startTime: 500 }, list, { procRoot: proc }))).toBe(
      'caller pid 100 exited before it could be identified (the pid now names another process)',
    );
  });

  it('is refused when the stat of the caller is gone after its cgroup was read', () => {
    fs.mkdirSync(path.join(proc, '100'));
    fs.writeFileSync(path.join(proc, '100', 'cgroup'), '0::/\n');
    expect(refusal(() => identifyCaller({ pid: 100, uid: 0, startTime: 500 }, list, { procRoot: proc }))).toBe(
      'caller pid 100 exited before it could be identified',
    );
  });

  it("is refused for a caller's garbled cgroup file or stat line", () => {
    processAt(100, 1, 500, 'nonsense\n');
    expect(refusal(() => identifyCaller({ pid: 100, uid: 0, startTime: 500 }, list, { procRoot: proc }))).toBe(
      'caller pid 100: /proc cgroup: not a cgroup line: "nonsense"',
    );
    fs.writeFileSync(path.join(proc, '100', 'cgroup'), '0::/\n');
    fs.writeFileSync(path.join(proc, '100', 'stat'), 'garbled');
    expect(refusal(() => identifyCaller({ pid: 100, uid: 0, startTime: 500 }, list, { procRoot: proc }))).toBe(
      'caller pid 100: /proc/100/stat is not a stat line',
    );
  });

  it('is refused when /proc cannot be read for another reason than the process being gone', () => {
    processAt(100, 1, 500, undefined);
    fs.mkdirSync(path.join(proc, '100', 'cgroup'));
    expect(refusal(() => identifyCaller({ pid: 100, uid: 0, startTime: 500 }, list, { procRoot: proc }))).toMatch(
      /^cannot read \/proc\/100\/cgroup: EISDIR/,
    );
  });

  it('ends the ancestry at a parent that is gone: the caller is judged by what is left', () => {
    processAt(100, 60, 500, '0::/\n');
    // 60 is gone; 50 (in the job) is not reached through it
    processAt(50, 1, 400, '0::/ringfence/jobs/run-1\n');
    expect(identifyCaller({ pid: 100, uid: 0, startTime: 500 }, list, { procRoot: proc })).toEqual({ kind: 'host', uid: 0 });
  });

  it('follows a parent that started in the same clock tick as its child', () => {
    processAt(100, 60, 500, '0::/\n');
    processAt(60, 1, 500, '0::/ringfence/jobs/run-1\n');
    expect(identifyCaller({ pid: 100, uid: 0, startTime: 500 }, list, { procRoot: proc })).toEqual({ kind: 'job', jobId: 'run-1' });
  });

  it('ends the ancestry at a parent pid that was reused (it started after its child)', () => {
    processAt(100, 60, 500, '0::/\n');
    processAt(60, 1, 900, '0::/ringfence/jobs/run-1\n');
    expect(identifyCaller({ pid: 100, uid: 0, startTime: 500 }, list, { procRoot: proc })).toEqual({ kind: 'host', uid: 0 });
  });

  it('ends the ancestry at a parent without a cgroup file (exited while read)', () => {
    processAt(100, 60, 500, '0::/\n');
    processAt(60, 50, 450, undefined);
    processAt(50, 1, 400, '0::/ringfence/jobs/run-1\n');
    expect(identifyCaller({ pid: 100, uid: 0, startTime: 500 }, list, { procRoot: proc })).toEqual({ kind: 'host', uid: 0 });
  });

  /** ESRCH, as the kernel answers a read of /proc/PID/FILE of a process that is exiting. */
  const esrch = (file: string) => Object.assign(new Error(`ESRCH: no such process, open '${file}'`), { code: 'ESRCH' });

  it('is refused when reading the caller answers ESRCH (it is exiting)', () => {
    processAt(100, 1, 500, '0::/\n');
    const readFile = (file: string) => {
      if (file === path.join(proc, '100', 'cgroup')) throw esrch(file);
      return fs.readFileSync(file, 'utf8');
    };
    expect(refusal(() => identifyCaller({ pid: 100, uid: 0, startTime: 500 }, list, { procRoot: proc, readFile }))).toBe(
      'caller pid 100 exited before it could be identified',
    );
  });

  it("ends the ancestry at a parent whose cgroup answers ESRCH", () => {
    processAt(100, 50, 500, '0::/\n');
    processAt(50, 1, 400, '0::/ringfence/jobs/run-1\n');
    const readFile = (file: string) => {
      if (file === path.join(proc, '50', 'cgroup')) throw esrch(file);
      return fs.readFileSync(file, 'utf8');
    };
    expect(identifyCaller({ pid: 100, uid: 0, startTime: 500 }, list, { procRoot: proc, readFile })).toEqual({ kind: 'host', uid: 0 });
    // the same /proc read straight: the parent is the job
    expect(identifyCaller({ pid: 100, uid: 0, startTime: 500 }, list, { procRoot: proc })).toEqual({ kind: 'job', jobId: 'run-1' });
  });

  /** A reader whose answer for `file` changes from its second read on (the process exited, its pid maybe reused). */
  function changingAfterFirstRead(file: string, then: () => string) {
    let reads = 0;
    return (name: string) => {
      if (name === file && ++reads > 1) return then();
      return fs.readFileSync(name, 'utf8');
    };
  }

  it("ends the ancestry at a parent whose pid was reused while its cgroup was read (the cgroup is not taken)", () => {
    processAt(100, 50, 500, '0::/\n');
    processAt(50, 1, 400, '0::/ringfence/jobs/run-1\n');
    const readFile = changingAfterFirstRead(path.join(proc, '50', 'stat'), () => statLine(50, 1, 450));
    expect(identifyCaller({ pid: 100, uid: 0, startTime: 500 }, list, { procRoot: proc, readFile })).toEqual({ kind: 'host', uid: 0 });
  });

  it('ends the ancestry at a parent that exited while its cgroup was read', () => {
    processAt(100, 50, 500, '0::/\n');
    processAt(50, 1, 400, '0::/ringfence/jobs/run-1\n');
    const file = path.join(proc, '50', 'stat');
    const readFile = changingAfterFirstRead(file, () => {
      throw Object.assign(new Error(`ENOENT: no such file or directory, open '${file}'`), { code: 'ENOENT' });
    });
    expect(identifyCaller({ pid: 100, uid: 0, startTime: 500 }, list, { procRoot: proc, readFile })).toEqual({ kind: 'host', uid: 0 });
  });

  it(`refuses an ancestry longer than ${MAX_ANCESTRY} (a job hiding below it)`, () => {
    const depth = MAX_ANCESTRY + 1;
    for (let i = 0; i <= depth; i++) processAt(1000 + i, i === depth ? 1 : 1000 + i + 1, 10_000 - i, '0::/\n');
    expect(refusal(() => identifyCaller({ pid: 1000, uid: 0, startTime: 10_000 }, list, { procRoot: proc }))).toBe(
      `caller pid 1000: more than ${MAX_ANCESTRY} ancestors`,
    );
    // exactly MAX_ANCESTRY ancestors is fine
    expect(identifyCaller({ pid: 1001, uid: 0, startTime: 9_999 }, list, { procRoot: proc })).toEqual({ kind: 'host', uid: 0 });
  });
});

describe('identifyCaller (the real /proc)', () => {
  const startTime = () => parseStatFacts(fs.readFileSync(`/proc/${process.pid}/stat`, 'utf8'))!.startTime;
  const ownCgroup = () => cgroupV2Path(fs.readFileSync('/proc/self/cgroup', 'utf8'), 'self');

  it.runIf(findCgroup2Mount() !== undefined)('this test process: the host with its uid, or the job whose cgroup it is in', () => {
    const peer = { pid: process.pid, uid: process.getuid!(), startTime: startTime() };
    expect(identifyCaller(peer, [])).toEqual({ kind: 'host', uid: process.getuid!() });
    const here = ownCgroup();
    if (here !== '') expect(identifyCaller(peer, jobs(['this-job', here]))).toEqual({ kind: 'job', jobId: 'this-job' });
  });
});
