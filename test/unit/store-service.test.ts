/**
 * PolicyService (src/store/service.ts) driven directly over the SQLite
 * backend in memory: roles, tenancy (every call acts in the caller's
 * organization), validation, versions, precedence and endpoint import. The
 * database suites (test/store/) check the same through gRPC on SQLite and
 * PostgreSQL; these run in the mutation suite, without PostgreSQL. Every case
 * opens its own empty store.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { StoreError } from '../../src/store/errors';
import type { Scope } from '../../src/store/model';
import type { PolicyRepository } from '../../src/store/repository';
import { contentFromYaml, PolicyService, type Caller } from '../../src/store/service';
import { SqliteRepository } from '../../src/store/sqlite';

const CI = '.github/workflows/ci.yml';
const RELEASE = '.github/workflows/release.yml';

const admin = (org = 'acme'): Caller => ({ org, role: 'admin', subject: `token:${org}-admin` });
const agent = (org = 'acme'): Caller => ({ org, role: 'agent', subject: `token:${org}-agent` });
const job = (org = 'acme', workflow: string | undefined = CI): Caller => ({ org, role: 'job', subject: `oidc:${org}/web`, job: { repository: 'web', workflow } });

const BUILD = 'name: build\negress-policy: block\nallowed-endpoints: >\n  registry.npmjs.org\n  github.com:22\nlockdown-mode:\n  enabled: true\n  detections: [Reverse-Shell]\n';

const opened: PolicyRepository[] = [];
afterEach(async () => {
  for (const repository of opened.splice(0)) await repository.close();
});

async function store(): Promise<{ repository: PolicyRepository; service: PolicyService }> {
  const repository = new SqliteRepository(':memory:');
  opened.push(repository);
  await repository.migrate();
  return { repository, service: new PolicyService(repository) };
}

/** A policy that names itself, so that a resolution says which one it is. */
const named = (name: string, egress = 'block') => `name: ${name}\negress-policy: ${egress}\nallowed-endpoints: ${name}.test\n`;

async function refusal(promise: Promise<unknown>): Promise<[string, string]> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof StoreError) return [error.code, error.message];
    throw error;
  }
  throw new Error('expected a StoreError');
}

