/** The policy store as users drive it: `ringfence server`, `token create`, `policy …`. */
import { execFile, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/jobs/exit-status';
import { RINGFENCE, startStoreServer, TEST_POSTGRES } from '../helpers/store';
import { BACKENDS } from './backends';

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
    expect(JSON.parse(resolved.stdout)).toMatchObject({ policy: { name: 'release', egressPolicy: 'block', version: 1 }, scope: 'workflow', attachment: { scope: { kind: 'workflow', repository: 'web' } } });
    const none = await ringfence(['policy', 'resolve', '--org', 'acme', '--repo', 'other', '--workflow', '.github/workflows/ci.yml', '--json']);
    expect(JSON.parse(none.stdout)).toEqual({ scope: 'none' });

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
    const versions = JSON.parse((await ringfence(['policy', 'history', 'tools', '--json'])).stdout) as { version: number }[];
    expect(versions.map((v) => v.version)).toEqual([1, 2]);

    expect((await ringfence(['policy', 'attach', 'tools', '--cluster', 'linux-large'])).stdout).toBe('attached tools to cluster linux-large\n');
    expect((await ringfence(['policy', 'attach', 'tools', '--org', 'acme', '--repo', 'tools'])).stdout).toBe('attached tools to repository tools\n');
    const onCluster = await ringfence(['policy', 'resolve', '--org', 'acme', '--repo', 'other', '--cluster', 'linux-large', '--json']);
    expect(JSON.parse(onCluster.stdout)).toMatchObject({ policy: { name: 'tools', version: 2 }, scope: 'cluster' });
    // --cluster alone: the token's organization, as attach takes it
    const clusterOnly = await ringfence(['policy', 'resolve', '--cluster', 'linux-large', '--json']);
    expect([clusterOnly.code, JSON.parse(clusterOnly.stdout)]).toMatchObject([0, { policy: { name: 'tools', org: 'acme' }, scope: 'cluster' }]);
    expect((await ringfence(['policy', 'resolve', '--cluster', 'linux-large'])).stdout).toBe('tools (version 2), from the cluster linux-large attachment\n');
    expect((await ringfence(['policy', 'detach', 'tools', '--org', 'acme', '--repo', 'Tools'])).stdout).toBe('detached tools from repository tools\n');
    const again = await ringfence(['policy', 'detach', 'tools', '--org', 'acme', '--repo', 'tools']);
    expect([again.code, again.stderr]).toEqual([2, 'ringfence: NOT_FOUND: policy tools is not attached there\n']);

    const attached = await ringfence(['policy', 'attach', 'tools', '--cluster', 'arm', '--json']);
    expect(JSON.parse(attached.stdout)).toEqual({ policy: 'tools', scope: { kind: 'cluster', cluster: 'arm' }, createdBy: expect.stringMatching(/^token:/), createdAt: expect.any(String) });

    // attachments: of one policy or all, as a table or JSON
    const listed = await ringfence(['policy', 'attachments', 'tools']);
    expect(listed.stdout).toMatch(/^POLICY +SCOPE +CREATED +BY\ntools +cluster arm +\S+ +token:\w+\ntools +cluster linux-large +\S+ +token:\w+\n$/);
    expect(JSON.parse((await ringfence(['policy', 'attachments', 'tools', '--json'])).stdout)).toEqual([
      { policy: 'tools', scope: { kind: 'cluster', cluster: 'arm' }, createdBy: expect.stringMatching(/^token:/), createdAt: expect.any(String) },
      { policy: 'tools', scope: { kind: 'cluster', cluster: 'linux-large' }, createdBy: expect.stringMatching(/^token:/), createdAt: expect.any(String) },
    ]);
    const all = JSON.parse((await ringfence(['policy', 'attachments', '--json'])).stdout) as { policy: string; scope: { kind: string } }[];
    expect(all.map((a) => `${a.policy} ${a.scope.kind}`).sort()).toEqual(['npm repository', 'release workflow', 'tools cluster', 'tools cluster']);
    expect((await ringfence(['policy', 'attachments', 'nope'])).stderr).toBe('ringfence: NOT_FOUND: policy nope does not exist in acme\n');

    // an attached policy is deleted only with --force, which says what it changed
    const refused = await ringfence(['policy', 'delete', 'tools']);
    expect([refused.code, refused.stderr.split('\n')[0]]).toEqual([
      2,
      'ringfence: FAILED_PRECONDITION: policy tools is attached to cluster arm, cluster linux-large: deleting it changes the policy of those jobs; detach it first, or delete with force (--force):',
    ]);
    expect(refused.stderr).toContain('\n  cluster arm: jobs on cluster arm without a workflow, repository or organization attachment would get the next attachment that covers them, or none (audit mode)\n');
    expect((await ringfence(['policy', 'show', 'tools'])).code).toBe(0);
    expect((await ringfence(['policy', 'delete', 'tools', '--force'])).stdout).toBe(
      'deleted policy tools and detached it from cluster arm, cluster linux-large: jobs there now get the next attachment that covers them, or none (audit mode)\n',
    );
    const gone = await ringfence(['policy', 'resolve', '--org', 'acme', '--repo', 'other', '--cluster', 'linux-large', '--json']);
    expect(JSON.parse(gone.stdout)).toEqual({ scope: 'none' });
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
    expect(foreign.code).toBe(EXIT.AGENT_FAILURE);
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
      [['policy', 'resolve', '--org', 'acme', '--repo', 'web', '--workflow', 'ci.yml'], "ringfence: --workflow: workflow 'ci.yml' is not a workflow file path such as .github/workflows/ci.yml; nothing was done"],
      [['policy', 'create', 'other', '-f', npm], "ringfence: INVALID_ARGUMENT: the policy file is named 'npm' but 'other' was given; use one name"],
      [['policy', 'create', '-f', path.join(dir, 'missing.yml')], `ringfence: -f ${path.join(dir, 'missing.yml')}: no such file`],
      [['policy', 'create', 'bad name', '--endpoint', 'a.com'], "ringfence: policy name 'bad name' must be 1-100 letters, digits, '.', '_' or '-'; nothing was done"],
      [['policy', 'update', '-f', npm, '--expected-version', 'abc'], "ringfence: --expected-version must be a version number (1 or more), not 'abc'; nothing was done"],
      [['policy', 'update', '-f', npm, '--expected-version', '0'], "ringfence: --expected-version must be a version number (1 or more), not '0'; nothing was done"],
      [['policy', 'export-endpoints', 'npm', '-o', path.join(dir, 'no/such/dir/x')], `ringfence: -o ${path.join(dir, 'no/such/dir/x')}: cannot write it (ENOENT)`],
      [['policy', 'list', '--bogus'], "error: unknown option '--bogus'"],
      [['policy'], 'ringfence: policy needs a command: create, update, list, show, history, delete, attachments, attach, detach, resolve, import-endpoints, export-endpoints (--help for more)'],
      [['token', 'rotate'], "ringfence: unknown command 'token rotate' (known: create, list, revoke)"],
      [['token', 'create', '--org', 'acme', '--role', 'root', '--db', db], "ringfence: role must be admin or agent, not 'root'; nothing was done"],
      [['token', 'create', '--org', 'bad org', '--role', 'admin', '--db', db], "ringfence: organization 'bad org' must be 1-100 letters, digits, '.', '_' or '-'; nothing was done"],
      [['token', 'create', '--org', 'acme', '--role', 'admin', '--db', 'postgres://nobody:secret@127.0.0.1:1/x'], 'ringfence: cannot open the policy store database postgres://nobody:***@127.0.0.1:1/x: connect ECONNREFUSED 127.0.0.1:1'],
      [['token', 'create', '--org', 'acme', '--role', 'admin', '--db', `sqlite:${file}/store.db`], `ringfence: cannot open the policy store database sqlite:${file}/store.db: ${file} is not a directory`],
    ] as const) {
      const result = await ringfence([...args]);
      expect([args, result.code, result.stderr]).toEqual([args, 2, `${line}\n`]);
    }
    const agentToken = (await ringfence(['token', 'create', '--org', 'acme', '--role', 'agent', '--db', db])).stdout.trim();
    expect((await ringfence(['policy', 'list'], { RINGFENCE_TOKEN: agentToken })).stderr).toBe('ringfence: PERMISSION_DENIED: an agent credential cannot manage policies; use an admin token\n');
  });
});

