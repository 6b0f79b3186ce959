/**
 * The policy store through its real gRPC server, on SQLite and PostgreSQL:
 * CRUD, versions, precedence and exemptions, tenancy, auth, bad policies,
 * endpoint import/export, concurrent updates.
 */
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StoreClient } from '../../src/store/client';
import { SCOPE_KINDS } from '../../src/store/proto';
import type { PolicyRepository } from '../../src/store/repository';
import { createPolicyStoreServer } from '../../src/store/server';
import type { GrpcServer } from '../../src/rpc/grpc-server';
import { createToken, listTokens, revokeToken } from '../../src/store/tokens';
import net from 'node:net';
import { OidcVerifier, UNVERIFIABLE } from '../../src/store/oidc';
import { BACKENDS } from './backends';
import { startTestIssuer, type TestIssuer } from './oidc-issuer';

const BUILD = `name: build
egress-policy: block
allowed-endpoints: >
  registry.npmjs.org:443
  github.com
lockdown-mode:
  enabled: true
  detections: [Reverse-Shell]
`;

const scope = (kind: 'organization' | 'repository' | 'workflow' | 'cluster', extra: Record<string, string> = {}) => ({ kind: SCOPE_KINDS.toProto[kind], ...extra });

describe.each(BACKENDS)('policy store on $name', (backend) => {
  let repository: PolicyRepository;
  let server: GrpcServer | undefined;
  let address: string;
  let issuer: TestIssuer;
  const tokens: Record<string, string> = {};
  const clients: StoreClient[] = [];

  const as = (who: string) => {
    const c = new StoreClient({ address, token: tokens[who] ?? who, deadlineMs: 5000 });
    clients.push(c);
    return <Res>(method: string, request: unknown) => c.call<unknown, Res>(method as never, request);
  };
  const code = async (promise: Promise<unknown>) => {
    try {
      await promise;
      return 'OK';
    } catch (error) {
      return grpc.status[(error as grpc.ServiceError).code];
    }
  };

  beforeAll(async () => {
    repository = await backend.open();
    issuer = await startTestIssuer();
    const started = createPolicyStoreServer({ repository, jobIdentity: new OidcVerifier({ issuer: issuer.issuer, audience: 'ringfence' }) });
    server = started;
    const port = await started.listen('127.0.0.1:0');
    address = `127.0.0.1:${port}`;
    tokens.acme = (await createToken(repository, 'acme', 'admin', 'test admin')).token;
    tokens.acmeAgent = (await createToken(repository, 'acme', 'agent', 'runner pool')).token;
    tokens.globex = (await createToken(repository, 'globex', 'admin')).token;
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await server?.shutdown();
    await repository?.close();
    await issuer?.close();
  });

  it('creates, shows, lists, updates with versions and history, deletes', async () => {
    const acme = as('acme');
    const created = await acme<{ name: string; version: string; allowedEndpoints: string[] }>('CreatePolicy', { policyYaml: BUILD });
    expect(created).toMatchObject({ name: 'build', version: '1', allowedEndpoints: ['registry.npmjs.org:443', 'github.com'] });
    expect(await code(acme('CreatePolicy', { policyYaml: BUILD }))).toBe('ALREADY_EXISTS');

    const updated = await acme<{ policy: { version: string }; changed: boolean }>('UpdatePolicy', { policyYaml: BUILD.replace('github.com', 'api.github.com').replace('block', 'audit') });
    expect([updated.policy.version, updated.changed]).toEqual(['2', true]);
    const { versions } = await acme<{ versions: { version: string; changes: string[]; author: string }[] }>('PolicyHistory', { name: 'build' });
    expect(versions.map((v) => v.version)).toEqual(['1', '2']);
    expect(versions[1].changes).toEqual(['egress-policy block → audit', '+ api.github.com', '- github.com']);
    expect(versions[1].author).toMatch(/^token:/);

    const { policies } = await acme<{ policies: { name: string }[] }>('ListPolicies', {});
    expect(policies.map((p) => p.name)).toEqual(['build']);
    expect(await code(acme('UpdatePolicy', { policyYaml: BUILD, expectedVersion: '1' }))).toBe('FAILED_PRECONDITION');

    await acme('CreatePolicy', { policyYaml: 'egress-policy: audit\n', name: 'scratch' });
    expect(await acme<{ detached: number }>('DeletePolicy', { name: 'scratch' })).toEqual({ detached: 0, attachments: [] });
    expect(await code(acme('GetPolicy', { name: 'scratch' }))).toBe('NOT_FOUND');
  });

  it('refuses a bad policy with every problem named, and stores nothing', async () => {
    const acme = as('acme');
    const bad = 'name: broken\negress-policy: block\nallowed-endpoints: >\n  ok.example.com\n  bad.example.com:99999\n  *.*.example.com\n';
    const error = await acme('CreatePolicy', { policyYaml: bad }).catch((e: grpc.ServiceError) => e);
    expect((error as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((error as grpc.ServiceError).details).toContain("broken:5: endpoint 'bad.example.com:99999'");
    expect((error as grpc.ServiceError).details).toContain("broken:6: endpoint '*.*.example.com'");
    expect(await code(acme('GetPolicy', { name: 'broken' }))).toBe('NOT_FOUND');
  });

  it('refuses bad requests with INVALID_ARGUMENT and changes nothing', async () => {
    const acme = as('acme');
    const version = (await acme<{ version: string }>('GetPolicy', { name: 'build' })).version;
    expect(await code(acme('GetPolicy', { name: '' }))).toBe('INVALID_ARGUMENT');
    expect(await code(acme('UpdatePolicy', { policyYaml: BUILD, expectedVersion: '-1' }))).toBe('INVALID_ARGUMENT');
    // the file says build: storing it as another policy would surprise its next reader
    expect(await code(acme('UpdatePolicy', { policyYaml: BUILD, name: 'other' }))).toBe('INVALID_ARGUMENT');
    expect(await code(acme('CreatePolicy', { policyYaml: BUILD, name: 'other' }))).toBe('INVALID_ARGUMENT');
    expect(await code(acme('CreatePolicy', { policyYaml: 'egress-policy: audit\n' }))).toBe('INVALID_ARGUMENT');
    expect(await code(acme('Attach', { policy: 'build', scope: scope('workflow', { repository: 'api', workflow: 'ci.yml' }) }))).toBe('INVALID_ARGUMENT');
    expect(await code(acme('Attach', { policy: 'build', scope: { kind: 'SCOPE_KIND_UNSPECIFIED' } }))).toBe('INVALID_ARGUMENT');
    expect((await acme<{ version: string }>('GetPolicy', { name: 'build' })).version).toBe(version);
    expect(await code(acme('GetPolicy', { name: 'other' }))).toBe('NOT_FOUND');
    expect((await acme<{ attachments: unknown[] }>('ListAttachments', {})).attachments).toEqual([]);
  });

  it('resolves by precedence: workflow > repository > organization > cluster, else none', async () => {
    const acme = as('acme');
    for (const name of ['org-wide', 'wf-release', 'cluster-default']) {
      await acme('CreatePolicy', { policyYaml: 'egress-policy: block\n', name });
    }
    const LOCKED = 'egress-policy: block\nlockdown-mode:\n  enabled: true\n  detections: [Reverse-Shell, Runner-Worker-Memory-Read]\n';
    await acme('CreatePolicy', { policyYaml: LOCKED, name: 'repo-api' });
    await acme('CreatePolicy', { policyYaml: 'egress-policy: block\nlockdown-mode:\n  enabled: false\n', name: 'exempt' });
    await acme('Attach', { policy: 'cluster-default', scope: scope('cluster', { cluster: 'linux-large' }) });
    const resolve = (job: Record<string, string>) => as('acmeAgent')<{ policy: { name: string } | null; scope: string; attachment: unknown }>('ResolvePolicy', { job: { org: 'acme', ...job } });

    expect(await resolve({ repository: 'api', workflow: '.github/workflows/ci.yml' })).toMatchObject({ policy: null, scope: 'none' });
    expect(await resolve({ repository: 'api', cluster: 'linux-large' })).toMatchObject({ policy: { name: 'cluster-default' }, scope: 'cluster' });

    await acme('Attach', { policy: 'org-wide', scope: scope('organization') });
    expect(await resolve({ repository: 'api', cluster: 'linux-large' })).toMatchObject({ policy: { name: 'org-wide' }, scope: 'organization' });

    await acme('Attach', { policy: 'repo-api', scope: scope('repository', { repository: 'acme/api' }) });
    expect(await resolve({ repository: 'acme/api', workflow: '.github/workflows/ci.yml' })).toMatchObject({ policy: { name: 'repo-api' }, scope: 'repository' });
    expect(await resolve({ repository: 'web' })).toMatchObject({ policy: { name: 'org-wide' } });

    await acme('Attach', { policy: 'wf-release', scope: scope('workflow', { repository: 'api', workflow: '.github/workflows/release.yml' }) });
    expect(await resolve({ repository: 'api', workflow: '.github/workflows/release.yml' })).toMatchObject({ policy: { name: 'wf-release' }, scope: 'workflow', attachment: { policy: 'wf-release' } });
    expect(await resolve({ repository: 'api', workflow: '.github/workflows/ci.yml' })).toMatchObject({ policy: { name: 'repo-api' } });

    // an exemption is a more specific policy, e.g. lockdown off for one workflow
    expect(await resolve({ repository: 'api', workflow: '.github/workflows/ci.yml' })).toMatchObject({ policy: { lockdownMode: { enabled: true } } });
    await acme('Attach', { policy: 'exempt', scope: scope('workflow', { repository: 'api', workflow: '.github/workflows/ci.yml' }) });
    expect(await resolve({ repository: 'api', workflow: '.github/workflows/ci.yml' })).toMatchObject({ policy: { name: 'exempt', lockdownMode: { enabled: false } }, scope: 'workflow' });
    expect(await resolve({ repository: 'api', workflow: '.github/workflows/deploy.yml' })).toMatchObject({ policy: { name: 'repo-api', lockdownMode: { enabled: true } } });

    // organization and repository names are case-insensitive, as on GitHub; workflow paths are file paths
    expect(await as('acmeAgent')<{ policy: { name: string } }>('ResolvePolicy', { job: { org: 'ACME', repository: 'Acme/API', workflow: '.github/workflows/ci.yml' } })).toMatchObject({ policy: { name: 'exempt' } });
    expect(await resolve({ repository: 'api', workflow: '.github/workflows/CI.yml' })).toMatchObject({ policy: { name: 'repo-api' } });
    // a job context that could never match an attachment is an error, not a quiet fall-through
    expect(await code(resolve({ repository: 'api', workflow: 'ci.yml' }))).toBe('INVALID_ARGUMENT');
    expect(await code(resolve({ workflow: '.github/workflows/ci.yml' }))).toBe('INVALID_ARGUMENT');

    expect(await code(acme('Attach', { policy: 'org-wide', scope: scope('workflow', { repository: 'api', workflow: '.github/workflows/ci.yml' }) }))).toBe('ALREADY_EXISTS');
    await acme('Detach', { policy: 'exempt', scope: scope('workflow', { repository: 'api', workflow: '.github/workflows/ci.yml' }) });
    expect(await resolve({ repository: 'api', workflow: '.github/workflows/ci.yml' })).toMatchObject({ policy: { name: 'repo-api' } });
    expect(await code(acme('Detach', { policy: 'exempt', scope: scope('organization') }))).toBe('NOT_FOUND');
  });

  it('keeps organizations apart', async () => {
    const globex = as('globex');
    const before = await as('acme')<{ version: string; allowedEndpoints: string[] }>('GetPolicy', { name: 'build' });
    const { attachments: acmeAttachments } = await as('acme')<{ attachments: unknown[] }>('ListAttachments', {});
    expect(await code(globex('GetPolicy', { name: 'build' }))).toBe('NOT_FOUND');
    expect((await globex<{ policies: unknown[] }>('ListPolicies', {})).policies).toEqual([]);
    expect((await globex<{ attachments: unknown[] }>('ListAttachments', {})).attachments).toEqual([]);
    expect(await code(globex('Attach', { policy: 'build', scope: scope('organization') }))).toBe('NOT_FOUND');
    expect(await code(globex('UpdatePolicy', { policyYaml: BUILD.replace('github.com', 'evil.example') }))).toBe('NOT_FOUND');
    expect(await code(globex('PolicyHistory', { name: 'build' }))).toBe('NOT_FOUND');
    expect(await code(globex('ImportEndpoints', { name: 'build', file: { path: 'x', text: 'evil.example\n' } }))).toBe('NOT_FOUND');
    expect(await code(globex('ExportEndpoints', { name: 'build' }))).toBe('NOT_FOUND');
    expect(await code(globex('Detach', { policy: 'repo-api', scope: scope('repository', { repository: 'api' }) }))).toBe('NOT_FOUND');
    expect(await code(globex('DeletePolicy', { name: 'build' }))).toBe('NOT_FOUND');
    // naming the other organization is refused, not quietly done in one's own
    expect(await code(globex('Attach', { policy: 'build', scope: scope('organization'), org: 'acme' }))).toBe('PERMISSION_DENIED');
    expect(await code(globex('Detach', { policy: 'repo-api', scope: scope('repository', { repository: 'api' }), org: 'acme' }))).toBe('PERMISSION_DENIED');
    expect(await as('acme')('GetPolicy', { name: 'build' })).toMatchObject(before);
    expect((await as('acme')<{ attachments: unknown[] }>('ListAttachments', {})).attachments).toEqual(acmeAttachments);
    expect(await code(globex('ResolvePolicy', { job: { org: 'acme', repository: 'api' } }))).toBe('PERMISSION_DENIED');
    expect(await code(as('acme')('Attach', { policy: 'build', scope: scope('repository', { repository: 'globex/site' }) }))).toBe('PERMISSION_DENIED');
    await globex('CreatePolicy', { policyYaml: BUILD }); // same name, other org: fine
  });

  it('refuses missing, unknown and under-privileged credentials', async () => {
    expect(await code(as('')('ListPolicies', {}))).toBe('UNAUTHENTICATED');
    expect(await code(as('')('ResolvePolicy', { job: { org: 'acme' } }))).toBe('UNAUTHENTICATED');
    expect(await code(as('rfa_not-a-real-token')('ListPolicies', {}))).toBe('UNAUTHENTICATED');
    expect(await code(as('acmeAgent')('ListPolicies', {}))).toBe('PERMISSION_DENIED');
    expect(await code(as('acmeAgent')('CreatePolicy', { policyYaml: BUILD, name: 'sneaky' }))).toBe('PERMISSION_DENIED');
    expect(await code(as('acmeAgent')('ResolvePolicy', { job: { org: 'acme', repository: 'api', namedPolicy: 'build' } }))).toBe('PERMISSION_DENIED');
  });

  it('lists tokens without their secrets and revokes them', async () => {
    const { token, record } = await createToken(repository, 'Acme', 'agent', 'to be revoked');
    expect(record.org).toBe('acme');
    const listed = await listTokens(repository, 'ACME');
    // sorted: the first two are made in the same millisecond, and then ordered by their random ids
    expect(listed.map((t) => t.description).sort()).toEqual(['runner pool', 'test admin', 'to be revoked']);
    expect(JSON.stringify(listed)).not.toContain(token.slice(4));
    expect((await listTokens(repository)).map((t) => t.org).sort()).toEqual(['acme', 'acme', 'acme', 'globex']);
    await revokeToken(repository, record.id);
    expect(await code(as(token)('ResolvePolicy', { job: { org: 'acme' } }))).toBe('UNAUTHENTICATED');
    await expect(revokeToken(repository, record.id)).rejects.toThrow(`no token with id '${record.id}'`);
    expect(await code(as('acmeAgent')('ResolvePolicy', { job: { org: 'acme' } }))).toBe('OK');
  });

  it('a job fetches the policy named in its workflow with its OIDC id-token; forged, expired, other-audience and other-org tokens fail', async () => {
    await as('acme')('CreatePolicy', { policyYaml: 'egress-policy: block\n', name: 'named-step' });
    const claims = { repository_owner: 'acme', repository: 'acme/api', job_workflow_ref: 'acme/api/.github/workflows/ci.yml@refs/heads/main' };
    const named = { job: { org: 'acme', repository: 'api', workflow: '.github/workflows/ci.yml', namedPolicy: 'named-step' } };
    const good = await issuer.sign(claims);
    expect(await as(good)<{ policy: { name: string }; scope: string }>('ResolvePolicy', named)).toMatchObject({ policy: { name: 'named-step' }, scope: 'named' });
    expect(await code(as(await issuer.sign(claims, { key: 'foreign' }))('ResolvePolicy', named))).toBe('UNAUTHENTICATED');
    expect(await code(as(await issuer.sign(claims, { expiresIn: Math.floor(Date.now() / 1000) - 60 }))('ResolvePolicy', named))).toBe('UNAUTHENTICATED');
    expect(await code(as(await issuer.sign(claims, { audience: 'someone-else' }))('ResolvePolicy', named))).toBe('UNAUTHENTICATED');
    expect(await code(as(await issuer.sign(claims, { issuer: 'https://evil.example' }))('ResolvePolicy', named))).toBe('UNAUTHENTICATED');
    expect(await code(as(await issuer.sign(claims, { expiresIn: null }))('ResolvePolicy', named))).toBe('UNAUTHENTICATED');
    expect(await code(as(await issuer.sign({ ...claims, repository: 'globex/api' }))('ResolvePolicy', named))).toBe('UNAUTHENTICATED');
    const globexJob = await issuer.sign({ ...claims, repository_owner: 'globex', repository: 'globex/api' });
    expect(await code(as(globexJob)('ResolvePolicy', named))).toBe('PERMISSION_DENIED');
    // GitHub spells the owner as it is registered; the store's names are case-insensitive
    const upper = await issuer.sign({ ...claims, repository_owner: 'ACME', repository: 'ACME/Api' });
    expect(await as(upper)<{ policy: { name: string } }>('ResolvePolicy', named)).toMatchObject({ policy: { name: 'named-step' } });
    // a token of another issuer is refused on its claims; the message names the server's own issuer only
    const evil = (await as(await issuer.sign(claims, { issuer: 'https://evil.example' }))('ResolvePolicy', named).catch((e: grpc.ServiceError) => e)) as grpc.ServiceError;
    expect(evil.details).toBe(`id-token refused: its issuer is not the one this server trusts (${issuer.issuer})`);
    // a job token reads nothing else
    expect(await code(as(good)('ListPolicies', {}))).toBe('PERMISSION_DENIED');
    expect(await code(as(good)('GetPolicy', { name: 'named-step' }))).toBe('PERMISSION_DENIED');
  });

  it('tells a job whose token cannot be verified (issuer unreachable) a fixed line, and logs the cause', async () => {
    const log: string[] = [];
    // the JWKS at a loopback port nothing listens on
    const dead = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as net.AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    const jobIdentity = new OidcVerifier({ issuer: issuer.issuer, audience: 'ringfence', jwksUrl: `http://127.0.0.1:${dead}/jwks`, log: (line) => log.push(line) });
    const broken = createPolicyStoreServer({ repository, jobIdentity, log: (line) => log.push(line) });
    const port = await broken.listen('127.0.0.1:0');
    const client = new StoreClient({ address: `127.0.0.1:${port}`, token: await issuer.sign({ repository_owner: 'acme', repository: 'acme/api' }), deadlineMs: 5000 });
    try {
      const error = (await client.call('ResolvePolicy', { job: { org: 'acme', namedPolicy: 'build' } }).catch((e: grpc.ServiceError) => e)) as grpc.ServiceError;
      expect([grpc.status[error.code], error.details]).toEqual(['UNAUTHENTICATED', UNVERIFIABLE]);
      expect(log.filter((line) => line.startsWith('policy store: an id-token could not be verified: '))).toHaveLength(1);
    } finally {
      client.close();
      await broken.shutdown();
    }
  });

  it("a job's id-token fetches only the named policy, and speaks only for its own repository and workflow", async () => {
    const acme = as('acme');
    await acme('CreatePolicy', { policyYaml: 'egress-policy: block\n', name: 'svc-ci' });
    await acme('CreatePolicy', { policyYaml: 'egress-policy: audit\n', name: 'svc-named' });
    await acme('Attach', { policy: 'svc-ci', scope: scope('workflow', { repository: 'svc', workflow: '.github/workflows/ci.yml' }) });
    const ciJob = await issuer.sign({ repository_owner: 'acme', repository: 'acme/svc', workflow_ref: 'acme/svc/.github/workflows/ci.yml@refs/heads/main' });
    const resolve = (job: Record<string, string>) => as(ciJob)<{ policy: { name: string } | null; scope: string }>('ResolvePolicy', { job: { org: 'acme', ...job } });

    // named in the workflow step: chosen over the workflow's attachment
    expect(await resolve({ repository: 'svc', workflow: '.github/workflows/ci.yml', namedPolicy: 'svc-named' })).toMatchObject({ policy: { name: 'svc-named' }, scope: 'named' });
    // what the job leaves out comes from its token
    expect(await resolve({ namedPolicy: 'svc-named' })).toMatchObject({ policy: { name: 'svc-named' } });
    expect(await resolve({ workflow: '.github/workflows/ci.yml', namedPolicy: 'svc-named' })).toMatchObject({ policy: { name: 'svc-named' } });
    // by attachment only agents resolve: the runner, not the job, says which cluster it is on
    expect(await code(resolve({ repository: 'svc', workflow: '.github/workflows/ci.yml' }))).toBe('PERMISSION_DENIED');
    // a request that describes another workflow or repository is not this job's
    expect(await code(resolve({ repository: 'svc', workflow: '.github/workflows/release.yml', namedPolicy: 'svc-named' }))).toBe('PERMISSION_DENIED');
    expect(await code(resolve({ repository: 'api', namedPolicy: 'svc-named' }))).toBe('PERMISSION_DENIED');
    // a reusable workflow's own path (job_workflow_ref, maybe in another repository) is not the job's workflow
    const reusable = await issuer.sign({ repository_owner: 'acme', repository: 'acme/svc', job_workflow_ref: 'acme/shared/.github/workflows/ci.yml@refs/heads/main' });
    expect(await code(as(reusable)('ResolvePolicy', { job: { org: 'acme', repository: 'svc', workflow: '.github/workflows/ci.yml', namedPolicy: 'svc-named' } }))).toBe('PERMISSION_DENIED');
    expect(await as(reusable)<{ policy: { name: string } }>('ResolvePolicy', { job: { org: 'acme', namedPolicy: 'svc-named' } })).toMatchObject({ policy: { name: 'svc-named' } });
  });

  it('imports endpoints from a file without duplicates, dry or not, and exports them', async () => {
    const acme = as('acme');
    const file = { path: 'endpoints.txt', text: '# tools\nregistry.npmjs.org\nREGISTRY.NPMJS.ORG.:443\nproxy.golang.org\n\nsum.golang.org:443 # checksums\n' };
    const dry = await acme<{ added: string[]; unchanged: string[]; policy: { version: string } }>('ImportEndpoints', { name: 'build', file, dryRun: true });
    expect(dry.added).toEqual(['proxy.golang.org', 'sum.golang.org:443']);
    expect(dry.unchanged).toEqual(['registry.npmjs.org', 'REGISTRY.NPMJS.ORG.:443']);
    const before = dry.policy.version;
    const done = await acme<{ added: string[]; policy: { version: string; allowedEndpoints: string[] } }>('ImportEndpoints', { name: 'build', file, dryRun: false });
    expect(Number(done.policy.version)).toBe(Number(before) + 1);
    const again = await acme<{ added: string[] }>('ImportEndpoints', { name: 'build', file, dryRun: false });
    expect(again.added).toEqual([]);
    const { text } = await acme<{ text: string }>('ExportEndpoints', { name: 'build' });
    const lines = text.split('\n').filter((l) => l && !l.startsWith('#'));
    expect(lines).toEqual(done.policy.allowedEndpoints);
    expect(await code(acme('ImportEndpoints', { name: 'build', file: { path: 'bad.txt', text: 'ok.com\nbad..com\n' } }))).toBe('INVALID_ARGUMENT');
  });

  it('loses no write when updates race', async () => {
    const acme = as('acme');
    await acme('CreatePolicy', { policyYaml: 'egress-policy: audit\n', name: 'raced' });
    const writers = Array.from({ length: 12 }, (_, i) => acme('ImportEndpoints', { name: 'raced', file: { path: 'f', text: `host${i}.example.com\n` } }).catch((e) => e));
    const results = await Promise.all(writers);
    expect(results.filter((r) => r instanceof Error)).toEqual([]);
    const policy = await acme<{ allowedEndpoints: string[]; version: string }>('GetPolicy', { name: 'raced' });
    expect([...policy.allowedEndpoints].sort()).toEqual(Array.from({ length: 12 }, (_, i) => `host${i}.example.com`).sort());
    expect(policy.version).toBe('13');
    const { versions } = await acme<{ versions: unknown[] }>('PolicyHistory', { name: 'raced' });
    expect(versions.length).toBe(13);
  });

  it('makes no version for an update that changes nothing, and says so', async () => {
    const acme = as('acme');
    const FILE = 'name: same\negress-policy: block\nallowed-endpoints: a.example.com b.example.com\nlockdown-mode:\n  enabled: true\n  detections: [Reverse-Shell, Privileged-Container]\n';
    await acme('CreatePolicy', { policyYaml: FILE });
    const stored = await acme<{ version: string; updatedAt: string }>('GetPolicy', { name: 'same' });
    type Update = { policy: { version: string; updatedAt: string }; changed: boolean };
    // the same file; the same endpoints and detections in another order, a duplicate, a comment
    for (const yaml of [FILE, 'name: same\negress-policy: block\nallowed-endpoints: b.example.com a.example.com a.example.com # again\nlockdown-mode: {enabled: true, detections: [Privileged-Container, Reverse-Shell]}\n']) {
      const update = await acme<Update>('UpdatePolicy', { policyYaml: yaml });
      expect([update.changed, update.policy.version, update.policy.updatedAt]).toEqual([false, '1', stored.updatedAt]);
    }
    // still checked against the expected version: a stale reader learns it is stale
    const changed = await acme<Update>('UpdatePolicy', { policyYaml: FILE.replace('block', 'audit'), expectedVersion: '1' });
    expect([changed.changed, changed.policy.version]).toEqual([true, '2']);
    expect(await code(acme('UpdatePolicy', { policyYaml: FILE.replace('block', 'audit'), expectedVersion: '1' }))).toBe('FAILED_PRECONDITION');
    const { versions } = await acme<{ versions: { version: string }[] }>('PolicyHistory', { name: 'same' });
    expect(versions.map((v) => v.version)).toEqual(['1', '2']);
  });

  it('deletes an attached policy only with force, naming the scopes it changes; lists attachments of one policy or all', async () => {
    const acme = as('acme');
    await acme('CreatePolicy', { policyYaml: 'egress-policy: block\n', name: 'doomed' });
    await acme('CreatePolicy', { policyYaml: 'egress-policy: block\n', name: 'bystander' });
    await acme('Attach', { policy: 'doomed', scope: scope('repository', { repository: 'doomed-repo' }) });
    await acme('Attach', { policy: 'doomed', scope: scope('cluster', { cluster: 'doomed-cluster' }) });
    await acme('Attach', { policy: 'bystander', scope: scope('repository', { repository: 'bystander-repo' }) });
    type Listed = { attachments: { policy: string; scope: { kind: string; repository: string; cluster: string } }[] };
    const ofDoomed = await acme<Listed>('ListAttachments', { policy: 'doomed' });
    expect(ofDoomed.attachments.map((a) => [a.policy, a.scope.kind, a.scope.repository || a.scope.cluster])).toEqual([
      ['doomed', 'SCOPE_KIND_CLUSTER', 'doomed-cluster'],
      ['doomed', 'SCOPE_KIND_REPOSITORY', 'doomed-repo'],
    ]);
    const all = await acme<Listed>('ListAttachments', {});
    expect(all.attachments.filter((a) => ['doomed', 'bystander'].includes(a.policy)).map((a) => a.policy).sort()).toEqual(['bystander', 'doomed', 'doomed']);
    expect(await code(acme('ListAttachments', { policy: 'no-such-policy' }))).toBe('NOT_FOUND');

    const refused = (await acme('DeletePolicy', { name: 'doomed' }).catch((e: grpc.ServiceError) => e)) as grpc.ServiceError;
    expect(refused.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(refused.details).toBe(
      'policy doomed is attached to cluster doomed-cluster, repository doomed-repo: deleting it changes the policy of those jobs; detach it first, or delete with force (--force):\n' +
        'cluster doomed-cluster: jobs on cluster doomed-cluster without a workflow, repository or organization attachment would get the next attachment that covers them, or none (audit mode)\n' +
        'repository doomed-repo: jobs of repository doomed-repo without a workflow attachment would get the next attachment that covers them, or none (audit mode)',
    );
    // nothing was changed
    expect((await acme<{ version: string }>('GetPolicy', { name: 'doomed' })).version).toBe('1');
    expect((await acme<Listed>('ListAttachments', { policy: 'doomed' })).attachments).toHaveLength(2);

    const forced = await acme<{ detached: number; attachments: { scope: { kind: string } }[] }>('DeletePolicy', { name: 'doomed', force: true });
    expect([forced.detached, forced.attachments.map((a) => a.scope.kind)]).toEqual([2, ['SCOPE_KIND_CLUSTER', 'SCOPE_KIND_REPOSITORY']]);
    expect(await code(acme('GetPolicy', { name: 'doomed' }))).toBe('NOT_FOUND');
    expect((await acme<Listed>('ListAttachments', { policy: 'bystander' })).attachments).toHaveLength(1);
  });

  it("resolves in the credentials' organization when the job context names none", async () => {
    // globex: no organization-wide attachment there (acme has one from the precedence test)
    const globex = as('globex');
    await globex('CreatePolicy', { policyYaml: 'egress-policy: block\n', name: 'cluster-only' });
    await globex('Attach', { policy: 'cluster-only', scope: scope('cluster', { cluster: 'no-org-cluster' }) });
    type Resolved = { policy: { name: string; org: string } | null; scope: string };
    expect(await globex<Resolved>('ResolvePolicy', { job: { cluster: 'no-org-cluster' } })).toMatchObject({ policy: { name: 'cluster-only', org: 'globex' }, scope: 'cluster' });
    // acme's credentials resolve in acme: its own organization attachment, never globex's cluster one
    expect(await as('acme')<Resolved>('ResolvePolicy', { job: { cluster: 'no-org-cluster' } })).toMatchObject({ policy: { name: 'org-wide', org: 'acme' }, scope: 'organization' });
    expect(await code(globex('ResolvePolicy', {}))).toBe('INVALID_ARGUMENT');
  });
});