describe('roles', () => {
  const AGENT = ['PERMISSION_DENIED', 'an agent credential cannot manage policies; use an admin token'];
  const JOB = ['PERMISSION_DENIED', "a job's credential cannot manage policies; use an admin token"];
  const ONLY_RESOLVE = ['PERMISSION_DENIED', 'this credential can only resolve policies for jobs'];

  // every call that reads or writes policies by name, as a credential that may only resolve
  const calls: [string, (service: PolicyService, caller: Caller) => Promise<unknown>, string[] | 'role'][] = [
    ['create', (s, c) => s.create(c, named('other')), 'role'],
    ['update', (s, c) => s.update(c, named('build', 'audit')), 'role'],
    ['list', (s, c) => s.list(c), 'role'],
    ['remove', (s, c) => s.remove(c, 'build', true), 'role'],
    ['history', (s, c) => s.history(c, 'build'), 'role'],
    ['attach', (s, c) => s.attach(c, 'build', { kind: 'repository', repository: 'web' }), 'role'],
    ['detach', (s, c) => s.detach(c, 'build', { kind: 'organization' }), 'role'],
    ['attachments', (s, c) => s.attachments(c), 'role'],
    ['importEndpoints', (s, c) => s.importEndpoints(c, 'build', { text: 'evil.example', path: 'f' }, false), 'role'],
    ['get', (s, c) => s.get(c, 'build'), ONLY_RESOLVE],
    ['exportEndpoints', (s, c) => s.exportEndpoints(c, 'build'), ONLY_RESOLVE],
  ];

  it.each(calls)('%s is refused to agent and job credentials, and changes nothing', async (_, call, expected) => {
    const { repository, service } = await store();
    await service.create(admin(), BUILD);
    await service.attach(admin(), 'build', { kind: 'organization' });
    expect(await refusal(call(service, agent()))).toEqual(expected === 'role' ? AGENT : expected);
    expect(await refusal(call(service, job()))).toEqual(expected === 'role' ? JOB : expected);
    expect((await repository.listPolicies('acme')).map((p) => [p.name, p.version, p.egressPolicy, p.allowedEndpoints])).toEqual([['build', 1, 'block', ['registry.npmjs.org', 'github.com:22']]]);
    expect((await repository.listAttachments('acme')).map((a) => [a.policy, a.scope])).toEqual([['build', { kind: 'organization' }]]);
  });

  it('lets an admin do each of them, as itself', async () => {
    const { service } = await store();
    const created = await service.create(admin(), BUILD);
    expect([created.org, created.name, created.version, created.updatedBy]).toEqual(['acme', 'build', 1, 'token:acme-admin']);
    const { policy, changed } = await service.update(admin(), BUILD.replace('block', 'audit'));
    expect([changed, policy.version, policy.egressPolicy, policy.updatedBy]).toEqual([true, 2, 'audit', 'token:acme-admin']);
    expect((await service.get(admin(), 'build')).version).toBe(2);
    expect((await service.list(admin())).map((p) => p.name)).toEqual(['build']);
    expect((await service.history(admin(), 'build')).map((v) => [v.version, v.author, v.changes])).toEqual([
      [1, 'token:acme-admin', ['created']],
      [2, 'token:acme-admin', ['egress-policy block → audit']],
    ]);
    const attachment = await service.attach(admin(), 'build', { kind: 'repository', repository: 'web' });
    expect([attachment.org, attachment.policy, attachment.scope, attachment.createdBy]).toEqual(['acme', 'build', { kind: 'repository', repository: 'web' }, 'token:acme-admin']);
    expect((await service.attachments(admin())).map((a) => a.policy)).toEqual(['build']);
    expect(await service.detach(admin(), 'build', { kind: 'repository', repository: 'web' })).toEqual({ kind: 'repository', repository: 'web' });
    expect(await service.remove(admin(), 'build')).toEqual({ detached: [] });
    expect(await service.list(admin())).toEqual([]);
  });

  it('lets an agent resolve, which is all it may do', async () => {
    const { service } = await store();
    await service.create(admin(), BUILD);
    await service.attach(admin(), 'build', { kind: 'organization' });
    const resolution = await service.resolve(agent(), { repository: 'web' });
    expect([resolution.scope, resolution.policy?.name]).toEqual(['organization', 'build']);
  });
});