/** Every key camelCase, no "" or null placeholders: the one --json style of the store commands. */
function jsonStyleProblems(value: unknown, at = '$'): string[] {
  if (value === null || value === '') return [`${at} is ${JSON.stringify(value)}`];
  if (Array.isArray(value)) return value.flatMap((item, i) => jsonStyleProblems(item, `${at}[${i}]`));
  if (typeof value === 'object') {
    return Object.entries(value as Record<string, unknown>).flatMap(([key, item]) => [...(/^[a-z][a-zA-Z0-9]*$/.test(key) ? [] : [`${at}.${key} is not camelCase`]), ...jsonStyleProblems(item, `${at}.${key}`)]);
  }
  return [];
}

describe('ringfence policy and token files, flags and outputs', () => {
  it('names a missing, empty, binary or directory policy file in one line, for run --policy and policy -f alike', async () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-cli-files-'));
    fs.writeFileSync(path.join(d, 'empty.yml'), '');
    fs.writeFileSync(path.join(d, 'binary.yml'), Buffer.from([0x1f, 0x8b, 0x08, 0x00]));
    for (const [name, what] of [
      ['missing.yml', 'no such file'],
      ['empty.yml', 'is empty'],
      ['binary.yml', 'is binary, not a text file (a NUL byte at offset 3)'],
      ['.', 'is a directory, not a file'],
    ]) {
      const file = path.join(d, name);
      const create = await ringfence(['policy', 'create', '-f', file]);
      expect([create.code, create.stderr]).toEqual([2, `ringfence: -f ${file}: ${what}\n`]);
      const update = await ringfence(['policy', 'update', '-f', file]);
      expect([update.code, update.stderr]).toEqual([2, `ringfence: -f ${file}: ${what}\n`]);
      // no RINGFENCE_SERVER: the file is the only source, and it is refused before anything starts
      const run = await ringfence(['run', '--policy', file, '--', '/bin/true'], { RINGFENCE_SERVER: '' });
      expect([run.code, run.stderr]).toEqual([EXIT.USAGE, `ringfence: --policy ${file}: ${what}\n`]);
    }
    const endpoints = await ringfence(['policy', 'import-endpoints', 'npm', '--from', `file:${path.join(d, 'empty.yml')}`]);
    expect(endpoints.stderr).toBe(`ringfence: --from ${path.join(d, 'empty.yml')}: is empty\n`);
  });

  it('notes Harden-Runner inputs it reads otherwise, and refuses disable-sudo: true', async () => {
    const file = path.join(dir, 'harden.yml');
    fs.writeFileSync(file, 'name: harden\negress-policy: audit\ndisable-telemetry: true\ndisable-sudo: false\n');
    const created = await ringfence(['policy', 'create', '-f', file]);
    expect([created.code, created.stdout, created.stderr]).toEqual([
      0,
      'created policy harden (version 1)\n',
      `ringfence: note: ${file}:3: disable-telemetry is accepted for Harden-Runner compatibility: ringfence sends no telemetry: events go only to the outputs the job names (--events, --summary) or to the policy store you run\n`,
    ]);
    fs.writeFileSync(file, 'name: harden\negress-policy: block\ndisable-sudo-and-containers: true\n');
    const refused = await ringfence(['policy', 'update', '-f', file]);
    expect([refused.code, refused.stderr]).toEqual([
      2,
      `ringfence: policy ${file} is not valid, nothing was done:\n${file}:3: disable-sudo-and-containers: true is not enforced by ringfence yet; the job would keep sudo, so the policy is refused (remove it or set it to false)\n`,
    ]);
    expect(JSON.parse((await ringfence(['policy', 'show', 'harden', '--json'])).stdout)).toMatchObject({ egressPolicy: 'audit', version: 1 });
  });

  it('reports every bad flag at once, and does nothing', async () => {
    const create = await ringfence(['policy', 'create', 'bad name', '--endpoint', 'a..b', 'ok.com', 'c.*.*.d', '--egress-policy', 'deny', '--lockdown', 'Crypto-Miner']);
    expect([create.code, create.stderr]).toEqual([
      2,
      'ringfence: 5 problems, nothing was done:\n' +
        "  policy name 'bad name' must be 1-100 letters, digits, '.', '_' or '-'\n" +
        "  --egress-policy must be 'audit' or 'block', not 'deny'\n" +
        "  --endpoint 'a..b': empty label in 'a..b'\n" +
        "  --endpoint 'c.*.*.d': more than one '*' in 'c.*.*.d'\n" +
        '  --lockdown: unknown detection \'Crypto-Miner\' (known: Privileged-Container, Runner-Worker-Memory-Read, Reverse-Shell)\n',
    ]);
    const attach = await ringfence(['policy', 'attach', 'npm', '--cluster', 'bad cluster', '--repo', 'web', '--workflow', 'ci.yml']);
    expect([attach.code, attach.stderr]).toEqual([
      2,
      'ringfence: 4 problems, nothing was done:\n' +
        "  --cluster: cluster 'bad cluster' must be 1-100 letters, digits, '.', '_' or '-'\n" +
        "  --workflow: workflow 'ci.yml' is not a workflow file path such as .github/workflows/ci.yml\n" +
        '  --repo needs --org\n' +
        '  --cluster cannot be combined with --repo or --workflow\n',
    ]);
    const token = await ringfence(['token', 'create', '--org', 'bad org', '--role', 'root', '--db', db]);
    expect(token.stderr).toBe("ringfence: 2 problems, nothing was done:\n  organization 'bad org' must be 1-100 letters, digits, '.', '_' or '-'\n  role must be admin or agent, not 'root'\n");
    const missing = await ringfence(['token', 'create', '--db', db]);
    expect(missing.stderr).toBe('ringfence: 2 problems, nothing was done:\n  --org ORG is required\n  --role admin|agent is required\n');
    const server = await ringfence(['server', '--db', db, '--listen', 'nowhere', '--tls-cert', path.join(dir, 'no-cert.pem')]);
    expect(server.stderr).toBe(`ringfence: 3 problems, nothing was done:\n  --tls-cert and --tls-key go together\n  --listen 'nowhere' is not HOST:PORT\n  --tls-cert ${path.join(dir, 'no-cert.pem')}: cannot read it (ENOENT)\n`);
    expect((await ringfence(['policy', 'show', 'bad name'])).code).toBe(2);
  });

  it('says it cannot reach the store, naming the address, the variable and why', async () => {
    const closed = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as net.AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    const address = `127.0.0.1:${closed}`;
    const list = await ringfence(['policy', 'list'], { RINGFENCE_SERVER: address });
    expect([list.code, list.stderr]).toEqual([2, `ringfence: cannot reach the policy store at ${address} (RINGFENCE_SERVER): connect ECONNREFUSED ${address}\n`]);
    const run = await ringfence(['run', '--org', 'acme', '--', '/bin/true'], { RINGFENCE_SERVER: address });
    expect([run.code, run.stderr]).toEqual([EXIT.AGENT_FAILURE, `ringfence: cannot reach the policy store at ${address} (RINGFENCE_SERVER): connect ECONNREFUSED ${address}\n`]);
  });
});

