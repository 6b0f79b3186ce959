/**
 * The policy store's model: policies of an organization, where they are
 * attached, and which one a job gets (docs/policy-store.md, docs/design.md §4, §6).
 */
import { StoreError } from './errors';

export type ScopeKind = 'cluster' | 'organization' | 'repository' | 'workflow';

/** Where a policy is attached, within an organization. */
export interface Scope {
  kind: ScopeKind;
  /** Repository name within the org (workflow and repository scopes). */
  repository?: string;
  /** Workflow file path, e.g. .github/workflows/ci.yml (workflow scope). */
  workflow?: string;
  cluster?: string;
}

export interface StoredPolicy {
  org: string;
  name: string;
  egressPolicy: 'audit' | 'block';
  allowedEndpoints: string[];
  lockdown: { enabled: boolean; detections: string[] };
  version: number;
  updatedBy: string;
  updatedAt: string;
}

export type PolicyContent = Pick<StoredPolicy, 'egressPolicy' | 'allowedEndpoints' | 'lockdown'>;

export interface PolicyVersion {
  version: number;
  author: string;
  createdAt: string;
  changes: string[];
  policy: StoredPolicy;
}

export interface Attachment {
  org: string;
  policy: string;
  scope: Scope;
  createdBy: string;
  createdAt: string;
}

export interface JobContext {
  org: string;
  repository?: string;
  workflow?: string;
  job?: string;
  cluster?: string;
  /** The policy named in the workflow step (authenticated by the job's OIDC token). */
  namedPolicy?: string;
}

export type ResolvedScope = 'named' | 'workflow' | 'repository' | 'organization' | 'cluster' | 'none';

export interface Resolution {
  policy?: StoredPolicy;
  scope: ResolvedScope;
  attachment?: Attachment;
}

/** Most specific first: a more specific attachment is an exemption from a broader one. */
export const PRECEDENCE: ScopeKind[] = ['workflow', 'repository', 'organization', 'cluster'];

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
/** A workflow is named by its file's path in the repository. */
const WORKFLOW = /^\.github\/workflows\/[^/\0]+\.ya?ml$/;

/**
 * Organization names are case-insensitive on GitHub (`Acme` and `acme` are
 * one owner), so the store keeps them in lower case and lowers every name it
 * is given: a token of `Acme` acts in `acme`, and an id-token's
 * `repository_owner` matches however the admin typed it.
 */
export function orgName(org: string): string {
  return checkName('organization', org).toLowerCase();
}

/** `name` or `owner/name`, case-insensitive like orgs; the owner, if given, must be the org. */
export function repositoryName(org: string, repository: string): string {
  const parts = repository.split('/');
  if (parts.length === 2) {
    if (parts[0].toLowerCase() !== org.toLowerCase()) {
      throw new StoreError('PERMISSION_DENIED', `repository ${repository} does not belong to organization ${org}`);
    }
    return checkName('repository', parts[1]).toLowerCase();
  }
  if (parts.length !== 1) throw new StoreError('INVALID_ARGUMENT', `repository '${repository}' is neither NAME nor OWNER/NAME`);
  return checkName('repository', repository).toLowerCase();
}

export function checkName(what: string, value: string): string {
  if (!value) throw new StoreError('INVALID_ARGUMENT', `a ${what} is required`);
  if (!NAME.test(value)) throw new StoreError('INVALID_ARGUMENT', `${what} '${value}' must be 1-100 letters, digits, '.', '_' or '-'`);
  return value;
}

export function checkWorkflow(workflow: string): string {
  if (!WORKFLOW.test(workflow)) throw new StoreError('INVALID_ARGUMENT', `workflow '${workflow}' is not a workflow file path such as .github/workflows/ci.yml`);
  return workflow;
}

/**
 * A job context in its stored form, checked the way attachments are: a
 * workflow that could never match an attachment is an error, not a silent
 * fall-through to a broader policy.
 */
export function normalizeJob(job: JobContext): JobContext {
  const org = orgName(job.org);
  const normalized: JobContext = { org };
  if (job.repository) normalized.repository = repositoryName(org, job.repository);
  if (job.workflow) {
    if (!job.repository) throw new StoreError('INVALID_ARGUMENT', `workflow ${job.workflow} needs its repository`);
    normalized.workflow = checkWorkflow(job.workflow);
  }
  if (job.job) normalized.job = job.job;
  if (job.cluster) normalized.cluster = checkName('cluster', job.cluster);
  if (job.namedPolicy) normalized.namedPolicy = checkName('policy name', job.namedPolicy);
  return normalized;
}