describe('organizations are kept apart', () => {
  async function twoOrgs() {
    const s = await store();
    await s.service.create(admin('acme'), named('build'));
    await s.service.create(admin('globex'), named('build', 'audit'));
    await s.service.create(admin('globex'), named('secret'));
    await s.service.attach(admin('globex'), 'secret', { kind: 'organization' });
    return s;
  }

  it("an admin sees and reads only its own organization's policies", async () => {
    const { service } = await twoOrgs();
    expect((await service.list(admin('acme'))).map((p) => [p.org, p.name, p.egressPolicy])).toEqual([['acme', 'build', 'block']]);
    expect((await service.get(admin('acme'), 'build')).org).toBe('acme');
    expect(await refusal(service.get(admin('acme'), 'secret'))).toEqual(['NOT_FOUND', 'policy secret does not exist in acme']);
    expect(await refusal(service.history(admin('acme'), 'secret'))).toEqual(['NOT_FOUND', 'policy secret does not exist in acme']);
    expect(await refusal(service.exportEndpoints(admin('acme'), 'secret'))).toEqual(['NOT_FOUND', 'policy secret does not exist in acme']);
    expect(await refusal(service.attachments(admin('acme'), 'secret'))).toEqual(['NOT_FOUND', 'policy secret does not exist in acme']);
    expect(await service.attachments(admin('acme'))).toEqual([]);
  });

  it("an admin cannot change another organization's policies", async () => {
    const { repository, service } = await twoOrgs();
    expect(await refusal(service.update(admin('acme'), named('secret', 'audit')))).toEqual(['NOT_FOUND', 'policy secret does not exist in acme']);
    expect(await refusal(service.remove(admin('acme'), 'secret', true))).toEqual(['NOT_FOUND', 'policy secret does not exist in acme']);
    expect(await refusal(service.importEndpoints(admin('acme'), 'secret', { text: 'evil.example', path: 'f' }, false))).toEqual(['NOT_FOUND', 'policy secret does not exist in acme']);
    expect(await refusal(service.detach(admin('acme'), 'secret', { kind: 'organization' }))).toEqual(['NOT_FOUND', 'policy secret is not attached there']);
    // its own policy of the same name changes, the other org's stays as it was
    await service.update(admin('acme'), named('build', 'audit'));
    const globex = await repository.getPolicy('globex', 'secret');
    expect([globex?.version, globex?.egressPolicy, globex?.allowedEndpoints]).toEqual([1, 'block', ['secret.test']]);
    expect((await repository.getPolicy('globex', 'build'))?.version).toBe(1);
    expect((await repository.listAttachments('globex')).map((a) => a.policy)).toEqual(['secret']);
  });

  it.each<[string, (service: PolicyService) => Promise<unknown>, [string, string]]>([
    ['attach --org globex', (s) => s.attach(admin('acme'), 'build', { kind: 'organization' }, 'globex'), ['PERMISSION_DENIED', 'credentials of acme cannot act in organization globex']],
    ['detach --org globex', (s) => s.detach(admin('acme'), 'build', { kind: 'organization' }, 'globex'), ['PERMISSION_DENIED', 'credentials of acme cannot act in organization globex']],
    ['attach to globex/web', (s) => s.attach(admin('acme'), 'build', { kind: 'repository', repository: 'globex/web' }), ['PERMISSION_DENIED', 'repository globex/web does not belong to organization acme']],
    ['attach to a workflow of globex/web', (s) => s.attach(admin('acme'), 'build', { kind: 'workflow', repository: 'globex/web', workflow: CI }), ['PERMISSION_DENIED', 'repository globex/web does not belong to organization acme']],
    ["attach globex's policy", (s) => s.attach(admin('acme'), 'secret', { kind: 'organization' }), ['NOT_FOUND', 'policy secret does not exist in acme']],
  ])('%s is refused to acme, and attaches nothing', async (_, call, expected) => {
    const { repository, service } = await twoOrgs();
    expect(await refusal(call(service))).toEqual(expected);
    expect(await repository.listAttachments('acme')).toEqual([]);
    expect((await repository.listAttachments('globex')).map((a) => [a.policy, a.scope])).toEqual([['secret', { kind: 'organization' }]]);
  });

  it('takes --org of its own organization in any case, and scopes of its own repositories as OWNER/NAME', async () => {
    const { service } = await twoOrgs();
    const attached = await service.attach(admin('acme'), 'build', { kind: 'workflow', repository: 'ACME/Web', workflow: CI }, 'Acme');
    expect([attached.org, attached.scope]).toEqual(['acme', { kind: 'workflow', repository: 'web', workflow: CI }]);
    expect(await service.detach(admin('acme'), 'build', { kind: 'workflow', repository: 'acme/WEB', workflow: CI }, 'ACME')).toEqual({ kind: 'workflow', repository: 'web', workflow: CI });
    expect(await service.attachments(admin('acme'))).toEqual([]);
  });

  it.each([
    [agent('acme'), { org: 'globex' }],
    [admin('acme'), { org: 'GLOBEX', repository: 'web' }],
    [agent('acme'), { repository: 'globex/web' }],
  ])("resolve refuses %j asking for %j: never another org's policy", async (caller, request) => {
    const { service } = await twoOrgs();
    const [code] = await refusal(service.resolve(caller, request));
    expect(code).toBe('PERMISSION_DENIED');
  });

  it("resolve for acme does not fall through to globex's organization attachment", async () => {
    const { service } = await twoOrgs();
    expect(await service.resolve(agent('acme'), { repository: 'web', workflow: CI })).toEqual({ scope: 'none' });
    const globex = await service.resolve(agent('globex'), { repository: 'web', workflow: CI });
    expect([globex.scope, globex.policy?.org, globex.policy?.name]).toEqual(['organization', 'globex', 'secret']);
  });

  it("a job of acme does not get globex's policy by naming it", async () => {
    const { service } = await twoOrgs();
    expect(await refusal(service.resolve(job('acme'), { namedPolicy: 'secret' }))).toEqual(['NOT_FOUND', 'policy secret does not exist in acme']);
    expect(await refusal(service.resolve(job('acme'), { org: 'globex', namedPolicy: 'secret' }))).toEqual(['PERMISSION_DENIED', 'credentials of acme cannot resolve policies of globex']);
    const own = await service.resolve(job('acme'), { namedPolicy: 'build' });
    expect([own.scope, own.policy?.org, own.policy?.name, own.policy?.egressPolicy]).toEqual(['named', 'acme', 'build', 'block']);
  });
});

