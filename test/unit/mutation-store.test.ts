/**
 * Which policy a job gets: the store model's pure rules (src/store/model.ts)
 * and PolicyService.resolve's tenancy and precedence (src/store/service.ts),
 * over an in-memory repository so that no database is needed. Every case
 * builds its own attachments.
 */
import { describe, expect, it } from 'vitest';
import { StoreError } from '../../src/store/errors';
import { chooseAttachment, normalizeJob, orgName, PRECEDENCE, repositoryName, scopeMatches, type Attachment, type JobContext, type Scope, type ScopeKind, type StoredPolicy } from '../../src/store/model';
import type { PolicyRepository } from '../../src/store/repository';
import { PolicyService, type Caller } from '../../src/store/service';

const CI = '.github/workflows/ci.yml';
const RELEASE = '.github/workflows/release.yml';

const attachment = (org: string, policy: string, scope: Scope): Attachment => ({ org, policy, scope, createdBy: 'test', createdAt: '2026-01-01T00:00:00.000Z' });

/** One attachment of each kind in `org`, each naming a policy after its kind. */
const everyKind = (org: string): Attachment[] => [
  attachment(org, `${org}-cluster`, { kind: 'cluster', cluster: 'big' }),
  attachment(org, `${org}-organization`, { kind: 'organization' }),
  attachment(org, `${org}-repository`, { kind: 'repository', repository: 'web' }),
  attachment(org, `${org}-workflow`, { kind: 'workflow', repository: 'web', workflow: CI }),
];

/** The job every precedence case is about: it is covered by each kind above. */
const coveredJob = (org = 'acme'): JobContext => ({ org, repository: 'web', workflow: CI, cluster: 'big' });

async function refusal(promise: Promise<unknown>): Promise<[string, string]> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof StoreError) return [error.code, error.message];
    throw error;
  }
  throw new Error('expected a StoreError');
}

describe('chooseAttachment precedence', () => {
  // [kinds attached, kind chosen]
  it.each<[ScopeKind[], ScopeKind | undefined]>([
    [['workflow', 'repository', 'organization', 'cluster'], 'workflow'],
    [['repository', 'organization', 'cluster'], 'repository'],
    [['workflow', 'organization', 'cluster'], 'workflow'],
    [['organization', 'cluster'], 'organization'],
    [['repository', 'cluster'], 'repository'],
    [['cluster'], 'cluster'],
    [[], undefined],
  ])('%j → %s', (kinds, expected) => {
    const kept = everyKind('acme').filter((a) => kinds.includes(a.scope.kind));
    expect(chooseAttachment(coveredJob(), kept)?.policy).toBe(expected && `acme-${expected}`);
    // the order the repository lists them in decides nothing
    expect(chooseAttachment(coveredJob(), [...kept].reverse())?.policy).toBe(expected && `acme-${expected}`);
  });

  it('is workflow > repository > organization > cluster', () => {
    expect(PRECEDENCE).toEqual(['workflow', 'repository', 'organization', 'cluster']);
  });

  it.each(['workflow', 'repository', 'organization', 'cluster'])("never takes another org's %s attachment", (kind) => {
    // globex has every kind, acme only the least specific one
    const attachments = [...everyKind('globex'), attachment('acme', 'acme-cluster', { kind: 'cluster', cluster: 'big' })].filter((a) => a.org === 'acme' || a.scope.kind === kind);
    expect(chooseAttachment(coveredJob(), attachments)?.policy).toBe('acme-cluster');
    expect(chooseAttachment(coveredJob(), attachments.reverse())?.policy).toBe('acme-cluster');
    expect(chooseAttachment(coveredJob(), attachments.filter((a) => a.org === 'globex'))).toBeUndefined();
  });

  it('normalizes the repository of the job, and refuses one of another owner', () => {
    expect(chooseAttachment({ org: 'acme', repository: 'ACME/Web', workflow: CI }, everyKind('acme'))?.policy).toBe('acme-workflow');
    expect(() => chooseAttachment({ org: 'acme', repository: 'globex/web', workflow: CI }, everyKind('acme'))).toThrow(new StoreError('PERMISSION_DENIED', 'repository globex/web does not belong to organization acme'));
  });
});

