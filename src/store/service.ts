/**
 * The policy store's operations, independent of transport: validation with
 * the agent's own policy code, tenancy (everything acts in the caller's
 * organization), roles, precedence. The gRPC server (server.ts) is a thin
 * layer over this.
 */
import { parseEndpoint, parseEndpointList } from '../policy/endpoint';
import { parsePolicy, PolicyError } from '../policy/policy';
import { StoreError } from './errors';
import { chooseAttachment, checkName, normalizeJob, normalizeScope, orgName, repositoryName, type Attachment, type JobContext, type PolicyContent, type PolicyVersion, type Resolution, type Scope, type StoredPolicy } from './model';
import type { PolicyRepository, PolicyUpdate, TokenRole } from './repository';

/** Who is calling, from their credentials. */
export interface Caller {
  org: string;
  role: TokenRole | 'job';
  /** For history: a token id, or the job's repository and workflow. */
  subject: string;
  /** For a job's OIDC identity: what it may resolve. */
  job?: { repository: string; workflow?: string };
}

export interface ImportResult {
  added: string[];
  unchanged: string[];
  policy: StoredPolicy;
}

function requireAdmin(caller: Caller): void {
  if (caller.role !== 'admin') throw new StoreError('PERMISSION_DENIED', `${caller.role === 'agent' ? 'an agent' : "a job's"} credential cannot manage policies; use an admin token`);
}

/**
 * `--org` as the caller wrote it, when given: it must be the credentials'
 * own organization. Acting on the token's organization while the command
 * line names another would do something the user did not ask for.
 */
function checkNamedOrg(caller: Caller, org: string | undefined): void {
  if (org && orgName(org) !== caller.org) throw new StoreError('PERMISSION_DENIED', `credentials of ${caller.org} cannot act in organization ${org}`);
}

/**
 * The name a policy document is stored under: the one given with the call,
 * or the file's own `name:`. Both given and different is refused: storing
 * the file under another name than it says would surprise its next reader.
 */
function storedName(given: string | undefined, inFile: string | undefined): string {
  if (given && inFile && given !== inFile) throw new StoreError('INVALID_ARGUMENT', `the policy file is named '${inFile}' but '${given}' was given; use one name`);
  const name = given || inFile;
  if (!name) throw new StoreError('INVALID_ARGUMENT', 'the policy has no name: give it as NAME or as name: in the file');
  return checkName('policy name', name);
}

/** Parses a policy file's text with the agent's parser; bad input names every problem. */
export function contentFromYaml(yaml: string, source: string): { name?: string; content: PolicyContent } {
  try {
    const policy = parsePolicy(yaml, source);
    return {
      name: policy.name,
      content: {
        egressPolicy: policy.egressPolicy,
        allowedEndpoints: policy.allowedEndpoints.map((e) => e.text),
        lockdown: { enabled: policy.lockdown.enabled, detections: [...policy.lockdown.detections] },
      },
    };
  } catch (error) {
    if (error instanceof PolicyError) {
      throw new StoreError('INVALID_ARGUMENT', `policy is not valid (${error.problems.length} problem${error.problems.length === 1 ? '' : 's'})`, error.message.split('\n'));
    }
    throw error;
  }
}

/**
 * A job's id-token speaks for its own repository and workflow only: what the
 * job leaves out of its request is taken from the token, and naming another
 * repository or workflow is refused (the request would not describe the job
 * the token proves).
 */
function ownJob(caller: Caller, asked: JobContext): JobContext {
  const own = caller.job;
  if (!own) throw new StoreError('PERMISSION_DENIED', 'the id-token does not say which job it is');
  const repository = asked.repository ? repositoryName(caller.org, asked.repository) : own.repository;
  if (repository !== own.repository) throw new StoreError('PERMISSION_DENIED', `a job of ${own.repository} cannot resolve policies for ${asked.repository}`);
  const workflow = asked.workflow || own.workflow;
  if (workflow !== own.workflow) throw new StoreError('PERMISSION_DENIED', `a job of ${own.workflow ?? 'an unnamed workflow'} cannot resolve policies for workflow ${asked.workflow}`);
  return { ...asked, repository, workflow };
}