describe('which policy resolve answers', () => {
  const scopes: [Scope['kind'], Scope][] = [
    ['cluster', { kind: 'cluster', cluster: 'big' }],
    ['organization', { kind: 'organization' }],
    ['repository', { kind: 'repository', repository: 'web' }],
    ['workflow', { kind: 'workflow', repository: 'web', workflow: CI }],
  ];

  it('each scope is beaten by the next more specific one: cluster < organization < repository < workflow < named', async () => {
    const { service } = await store();
    await service.create(admin(), named('step'));
    const asked = { repository: 'web', workflow: CI, cluster: 'big' };
    expect(await service.resolve(agent(), asked)).toEqual({ scope: 'none' });
    for (const [kind, scope] of scopes) {
      await service.create(admin(), named(`on-${kind}`));
      await service.attach(admin(), `on-${kind}`, scope);
      const resolution = await service.resolve(agent(), asked);
      expect([resolution.scope, resolution.policy?.name, resolution.attachment?.policy, resolution.attachment?.scope]).toEqual([kind, `on-${kind}`, `on-${kind}`, scope]);
    }
    const step = await service.resolve(job(), { ...asked, cluster: undefined, namedPolicy: 'step' });
    expect([step.scope, step.policy?.name, step.attachment]).toEqual(['named', 'step', undefined]);
  });

  it('a scope that does not cover the job is passed over for a broader one that does', async () => {
    const { service } = await store();
    for (const [kind, scope] of scopes) {
      await service.create(admin(), named(`on-${kind}`));
      await service.attach(admin(), `on-${kind}`, scope);
    }
    const answer = async (request: Parameters<PolicyService['resolve']>[1]) => (await service.resolve(agent(), request)).policy?.name;
    expect(await answer({ repository: 'web', workflow: RELEASE, cluster: 'big' })).toBe('on-repository');
    expect(await answer({ repository: 'api', workflow: CI, cluster: 'big' })).toBe('on-organization');
    expect(await answer({ cluster: 'small' })).toBe('on-organization');
    await service.detach(admin(), 'on-organization', { kind: 'organization' });
    expect(await answer({ repository: 'api', cluster: 'big' })).toBe('on-cluster');
    expect(await service.resolve(agent(), { repository: 'api', cluster: 'small' })).toEqual({ scope: 'none' });
  });

  it('reads names in their stored form: org and repository case-insensitive, workflow exact', async () => {
    const { service } = await store();
    await service.create(admin(), named('wf'));
    await service.attach(admin(), 'wf', { kind: 'workflow', repository: 'Web', workflow: CI });
    expect((await service.resolve(agent(), { org: 'ACME', repository: 'Acme/WEB', workflow: CI })).policy?.name).toBe('wf');
    expect(await service.resolve(agent(), { repository: 'web', workflow: '.github/workflows/CI.yml' })).toEqual({ scope: 'none' });
  });

  it('refuses a job context that could never match, rather than answering a broader policy', async () => {
    const { service } = await store();
    await service.create(admin(), named('org-wide'));
    await service.attach(admin(), 'org-wide', { kind: 'organization' });
    expect(await refusal(service.resolve(agent(), { repository: 'web', workflow: 'ci.yml' }))).toEqual(['INVALID_ARGUMENT', "workflow 'ci.yml' is not a workflow file path such as .github/workflows/ci.yml"]);
    expect(await refusal(service.resolve(agent(), { workflow: CI }))).toEqual(['INVALID_ARGUMENT', `workflow ${CI} needs its repository`]);
  });

  it('answers none, not a broader policy, when the attached policy was deleted with force', async () => {
    const { service } = await store();
    await service.create(admin(), named('org-wide'));
    await service.create(admin(), named('repo'));
    await service.attach(admin(), 'org-wide', { kind: 'organization' });
    await service.attach(admin(), 'repo', { kind: 'repository', repository: 'web' });
    expect((await service.remove(admin(), 'repo', true)).detached.map((a) => a.scope)).toEqual([{ kind: 'repository', repository: 'web' }]);
    // the attachment went with it, so the next one covering the job applies
    expect((await service.resolve(agent(), { repository: 'web' })).policy?.name).toBe('org-wide');
  });

  it("a job's id-token fetches the named policy of its own repository and workflow only", async () => {
    const { service } = await store();
    await service.create(admin(), named('step'));
    await service.attach(admin(), 'step', { kind: 'organization' });
    expect((await service.resolve(job(), { repository: 'acme/web', workflow: CI, namedPolicy: 'step' })).scope).toBe('named');
    expect(await refusal(service.resolve(job(), { repository: 'api', namedPolicy: 'step' }))).toEqual(['PERMISSION_DENIED', 'a job of web cannot resolve policies for api']);
    expect(await refusal(service.resolve(job(), { workflow: RELEASE, namedPolicy: 'step' }))).toEqual(['PERMISSION_DENIED', `a job of ${CI} cannot resolve policies for workflow ${RELEASE}`]);
    expect(await refusal(service.resolve(job(), { repository: 'web' }))).toEqual(['PERMISSION_DENIED', "a job's id-token fetches the policy named in its workflow step; resolving by attachment needs an agent credential"]);
    expect(await refusal(service.resolve(agent(), { repository: 'web', namedPolicy: 'step' }))).toEqual(['PERMISSION_DENIED', "a policy named in the workflow is fetched with the job's OIDC id-token"]);
    expect(await refusal(service.resolve(job(), { namedPolicy: 'nope' }))).toEqual(['NOT_FOUND', 'policy nope does not exist in acme']);
  });
});

