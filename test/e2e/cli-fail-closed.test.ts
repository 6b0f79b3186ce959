/**
 * What a user can get wrong never leaves a job running unenforced: bad
 * outputs stop everything before the job starts, outputs that fail during the
 * job cost lines (counted, reported, exit 171), never enforcement.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/jobs/exit-status';
import { findCgroup2Mount } from '../../src/cgroup/cgroup2';
import { createTestHost, type TestHost } from '../helpers/netns';

const RINGFENCE = path.resolve(__dirname, '../../bin/ringfence');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ringfence-cli-fc-'));
let n = 0;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function ringfence(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    const clean = { ...process.env };
    delete clean.RINGFENCE_SERVER;
    delete clean.GITHUB_REPOSITORY_OWNER;
    const child = spawn(process.execPath, [RINGFENCE, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...clean, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Runs a shell pipeline (for `| head -1`), returning bash's PIPESTATUS. */
function pipeline(line: string): { statuses: number[]; out: string } {
  const out = execFileSync('/bin/bash', ['-c', `${line}; echo "status:\${PIPESTATUS[*]}"`], { encoding: 'utf8' });
  const statuses = /status:([\d ]+)\s*$/.exec(out)![1].trim().split(' ').map(Number);
  return { statuses, out: out.replace(/status:[\d ]+\s*$/, '') };
}

