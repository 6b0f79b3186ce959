/**
 * The policy fetched from the store turned into the policy the agent
 * enforces (src/agent/store-policy.ts): the stored form re-read with the
 * agent's own parser, so that what the store sends can never be enforced
 * more loosely than a policy file saying the same; and fetchPolicy against a
 * real store server on loopback (SQLite in memory) that each case starts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import net from 'node:net';
import { fetchPolicy, policyFromMessage, policyYaml } from '../../src/agent/store-policy';
import { PolicyError } from '../../src/policy/policy';
import type { Policy__Output } from '../../src/proto/ringfence/policy/v1/Policy';
import type { GrpcServer } from '../../src/rpc/grpc-server';
import type { PolicyRepository } from '../../src/store/repository';
import { createPolicyStoreServer } from '../../src/store/server';
import { PolicyService } from '../../src/store/service';
import { SqliteRepository } from '../../src/store/sqlite';
import { createToken } from '../../src/store/tokens';
import { RingfenceError } from '../../src/util/errors';

const CI = '.github/workflows/ci.yml';

const message = (overrides: Partial<Policy__Output> = {}): Policy__Output => ({
  org: 'acme',
  name: 'build',
  egressPolicy: 'block',
  allowedEndpoints: ['registry.npmjs.org', '*.githubusercontent.com:443', '10.0.0.0/8:22'],
  lockdownMode: { enabled: true, detections: ['Reverse-Shell', 'Privileged-Container'] },
  version: '3',
  updatedBy: 'token:abc',
  updatedAt: '2026-12-01T00:00:00.000Z',
  ...overrides,
});

describe('policyYaml', () => {
  it('writes the policy file a stored policy came from', () => {
    expect(policyYaml(message())).toBe(
      'name: build\negress-policy: block\nallowed-endpoints:\n  - registry.npmjs.org\n  - "*.githubusercontent.com:443"\n  - 10.0.0.0/8:22\nlockdown-mode:\n  enabled: true\n  detections:\n    - Reverse-Shell\n    - Privileged-Container\n',
    );
  });

  it('writes lockdown off when the message has no lockdown mode', () => {
    expect(policyYaml(message({ lockdownMode: null, allowedEndpoints: [] }))).toBe('name: build\negress-policy: block\nallowed-endpoints: []\nlockdown-mode:\n  enabled: false\n  detections: []\n');
  });
});

describe('policyFromMessage', () => {
  it('gives the policy a file of the same content gives', () => {
    const policy = policyFromMessage(message());
    expect([policy.name, policy.egressPolicy, policy.lockdown]).toEqual(['build', 'block', { enabled: true, detections: ['Reverse-Shell', 'Privileged-Container'] }]);
    expect(policy.allowedEndpoints.map((e) => [e.kind, e.text, e.port])).toEqual([
      ['name', 'registry.npmjs.org', 443],
      ['name', '*.githubusercontent.com:443', 443],
      ['ip', '10.0.0.0/8:22', 22],
    ]);
    expect(policy.allowedEndpoints[1]).toMatchObject({ pattern: '*.githubusercontent.com', wildcard: { prefix: '', suffix: '.githubusercontent.com' } });
    expect(policy.allowedEndpoints[2]).toMatchObject({ family: 4, prefixLength: 8 });
  });

  it('takes a message without lockdown mode as lockdown off', () => {
    expect(policyFromMessage(message({ lockdownMode: null })).lockdown).toEqual({ enabled: false, detections: [] });
  });

  // the lines are those of the document re-read (policyYaml), not the user's: the problems and the source are what counts
  it.each<[string, Partial<Policy__Output>, string, string[]]>([
    ['no egress policy (proto3 leaves it empty)', { egressPolicy: '' }, 'build', ["egress-policy must be 'audit' or 'block', not ''"]],
    ['an unknown egress policy', { egressPolicy: 'allow' }, 'build', ["egress-policy must be 'audit' or 'block', not 'allow'"]],
    ['a bad endpoint', { allowedEndpoints: ['ok.com', 'bad..com'] }, 'build', ["endpoint 'bad..com': empty label in 'bad..com'"]],
    ['an unknown detection', { lockdownMode: { enabled: true, detections: ['Reverse-Shel'] } }, 'build', ["unknown detection 'Reverse-Shel' (known: Privileged-Container, Runner-Worker-Memory-Read, Reverse-Shell)"]],
    // a name or an endpoint cannot smuggle keys into the document it is re-read from
    ['a name that carries a key', { name: 'x\negress-policy: audit' }, 'x\negress-policy: audit', ["name 'x\negress-policy: audit' must be 1-100 letters, digits, '.', '_' or '-'"]],
    ['an endpoint that carries a key', { allowedEndpoints: ['a.com\nlockdown-mode: {enabled: false}'] }, 'build', ["endpoint 'lockdown-mode:': bad port '' in 'lockdown-mode:' (1-65535)", "endpoint '{enabled:': bad port '' in '{enabled:' (1-65535)", "endpoint 'false}': bad label 'false}' in 'false}'"]],
  ])('refuses %s as a policy file would', (_, overrides, name, problems) => {
    expect.assertions(3);
    try {
      policyFromMessage(message(overrides));
    } catch (error) {
      expect(error).toBeInstanceOf(PolicyError);
      expect((error as PolicyError).source).toBe(`policy store: ${name}`);
      expect((error as PolicyError).problems.map((p) => p.message)).toEqual(problems);
    }
  });
});

describe('fetchPolicy', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /** A store server on a loopback port with acme's build policy, and an agent token of acme. */
  async function startStore(): Promise<{ address: string; token: string; repository: PolicyRepository; service: PolicyService }> {
    const repository = new SqliteRepository(':memory:');
    await repository.migrate();
    cleanups.push(() => repository.close());
    const server: GrpcServer = createPolicyStoreServer({ repository });
    const port = await server.listen('127.0.0.1:0');
    cleanups.push(() => server.shutdown());
    const service = new PolicyService(repository);
    const admin = { org: 'acme', role: 'admin' as const, subject: 'token:test' };
    await service.create(admin, 'name: build\negress-policy: block\nallowed-endpoints: registry.npmjs.org\nlockdown-mode:\n  enabled: true\n  detections: [Reverse-Shell]\n');
    await service.create(admin, 'name: ci\negress-policy: audit\n');
    await service.create(admin, 'name: big\negress-policy: block\n');
    return { address: `127.0.0.1:${port}`, token: (await createToken(repository, 'acme', 'agent')).token, repository, service };
  }

  const admin = { org: 'acme', role: 'admin' as const, subject: 'token:test' };

  it('gets the policy attached for the job, re-read by the agent', async () => {
    const { address, token, service } = await startStore();
    await service.attach(admin, 'build', { kind: 'organization' });
    const fetched = await fetchPolicy(address, token, { org: 'acme', repository: 'web' });
    expect([fetched.name, fetched.version, fetched.scope, fetched.policy?.name, fetched.policy?.egressPolicy, fetched.policy?.lockdown]).toEqual(['build', 1, 'organization', 'build', 'block', { enabled: true, detections: ['Reverse-Shell'] }]);
    expect(fetched.policy?.allowedEndpoints.map((e) => e.text)).toEqual(['registry.npmjs.org']);
  });

  it("sends the job's repository, workflow and cluster", async () => {
    const { address, token, service } = await startStore();
    await service.attach(admin, 'ci', { kind: 'workflow', repository: 'web', workflow: CI });
    await service.attach(admin, 'big', { kind: 'cluster', cluster: 'big' });
    expect((await fetchPolicy(address, token, { org: 'acme', repository: 'web', workflow: CI, job: 'build', cluster: 'big' })).scope).toBe('workflow');
    expect((await fetchPolicy(address, token, { org: 'acme', repository: 'api', cluster: 'big' })).scope).toBe('cluster');
  });

  it('says none, with no policy, when nothing is attached', async () => {
    const { address, token } = await startStore();
    expect(await fetchPolicy(address, token, { org: 'acme', repository: 'web' })).toEqual({ name: null, scope: 'none' });
  });

  it.each<[string, (token: string) => [string, Parameters<typeof fetchPolicy>[2]], string]>([
    ["another org's job", (token) => [token, { org: 'globex' }], 'credentials of acme cannot resolve policies of globex'],
    ['a named policy with an agent token', (token) => [token, { org: 'acme', repository: 'web', namedPolicy: 'build' }], "a policy named in the workflow is fetched with the job's OIDC id-token"],
    ['an unknown token', () => ['rfg_unknown', { org: 'acme' }], 'unknown or revoked token'],
    ['a workflow without its repository', (token) => [token, { org: 'acme', workflow: CI }], `workflow ${CI} needs its repository`],
  ])("fails on the store's refusal of %s, with the store's words", async (_, request, reason) => {
    expect.assertions(3);
    const { address, token } = await startStore();
    const [credential, job] = request(token);
    try {
      await fetchPolicy(address, credential, job);
    } catch (error) {
      expect(error).toBeInstanceOf(RingfenceError);
      expect((error as RingfenceError).code).toBe('RF_STORE');
      expect((error as Error).message).toBe(`cannot fetch the job's policy from ${address}: ${reason}`);
    }
  });

  it('refuses a stored policy the agent would not take from a file', async () => {
    expect.assertions(2);
    const { address, token, repository, service } = await startStore();
    // written around the service's checks, as a database of another version or a bad row would hold it
    await repository.createPolicy('acme', 'odd', { egressPolicy: 'block', allowedEndpoints: ['ok.com', 'bad..com'], lockdown: { enabled: false, detections: [] } }, 'db');
    await service.attach(admin, 'odd', { kind: 'organization' });
    try {
      await fetchPolicy(address, token, { org: 'acme' });
    } catch (error) {
      expect((error as RingfenceError).code).toBe('RF_STORE');
      expect((error as Error).message).toMatch(new RegExp(`^cannot fetch the job's policy from ${address}: policy store: odd:\\d+: endpoint 'bad\\.\\.com': empty label in 'bad\\.\\.com'$`));
    }
  });

  it('closes its connection to the store when done, answered or refused', async () => {
    const { address, token, service } = await startStore();
    await service.attach(admin, 'build', { kind: 'organization' });
    // a loopback relay in front of the store, to see the agent's connections open and close
    const open = new Set<net.Socket>();
    let opened = 0;
    const relay = net.createServer((socket) => {
      opened++;
      open.add(socket);
      const upstream = net.connect(Number(address.split(':')[1]), '127.0.0.1');
      socket.pipe(upstream).pipe(socket);
      socket.on('close', () => (open.delete(socket), upstream.destroy()));
      upstream.on('close', () => socket.destroy());
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', () => resolve()));
    cleanups.push(() => new Promise((resolve) => relay.close(() => resolve())));
    const through = `127.0.0.1:${(relay.address() as net.AddressInfo).port}`;
    const closed = async () => {
      for (let i = 0; i < 100 && open.size; i++) await new Promise((resolve) => setTimeout(resolve, 20));
      return open.size;
    };
    expect((await fetchPolicy(through, token, { org: 'acme' })).name).toBe('build');
    expect(await closed()).toBe(0);
    await expect(fetchPolicy(through, token, { org: 'globex' })).rejects.toThrow(RingfenceError);
    expect(await closed()).toBe(0);
    expect(opened).toBe(2);
  });

  it('says the store cannot be reached when nothing listens', async () => {
    expect.assertions(2);
    const port = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as net.AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    try {
      await fetchPolicy(`127.0.0.1:${port}`, 'rfg_x', { org: 'acme' });
    } catch (error) {
      expect((error as RingfenceError).code).toBe('RF_UNAVAILABLE');
      expect((error as Error).message).toBe(`cannot reach the policy store at 127.0.0.1:${port} (RINGFENCE_SERVER): connect ECONNREFUSED 127.0.0.1:${port}`);
    }
  });
});