describe('policy documents', () => {
  it('stores the content the agent would enforce, under the name the file gives', async () => {
    const { service } = await store();
    const created = await service.create(admin(), BUILD);
    expect([created.name, created.egressPolicy, created.allowedEndpoints, created.lockdown]).toEqual(['build', 'block', ['registry.npmjs.org', 'github.com:22'], { enabled: true, detections: ['Reverse-Shell'] }]);
    expect((await service.create(admin(), 'egress-policy: audit\n', 'scratch')).name).toBe('scratch');
    expect((await service.create(admin(), named('same'), 'same')).name).toBe('same');
  });

  it.each<[string, string | undefined, [string, string]]>([
    [named('build'), 'other', ['INVALID_ARGUMENT', "the policy file is named 'build' but 'other' was given; use one name"]],
    ['egress-policy: audit\n', undefined, ['INVALID_ARGUMENT', 'the policy has no name: give it as NAME or as name: in the file']],
    ['egress-policy: audit\n', 'no/slash', ['INVALID_ARGUMENT', "policy name 'no/slash' must be 1-100 letters, digits, '.', '_' or '-'"]],
  ])('create and update refuse %j named %j, and store nothing', async (yaml, name, expected) => {
    const { repository, service } = await store();
    await service.create(admin(), 'egress-policy: block\n', 'other');
    expect(await refusal(service.create(admin(), yaml, name))).toEqual(expected);
    expect(await refusal(service.update(admin(), yaml, name))).toEqual(expected);
    expect((await repository.listPolicies('acme')).map((p) => [p.name, p.version, p.egressPolicy])).toEqual([['other', 1, 'block']]);
  });

  it('refuses a bad policy naming every problem, with the policy named in each line', async () => {
    expect.assertions(4);
    const { repository, service } = await store();
    try {
      await service.create(admin(), 'name: broken\negress-policy: deny\nallowed-endpoints: bad..com\n');
    } catch (error) {
      expect([(error as StoreError).code, (error as StoreError).message]).toEqual(['INVALID_ARGUMENT', 'policy is not valid (2 problems)']);
      expect((error as StoreError).details).toEqual(["broken:2: egress-policy must be 'audit' or 'block', not 'deny'", "broken:3: endpoint 'bad..com': empty label in 'bad..com'"]);
    }
    try {
      await service.update(admin(), 'egress-policy: deny\n', 'given');
    } catch (error) {
      expect([(error as StoreError).message, (error as StoreError).details]).toEqual(['policy is not valid (1 problem)', ["given:1: egress-policy must be 'audit' or 'block', not 'deny'"]]);
    }
    expect(await repository.listPolicies('acme')).toEqual([]);
  });

  it.each([
    ['egress-policy: deny\n', undefined, "policy:1: egress-policy must be 'audit' or 'block', not 'deny'"],
    ['egress-policy: deny\nname: "quoted"\n', undefined, "quoted:1: egress-policy must be 'audit' or 'block', not 'deny'"],
    ["name:   'single.q'\negress-policy: deny\n", undefined, "single.q:2: egress-policy must be 'audit' or 'block', not 'deny'"],
    ['lockdown-mode:\n  name: inner\n', undefined, "policy:2: unknown key 'lockdown-mode.name' (known: enabled, detections)"],
    ['name: in-file\negress-policy: deny\n', 'given', "given:2: egress-policy must be 'audit' or 'block', not 'deny'"],
  ])('names the document %j (given %j) in its problems by its name, else "policy"', async (yaml, name, detail) => {
    expect.assertions(1);
    const { service } = await store();
    try {
      await service.create(admin(), yaml, name);
    } catch (error) {
      expect((error as StoreError).details[0]).toBe(detail);
    }
  });

  it('reads a duplicate endpoint or detection once', () => {
    const { name, content } = contentFromYaml('name: dup\nallowed-endpoints: a.com A.COM:443\nlockdown-mode:\n  enabled: true\n  detections: [Reverse-Shell, Reverse-Shell]\n', 'dup');
    expect([name, content]).toEqual(['dup', { egressPolicy: 'audit', allowedEndpoints: ['a.com'], lockdown: { enabled: true, detections: ['Reverse-Shell'] } }]);
  });
});