describe('ringfence token and server --db', () => {
  it('refuses a SQLite path whose directory does not exist, creating nothing', async () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-cli-db-'));
    const spec = `sqlite:${path.join(d, 'typo', 'store.db')}`;
    const result = await ringfence(['token', 'create', '--org', 'acme', '--role', 'admin', '--db', spec]);
    expect([result.code, result.stderr]).toEqual([2, `ringfence: cannot open the policy store database ${spec}: directory ${path.join(d, 'typo')} does not exist: create it (mode 0700) or give another sqlite:PATH\n`]);
    expect(fs.readdirSync(d)).toEqual([]);
    const server = await ringfence(['server', '--db', spec, '--listen', '127.0.0.1:0']);
    expect(server.stderr).toBe(result.stderr);
  });

  it('creates a new database file 0600 (its -wal and -shm too) whatever the umask', async () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-cli-db-'));
    const file = path.join(d, 'store.db');
    const result = await new Promise<number>((resolve) =>
      execFile('/bin/sh', ['-c', `umask 000 && exec "${process.execPath}" "${RINGFENCE}" token create --org acme --role admin --db sqlite:${file}`], (error) => resolve(error ? 1 : 0)),
    );
    expect(result).toBe(0);
    expect((fs.statSync(file).mode & 0o777).toString(8)).toBe('600');
    for (const extra of fs.readdirSync(d).filter((f) => f !== 'store.db')) expect([extra, (fs.statSync(path.join(d, extra)).mode & 0o777).toString(8)]).toEqual([extra, '600']);
  });

  it('names the variable to set when PostgreSQL asks a password and none was given', async () => {
    const url = new URL(TEST_POSTGRES);
    url.password = '';
    const result = await ringfence(['token', 'list', '--db', url.toString()], { PGPASSWORD: '', PGPASSFILE: '/nonexistent' });
    expect([result.code, result.stderr]).toEqual([
      2,
      `ringfence: cannot open the policy store database ${url.toString()}: the server asks a password of ${url.username} and none was given: set PGPASSWORD (or put it in ~/.pgpass, or in the URL as postgres://USER:PASSWORD@HOST/DB)\n`,
    ]);
    url.password = 'wrong';
    const wrong = await ringfence(['token', 'list', '--db', url.toString()]);
    expect(wrong.stderr).toBe(`ringfence: cannot open the policy store database ${url.toString().replace(':wrong@', ':***@')}: the server refused the password of ${url.username}: check PGPASSWORD, ~/.pgpass or the URL's password\n`);
  });
});