const marker = () => path.join(work, `started-${++n}`);
const jobsDir = () => path.join(findCgroup2Mount()!, 'ringfence/jobs');
const leftovers = () => fs.readdirSync(jobsDir(), { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);

let host: TestHost;
beforeAll(() => {
  host = createTestHost(33);
});
afterAll(() => {
  host?.destroy();
  fs.rmSync(work, { recursive: true, force: true });
});

describe('outputs are checked before the job starts', () => {
  it.each([
    { args: ['run', '--events', '/no/such/dir/ev.jsonl'], line: 'ringfence: cannot write --events /no/such/dir/ev.jsonl: directory /no/such/dir does not exist' },
    { args: ['run', '--summary', '/no/such/dir/s.md'], line: 'ringfence: cannot write --summary /no/such/dir/s.md: directory /no/such/dir does not exist' },
    { args: ['run', '--events', '/'], line: 'ringfence: cannot write --events /: it is a directory' },
    { args: ['trace', '-o', '/no/such/dir/t.jsonl'], line: 'ringfence: cannot write --output /no/such/dir/t.jsonl: directory /no/such/dir does not exist' },
  ])('$args.0 $args.1 $args.2: one line, exit 170, nothing started', async ({ args, line }) => {
    const m = marker();
    const run = await ringfence([...args, '--', '/usr/bin/touch', m]);
    expect(run.code).toBe(EXIT.USAGE);
    expect(run.stderr.trim().split('\n')).toEqual([line]);
    expect(fs.existsSync(m)).toBe(false);
  });

  it('an existing output is left as it was when the job cannot start (bad policy, store unreachable)', async () => {
    const previous = path.join(work, `previous-${++n}.jsonl`);
    fs.writeFileSync(previous, 'previous run\n');
    const bad = path.join(work, 'bad-policy.yml');
    fs.writeFileSync(bad, 'egress-policy: sometimes\n');
    const badPolicy = await ringfence(['run', '--policy', bad, '--events', previous, '--summary', previous, '--', '/bin/true']);
    expect(badPolicy.code).toBe(EXIT.USAGE);
    const unreachable = await ringfence(['run', '--org', 'acme', '--events', previous, '--', '/bin/true'], { RINGFENCE_SERVER: '127.0.0.1:1', RINGFENCE_TOKEN: 'x' });
    expect(unreachable.code).toBe(EXIT.AGENT_FAILURE);
    expect(unreachable.stderr).toMatch(/^ringfence: cannot reach the policy store at 127\.0\.0\.1:1/);
    expect(fs.readFileSync(previous, 'utf8')).toBe('previous run\n');
  });

  it('a command that does not exist is named, exit 127, nothing started', async () => {
    const run = await ringfence(['run', '--', '/no/such/cmd']);
    expect(run.code).toBe(127);
    expect(run.stderr.trim().split('\n')).toEqual(['ringfence: cannot run /no/such/cmd: no such file']);
    const byName = await ringfence(['run', '--', 'no-such-command-ringfence']);
    expect(byName.code).toBe(127);
    expect(byName.stderr).toMatch(/^ringfence: cannot run no-such-command-ringfence: command not found \(PATH: /);
  });
});

describe('outputs that fail during the job', () => {
  it('a full disk (--events /dev/full): the job runs on enforced, the loss is counted, exit 171', async () => {
    const blocked = host.ip4.replace(/\.2$/, '.3');
    const policy = path.join(work, 'block.yml');
    fs.writeFileSync(policy, 'name: full\negress-policy: block\nallowed-endpoints: ""\n');
    const m = marker();
    const run = await ringfence(['run', '--policy', policy, '--events', '/dev/full', '--', '/bin/bash', '-c', `exec 3<>/dev/tcp/${blocked}/9 || touch ${m}`]);
    expect(fs.existsSync(m), 'the connect was refused and the job went on').toBe(true);
    expect(run.code).toBe(EXIT.AGENT_FAILURE);
    expect(run.stderr).toMatch(/ringfence failed: \d+ event\(s\) not written to --events \/dev\/full \(ENOSPC\)/);
    expect(run.stderr).toMatch(/BLOCKED +198\.18\.133\.3:9\/tcp/);
  });

  it('trace --json to stderr with the reader gone (2>&1 >/dev/null | head -1): CMD is traced to its end, nothing is left', () => {
    const m = marker();
    const { statuses, out } = pipeline(`${RINGFENCE} trace --json -- /bin/bash -c 'for i in 1 2 3 4 5 6 7 8; do /bin/true; done; sleep 0.2; touch ${m}' 2>&1 >/dev/null | head -1`);
    expect(JSON.parse(out.split('\n')[0])).toHaveProperty('kind');
    expect(statuses).toEqual([EXIT.AGENT_FAILURE, 0]);
    expect(fs.existsSync(m)).toBe(true);
    expect(leftovers().filter((id) => id.startsWith('trace-'))).toEqual([]);
  });

  it('run with its stderr gone (2>&1 | true): the job runs to its end, and the lost summary makes it 171', () => {
    const m = marker();
    const { statuses } = pipeline(`${RINGFENCE} run -- /bin/bash -c 'sleep 0.3; touch ${m}' 2>&1 | true`);
    expect(statuses).toEqual([EXIT.AGENT_FAILURE, 0]);
    expect(fs.existsSync(m)).toBe(true);
  });

  it('trace -o /dev/stdout | head -1: the same', () => {
    const m = marker();
    const { statuses } = pipeline(`${RINGFENCE} trace --json -o /dev/stdout -- /bin/bash -c 'for i in 1 2 3 4 5 6 7 8; do /bin/true; done; sleep 0.2; touch ${m}' 2>/dev/null | head -1`);
    expect(statuses).toEqual([EXIT.AGENT_FAILURE, 0]);
    expect(fs.existsSync(m)).toBe(true);
  });
});

describe('where the policy comes from', () => {
  it('RINGFENCE_SERVER set but no org: one line naming what to set, exit 170, nothing started', async () => {
    const m = marker();
    const run = await ringfence(['run', '--repo', 'acme/web', '--', '/usr/bin/touch', m], { RINGFENCE_SERVER: '127.0.0.1:1', RINGFENCE_TOKEN: 'x' });
    expect(run.code).toBe(EXIT.USAGE);
    expect(run.stderr.trim()).toBe('ringfence: RINGFENCE_SERVER is set, so the policy comes from the store: say whose job this is with --org ORG (or GITHUB_REPOSITORY_OWNER)');
    expect(fs.existsSync(m)).toBe(false);
  });

  it('identity flags without RINGFENCE_SERVER do not switch the source: audit mode, said at start', async () => {
    const run = await ringfence(['run', '--org', 'acme', '--repo', 'acme/web', '--', '/bin/true']);
    expect(run.code).toBe(0);
    expect(run.stderr.split('\n')[0]).toBe('ringfence: audit mode (no --policy, and RINGFENCE_SERVER is not set): everything is recorded, nothing is refused');
  });
});

describe('conventions', () => {
  it('bare ringfence prints the help on stdout and exits 0; --version prints the version', async () => {
    const bare = await ringfence([]);
    expect(bare.code).toBe(0);
    expect(bare.stdout).toMatch(/^Usage: ringfence /);
    const version = await ringfence(['--version']);
    expect(version.stdout.trim()).toBe(JSON.parse(fs.readFileSync(path.resolve(__dirname, '../../package.json'), 'utf8')).version);
  });

  it('run --help documents the exit statuses; every option has a description', async () => {
    const help = await ringfence(['run', '--help']);
    expect(help.code).toBe(0);
    for (const status of [EXIT.LOCKDOWN, EXIT.AGENT_FAILURE, EXIT.USAGE]) expect(help.stdout).toContain(`  ${status}  `);
    for (const line of help.stdout.split('\n').filter((l) => /^\s+--?\w/.test(l))) expect(line.trim(), line).toMatch(/^\S.*\s{2,}\S/);
  });

  it('an unknown command is one line, exit 2', async () => {
    const run = await ringfence(['frobnicate']);
    expect(run.code).toBe(2);
    expect(run.stderr.trim()).toBe("error: unknown command 'frobnicate' (ringfence --help lists them)");
  });
});
