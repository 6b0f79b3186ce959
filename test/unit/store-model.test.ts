/** The policy store's pure rules: scopes, precedence, change descriptions. */
import { describe, expect, it } from 'vitest';
import { StoreError } from '../../src/store/errors';
import * as grpc from '@grpc/grpc-js';
import { unreachableReason } from '../../src/store/client';
import { attachedPolicyError, chooseAttachment, describeChanges, describeScope, normalizeScope, repositoryName, sameContent, type Attachment, type Scope } from '../../src/store/model';
import { parseEndpointFile } from '../../src/store/service';

const at = (policy: string, scope: Scope, org = 'acme'): Attachment => ({ org, policy, scope, createdBy: 't', createdAt: '' });

describe('scopes', () => {
  it('takes repositories as NAME or OWNER/NAME of the same org only', () => {
    expect(repositoryName('acme', 'web')).toBe('web');
    expect(repositoryName('acme', 'ACME/web')).toBe('web');
    expect(() => repositoryName('acme', 'globex/web')).toThrow(/does not belong/);
    expect(() => repositoryName('acme', 'a/b/c')).toThrow(StoreError);
  });

  it('normalizes and validates each kind', () => {
    expect(normalizeScope('acme', { kind: 'workflow', repository: 'acme/web', workflow: '.github/workflows/ci.yml' })).toEqual({ kind: 'workflow', repository: 'web', workflow: '.github/workflows/ci.yml' });
    expect(normalizeScope('acme', { kind: 'organization', repository: 'ignored' })).toEqual({ kind: 'organization' });
    expect(() => normalizeScope('acme', { kind: 'workflow', repository: 'web', workflow: 'ci.yml' })).toThrow(/workflow file path/);
    expect(() => normalizeScope('acme', { kind: 'cluster' })).toThrow(/cluster name/);
    expect(() => normalizeScope('acme', { kind: 'repository' })).toThrow(/needs a repository/);
  });
});

describe('chooseAttachment', () => {
  const attachments = [
    at('cluster', { kind: 'cluster', cluster: 'big' }),
    at('org', { kind: 'organization' }),
    at('repo', { kind: 'repository', repository: 'web' }),
    at('wf', { kind: 'workflow', repository: 'web', workflow: '.github/workflows/release.yml' }),
    at('other-org', { kind: 'organization' }, 'globex'),
  ];

  it.each([
    [{ repository: 'web', workflow: '.github/workflows/release.yml', cluster: 'big' }, 'wf'],
    [{ repository: 'acme/web', workflow: '.github/workflows/ci.yml' }, 'repo'],
    [{ repository: 'api', workflow: '.github/workflows/release.yml' }, 'org'],
    [{ cluster: 'big' }, 'org'],
  ])('%j → %s', (job, expected) => {
    expect(chooseAttachment({ org: 'acme', ...job }, attachments)?.policy).toBe(expected);
  });

  it('falls back to the cluster, then to nothing, and never crosses orgs', () => {
    const noOrg = attachments.filter((a) => a.policy !== 'org');
    expect(chooseAttachment({ org: 'acme', repository: 'api', cluster: 'big' }, noOrg)?.policy).toBe('cluster');
    expect(chooseAttachment({ org: 'acme', repository: 'api', cluster: 'small' }, noOrg)).toBeUndefined();
    expect(chooseAttachment({ org: 'initech', repository: 'x' }, attachments)).toBeUndefined();
  });
});