describe('scopeMatches', () => {
  // [scope, job (org acme), covered]
  it.each<[Scope, Omit<JobContext, 'org'>, boolean]>([
    [{ kind: 'organization' }, {}, true],
    [{ kind: 'cluster', cluster: 'big' }, { cluster: 'big' }, true],
    [{ kind: 'cluster', cluster: 'big' }, { cluster: 'small' }, false],
    [{ kind: 'cluster', cluster: 'big' }, {}, false],
    [{ kind: 'cluster' }, {}, false],
    [{ kind: 'repository', repository: 'web' }, { repository: 'web' }, true],
    [{ kind: 'repository', repository: 'web' }, { repository: 'api' }, false],
    [{ kind: 'repository', repository: 'web' }, {}, false],
    [{ kind: 'repository' }, {}, false],
    [{ kind: 'workflow', repository: 'web', workflow: CI }, { repository: 'web', workflow: CI }, true],
    [{ kind: 'workflow', repository: 'web', workflow: CI }, { repository: 'web', workflow: RELEASE }, false],
    [{ kind: 'workflow', repository: 'web', workflow: CI }, { repository: 'api', workflow: CI }, false],
    [{ kind: 'workflow', repository: 'web', workflow: CI }, { repository: 'web' }, false],
    [{ kind: 'workflow', workflow: CI }, { workflow: CI }, false],
  ])('%j covers %j: %s', (scope, job, covered) => {
    expect(scopeMatches(scope, { org: 'acme', ...job }, job.repository)).toBe(covered);
  });
});

describe('job contexts', () => {
  it('brings names to their stored form', () => {
    expect(normalizeJob({ org: 'Acme', repository: 'ACME/Web', workflow: CI, job: 'build', cluster: 'big', namedPolicy: 'p' })).toEqual({ org: 'acme', repository: 'web', workflow: CI, job: 'build', cluster: 'big', namedPolicy: 'p' });
    expect(normalizeJob({ org: 'acme' })).toStrictEqual({ org: 'acme' });
    expect(orgName('ACME')).toBe('acme');
    expect(repositoryName('Acme', 'acme/WEB')).toBe('web');
  });

  it.each<[JobContext, [string, string]]>([
    [{ org: 'acme', workflow: CI }, ['INVALID_ARGUMENT', `workflow ${CI} needs its repository`]],
    [{ org: 'acme', repository: 'web', workflow: 'ci.yml' }, ['INVALID_ARGUMENT', "workflow 'ci.yml' is not a workflow file path such as .github/workflows/ci.yml"]],
    [{ org: 'acme', repository: 'web', workflow: '.github/workflows/a/ci.yml' }, ['INVALID_ARGUMENT', "workflow '.github/workflows/a/ci.yml' is not a workflow file path such as .github/workflows/ci.yml"]],
    [{ org: 'acme', repository: 'globex/web' }, ['PERMISSION_DENIED', 'repository globex/web does not belong to organization acme']],
    [{ org: 'acme', repository: 'a/b/c' }, ['INVALID_ARGUMENT', "repository 'a/b/c' is neither NAME nor OWNER/NAME"]],
    [{ org: '' }, ['INVALID_ARGUMENT', 'a organization is required']],
    [{ org: 'ac me' }, ['INVALID_ARGUMENT', "organization 'ac me' must be 1-100 letters, digits, '.', '_' or '-'"]],
    [{ org: 'acme', cluster: '-big' }, ['INVALID_ARGUMENT', "cluster '-big' must be 1-100 letters, digits, '.', '_' or '-'"]],
    [{ org: 'acme', namedPolicy: '../p' }, ['INVALID_ARGUMENT', "policy name '../p' must be 1-100 letters, digits, '.', '_' or '-'"]],
  ])('refuses %j', (job, [code, message]) => {
    expect.assertions(2);
    try {
      normalizeJob(job);
    } catch (error) {
      expect(error).toBeInstanceOf(StoreError);
      expect([(error as StoreError).code, (error as StoreError).message]).toEqual([code, message]);
    }
  });
});

/**
 * A repository in memory with what resolve reads. `leaky` answers
 * attachmentsFor with every org's attachments, as a buggy backend would:
 * the service must still choose only the caller's.
 */