describe.each(BACKENDS)('ringfence policy --json and --yaml on $name', (backend) => {
  let storeServer: ChildProcess;
  let storeEnv: NodeJS.ProcessEnv;
  const rf = (args: string[]) => ringfence(args, storeEnv);

  beforeAll(async () => {
    const spec = await backend.fresh();
    let address: string;
    ({ process: storeServer, address } = await startStoreServer(spec));
    const created = await ringfence(['token', 'create', '--org', 'acme', '--role', 'admin', '--description', 'json test', '--db', spec]);
    expect(created.code).toBe(0);
    storeEnv = { RINGFENCE_SERVER: address, RINGFENCE_TOKEN: created.stdout.trim(), DB: spec };
  });

  afterAll(() => {
    storeServer?.kill('SIGTERM');
  });

  it('prints the file form with show --yaml, which update -f takes back without a new version', async () => {
    expect((await rf(['policy', 'create', 'trip', '--endpoint', 'registry.npmjs.org', '[::1]:8080', '10.0.0.0/8:22', '--egress-policy', 'block', '--lockdown', 'Reverse-Shell'])).code).toBe(0);
    const shown = await rf(['policy', 'show', 'trip', '--yaml']);
    expect(shown.stdout).toBe('name: trip\negress-policy: block\nallowed-endpoints:\n  - registry.npmjs.org\n  - "[::1]:8080"\n  - 10.0.0.0/8:22\nlockdown-mode:\n  enabled: true\n  detections:\n    - Reverse-Shell\n');
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'rf-trip-')), 'trip.yml');
    fs.writeFileSync(file, shown.stdout);
    const update = await rf(['policy', 'update', '-f', file]);
    expect([update.code, update.stdout]).toEqual([0, 'policy trip unchanged: the file is what version 1 holds, no new version\n']);
    const json = JSON.parse((await rf(['policy', 'update', '-f', file, '--json'])).stdout);
    expect(json).toMatchObject({ changed: false, policy: { name: 'trip', version: 1 } });
    expect(JSON.parse((await rf(['policy', 'history', 'trip', '--json'])).stdout)).toHaveLength(1);
    fs.writeFileSync(file, shown.stdout.replace('egress-policy: block', 'egress-policy: audit'));
    expect((await rf(['policy', 'update', '-f', file])).stdout).toBe('updated policy trip to version 2\n');
  });

  it('uses one style in every --json: camelCase, numbers as numbers, the docs words, nothing empty', async () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'rf-json-')), 'more.txt');
    fs.writeFileSync(file, 'proxy.golang.org\n');
    await rf(['policy', 'create', 'styled', '--endpoint', 'github.com']);
    const outputs: Record<string, unknown> = {};
    for (const [label, args] of [
      ['create', ['policy', 'create', 'styled2', '--endpoint', 'github.com', '--json']],
      ['list', ['policy', 'list', '--json']],
      ['show', ['policy', 'show', 'styled', '--json']],
      ['history', ['policy', 'history', 'styled', '--json']],
      ['attach', ['policy', 'attach', 'styled', '--org', 'acme', '--repo', 'web', '--json']],
      ['attachWorkflow', ['policy', 'attach', 'styled2', '--org', 'acme', '--repo', 'web', '--workflow', '.github/workflows/ci.yml', '--json']],
      ['attachments', ['policy', 'attachments', '--json']],
      ['resolve', ['policy', 'resolve', '--org', 'acme', '--repo', 'web', '--json']],
      ['resolveNone', ['policy', 'resolve', '--org', 'acme', '--repo', 'other', '--json']],
      ['import', ['policy', 'import-endpoints', 'styled', '--from', `file:${file}`, '--json']],
      ['detach', ['policy', 'detach', 'styled', '--org', 'acme', '--repo', 'web', '--json']],
      ['delete', ['policy', 'delete', 'styled2', '--force', '--json']],
      ['tokens', ['token', 'list', '--db', storeEnv.DB!, '--json']],
    ] as const) {
      const result = await rf([...args]);
      expect([label, result.code, result.stderr]).toEqual([label, 0, '']);
      outputs[label] = JSON.parse(result.stdout);
    }
    expect(jsonStyleProblems(outputs)).toEqual([]);
    expect(outputs.show).toEqual({
      org: 'acme',
      name: 'styled',
      egressPolicy: 'audit',
      allowedEndpoints: ['github.com'],
      lockdownMode: { enabled: false, detections: [] },
      version: 1,
      updatedBy: expect.stringMatching(/^token:\w+$/),
      updatedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    });
    expect(outputs.history).toEqual([{ version: 1, author: expect.stringMatching(/^token:/), createdAt: expect.any(String), changes: ['created'], policy: outputs.show }]);
    expect(outputs.attachWorkflow).toMatchObject({ policy: 'styled2', scope: { kind: 'workflow', repository: 'web', workflow: '.github/workflows/ci.yml' } });
    expect(outputs.resolve).toMatchObject({ scope: 'repository', policy: { name: 'styled', version: 1 }, attachment: { policy: 'styled', scope: { kind: 'repository', repository: 'web' } } });
    expect(outputs.resolveNone).toEqual({ scope: 'none' });
    expect(outputs.import).toMatchObject({ added: ['proxy.golang.org'], unchanged: [], dryRun: false, policy: { version: 2 } });
    expect(outputs.detach).toEqual({ policy: 'styled', scope: { kind: 'repository', repository: 'web' } });
    expect(outputs.delete).toEqual({ policy: 'styled2', detached: [{ kind: 'workflow', repository: 'web', workflow: '.github/workflows/ci.yml' }] });
    expect(outputs.tokens).toEqual([{ id: expect.stringMatching(/^\w+$/), org: 'acme', role: 'admin', createdAt: expect.any(String), description: 'json test' }]);
  });
});
