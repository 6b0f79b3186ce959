/**
 * readProcFs on a /proc laid out by each test in a temp dir of its own: how a
 * process that predates tracking is filled in, and how the tree uses it.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { SensorEvent } from '../../src/sensor/events';
import { ProcessTree, readProcFs } from '../../src/sensor/process-tree';

interface FakeProcess {
  /** /proc/PID/stat up to the end of comm is "PID (comm)"; `rest` follows it. */
  comm: string;
  rest: string;
  /** Target of /proc/PID/exe; none: the link cannot be read (kernel thread). */
  exe?: string;
  /** /proc/PID/cmdline as the kernel gives it (NUL after each argument); none: no file. */
  cmdline?: string;
  status: string;
}

const roots: string[] = [];
afterEach(() => {
  for (const root of roots.splice(0)) fs.rmSync(root, { recursive: true, force: true });
});

function fakeProc(processes: Record<number, FakeProcess>): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-tree-'));
  roots.push(root);
  for (const [pid, p] of Object.entries(processes)) {
    const dir = path.join(root, pid);
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'stat'), `${pid} (${p.comm}) ${p.rest}\n`);
    if (p.exe !== undefined) fs.symlinkSync(p.exe, path.join(dir, 'exe'));
    if (p.cmdline !== undefined) fs.writeFileSync(path.join(dir, 'cmdline'), p.cmdline);
    fs.writeFileSync(path.join(dir, 'status'), p.status);
  }
  return root;
}

/** A status file as the kernel writes it, with the given Name and real uid. */
const status = (name: string, uid: number) =>
  `Name:\t${name}\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t1\nPid:\t1\nPPid:\t0\nTracerPid:\t0\nUid:\t${uid}\t${uid}\t${uid}\t${uid}\nGid:\t${uid}\t${uid}\t${uid}\t${uid}\n`;
/** stat after "(comm) ": state, ppid, pgrp, session… */
const statRest = (ppid: number) => `S ${ppid} 4000 4000 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 100 1000 100`;

describe('readProcFs', () => {
  it('reads parent, exe, argv and real uid; the job is not known from /proc', () => {
    const proc = fakeProc({ 4321: { comm: 'bash', rest: statRest(4000), exe: '/usr/bin/bash', cmdline: 'bash\0-e\0job.sh\0', status: status('bash', 1001) } });
    expect(readProcFs(4321, proc)).toEqual({ pid: 4321, ppid: 4000, exe: '/usr/bin/bash', argv: ['bash', '-e', 'job.sh'], uid: 1001, jobCgroupId: 0, exited: false });
  });

  it('a comm holding spaces and parentheses does not shift the fields; without an exe link the comm names it', () => {
    const proc = fakeProc({ 4321: { comm: 'x) S 1 (y', rest: statRest(4000), cmdline: 'x\0', status: status('x) S 1 (y', 1001) } });
    expect(readProcFs(4321, proc)).toMatchObject({ ppid: 4000, exe: 'x) S 1 (y' });
  });

  it('a comm that says "Uid:" does not set the uid (a user process posing as root)', () => {
    const proc = fakeProc({ 4321: { comm: 'a Uid:\t0', rest: statRest(4000), exe: '/tmp/a', cmdline: 'a\0', status: status('a Uid:\t0', 1001) } });
    expect(readProcFs(4321, proc)?.uid).toBe(1001);
  });

  it('a status without a Uid line gives uid -1, never root', () => {
    const proc = fakeProc({ 4321: { comm: 'odd', rest: statRest(4000), exe: '/tmp/odd', cmdline: 'odd\0', status: 'Name:\todd\n' } });
    expect(readProcFs(4321, proc)?.uid).toBe(-1);
  });

  it('a kernel thread: empty cmdline, no exe: no arguments, its comm', () => {
    const proc = fakeProc({ 57: { comm: 'kworker/0:1', rest: statRest(2), cmdline: '', status: status('kworker/0:1', 0) } });
    expect(readProcFs(57, proc)).toEqual({ pid: 57, ppid: 2, exe: 'kworker/0:1', argv: [], uid: 0, jobCgroupId: 0, exited: false });
  });

  it('a process that rewrote its title without a final NUL keeps its last argument', () => {
    const proc = fakeProc({ 4321: { comm: 'postgres', rest: statRest(4000), exe: '/usr/lib/postgresql/bin/postgres', cmdline: 'postgres: checkpointer', status: status('postgres', 999) } });
    expect(readProcFs(4321, proc)?.argv).toEqual(['postgres: checkpointer']);
  });

  it('a pid /proc does not have, or one that exited half-way through reading, is not filled in', () => {
    const proc = fakeProc({ 4321: { comm: 'gone', rest: statRest(4000), exe: '/tmp/gone', status: status('gone', 1001) } });
    expect(readProcFs(4322, proc)).toBeUndefined();
    expect(readProcFs(4321, proc)).toBeUndefined(); // no cmdline
  });

  it('reads /proc by default', () => {
    expect(readProcFs(process.pid)).toMatchObject({ pid: process.pid, ppid: process.ppid, exe: fs.readlinkSync('/proc/self/exe'), uid: process.getuid!() });
  });
});

describe('ProcessTree over a /proc fixture', () => {
  const JOB = 9;
  const header = { ktimeNs: 0, timeMs: 0, cgroupId: JOB, jobCgroupId: JOB, uid: 1001, comm: 'bash' };
  const fork = (tgid: number, child: number): SensorEvent => ({ ...header, type: 'fork', pid: tgid, tgid, ppid: 0, childPid: child, childTgid: child });
  const exec = (tgid: number, ppid: number, filename: string): SensorEvent => ({
    ...header, type: 'exec', pid: tgid, tgid, ppid, filename, filenameTruncated: false, argv: [filename], argc: 1, argsTruncated: false,
    container: { pidnsLevel: 0, mntnsInum: 0, mntnsNotInit: false, usernsInum: 0, usernsInit: true, seccompMode: 0, capEffective: 0n, capPermitted: 0n },
    stdio: [{ kind: 'other' }, { kind: 'other' }, { kind: 'other' }],
  });

  it('a job root that predates tracking is read from /proc at its first fork and ends its children’s ancestry', () => {
    // 4000 is the runner (not in the job): known to /proc, never named by an event of the job
    const proc = fakeProc({
      4000: { comm: 'Runner.Worker', rest: statRest(1), exe: '/opt/runner/bin/Runner.Worker', cmdline: 'Runner.Worker\0spawnclient\0', status: status('Runner.Worker', 1001) },
      4321: { comm: 'bash', rest: statRest(4000), exe: '/usr/bin/bash', cmdline: 'bash\0-e\0job.sh\0', status: status('bash', 1001) },
    });
    const tree = new ProcessTree((pid) => readProcFs(pid, proc));
    tree.get(4000); // looked up as a detection's target: known, its job not
    tree.observe(fork(4321, 4400));
    tree.observe(exec(4400, 4321, '/usr/bin/curl'));
    expect(tree.ancestry(4400)).toEqual(['/usr/bin/curl', '/usr/bin/bash']);
    expect(tree.get(4321)).toEqual({ pid: 4321, ppid: 4000, exe: '/usr/bin/bash', argv: ['bash', '-e', 'job.sh'], uid: 1001, jobCgroupId: JOB, exited: false });
  });
});