describe('describeChanges', () => {
  it('says what changed, one line each', () => {
    const before = { egressPolicy: 'audit' as const, allowedEndpoints: ['a.com', 'b.com'], lockdown: { enabled: false, detections: [] } };
    const after = { egressPolicy: 'block' as const, allowedEndpoints: ['b.com', 'c.com'], lockdown: { enabled: true, detections: ['Reverse-Shell'] } };
    expect(describeChanges(undefined, after)).toEqual(['created']);
    expect(describeChanges(before, after)).toEqual(['egress-policy audit → block', '+ c.com', '- a.com', 'lockdown disabled → enabled', 'detections [] → [Reverse-Shell]']);
    expect(describeChanges(after, after)).toEqual(['no change']);
  });

  it('takes endpoints and detections as sets: another order is the same policy, no new version', () => {
    const content = { egressPolicy: 'block' as const, allowedEndpoints: ['a.com', 'b.com'], lockdown: { enabled: true, detections: ['Reverse-Shell', 'Privileged-Container'] } };
    expect(sameContent(content, { ...content, allowedEndpoints: ['b.com', 'a.com'], lockdown: { enabled: true, detections: ['Privileged-Container', 'Reverse-Shell'] } })).toBe(true);
    expect(sameContent(content, { ...content, allowedEndpoints: ['a.com'] })).toBe(false);
    expect(sameContent(content, { ...content, egressPolicy: 'audit' })).toBe(false);
    expect(sameContent(content, { ...content, lockdown: { enabled: false, detections: content.lockdown.detections } })).toBe(false);
    expect(sameContent(content, { ...content, lockdown: { enabled: true, detections: ['Reverse-Shell'] } })).toBe(false);
  });
});

describe('deleting an attached policy', () => {
  it('is refused naming each scope and whose jobs it would change', () => {
    const error = attachedPolicyError('p', [at('p', { kind: 'organization' }), at('p', { kind: 'workflow', repository: 'web', workflow: '.github/workflows/ci.yml' })]);
    expect([error.code, error.message]).toEqual([
      'FAILED_PRECONDITION',
      'policy p is attached to organization, workflow web:.github/workflows/ci.yml: deleting it changes the policy of those jobs; detach it first, or delete with force (--force)',
    ]);
    expect(error.details).toEqual([
      'organization: jobs of the organization without a workflow or repository attachment would get the next attachment that covers them, or none (audit mode)',
      'workflow web:.github/workflows/ci.yml: jobs of workflow .github/workflows/ci.yml in web would get the next attachment that covers them, or none (audit mode)',
    ]);
    expect(describeScope({ kind: 'cluster', cluster: 'arm' })).toBe('cluster arm');
    expect(describeScope({ kind: 'repository', repository: 'web' })).toBe('repository web');
  });
});

describe('unreachable store', () => {
  it("cuts grpc-js's wording down to the cause, and leaves the server's own errors alone", () => {
    expect(unreachableReason({ code: grpc.status.UNAVAILABLE, details: 'No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1. Resolution note: ' })).toBe('connect ECONNREFUSED 127.0.0.1:1');
    expect(unreachableReason({ code: grpc.status.UNAVAILABLE, details: 'Name resolution failed for target dns:store.invalid:7070' })).toBe('cannot resolve store.invalid:7070');
    expect(unreachableReason({ code: grpc.status.DEADLINE_EXCEEDED, details: 'Deadline exceeded after 10.002s,time to current attempt start: 0.001s,Waiting for LB pick' })).toBe('no answer within 10.002s');
    expect(unreachableReason({ code: grpc.status.NOT_FOUND, details: 'policy x does not exist in acme' })).toBeUndefined();
    expect(unreachableReason({ code: grpc.status.PERMISSION_DENIED, details: 'no' })).toBeUndefined();
  });
});

describe('endpoint files', () => {
  it('reads one or more endpoints a line, with comments, and names bad lines', () => {
    expect(parseEndpointFile('# tools\nregistry.npmjs.org\n\na.com b.com:80, c.com # three\n', 'f')).toEqual(['registry.npmjs.org', 'a.com', 'b.com:80', 'c.com']);
    expect.assertions(3);
    expect(() => parseEndpointFile('ok.com\nbad..com\n', 'list.txt')).toThrow(StoreError);
    try {
      parseEndpointFile('ok.com\nbad..com\nx.com:0\n', 'list.txt');
    } catch (error) {
      expect((error as StoreError).details).toEqual(["list.txt:2: endpoint 'bad..com': empty label in 'bad..com'", "list.txt:3: endpoint 'x.com:0': bad port '0' in 'x.com:0' (1-65535)"]);
    }
  });
});