describe('policy names in calls', () => {
  it.each<[string, (service: PolicyService) => Promise<unknown>]>([
    ['get', (s) => s.get(admin(), 'a b')],
    ['remove', (s) => s.remove(admin(), 'a b', true)],
    ['history', (s) => s.history(admin(), 'a b')],
    ['attach', (s) => s.attach(admin(), 'a b', { kind: 'organization' })],
    ['detach', (s) => s.detach(admin(), 'a b', { kind: 'organization' })],
    ['attachments', (s) => s.attachments(admin(), 'a b')],
    ['resolve', (s) => s.resolve(job(), { namedPolicy: 'a b' })],
  ])('%s refuses a bad policy name, naming it as one', async (_, call) => {
    const { service } = await store();
    expect(await refusal(call(service))).toEqual(['INVALID_ARGUMENT', "policy name 'a b' must be 1-100 letters, digits, '.', '_' or '-'"]);
  });
});

describe('updates and versions', () => {
  it('makes no version for the same content, and one for a change', async () => {
    const { service } = await store();
    await service.create(admin(), BUILD);
    const reordered = BUILD.replace('  registry.npmjs.org\n  github.com:22\n', '  github.com:22\n  registry.npmjs.org\n');
    const same = await service.update(admin(), reordered);
    expect([same.changed, same.policy.version]).toEqual([false, 1]);
    const changed = await service.update(admin(), BUILD.replace('github.com:22', 'gitlab.com'), undefined, 1);
    expect([changed.changed, changed.policy.version, changed.policy.allowedEndpoints]).toEqual([true, 2, ['registry.npmjs.org', 'gitlab.com']]);
    expect((await service.history(admin(), 'build')).map((v) => v.changes)).toEqual([['created'], ['+ gitlab.com', '- github.com:22']]);
  });

  it.each([0, -1, 1.5, Number.NaN, 2 ** 53])('refuses expected version %s before reading the file', async (expected) => {
    const { service } = await store();
    await service.create(admin(), BUILD);
    expect(await refusal(service.update(admin(), 'not: [valid', undefined, expected))).toEqual(['INVALID_ARGUMENT', `expected version must be a version number (1 or more), not ${expected}`]);
    expect((await service.get(admin(), 'build')).version).toBe(1);
  });

  it('applies an update on top of the expected version only', async () => {
    const { service } = await store();
    await service.create(admin(), BUILD);
    await service.update(admin(), BUILD.replace('block', 'audit'), undefined, 1);
    const [code] = await refusal(service.update(admin(), BUILD.replace('github.com:22', 'evil.example'), undefined, 1));
    expect(code).toBe('FAILED_PRECONDITION');
    expect((await service.get(admin(), 'build')).allowedEndpoints).toEqual(['registry.npmjs.org', 'github.com:22']);
  });

  it('deletes an attached policy only with force, and says what it detached', async () => {
    const { service } = await store();
    await service.create(admin(), BUILD);
    await service.attach(admin(), 'build', { kind: 'cluster', cluster: 'big' });
    const [code, message] = await refusal(service.remove(admin(), 'build'));
    expect([code, message]).toEqual(['FAILED_PRECONDITION', 'policy build is attached to cluster big: deleting it changes the policy of those jobs; detach it first, or delete with force (--force)']);
    expect((await service.get(admin(), 'build')).name).toBe('build');
    expect((await service.remove(admin(), 'build', true)).detached.map((a) => [a.policy, a.scope])).toEqual([['build', { kind: 'cluster', cluster: 'big' }]]);
    expect(await refusal(service.get(admin(), 'build'))).toEqual(['NOT_FOUND', 'policy build does not exist in acme']);
  });

  it("lists one policy's attachments or all of the org's", async () => {
    const { service } = await store();
    await service.create(admin(), named('a'));
    await service.create(admin(), named('b'));
    await service.attach(admin(), 'a', { kind: 'organization' });
    await service.attach(admin(), 'b', { kind: 'cluster', cluster: 'big' });
    expect((await service.attachments(admin(), 'a')).map((x) => x.policy)).toEqual(['a']);
    expect((await service.attachments(admin())).map((x) => x.policy).sort()).toEqual(['a', 'b']);
    expect(await refusal(service.attachments(admin(), 'bad name'))).toEqual(['INVALID_ARGUMENT', "policy name 'bad name' must be 1-100 letters, digits, '.', '_' or '-'"]);
  });
});

