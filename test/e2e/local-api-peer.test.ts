/**
 * The local API judges callers by what they are (docs/local-api.md): the
 * kernel's peer credentials of a process that changed uid, and the cgroup of
 * root processes inside and outside a job. Needs root (setuid, cgroups).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { identifyCaller, type CallerIdentity, type JobCgroups } from '../../src/agent/caller';
import { API_CODES, LocalApiClient, LocalApiServer, type LocalApiServerOptions, type PeerCredentials } from '../../src/agent/local-api';
import { Cgroup, cgroup2Root } from '../../src/cgroup/cgroup2';
import { instanceName } from '../../src/jobs/registry';

const NOBODY = 65534;

let dir: string;
let sock: string;
let server: LocalApiServer<unknown> | undefined;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-api-e2e-'));
  fs.chmodSync(dir, 0o755); // others may reach the socket; its own mode decides
  sock = path.join(dir, 'agent.sock');
});

afterEach(async () => {
  await server?.close();
  server = undefined;
  fs.rmSync(dir, { recursive: true, force: true });
});

async function serve<C>(options: Partial<LocalApiServerOptions<C>>): Promise<void> {
  const api = new LocalApiServer<C>({ log: () => undefined, ...options });
  api.handle('whoami', (_params, caller) => caller);
  server = api as LocalApiServer<unknown>;
  await api.listen(sock);
}

/** A helper process that optionally drops to `uid`, asks whoami, and prints the reply line (or its connect error). */
function helperScript(uid?: number): string {
  return `
    ${uid === undefined ? '' : `process.setgid(${uid}); process.setuid(${uid});`}
    const c = require('net').connect(${JSON.stringify(sock)});
    c.on('error', (e) => console.log(JSON.stringify({ connectError: e.code })));
    c.on('connect', () => c.write('{"id":1,"method":"whoami"}\\n'));
    c.setEncoding('utf8');
    let text = '';
    c.on('data', (d) => { text += d; if (text.includes('\\n')) { process.stdout.write(text); c.end(); } });`;
}

async function output(child: ChildProcess): Promise<{ pid: number; reply: Record<string, unknown> }> {
  let text = '';
  child.stdout!.on('data', (d) => (text += d));
  const code = await new Promise((resolve) => child.on('exit', resolve));
  expect(code).toBe(0);
  return { pid: child.pid!, reply: JSON.parse(text) as Record<string, unknown> };
}

describe('peer credentials of another uid', () => {
  it('a helper that dropped to nobody is seen as nobody, with its own pid', async () => {
    await serve<PeerCredentials>({ mode: 0o666 });
    const { pid, reply } = await output(spawn(process.execPath, ['-e', helperScript(NOBODY)], { stdio: ['ignore', 'pipe', 'inherit'] }));
    expect(reply).toEqual({ id: 1, result: { pid, uid: NOBODY, gid: NOBODY, startTime: expect.any(Number), pidReuseChecked: true } });
    expect(pid).not.toBe(process.pid);
  });

  it("the socket's default mode (0660, root's group) keeps nobody out", async () => {
    await serve<PeerCredentials>({});
    const { reply } = await output(spawn(process.execPath, ['-e', helperScript(NOBODY)], { stdio: ['ignore', 'pipe', 'inherit'] }));
    expect(reply).toEqual({ connectError: 'EACCES' });
  });

  it('the client tells "permission denied" apart from "no daemon"', async () => {
    // the socket's group is neither ours nor nobody's, so only its owner may connect
    await serve<PeerCredentials>({ group: 12345 });
    // this process is nobody until the connect has failed (the kernel checks the ids at connect())
    process.seteuid!(NOBODY);
    let outcome: unknown;
    try {
      outcome = await LocalApiClient.connect(sock).catch((error: unknown) => error);
    } finally {
      process.seteuid!(0);
    }
    expect(outcome).toMatchObject({ code: API_CODES.connect, message: `cannot connect to ringfenced at ${sock}: connect EACCES ${sock}` });
    expect(fs.statSync(sock).gid).toBe(12345);
  });
});

describe('callers judged by cgroup, not uid', () => {
  const base = `${instanceName()}-test-local-api-${process.pid}`;
  const cgroups: Cgroup[] = [];

  afterEach(async () => {
    for (const cgroup of cgroups.splice(0).reverse()) await cgroup.destroy();
    await new Cgroup(path.join(cgroup2Root(), base)).destroy();
  });

  function jobCgroup(name: string): { cgroup: Cgroup; relative: string } {
    const relative = `${base}/jobs/${name}`;
    const cgroup = Cgroup.create(relative);
    cgroups.push(cgroup);
    return { cgroup, relative };
  }

  it('a root process in a job cgroup (or below it) is the job; one in run-10 is not job run-1; one outside is the host', async () => {
    const run1 = jobCgroup('run-1');
    const below = jobCgroup('run-1/step');
    const run10 = jobCgroup('run-10');
    const jobs: JobCgroups[] = [{ jobId: 'run-1', cgroups: [run1.relative] }];
    await serve<CallerIdentity>({ identify: (peer) => identifyCaller(peer, jobs) });

    const ask = (cgroup?: Cgroup) =>
      output(
        cgroup
          ? cgroup.spawn(process.execPath, ['-e', helperScript()], { stdio: ['ignore', 'pipe', 'inherit'] })
          : spawn(process.execPath, ['-e', helperScript()], { stdio: ['ignore', 'pipe', 'inherit'] }),
      );
    expect((await ask(run1.cgroup)).reply).toEqual({ id: 1, result: { kind: 'job', jobId: 'run-1' } });
    expect((await ask(below.cgroup)).reply).toEqual({ id: 1, result: { kind: 'job', jobId: 'run-1' } });
    expect((await ask(run10.cgroup)).reply).toEqual({ id: 1, result: { kind: 'host', uid: 0 } });
    expect((await ask()).reply).toEqual({ id: 1, result: { kind: 'host', uid: 0 } });
  });

  it('a process that left the job cgroup while its parent is in it is still the job', async () => {
    const run1 = jobCgroup('run-1');
    const jobs: JobCgroups[] = [{ jobId: 'run-1', cgroups: [run1.relative] }];
    await serve<CallerIdentity>({ identify: (peer) => identifyCaller(peer, jobs) });
    const outside = path.join(cgroup2Root(), base);
    // the shell in the job starts node, which moves itself out to the (non-job) parent cgroup and then asks
    const script = `require('fs').writeFileSync(${JSON.stringify(path.join(outside, 'cgroup.procs'))}, String(process.pid)); ${helperScript()}`;
    const child = run1.cgroup.spawn('/bin/sh', ['-c', `"$0" -e "$1"; exit $?`, process.execPath, script], { stdio: ['ignore', 'pipe', 'inherit'] });
    expect((await output(child)).reply).toEqual({ id: 1, result: { kind: 'job', jobId: 'run-1' } });
  });
});