describe('names and workflow paths', () => {
  it.each([
    ['bad name', "repository 'bad name' must be 1-100 letters, digits, '.', '_' or '-'"],
    ['acme/bad name', "repository 'bad name' must be 1-100 letters, digits, '.', '_' or '-'"],
    ['acme/', 'a repository is required'],
  ])('refuses repository %j naming it as a repository', (repository, message) => {
    expect(() => repositoryName('acme', repository)).toThrow(new StoreError('INVALID_ARGUMENT', message));
  });

  it.each(['x/.github/workflows/ci.yml', '.github/workflows/ci.yml.bak', '.github/workflows/ci.yaml~', '.github/workflows/.yml'])('refuses workflow %j: it is no workflow file, no attachment could name it', (workflow) => {
    expect(() => normalizeScope('acme', { kind: 'workflow', repository: 'web', workflow })).toThrow(new StoreError('INVALID_ARGUMENT', `workflow '${workflow}' is not a workflow file path such as .github/workflows/ci.yml`));
  });

  it('takes .yml and .yaml workflow files', () => {
    expect(normalizeScope('acme', { kind: 'workflow', repository: 'web', workflow: '.github/workflows/release.yaml' })).toEqual({ kind: 'workflow', repository: 'web', workflow: '.github/workflows/release.yaml' });
  });
});

describe('scopes in their stored form', () => {
  it.each<[Scope, Scope]>([
    [{ kind: 'repository', repository: 'ACME/Web' }, { kind: 'repository', repository: 'web' }],
    [{ kind: 'cluster', cluster: 'Linux-Large' }, { kind: 'cluster', cluster: 'Linux-Large' }],
    [{ kind: 'cluster', cluster: 'big', repository: 'web' }, { kind: 'cluster', cluster: 'big' }],
    [{ kind: 'repository', repository: 'web', workflow: '.github/workflows/ci.yml' }, { kind: 'repository', repository: 'web' }],
  ])('%j is stored as %j', (scope, stored) => {
    expect(normalizeScope('acme', scope)).toStrictEqual(stored);
  });

  it.each<[Scope, string]>([
    [{ kind: 'cluster', cluster: 'bad name' }, "cluster 'bad name' must be 1-100 letters, digits, '.', '_' or '-'"],
    [{ kind: 'workflow', workflow: '.github/workflows/ci.yml' }, 'a workflow scope needs a repository and a workflow path'],
    [{ kind: 'workflow', repository: 'web' }, 'a workflow scope needs a repository and a workflow path'],
    [{ kind: 'repository' }, 'a repository scope needs a repository'],
    [{ kind: 'cluster' }, 'a cluster scope needs a cluster name'],
    [{ kind: 'team' as Scope['kind'] }, "unknown scope kind 'team'"],
  ])('refuses %j', (scope, message) => {
    expect(() => normalizeScope('acme', scope)).toThrow(new StoreError('INVALID_ARGUMENT', message));
  });
});

describe('change descriptions of lockdown', () => {
  const content = (enabled: boolean, detections: string[]) => ({ egressPolicy: 'block' as const, allowedEndpoints: [], lockdown: { enabled, detections } });

  it('says lockdown was turned off, and how the detections changed, in their order', () => {
    expect(describeChanges(content(true, ['Reverse-Shell', 'Privileged-Container']), content(false, ['Runner-Worker-Memory-Read', 'Reverse-Shell']))).toEqual([
      'lockdown enabled → disabled',
      'detections [Reverse-Shell, Privileged-Container] → [Runner-Worker-Memory-Read, Reverse-Shell]',
    ]);
  });

  it('takes the same detections in another order as no change, whichever side is unsorted', () => {
    expect(sameContent(content(true, ['Privileged-Container', 'Reverse-Shell']), content(true, ['Reverse-Shell', 'Privileged-Container']))).toBe(true);
    expect(sameContent(content(true, ['Reverse-Shell', 'Privileged-Container']), content(true, ['Privileged-Container', 'Reverse-Shell']))).toBe(true);
  });
});

describe('whose jobs an attached policy decides', () => {
  it('names them for each scope kind', () => {
    expect(attachedPolicyError('p', [at('p', { kind: 'repository', repository: 'web' }), at('p', { kind: 'cluster', cluster: 'big' })]).details).toEqual([
      'repository web: jobs of repository web without a workflow attachment would get the next attachment that covers them, or none (audit mode)',
      'cluster big: jobs on cluster big without a workflow, repository or organization attachment would get the next attachment that covers them, or none (audit mode)',
    ]);
  });
});
