/** `ringfence run` as users call it: exit statuses, bad policies, Ctrl-C, cleanup. */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { findCgroup2Mount } from '../../src/cgroup/cgroup2';
import { createTestHost } from '../helpers/netns';

const RINGFENCE = path.resolve(__dirname, '../../bin/ringfence');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs bin/ringfence; with interruptWhen, sends SIGINT once that file exists (the job has started). */
function ringfence(args: string[], options: { interruptWhen?: string } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [RINGFENCE, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    if (options.interruptWhen) {
      const marker = options.interruptWhen;
      const poll = setInterval(() => {
        if (fs.existsSync(marker)) {
          clearInterval(poll);
          child.kill('SIGINT');
        }
      }, 20);
      child.on('close', () => clearInterval(poll));
    }
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function tempFile(name: string, text: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringfence-cli-'));
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}

const jobsDir = () => path.join(findCgroup2Mount()!, 'ringfence/jobs');
const jobIdOf = (stderr: string) => /job (run-[\w-]+)/.exec(stderr)?.[1];

describe('ringfence run', () => {
  it("exits with CMD's status and cleans up its cgroup", async () => {
    const run = await ringfence(['run', '--', '/bin/sh', '-c', 'echo out; exit 7']);
    expect(run.stdout).toBe('out\n');
    expect(run.code).toBe(7);
    const id = jobIdOf(run.stderr);
    expect(id).toBeDefined();
    expect(fs.existsSync(path.join(jobsDir(), id!))).toBe(false);
  });

  it('refuses a bad policy with one line per problem and runs nothing', async () => {
    const marker = path.join(os.tmpdir(), `ringfence-never-${process.pid}`);
    const policy = tempFile('bad.yml', 'egress-policy: block\nallowed-endpoints: >\n  ok.example.com\n  bad.example.com:0\n  two.*.*.com\n');
    const run = await ringfence(['run', '--policy', policy, '--', '/usr/bin/touch', marker]);
    expect(run.code).toBe(170);
    expect(run.stderr.trim().split('\n')).toEqual([
      `ringfence: policy ${policy} is not valid, nothing was done:`,
      `${policy}:4: endpoint 'bad.example.com:0': bad port '0' in 'bad.example.com:0' (1-65535)`,
      `${policy}:5: endpoint 'two.*.*.com': more than one '*' in 'two.*.*.com'`,
    ]);
    expect(fs.existsSync(marker)).toBe(false);
  });

  it('writes events and a Markdown summary, blocked requests first', async () => {
    const host = createTestHost(2);
    const policy = tempFile('p.yml', `name: cli-test\negress-policy: block\nallowed-endpoints: ${host.ip4}:9\n`);
    const events = tempFile('events.jsonl', '');
    const summary = tempFile('summary.md', '');
    // the test host's neighbour .3 is not allowed: refused before anything leaves
    const blocked = host.ip4.replace(/\.2$/, '.3');
    const run = await ringfence(['run', '--policy', policy, '--events', events, '--summary', summary, '--', '/bin/bash', '-c', `exec 3<>/dev/tcp/${blocked}/9; exit 0`]);
    host.destroy();
    expect(run.code).toBe(1);
    const kinds = fs.readFileSync(events, 'utf8').trim().split('\n').map((line) => JSON.parse(line).kind);
    expect(kinds[0]).toBe('job');
    expect(kinds.at(-1)).toBe('job');
    expect(kinds).toContain('network');
    const markdown = fs.readFileSync(summary, 'utf8');
    expect(markdown).toContain(`| blocked | ${blocked} | 9 | tcp | 1 | /bin/bash |`);
    expect(markdown).toContain('policy `cli-test`, egress block');
  });

  it('Ctrl-C ends the whole job and leaves nothing behind', async () => {
    const marker = path.join(os.tmpdir(), `ringfence-started-${process.pid}`);
    fs.rmSync(marker, { force: true });
    const run = await ringfence(['run', '--', '/bin/bash', '-c', `sleep 60 & touch ${marker}; sleep 60`], { interruptWhen: marker });
    expect(run.code).toBe(130);
    expect(run.stderr).toMatch(/interrupted by SIGINT/);
    const id = jobIdOf(run.stderr)!;
    expect(fs.existsSync(path.join(jobsDir(), id))).toBe(false);
  });
});

describe('orphaned jobs', () => {
  it('jobs whose ringfence died are ended and removed, recorded or not; live ones are left alone', async () => {
    const { Cgroup } = await import('../../src/cgroup/cgroup2');
    const { JobRegistry } = await import('../../src/jobs/registry');
    // a private root and state directory, so that jobs of other test files running meanwhile are not involved
    const root = Cgroup.create(`ringfence-test/${process.pid}-orphans`);
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringfence-state-'));
    const pinRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'ringfence-pins-'));
    const registry = new JobRegistry({ stateDir, pinRoot, cgroupRoot: root });
    // a pid above pid_max stands for a dead ringfence; ours is alive
    const unrecorded = Cgroup.create('jobs/run-orphan-4194305', root.path);
    const legacyTrace = Cgroup.create('trace-4194306', root.path);
    const recorded = Cgroup.create('jobs/run-recorded-77', root.path);
    // recorded by pid 1 but with another start time: a recycled pid, not the owner
    fs.writeFileSync(path.join(stateDir, 'run-recorded-77.json'), JSON.stringify({ id: 'run-recorded-77', ownerPid: 1, ownerStart: -1, cgroup: recorded.path }));
    fs.mkdirSync(path.join(pinRoot, 'run-recorded-77'));
    // damaged records: judged by the pid their id ends in, like jobs without one
    const damagedDead = Cgroup.create('jobs/run-damaged-4194307', root.path);
    fs.writeFileSync(path.join(stateDir, 'run-damaged-4194307.json'), '{"id": "');
    fs.mkdirSync(path.join(pinRoot, 'run-damaged-4194307'));
    const damagedLive = Cgroup.create('jobs/run-damaged-1', root.path);
    fs.writeFileSync(path.join(stateDir, 'run-damaged-1.json'), '{"id": "');
    fs.mkdirSync(path.join(pinRoot, 'run-damaged-1'));
    const parked = damagedDead.spawn('/bin/sleep', ['60'], { stdio: 'ignore' });
    const parkedEnded = new Promise<NodeJS.Signals | null>((resolve) => parked.on('exit', (_code, signal) => resolve(signal)));
    while (damagedDead.procs().length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    const live = Cgroup.create(`jobs/run-live-${process.pid}`, root.path);
    registry.register(`run-live-${process.pid}`, live.path);
    const sleeper = unrecorded.spawn('/bin/sleep', ['60'], { stdio: 'ignore' });
    const ended = new Promise<NodeJS.Signals | null>((resolve) => sleeper.on('exit', (_code, signal) => resolve(signal)));
    while (unrecorded.procs().length === 0) await new Promise((resolve) => setTimeout(resolve, 10));

    const lines = await registry.sweep();
    expect(lines.sort()).toEqual([
      'ringfence: ended job run-damaged-4194307 left by a ringfence that is gone: removed its cgroup and killed its 1 process(es), unpinned its kernel objects',
      'ringfence: ended job run-orphan-4194305 left by a ringfence that is gone: removed its cgroup and killed its 1 process(es)',
      'ringfence: ended job run-recorded-77 left by a ringfence that is gone: removed its cgroup, unpinned its kernel objects',
      'ringfence: ended job trace-4194306 left by a ringfence that is gone: removed its cgroup',
    ]);
    expect(await ended).toBe('SIGKILL');
    expect(await parkedEnded).toBe('SIGKILL');
    expect([damagedDead.exists(), fs.existsSync(path.join(pinRoot, 'run-damaged-4194307')), fs.existsSync(path.join(stateDir, 'run-damaged-4194307.json'))]).toEqual([false, false, false]);
    // a damaged record of a live owner changes nothing
    expect([damagedLive.exists(), fs.existsSync(path.join(pinRoot, 'run-damaged-1')), fs.existsSync(path.join(stateDir, 'run-damaged-1.json'))]).toEqual([true, true, true]);
    expect([unrecorded.exists(), legacyTrace.exists(), recorded.exists(), fs.existsSync(path.join(pinRoot, 'run-recorded-77'))]).toEqual([false, false, false, false]);
    expect(fs.existsSync(path.join(stateDir, 'run-recorded-77.json'))).toBe(false);
    expect(live.exists()).toBe(true);
    expect(registry.records().map((r) => r.id)).toEqual([`run-live-${process.pid}`]);
    fs.rmSync(path.join(stateDir, 'run-damaged-1.json'));
    expect(await registry.sweep()).toEqual([]);
    await root.destroy();
  });
});
