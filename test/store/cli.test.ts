/** The policy store as users drive it: `ringfence server`, `token create`, `policy …`. */
import { execFile, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RINGFENCE, startStoreServer } from '../helpers/store';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-cli-store-'));
const db = `sqlite:${path.join(dir, 'store.db')}`;
let server: ChildProcess;
let env: NodeJS.ProcessEnv;

function ringfence(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    execFile(process.execPath, [RINGFENCE, ...args], { env: { ...process.env, ...env, ...extraEnv } }, (error, stdout, stderr) =>
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    ),
  );
}

beforeAll(async () => {
  let address: string;
  ({ process: server, address } = await startStoreServer(db));
  const created = await ringfence(['token', 'create', '--org', 'acme', '--role', 'admin', '--db', db]);
  expect(created.code).toBe(0);
  env = { RINGFENCE_SERVER: address, RINGFENCE_TOKEN: created.stdout.trim() };
});

afterAll(() => {
  server?.kill('SIGTERM');
});

describe('ringfence policy', () => {
  it('creates from flags and from a file, lists, shows, attaches, resolves, exports', async () => {
    expect((await ringfence(['policy', 'create', 'npm', '--endpoint', 'registry.npmjs.org', '*.githubusercontent.com:443', '--egress-policy', 'block'])).stdout).toBe('created policy npm (version 1)\n');
    const file = path.join(dir, 'release.yml');
    fs.writeFileSync(file, 'name: release\negress-policy: block\nallowed-endpoints: github.com\nlockdown-mode:\n  enabled: true\n  detections: [Reverse-Shell]\n');
    expect((await ringfence(['policy', 'create', '-f', file])).code).toBe(0);

    const list = await ringfence(['policy', 'list']);
    expect(list.stdout.split('\n')[0]).toMatch(/^NAME +EGRESS +ENDPOINTS +LOCKDOWN +VERSION +UPDATED$/);
    expect(list.stdout).toMatch(/^npm +block +2 +off +1 /m);
    expect(list.stdout).toMatch(/^release +block +1 +Reverse-Shell +1 /m);

    expect((await ringfence(['policy', 'attach', 'npm', '--org', 'acme', '--repo', 'acme/web'])).stdout).toBe('attached npm to repository web\n');
    expect((await ringfence(['policy', 'attach', 'release', '--org', 'acme', '--repo', 'web', '--workflow', '.github/workflows/release.yml'])).code).toBe(0);
    const resolved = await ringfence(['policy', 'resolve', '--org', 'acme', '--repo', 'web', '--workflow', '.github/workflows/release.yml', '--json']);
    expect(JSON.parse(resolved.stdout)).toMatchObject({ policy: { name: 'release', 'egress-policy': 'block' }, scope: 'workflow' });
    const none = await ringfence(['policy', 'resolve', '--org', 'acme', '--repo', 'other', '--workflow', '.github/workflows/ci.yml', '--json']);
    expect(JSON.parse(none.stdout)).toEqual({ policy: null, scope: 'none' });

    const out = path.join(dir, 'npm.txt');
    await ringfence(['policy', 'export-endpoints', 'npm', '-o', out]);
    expect(fs.readFileSync(out, 'utf8')).toContain('registry.npmjs.org\n*.githubusercontent.com:443\n');
    fs.writeFileSync(path.join(dir, 'more.txt'), '# more\nproxy.golang.org\nregistry.npmjs.org\n');
    const dry = await ringfence(['policy', 'import-endpoints', 'npm', '--from', `file:${path.join(dir, 'more.txt')}`, '--dry-run']);
    expect(dry.stdout).toBe('+ proxy.golang.org\nwould add 1, 1 already in npm\n');
  });

  it('updates with versions and history, detaches, attaches to clusters, deletes', async () => {
    const file = path.join(dir, 'tools.yml');
    fs.writeFileSync(file, 'name: tools\negress-policy: audit\nallowed-endpoints: github.com\n');
    expect((await ringfence(['policy', 'create', '-f', file])).stdout).toBe('created policy tools (version 1)\n');
    fs.writeFileSync(file, 'name: tools\negress-policy: block\nallowed-endpoints: github.com api.github.com\n');
    expect((await ringfence(['policy', 'update', '-f', file, '--expected-version', '1'])).stdout).toBe('updated policy tools to version 2\n');
    const stale = await ringfence(['policy', 'update', '-f', file, '--expected-version', '1']);
    expect([stale.code, stale.stderr]).toEqual([2, 'ringfence: FAILED_PRECONDITION: policy tools is at version 2, not 1: it changed since you read it\n']);
    const history = await ringfence(['policy', 'history', 'tools']);
    expect(history.stdout).toMatch(/^VERSION +WHEN +WHO +CHANGES\n1 .* token:\w+ +created\n2 .* token:\w+ +egress-policy audit → block; \+ api\.github\.com\n$/);
    const versions = JSON.parse((await ringfence(['policy', 'history', 'tools', '--json'])).stdout) as { version: string }[];
    expect(versions.map((v) => v.version)).toEqual(['1', '2']);

    expect((await ringfence(['policy', 'attach', 'tools', '--cluster', 'linux-large'])).stdout).toBe('attached tools to cluster linux-large\n');
    expect((await ringfence(['policy', 'attach', 'tools', '--org', 'acme', '--repo', 'tools'])).stdout).toBe('attached tools to repository tools\n');
    const onCluster = await ringfence(['policy', 'resolve', '--org', 'acme', '--repo', 'other', '--cluster', 'linux-large', '--json']);
    expect(JSON.parse(onCluster.stdout)).toMatchObject({ policy: { name: 'tools', version: 2 }, scope: 'cluster' });
    expect((await ringfence(['policy', 'detach', 'tools', '--org', 'acme', '--repo', 'Tools'])).stdout).toBe('detached tools from repository tools\n');
    const again = await ringfence(['policy', 'detach', 'tools', '--org', 'acme', '--repo', 'tools']);
    expect([again.code, again.stderr]).toEqual([2, 'ringfence: NOT_FOUND: policy tools is not attached there\n']);

    const attached = await ringfence(['policy', 'attach', 'tools', '--cluster', 'arm', '--json']);
    expect(JSON.parse(attached.stdout)).toMatchObject({ policy: 'tools', scope: { kind: 'SCOPE_KIND_CLUSTER', cluster: 'arm' }, createdBy: expect.stringMatching(/^token:/) });
    expect((await ringfence(['policy', 'delete', 'tools'])).stdout).toBe('deleted policy tools and its 2 attachment(s)\n');
    const gone = await ringfence(['policy', 'resolve', '--org', 'acme', '--repo', 'other', '--cluster', 'linux-large', '--json']);
    expect(JSON.parse(gone.stdout)).toEqual({ policy: null, scope: 'none' });
    expect((await ringfence(['policy', 'history', 'tools'])).stderr).toBe('ringfence: NOT_FOUND: policy tools does not exist in acme\n');
  });

  it('lists and revokes tokens', async () => {
    const created = await ringfence(['token', 'create', '--org', 'acme', '--role', 'agent', '--description', 'runner 7', '--db', db]);
    const id = /^token (\w+) \(agent of acme\)/.exec(created.stderr)![1];
    const list = await ringfence(['token', 'list', '--org', 'acme', '--db', db]);
    expect(list.stdout.split('\n')[0]).toMatch(/^ID +ORG +ROLE +CREATED +DESCRIPTION$/);
    expect(list.stdout).toMatch(new RegExp(`^${id} +acme +agent +\\S+ +runner 7$`, 'm'));
    expect(list.stdout).not.toContain(created.stdout.trim());
    expect((await ringfence(['token', 'revoke', id, '--db', db])).stdout).toBe(`revoked token ${id}\n`);
    const revoked = await ringfence(['policy', 'resolve', '--org', 'acme'], { RINGFENCE_TOKEN: created.stdout.trim() });
    expect([revoked.code, revoked.stderr]).toEqual([2, 'ringfence: UNAUTHENTICATED: unknown or revoked token\n']);
    const again = await ringfence(['token', 'revoke', id, '--db', db]);
    expect([again.code, again.stderr]).toEqual([2, `ringfence: no token with id '${id}' (ringfence token list shows them)\n`]);
  });

  it('ringfence run takes the job its policy from the store', async () => {
    const agent = (await ringfence(['token', 'create', '--org', 'acme', '--role', 'agent', '--db', db])).stdout.trim();
    const run = await ringfence(['run', '--org', 'acme', '--repo', 'acme/web', '--workflow', '.github/workflows/release.yml', '--', '/bin/true'], { RINGFENCE_TOKEN: agent });
    expect(run.code).toBe(0);
    expect(run.stderr).toContain('ringfence: policy release v1 from the policy store (workflow scope)');
    expect(run.stderr).toMatch(/policy release v1 \(block\)/);
    const other = await ringfence(['run', '--org', 'acme', '--repo', 'acme/other', '--', '/bin/true'], { RINGFENCE_TOKEN: agent });
    expect(other.stderr).toContain('ringfence: policy none (audit) from the policy store (none scope)');
    const foreign = await ringfence(['run', '--org', 'globex', '--repo', 'globex/web', '--', '/bin/true'], { RINGFENCE_TOKEN: agent });
    expect(foreign.code).toBe(2);
    expect(foreign.stderr).toMatch(/^ringfence: cannot fetch the job's policy from .*: credentials of acme cannot resolve policies of globex\n$/);
  });

  it('says what is wrong in one line per problem, with a non-zero exit', async () => {
    const bad = path.join(dir, 'bad.yml');
    fs.writeFileSync(bad, 'name: bad\negress-policy: block\nallowed-endpoints: >\n  ok.com\n  a..b.com\n');
    const result = await ringfence(['policy', 'create', '-f', bad]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toBe(`ringfence: policy ${bad} is not valid, nothing was done:\n${bad}:5: endpoint 'a..b.com': empty label in 'a..b.com'\n`);
    // the flag form names the flag and the value, not a line of YAML the user never wrote
    for (const [flags, message] of [
      [['--endpoint', 'ok.com', 'a.*.*.com'], "--endpoint 'a.*.*.com': more than one '*' in 'a.*.*.com'"],
      [['--endpoint', 'ok.com', '--egress-policy', 'deny'], "--egress-policy must be 'audit' or 'block', not 'deny'"],
      [['--endpoint', 'ok.com', '--lockdown', 'Reverse-shell'], "--lockdown: unknown detection 'Reverse-shell' (known: Privileged-Container, Runner-Worker-Memory-Read, Reverse-Shell)"],
    ] as const) {
      const result = await ringfence(['policy', 'create', 'flagged', ...flags]);
      expect(result.code).toBe(2);
      expect(result.stderr).toBe(`ringfence: ${message}; nothing was done\n`);
    }
    expect((await ringfence(['policy', 'show', 'flagged'])).stderr).toBe('ringfence: NOT_FOUND: policy flagged does not exist in acme\n');
    const missing = await ringfence(['policy', 'show', 'nope']);
    expect(missing.stderr).toBe('ringfence: NOT_FOUND: policy nope does not exist in acme\n');
    const noToken = await ringfence(['policy', 'list'], { RINGFENCE_TOKEN: '' });
    expect(noToken.stderr).toMatch(/^ringfence: RINGFENCE_TOKEN is not set/);

    // every mistake is one line and exit 2: no stack trace, no page of help
    const npm = path.join(dir, 'npm.yml');
    fs.writeFileSync(npm, 'name: npm\negress-policy: audit\n');
    const file = path.join(dir, 'a-file');
    fs.writeFileSync(file, '');
    for (const [args, line] of [
      [['policy', 'attach', 'npm', '--org', 'globex', '--repo', 'web'], 'ringfence: PERMISSION_DENIED: credentials of acme cannot act in organization globex'],
      [['policy', 'detach', 'npm', '--org', 'globex'], 'ringfence: PERMISSION_DENIED: credentials of acme cannot act in organization globex'],
      [['policy', 'resolve', '--org', 'acme', '--repo', 'web', '--workflow', 'ci.yml'], "ringfence: INVALID_ARGUMENT: workflow 'ci.yml' is not a workflow file path such as .github/workflows/ci.yml"],
      [['policy', 'create', 'other', '-f', npm], "ringfence: INVALID_ARGUMENT: the policy file is named 'npm' but 'other' was given; use one name"],
      [['policy', 'create', '-f', path.join(dir, 'missing.yml')], `ringfence: -f ${path.join(dir, 'missing.yml')}: cannot read it (ENOENT); nothing was done`],
      [['policy', 'create', 'bad name', '--endpoint', 'a.com'], "ringfence: policy name 'bad name' must be 1-100 letters, digits, '.', '_' or '-'"],
      [['policy', 'update', '-f', npm, '--expected-version', 'abc'], "ringfence: --expected-version must be a version number (1 or more), not 'abc'"],
      [['policy', 'update', '-f', npm, '--expected-version', '0'], "ringfence: --expected-version must be a version number (1 or more), not '0'"],
      [['policy', 'export-endpoints', 'npm', '-o', path.join(dir, 'no/such/dir/x')], `ringfence: -o ${path.join(dir, 'no/such/dir/x')}: cannot write it (ENOENT)`],
      [['policy', 'list', '--bogus'], "error: unknown option '--bogus'"],
      [['policy'], 'ringfence: policy needs a command: create, update, list, show, history, delete, attach, detach, resolve, import-endpoints, export-endpoints (--help for more)'],
      [['token', 'rotate'], "ringfence: unknown command 'token rotate' (known: create, list, revoke)"],
      [['token', 'create', '--org', 'acme', '--role', 'root', '--db', db], "ringfence: role must be admin or agent, not 'root'"],
      [['token', 'create', '--org', 'bad org', '--role', 'admin', '--db', db], "ringfence: organization 'bad org' must be 1-100 letters, digits, '.', '_' or '-'"],
      [['token', 'create', '--org', 'acme', '--role', 'admin', '--db', 'postgres://nobody:secret@127.0.0.1:1/x'], 'ringfence: cannot open the policy store database postgres://nobody:***@127.0.0.1:1/x: connect ECONNREFUSED 127.0.0.1:1'],
      [['token', 'create', '--org', 'acme', '--role', 'admin', '--db', `sqlite:${file}/store.db`], `ringfence: cannot open the policy store database sqlite:${file}/store.db: EEXIST: file already exists, mkdir '${file}'`],
    ] as const) {
      const result = await ringfence([...args]);
      expect([args, result.code, result.stderr]).toEqual([args, 2, `${line}\n`]);
    }
    const agentToken = (await ringfence(['token', 'create', '--org', 'acme', '--role', 'agent', '--db', db])).stdout.trim();
    expect((await ringfence(['policy', 'list'], { RINGFENCE_TOKEN: agentToken })).stderr).toBe('ringfence: PERMISSION_DENIED: an agent credential cannot manage policies; use an admin token\n');
  });
});