function memoryRepository(attachments: Attachment[], leaky = false) {
  const calls: string[] = [];
  const policyOf = (org: string, name: string): StoredPolicy => ({ org, name, egressPolicy: 'block', allowedEndpoints: [`${name}.test`], lockdown: { enabled: false, detections: [] }, version: 1, updatedBy: 'test', updatedAt: '2026-01-01T00:00:00.000Z' });
  const policies = new Map<string, StoredPolicy>();
  for (const a of attachments) policies.set(`${a.org}/${a.policy}`, policyOf(a.org, a.policy));
  const repository = {
    async getPolicy(org: string, name: string) {
      calls.push(`getPolicy ${org} ${name}`);
      return policies.get(`${org}/${name}`);
    },
    async attachmentsFor(org: string, repository: string | undefined, workflow: string | undefined, cluster: string | undefined) {
      calls.push(`attachmentsFor ${org} ${repository} ${workflow} ${cluster}`);
      return attachments.filter((a) => leaky || a.org === org);
    },
    addPolicy(org: string, name: string) {
      policies.set(`${org}/${name}`, policyOf(org, name));
    },
    removePolicy(org: string, name: string) {
      policies.delete(`${org}/${name}`);
    },
  };
  return { repository, calls, service: new PolicyService(repository as unknown as PolicyRepository) };
}

const agent = (org = 'acme'): Caller => ({ org, role: 'agent', subject: 'token:agent' });
const admin = (org = 'acme'): Caller => ({ org, role: 'admin', subject: 'token:admin' });
const job = (org = 'acme'): Caller => ({ org, role: 'job', subject: `oidc:${org}/web`, job: { repository: 'web', workflow: CI } });

describe('PolicyService.resolve by attachment', () => {
  // [kinds attached, scope answered]
  it.each([
    [['workflow', 'repository', 'organization', 'cluster'], 'workflow'],
    [['repository', 'organization', 'cluster'], 'repository'],
    [['organization', 'cluster'], 'organization'],
    [['cluster'], 'cluster'],
  ])('%j → %s', async (kinds, scope) => {
    const { service } = memoryRepository(everyKind('acme').filter((a) => kinds.includes(a.scope.kind)));
    const resolution = await service.resolve(agent(), { repository: 'web', workflow: CI, cluster: 'big' });
    expect([resolution.scope, resolution.policy?.org, resolution.policy?.name, resolution.attachment?.policy]).toEqual([scope, 'acme', `acme-${scope}`, `acme-${scope}`]);
  });

  it('answers none when nothing covers the job', async () => {
    const { service } = memoryRepository(everyKind('acme').filter((a) => a.scope.kind === 'cluster'));
    expect(await service.resolve(agent(), { repository: 'web', cluster: 'small' })).toEqual({ scope: 'none' });
  });

  it('answers none when the attached policy is gone, rather than a broader one', async () => {
    const { service, repository } = memoryRepository(everyKind('acme'));
    repository.removePolicy('acme', 'acme-workflow');
    expect(await service.resolve(agent(), { repository: 'web', workflow: CI, cluster: 'big' })).toEqual({ scope: 'none' });
  });

  it("asks the repository in the caller's organization, with the job's stored names", async () => {
    const { service, calls } = memoryRepository(everyKind('acme'));
    await service.resolve(agent(), { org: 'ACME', repository: 'Acme/WEB', workflow: CI, cluster: 'big' });
    expect(calls).toEqual([`attachmentsFor acme web ${CI} big`, 'getPolicy acme acme-workflow']);
  });

  it("takes the caller's organization when the request names none", async () => {
    const { service } = memoryRepository(everyKind('acme'));
    expect((await service.resolve(agent(), { repository: 'web' })).policy?.name).toBe('acme-repository');
  });
});