/** Endpoint lines of a file: one per line (or several, space-separated), '#' comments. */
export function parseEndpointFile(text: string, source: string): string[] {
  const { endpoints, problems } = parseEndpointList(text, source);
  if (problems.length) throw new StoreError('INVALID_ARGUMENT', `${source} has ${problems.length} bad endpoint${problems.length === 1 ? '' : 's'}`, problems);
  return endpoints.map((endpoint) => endpoint.text);
}

/** How error messages name a policy document: its name, when it has one. */
function sourceLabel(yaml: string, name?: string): string {
  return name || /^name:\s*["']?([A-Za-z0-9._-]+)/m.exec(yaml)?.[1] || 'policy';
}

export class PolicyService {
  constructor(readonly repository: PolicyRepository) {}

  async create(caller: Caller, yaml: string, name?: string): Promise<StoredPolicy> {
    requireAdmin(caller);
    const parsed = contentFromYaml(yaml, sourceLabel(yaml, name));
    return this.repository.createPolicy(caller.org, storedName(name, parsed.name), parsed.content, caller.subject);
  }

  /** expectedVersion: apply only on top of that version (FAILED_PRECONDITION otherwise). The same content makes no version. */
  async update(caller: Caller, yaml: string, name?: string, expectedVersion?: number): Promise<PolicyUpdate> {
    requireAdmin(caller);
    if (expectedVersion !== undefined && !(Number.isSafeInteger(expectedVersion) && expectedVersion >= 1)) {
      throw new StoreError('INVALID_ARGUMENT', `expected version must be a version number (1 or more), not ${expectedVersion}`);
    }
    const parsed = contentFromYaml(yaml, sourceLabel(yaml, name));
    return this.repository.updatePolicy(caller.org, storedName(name, parsed.name), parsed.content, caller.subject, expectedVersion);
  }

  async get(caller: Caller, name: string): Promise<StoredPolicy> {
    // an allow-list, as requireAdmin's: a role added later reads nothing until it is let in here
    if (caller.role !== 'admin') throw new StoreError('PERMISSION_DENIED', 'this credential can only resolve policies for jobs');
    const policy = await this.repository.getPolicy(caller.org, checkName('policy name', name));
    if (!policy) throw new StoreError('NOT_FOUND', `policy ${name} does not exist in ${caller.org}`);
    return policy;
  }

  async list(caller: Caller): Promise<StoredPolicy[]> {
    requireAdmin(caller);
    return this.repository.listPolicies(caller.org);
  }

  /** An attached policy only with force: deleting it changes what those jobs get. */
  async remove(caller: Caller, name: string, force = false): Promise<{ detached: Attachment[] }> {
    requireAdmin(caller);
    return this.repository.deletePolicy(caller.org, checkName('policy name', name), force);
  }

  async history(caller: Caller, name: string): Promise<PolicyVersion[]> {
    requireAdmin(caller);
    return this.repository.history(caller.org, checkName('policy name', name));
  }

  /** org: the organization the user named, if any; it must be the caller's. */
  async attach(caller: Caller, policy: string, scope: Scope, org?: string): Promise<Attachment> {
    requireAdmin(caller);
    checkNamedOrg(caller, org);
    return this.repository.attach(caller.org, checkName('policy name', policy), normalizeScope(caller.org, scope), caller.subject);
  }

  /** Returns the scope as stored, which may be spelled otherwise than asked. */
  async detach(caller: Caller, policy: string, scope: Scope, org?: string): Promise<Scope> {
    requireAdmin(caller);
    checkNamedOrg(caller, org);
    const stored = normalizeScope(caller.org, scope);
    await this.repository.detach(caller.org, checkName('policy name', policy), stored);
    return stored;
  }

  /** The org's attachments, or one policy's (NOT_FOUND when there is no such policy: an empty list would say "not attached"). */
  async attachments(caller: Caller, policy?: string): Promise<Attachment[]> {
    requireAdmin(caller);
    if (policy === undefined) return this.repository.listAttachments(caller.org);
    const name = checkName('policy name', policy);
    if (!(await this.repository.getPolicy(caller.org, name))) throw new StoreError('NOT_FOUND', `policy ${name} does not exist in ${caller.org}`);
    return this.repository.listAttachments(caller.org, name);
  }

  /**
   * Exactly one policy for a job, or none (audit): named in the workflow step
   * (only with the job's own OIDC identity) > workflow > repository >
   * organization > cluster.
   */
  async resolve(caller: Caller, request: Omit<JobContext, 'org'> & { org?: string }): Promise<Resolution> {
    // no organization: the credentials' own, as attach takes it (`policy resolve --cluster C`)
    const asked: JobContext = { ...request, org: request.org || caller.org };
    const job = normalizeJob(caller.role === 'job' ? ownJob(caller, asked) : asked);
    if (job.org !== caller.org) throw new StoreError('PERMISSION_DENIED', `credentials of ${caller.org} cannot resolve policies of ${asked.org}`);
    if (job.namedPolicy) {
      if (caller.role !== 'job') throw new StoreError('PERMISSION_DENIED', `a policy named in the workflow is fetched with the job's OIDC id-token`);
      const policy = await this.repository.getPolicy(caller.org, job.namedPolicy);
      if (!policy) throw new StoreError('NOT_FOUND', `policy ${job.namedPolicy} does not exist in ${caller.org}`);
      return { policy, scope: 'named' };
    }
    if (caller.role === 'job') {
      // which cluster a job runs on is the runner's to say, not the job's: by attachment, only agents resolve
      throw new StoreError('PERMISSION_DENIED', "a job's id-token fetches the policy named in its workflow step; resolving by attachment needs an agent credential");
    }
    const attachment = chooseAttachment(job, await this.repository.attachmentsFor(caller.org, job.repository, job.workflow, job.cluster), job.repository);
    if (!attachment) return { scope: 'none' };
    const policy = await this.repository.getPolicy(caller.org, attachment.policy);
    if (!policy) return { scope: 'none' };
    return { policy, scope: attachment.scope.kind, attachment };
  }

  /**
   * Adds a file's endpoints to a policy without duplicates (or, dry, says
   * what it would add). A concurrent change to the policy makes it merge
   * again on the newer version, so neither write is lost.
   */
  async importEndpoints(caller: Caller, name: string, source: { text: string; path: string }, dryRun: boolean): Promise<ImportResult> {
    requireAdmin(caller);
    const incoming = parseEndpointFile(source.text, source.path || 'endpoints');
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.mergeEndpoints(caller, name, incoming, dryRun);
      } catch (error) {
        if (!(error instanceof StoreError) || error.code !== 'FAILED_PRECONDITION' || attempt >= 20) throw error;
      }
    }
  }

  private async mergeEndpoints(caller: Caller, name: string, incoming: string[], dryRun: boolean): Promise<ImportResult> {
    const policy = await this.get(caller, name);
    const have = new Set(policy.allowedEndpoints.map(identity));
    const added: string[] = [];
    const unchanged: string[] = [];
    for (const endpoint of incoming) {
      const id = identity(endpoint);
      if (have.has(id)) unchanged.push(endpoint);
      else {
        have.add(id);
        added.push(endpoint);
      }
    }
    if (dryRun || added.length === 0) return { added, unchanged, policy };
    const content: PolicyContent = { egressPolicy: policy.egressPolicy, allowedEndpoints: [...policy.allowedEndpoints, ...added], lockdown: policy.lockdown };
    const { policy: updated } = await this.repository.updatePolicy(caller.org, name, content, caller.subject, policy.version);
    return { added, unchanged, policy: updated };
  }

  async exportEndpoints(caller: Caller, name: string): Promise<string> {
    const policy = await this.get(caller, name);
    return `# allowed endpoints of policy ${policy.name} (${policy.org}), version ${policy.version}\n${policy.allowedEndpoints.join('\n')}\n`;
  }
}

/** Entries that mean the same endpoint (case, trailing dot, default port) are one. */
function identity(text: string): string {
  const endpoint = parseEndpoint(text);
  if (endpoint.kind === 'name') return `${endpoint.pattern}:${endpoint.port}`;
  return `${Buffer.from(endpoint.bytes).toString('hex')}/${endpoint.prefixLength}:${endpoint.port}`;
}