/** Validates a scope and brings it to its stored form. */
export function normalizeScope(org: string, scope: Scope): Scope {
  switch (scope.kind) {
    case 'organization':
      return { kind: 'organization' };
    case 'cluster':
      if (!scope.cluster) throw new StoreError('INVALID_ARGUMENT', 'a cluster scope needs a cluster name');
      return { kind: 'cluster', cluster: checkName('cluster', scope.cluster) };
    case 'repository':
      if (!scope.repository) throw new StoreError('INVALID_ARGUMENT', 'a repository scope needs a repository');
      return { kind: 'repository', repository: repositoryName(org, scope.repository) };
    case 'workflow':
      if (!scope.repository || !scope.workflow) throw new StoreError('INVALID_ARGUMENT', 'a workflow scope needs a repository and a workflow path');
      return { kind: 'workflow', repository: repositoryName(org, scope.repository), workflow: checkWorkflow(scope.workflow) };
    default:
      throw new StoreError('INVALID_ARGUMENT', `unknown scope kind '${String((scope as Scope).kind)}'`);
  }
}

/** Whether an attachment's scope covers the job. */
export function scopeMatches(scope: Scope, job: JobContext, repository?: string): boolean {
  switch (scope.kind) {
    case 'organization':
      return true;
    case 'cluster':
      return job.cluster !== undefined && scope.cluster === job.cluster;
    case 'repository':
      return repository !== undefined && scope.repository === repository;
    case 'workflow':
      return repository !== undefined && scope.repository === repository && scope.workflow === job.workflow;
  }
}

/**
 * The attachment that decides a job's policy: the most specific of those
 * whose scope covers it (workflow > repository > organization > cluster).
 */
export function chooseAttachment(
  job: JobContext,
  attachments: Attachment[],
  repository = job.repository ? repositoryName(job.org, job.repository) : undefined,
): Attachment | undefined {
  for (const kind of PRECEDENCE) {
    const found = attachments.find((a) => a.org === job.org && a.scope.kind === kind && scopeMatches(a.scope, job, repository));
    if (found) return found;
  }
  return undefined;
}

/** What changed between two versions of a policy, one line per change. */
export function describeChanges(before: PolicyContent | undefined, after: PolicyContent): string[] {
  if (!before) return ['created'];
  const changes = listChanges(before, after);
  return changes.length ? changes : ['no change'];
}

/**
 * The same policy, as far as enforcement goes: an update that changes none
 * of it makes no new version (endpoints are a set: their order decides nothing).
 */
export function sameContent(before: PolicyContent, after: PolicyContent): boolean {
  return listChanges(before, after).length === 0;
}

function listChanges(before: PolicyContent, after: PolicyContent): string[] {
  const changes: string[] = [];
  if (before.egressPolicy !== after.egressPolicy) changes.push(`egress-policy ${before.egressPolicy} → ${after.egressPolicy}`);
  const old = new Set(before.allowedEndpoints);
  const now = new Set(after.allowedEndpoints);
  for (const e of after.allowedEndpoints) if (!old.has(e)) changes.push(`+ ${e}`);
  for (const e of before.allowedEndpoints) if (!now.has(e)) changes.push(`- ${e}`);
  if (before.lockdown.enabled !== after.lockdown.enabled) changes.push(`lockdown ${before.lockdown.enabled ? 'enabled' : 'disabled'} → ${after.lockdown.enabled ? 'enabled' : 'disabled'}`);
  const oldDetections = [...before.lockdown.detections].sort().join(', ');
  const newDetections = [...after.lockdown.detections].sort().join(', ');
  if (oldDetections !== newDetections) changes.push(`detections [${before.lockdown.detections.join(', ')}] → [${after.lockdown.detections.join(', ')}]`);
  return changes;
}

/** A scope as the docs and the CLI name it: `organization`, `repository web`, `workflow web:PATH`, `cluster C`. */
export function describeScope(scope: Scope): string {
  switch (scope.kind) {
    case 'workflow':
      return `workflow ${scope.repository}:${scope.workflow}`;
    case 'repository':
      return `repository ${scope.repository}`;
    case 'cluster':
      return `cluster ${scope.cluster}`;
    default:
      return 'organization';
  }
}

/**
 * Deleting an attached policy changes what jobs get: refused unless forced,
 * naming each scope and whose jobs change.
 */
export function attachedPolicyError(name: string, attachments: Attachment[]): StoreError {
  return new StoreError(
    'FAILED_PRECONDITION',
    `policy ${name} is attached to ${attachments.map((a) => describeScope(a.scope)).join(', ')}: deleting it changes the policy of those jobs; detach it first, or delete with force (--force)`,
    attachments.map((a) => `${describeScope(a.scope)}: ${jobsOf(a.scope)} would get the next attachment that covers them, or none (audit mode)`),
  );
}

function jobsOf(scope: Scope): string {
  switch (scope.kind) {
    case 'workflow':
      return `jobs of workflow ${scope.workflow} in ${scope.repository}`;
    case 'repository':
      return `jobs of repository ${scope.repository} without a workflow attachment`;
    case 'cluster':
      return `jobs on cluster ${scope.cluster} without a workflow, repository or organization attachment`;
    default:
      return 'jobs of the organization without a workflow or repository attachment';
  }
}