describe("PolicyService.resolve never answers with another org's policy", () => {
  it.each([
    [agent(), { org: 'globex', repository: 'web', workflow: CI, cluster: 'big' }, ['PERMISSION_DENIED', 'credentials of acme cannot resolve policies of globex']],
    [admin(), { org: 'globex', repository: 'web' }, ['PERMISSION_DENIED', 'credentials of acme cannot resolve policies of globex']],
    [job(), { org: 'globex', namedPolicy: 'globex-workflow' }, ['PERMISSION_DENIED', 'credentials of acme cannot resolve policies of globex']],
    [agent(), { repository: 'globex/web' }, ['PERMISSION_DENIED', 'repository globex/web does not belong to organization acme']],
  ])('%j asking %j is refused before any read', async (caller, request, expected) => {
    const { service, calls } = memoryRepository([...everyKind('acme'), ...everyKind('globex')]);
    expect(await refusal(service.resolve(caller, request))).toEqual(expected);
    expect(calls).toEqual([]);
  });

  it("chooses only the caller's attachments even when the backend lists others", async () => {
    const { service } = memoryRepository([...everyKind('globex'), attachment('acme', 'acme-cluster', { kind: 'cluster', cluster: 'big' })], true);
    const resolution = await service.resolve(agent(), { repository: 'web', workflow: CI, cluster: 'big' });
    expect([resolution.scope, resolution.policy?.org, resolution.policy?.name]).toEqual(['cluster', 'acme', 'acme-cluster']);
  });

  it("answers none rather than another org's attachment", async () => {
    const { service } = memoryRepository(everyKind('globex'), true);
    expect(await service.resolve(agent(), { repository: 'web', workflow: CI, cluster: 'big' })).toEqual({ scope: 'none' });
  });

  it("does not find a named policy that only another org has", async () => {
    const { service, calls } = memoryRepository(everyKind('globex'));
    expect(await refusal(service.resolve(job(), { namedPolicy: 'globex-workflow' }))).toEqual(['NOT_FOUND', 'policy globex-workflow does not exist in acme']);
    expect(calls).toEqual(['getPolicy acme globex-workflow']);
  });
});

describe('PolicyService.resolve of a named policy', () => {
  it('is named > workflow > repository > organization > cluster', async () => {
    const { service, repository, calls } = memoryRepository(everyKind('acme'));
    repository.addPolicy('acme', 'svc-named');
    const resolution = await service.resolve(job(), { repository: 'web', workflow: CI, cluster: 'big', namedPolicy: 'svc-named' });
    expect([resolution.scope, resolution.policy?.org, resolution.policy?.name, resolution.attachment]).toEqual(['named', 'acme', 'svc-named', undefined]);
    expect(calls).toEqual(['getPolicy acme svc-named']);
  });

  it("takes the job's repository and workflow from its id-token", async () => {
    const { service, repository } = memoryRepository([]);
    repository.addPolicy('acme', 'svc-named');
    expect((await service.resolve(job(), { namedPolicy: 'svc-named' })).scope).toBe('named');
    expect((await service.resolve(job(), { repository: 'ACME/web', namedPolicy: 'svc-named' })).scope).toBe('named');
  });

  it.each([
    [agent(), { repository: 'web', namedPolicy: 'svc-named' }, ['PERMISSION_DENIED', "a policy named in the workflow is fetched with the job's OIDC id-token"]],
    [admin(), { repository: 'web', namedPolicy: 'svc-named' }, ['PERMISSION_DENIED', "a policy named in the workflow is fetched with the job's OIDC id-token"]],
    [job(), { repository: 'api', namedPolicy: 'svc-named' }, ['PERMISSION_DENIED', 'a job of web cannot resolve policies for api']],
    [job(), { repository: 'web', workflow: RELEASE, namedPolicy: 'svc-named' }, ['PERMISSION_DENIED', `a job of ${CI} cannot resolve policies for workflow ${RELEASE}`]],
    [{ ...job(), job: { repository: 'web' } }, { repository: 'web', workflow: CI, namedPolicy: 'svc-named' }, ['PERMISSION_DENIED', `a job of an unnamed workflow cannot resolve policies for workflow ${CI}`]],
    [{ org: 'acme', role: 'job', subject: 'oidc:?' } as Caller, { namedPolicy: 'svc-named' }, ['PERMISSION_DENIED', 'the id-token does not say which job it is']],
    // by attachment only agents resolve: the runner, not the job, says which cluster it is on
    [job(), { repository: 'web', workflow: CI, cluster: 'big' }, ['PERMISSION_DENIED', "a job's id-token fetches the policy named in its workflow step; resolving by attachment needs an agent credential"]],
  ])('%j asking %j is refused before any read', async (caller, request, expected) => {
    const { service, repository, calls } = memoryRepository(everyKind('acme'));
    repository.addPolicy('acme', 'svc-named');
    expect(await refusal(service.resolve(caller, request))).toEqual(expected);
    expect(calls).toEqual([]);
  });
});