describe('endpoint import and export', () => {
  it('adds what is new, once, and keeps what means the same endpoint', async () => {
    const { service } = await store();
    await service.create(admin(), 'name: build\negress-policy: block\nallowed-endpoints: registry.npmjs.org 10.0.0.0/8:22\nlockdown-mode:\n  enabled: true\n  detections: [Reverse-Shell]\n');
    const result = await service.importEndpoints(admin(), 'build', { text: 'REGISTRY.npmjs.org.:443\n10.0.0.0/8:22 10.0.0.0/8\ngithub.com github.com:443\n', path: 'list.txt' }, false);
    expect([result.added, result.unchanged]).toEqual([['10.0.0.0/8', 'github.com'], ['REGISTRY.npmjs.org.:443', '10.0.0.0/8:22', 'github.com:443']]);
    expect([result.policy.version, result.policy.allowedEndpoints, result.policy.updatedBy]).toEqual([2, ['registry.npmjs.org', '10.0.0.0/8:22', '10.0.0.0/8', 'github.com'], 'token:acme-admin']);
    // the rest of the policy stays as it was
    expect([result.policy.egressPolicy, result.policy.lockdown]).toEqual(['block', { enabled: true, detections: ['Reverse-Shell'] }]);
  });

  it('changes nothing when dry, or when nothing is new', async () => {
    const { service } = await store();
    await service.create(admin(), BUILD);
    const dry = await service.importEndpoints(admin(), 'build', { text: 'new.example', path: 'f' }, true);
    expect([dry.added, dry.unchanged, dry.policy.version]).toEqual([['new.example'], [], 1]);
    const nothingNew = await service.importEndpoints(admin(), 'build', { text: 'github.com:22', path: 'f' }, false);
    expect([nothingNew.added, nothingNew.unchanged, nothingNew.policy.version]).toEqual([[], ['github.com:22'], 1]);
    expect((await service.history(admin(), 'build')).length).toBe(1);
  });

  it('refuses a file with bad endpoints, naming the file (or "endpoints"), and changes nothing', async () => {
    expect.assertions(4);
    const { service } = await store();
    await service.create(admin(), BUILD);
    try {
      await service.importEndpoints(admin(), 'build', { text: 'ok.com\nbad..com\n', path: '' }, false);
    } catch (error) {
      expect([(error as StoreError).code, (error as StoreError).message]).toEqual(['INVALID_ARGUMENT', 'endpoints has 1 bad endpoint']);
      expect((error as StoreError).details).toEqual(["endpoints:2: endpoint 'bad..com': empty label in 'bad..com'"]);
    }
    try {
      await service.importEndpoints(admin(), 'build', { text: 'bad..com x.com:0\n', path: 'list.txt' }, false);
    } catch (error) {
      expect((error as StoreError).message).toBe('list.txt has 2 bad endpoints');
    }
    expect((await service.get(admin(), 'build')).version).toBe(1);
  });

  it('merges again on the newer version when the policy changed meanwhile, losing neither write', async () => {
    const { repository, service } = await store();
    await service.create(admin(), BUILD);
    let raced = false;
    const racing = Object.create(repository) as PolicyRepository;
    racing.updatePolicy = async (...args) => {
      if (!raced) {
        raced = true; // another admin's update lands between the read and the write
        await repository.updatePolicy('acme', 'build', { egressPolicy: 'audit', allowedEndpoints: ['other.example'], lockdown: { enabled: false, detections: [] } }, 'token:other');
      }
      return repository.updatePolicy(...args);
    };
    const result = await new PolicyService(racing).importEndpoints(admin(), 'build', { text: 'new.example', path: 'f' }, false);
    expect([result.added, result.policy.version, result.policy.egressPolicy, result.policy.allowedEndpoints]).toEqual([['new.example'], 3, 'audit', ['other.example', 'new.example']]);
  });

  it('gives up after 20 retries, and does not retry other failures', async () => {
    const { repository, service } = await store();
    await service.create(admin(), BUILD);
    let tries = 0;
    const failing = (error: Error) => {
      const broken = Object.create(repository) as PolicyRepository;
      broken.updatePolicy = async () => {
        tries++;
        throw error;
      };
      return new PolicyService(broken);
    };
    expect(await refusal(failing(new StoreError('FAILED_PRECONDITION', 'busy')).importEndpoints(admin(), 'build', { text: 'new.example', path: 'f' }, false))).toEqual(['FAILED_PRECONDITION', 'busy']);
    expect(tries).toBe(21);
    tries = 0;
    expect(await refusal(failing(new StoreError('NOT_FOUND', 'gone')).importEndpoints(admin(), 'build', { text: 'new.example', path: 'f' }, false))).toEqual(['NOT_FOUND', 'gone']);
    expect(tries).toBe(1);
    tries = 0;
    await expect(failing(new Error('disk full')).importEndpoints(admin(), 'build', { text: 'new.example', path: 'f' }, false)).rejects.toThrow('disk full');
    expect(tries).toBe(1);
  });

  it('takes no write when nothing is new: a no-op import contends for no lock', async () => {
    const { repository, service } = await store();
    await service.create(admin(), BUILD);
    const writes: string[] = [];
    const watched = Object.create(repository) as PolicyRepository;
    watched.updatePolicy = async (...args) => {
      writes.push(args[1]);
      return repository.updatePolicy(...args);
    };
    const result = await new PolicyService(watched).importEndpoints(admin(), 'build', { text: 'REGISTRY.npmjs.org github.com:22', path: 'f' }, false);
    expect([result.added, writes]).toEqual([[], []]);
    await new PolicyService(watched).importEndpoints(admin(), 'build', { text: 'new.example', path: 'f' }, false);
    expect(writes).toEqual(['build']);
  });

  it('exports the endpoints as a file import takes back', async () => {
    const { service } = await store();
    await service.create(admin(), BUILD);
    const text = await service.exportEndpoints(admin(), 'build');
    expect(text).toBe('# allowed endpoints of policy build (acme), version 1\nregistry.npmjs.org\ngithub.com:22\n');
    const again = await service.importEndpoints(admin(), 'build', { text, path: 'export.txt' }, false);
    expect([again.added, again.policy.version]).toEqual([[], 1]);
  });
});
