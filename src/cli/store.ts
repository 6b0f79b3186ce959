/**
 * The control-plane commands: `ringfence server`, `ringfence token`, and
 * `ringfence policy …`, which talk to the server (RINGFENCE_SERVER,
 * RINGFENCE_TOKEN) and print tables, or JSON with --json.
 */
import * as grpc from '@grpc/grpc-js';
import { Command } from 'commander';
import fs from 'node:fs';
import YAML from 'yaml';
import type { Attachment__Output } from '../proto/ringfence/policy/v1/Attachment';
import type { DeletePolicyResponse__Output } from '../proto/ringfence/policy/v1/DeletePolicyResponse';
import type { DetachResponse__Output } from '../proto/ringfence/policy/v1/DetachResponse';
import type { Policy__Output } from '../proto/ringfence/policy/v1/Policy';
import type { PolicyVersion__Output } from '../proto/ringfence/policy/v1/PolicyVersion';
import type { ResolvePolicyResponse__Output } from '../proto/ringfence/policy/v1/ResolvePolicyResponse';
import type { UpdatePolicyResponse__Output } from '../proto/ringfence/policy/v1/UpdatePolicyResponse';
import { StoreClient, unreachableError, unreachableReason } from '../store/client';
import { StoreError } from '../store/errors';
import { attachmentJson, policyJson, resolutionJson, scopeFromProto, tokenJson, versionJson } from '../store/json';
import { DEFAULT_AUDIENCE, GITHUB_ISSUER, OidcVerifier } from '../store/oidc';
import { DEFAULT_DB, describeDb, openRepository } from '../store/open';
import { checkName, checkWorkflow, describeScope, orgName } from '../store/model';
import { SCOPE_KINDS } from '../store/proto';
import type { PolicyRepository } from '../store/repository';
import { createPolicyStoreServer } from '../store/server';
import { createToken, listTokens, revokeToken, TOKEN_CACHE_MS } from '../store/tokens';
import { parseEndpoint } from '../policy/endpoint';
import { readTextFile } from '../policy/file';
import { DETECTIONS, parsePolicyWithNotes } from '../policy/policy';
import { policyYaml } from '../agent/store-policy';
import { RingfenceError } from '../util/errors';

export const DEFAULT_LISTEN = '127.0.0.1:7070';

const serverAddress = () => process.env.RINGFENCE_SERVER || DEFAULT_LISTEN;

function client(): StoreClient {
  const token = process.env.RINGFENCE_TOKEN;
  if (!token) throw new RingfenceError('RINGFENCE_TOKEN is not set: create a token with `ringfence token create --org ORG --role admin` on the server host', 'RF_USAGE');
  return new StoreClient({ address: serverAddress(), token });
}

/** One call; a gRPC failure becomes the one line (plus problem lines) a user reads. */
async function call<Res>(method: string, request: unknown): Promise<Res> {
  const c = client();
  try {
    return await c.call<unknown, Res>(method as never, request);
  } catch (error) {
    const e = error as grpc.ServiceError;
    const unreachable = unreachableReason(e);
    if (unreachable) throw unreachableError(serverAddress(), unreachable);
    const [first, ...problems] = String(e.details ?? e.message).split('\n');
    throw new RingfenceError(`${grpc.status[e.code] ?? e.code}: ${first}`, 'RF_STORE', problems.join('\n') || undefined);
  } finally {
    c.close();
  }
}

const print = (text: string): void => void process.stdout.write(text.endsWith("\n") ? text : text + "\n");
const printJson = (value: unknown): void => print(JSON.stringify(value));

/**
 * Bad flags of one command, all of them: checks that fail add a line each,
 * and the command stops before it calls anything, with every line at once.
 */
class FlagProblems {
  private readonly lines: string[] = [];

  add(line: string): void {
    this.lines.push(line);
  }

  /** Runs a check that throws a user error (RingfenceError, StoreError), keeping its line. */
  check<T>(work: () => T, prefix = ''): T | undefined {
    try {
      return work();
    } catch (error) {
      if (!(error instanceof RingfenceError || error instanceof StoreError)) throw error;
      this.lines.push(prefix + error.message.replace(/; nothing was done$/, ''));
      return undefined;
    }
  }

  /** Nothing happens when any flag is bad. */
  done(): void {
    if (this.lines.length === 1) throw new RingfenceError(`${this.lines[0]}; nothing was done`, 'RF_USAGE');
    if (this.lines.length > 1) throw new RingfenceError(`${this.lines.length} problems, nothing was done:`, 'RF_USAGE', this.lines.join('\n'));
  }
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (c ?? '').padEnd(widths[i])).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

function showPolicy(p: Policy__Output): string {
  return policyYaml(p) + `# version ${p.version}, ${p.updatedAt} by ${p.updatedBy}\n`;
}

const scopeText = (s: Parameters<typeof scopeFromProto>[0]): string => describeScope(scopeFromProto(s));

interface ScopeFlags {
  org?: string;
  repo?: string;
  workflow?: string;
  cluster?: string;
}

/** The one line for a file named by a flag that cannot be read or written: the flag, the file, the errno. */
function fileError(flag: string, file: string, what: 'read' | 'write', error: unknown): RingfenceError {
  const cause = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
  return new RingfenceError(`${flag} ${file}: cannot ${what} it (${cause})${what === 'read' ? '; nothing was done' : ''}`, 'RF_USAGE');
}

function readUserBytes(file: string, flag: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (error) {
    throw fileError(flag, file, 'read', error);
  }
}

/** Runs work on the database --db names (token commands run on the server host), closing it after. */
async function withRepository<T>(db: string, work: (repository: PolicyRepository) => Promise<T>): Promise<T> {
  const repository = await openRepository(db);
  try {
    return await work(repository);
  } finally {
    await repository.close();
  }
}

/**
 * A policy file's text, checked here the way the server will check it, with
 * the file's own name and lines; its notes (Harden-Runner inputs) go to stderr.
 */
function readPolicyFile(file: string, flag: string): string {
  const text = readTextFile(file, flag);
  for (const note of parsePolicyWithNotes(text, file).notes) process.stderr.write(`ringfence: note: ${note}\n`);
  return text;
}

/** The names the flags give, checked here so that every bad one is said at once. */
function checkIdentityFlags(flags: ScopeFlags, problems: FlagProblems): void {
  if (flags.org) problems.check(() => orgName(flags.org!), '--org: ');
  if (flags.cluster) problems.check(() => checkName('cluster', flags.cluster!), '--cluster: ');
  if (flags.workflow) problems.check(() => checkWorkflow(flags.workflow!), '--workflow: ');
  if (flags.workflow && !flags.repo) problems.add('--workflow needs --repo');
  if (flags.repo && !flags.org) problems.add('--repo needs --org');
}

/** --cluster names a scope on its own; --org with it only says which organization the user means. */
function scopeFromFlags(flags: ScopeFlags, problems: FlagProblems) {
  checkIdentityFlags(flags, problems);
  if (flags.cluster) {
    if (flags.repo || flags.workflow) problems.add('--cluster cannot be combined with --repo or --workflow');
    return { kind: SCOPE_KINDS.toProto.cluster, cluster: flags.cluster };
  }
  if (!flags.org) {
    if (!flags.repo && !flags.workflow) problems.add('name the scope: --org ORG [--repo REPO [--workflow PATH]] or --cluster CLUSTER');
    return undefined;
  }
  // the server checks that an OWNER/NAME repository belongs to the token's org
  if (flags.workflow) return { kind: SCOPE_KINDS.toProto.workflow, repository: flags.repo, workflow: flags.workflow };
  if (flags.repo) return { kind: SCOPE_KINDS.toProto.repository, repository: flags.repo };
  return { kind: SCOPE_KINDS.toProto.organization };
}

/**
 * `ringfence policy` without a subcommand (or with an unknown one) is a
 * one-line error naming the subcommands, not a page of help.
 */
function requireSubcommand(group: Command): void {
  group.usage('[options] <command>').argument('[command]', 'the subcommand').action((name?: string) => {
    const known = group.commands.map((c) => c.name()).join(', ');
    throw new RingfenceError(name ? `unknown command '${group.name()} ${name}' (known: ${known})` : `${group.name()} needs a command: ${known} (--help for more)`, 'RF_USAGE');
  });
}

const ROLES = ['admin', 'agent'] as const;

export function addStoreCommands(program: Command): void {
  program
    .command('server')
    .description('run the policy store (gRPC)')
    .option('--db <url>', 'sqlite:PATH or postgres://USER@HOST/DB', DEFAULT_DB)
    .option('--listen <address>', 'HOST:PORT to listen on', DEFAULT_LISTEN)
    .option('--tls-cert <file>', 'serve TLS with this certificate (PEM)')
    .option('--tls-key <file>', 'and this key (PEM)')
    .option('--oidc-issuer <url>', "issuer of jobs' OIDC id-tokens", GITHUB_ISSUER)
    .option('--oidc-audience <audience>', 'audience the id-tokens must carry', DEFAULT_AUDIENCE)
    .option('--no-oidc', 'accept tokens only, no OIDC id-tokens')
    .action(async (options: { db: string; listen: string; tlsCert?: string; tlsKey?: string; oidc: boolean; oidcIssuer: string; oidcAudience: string }) => {
      // every check on the command line before the database is opened (and perhaps migrated)
      const problems = new FlagProblems();
      if (Boolean(options.tlsCert) !== Boolean(options.tlsKey)) problems.add('--tls-cert and --tls-key go together');
      if (!/^.+:\d{1,5}$/.test(options.listen)) problems.add(`--listen '${options.listen}' is not HOST:PORT`);
      if (options.oidc) problems.check(() => new URL(options.oidcIssuer), `--oidc-issuer '${options.oidcIssuer}': `);
      const cert = options.tlsCert ? problems.check(() => readUserBytes(options.tlsCert!, '--tls-cert')) : undefined;
      const key = options.tlsKey ? problems.check(() => readUserBytes(options.tlsKey!, '--tls-key')) : undefined;
      problems.done();
      const credentials = cert && key ? { cert, key } : undefined;
      const log = (line: string) => void process.stderr.write(line + '\n');
      const repository = await openRepository(options.db);
      const jobIdentity = options.oidc ? new OidcVerifier({ issuer: options.oidcIssuer, audience: options.oidcAudience, log }) : undefined;
      const server = createPolicyStoreServer({ repository, jobIdentity, log });
      const port = await server.listen(options.listen, credentials).catch((error: Error) => {
        throw new RingfenceError(`cannot listen on ${options.listen}: ${error.message}`, 'RF_LISTEN');
      });
      const host = options.listen.slice(0, options.listen.lastIndexOf(':'));
      process.stderr.write(`ringfence policy store listening on ${host}:${port} (${describeDb(options.db)}, schema v${await repository.schemaVersion()})\n`);
      await new Promise<void>((resolve) => {
        const stop = () => void server.shutdown().then(resolve);
        process.once('SIGINT', stop).once('SIGTERM', stop);
      });
      await repository.close();
    });

  const token = program.command('token').description('credentials of the policy store');
  requireSubcommand(token);
  token
    .command('create')
    .description('create a token (run on the server host, against its database); printed once')
    .option('--org <org>', 'the organization it acts in (required)')
    .option('--role <role>', 'admin (manage policies) or agent (resolve only) (required)')
    .option('--description <text>', 'what it is for', '')
    .option('--db <url>', 'sqlite:PATH or postgres://…', DEFAULT_DB)
    .action(async (options: { org?: string; role?: string; description: string; db: string }) => {
      const problems = new FlagProblems();
      if (!options.org) problems.add('--org ORG is required');
      else problems.check(() => orgName(options.org!));
      if (!options.role) problems.add('--role admin|agent is required');
      else if (!(ROLES as readonly string[]).includes(options.role)) problems.add(`role must be admin or agent, not '${options.role}'`);
      problems.done();
      const { token: secret, record } = await withRepository(options.db, (repository) => createToken(repository, options.org!, options.role as (typeof ROLES)[number], options.description));
      process.stderr.write(`token ${record.id} (${record.role} of ${record.org}); it is not shown again:\n`);
      print(secret);
    });

  token
    .command('list')
    .description('tokens in the database (ids, roles, organizations; never the secrets)')
    .option('--org <org>', 'only those of this organization')
    .option('--json', 'print JSON')
    .option('--db <url>', 'sqlite:PATH or postgres://…', DEFAULT_DB)
    .action(async (options: { org?: string; json?: boolean; db: string }) => {
      const tokens = await withRepository(options.db, (repository) => listTokens(repository, options.org));
      if (options.json) return printJson(tokens.map(tokenJson));
      print(table(['ID', 'ORG', 'ROLE', 'CREATED', 'DESCRIPTION'], tokens.map((t) => [t.id, t.org, t.role, t.createdAt, t.description])));
    });

  token
    .command('revoke')
    .description(`delete a token; a running server may accept it for up to ${TOKEN_CACHE_MS / 1000} s more`)
    .argument('<id>', 'its id (ringfence token list)')
    .option('--db <url>', 'sqlite:PATH or postgres://…', DEFAULT_DB)
    .action(async (id: string, options: { db: string }) => {
      await withRepository(options.db, (repository) => revokeToken(repository, id));
      print(`revoked token ${id}`);
    });

  const policy = program.command('policy').description('policies in the policy store (RINGFENCE_SERVER, RINGFENCE_TOKEN)');
  requireSubcommand(policy);
  const json = (cmd: Command) => cmd.option('--json', 'print JSON (docs/policy-store.md)');

  json(
    policy
      .command('create')
      .description('store a new policy, from a file or from flags')
      .argument('[name]', 'policy name (with --endpoint…)')
      .option('-f, --file <file>', 'policy file (docs/policy.md)')
      .option('--endpoint <endpoint...>', 'allowed endpoints')
      .option('--egress-policy <mode>', 'audit or block', 'audit')
      .option('--lockdown <detection...>', 'enable lockdown with these detections'),
  ).action(async (name: string | undefined, options: { file?: string; endpoint?: string[]; egressPolicy: string; lockdown?: string[]; json?: boolean }) => {
    const problems = new FlagProblems();
    let yaml: string | undefined;
    if (options.file) {
      if (options.endpoint || options.lockdown) problems.add('policy create takes -f FILE or --endpoint/--lockdown flags, not both');
      if (name) problems.check(() => checkName('policy name', name));
      problems.done();
      yaml = readPolicyFile(options.file, '-f');
    } else {
      if (!name) problems.add('policy create needs -f FILE, or NAME with --endpoint…');
      else problems.check(() => checkName('policy name', name));
      checkPolicyFlags(options, problems);
      problems.done();
      yaml = YAML.stringify({
        name,
        'egress-policy': options.egressPolicy,
        'allowed-endpoints': options.endpoint ?? [],
        ...(options.lockdown ? { 'lockdown-mode': { enabled: true, detections: options.lockdown } } : {}),
      });
    }
    const created = await call<Policy__Output>('CreatePolicy', { policyYaml: yaml, name: name ?? '' });
    print(options.json ? JSON.stringify(policyJson(created)) : `created policy ${created.name} (version ${created.version})`);
  });

  /**
   * The flag form is checked flag by flag before it becomes YAML, so an error
   * names the flag and value, not a line of YAML the user never wrote.
   */
  function checkPolicyFlags(options: { endpoint?: string[]; egressPolicy: string; lockdown?: string[] }, problems: FlagProblems): void {
    if (options.egressPolicy !== 'audit' && options.egressPolicy !== 'block') problems.add(`--egress-policy must be 'audit' or 'block', not '${options.egressPolicy}'`);
    for (const entry of options.endpoint ?? []) {
      try {
        parseEndpoint(entry);
      } catch (error) {
        problems.add(`--endpoint '${entry}': ${(error as Error).message}`);
      }
    }
    for (const detection of options.lockdown ?? []) {
      if (!(DETECTIONS as readonly string[]).includes(detection)) problems.add(`--lockdown: unknown detection '${detection}' (known: ${DETECTIONS.join(', ')})`);
    }
  }

  json(
    policy
      .command('update')
      .description('store a new version of a policy from its file (the same content makes no new version)')
      .option('-f, --file <file>', 'policy file (required)')
      .option('--name <name>', 'when the file has none')
      .option('--expected-version <n>', 'fail if it changed since this version'),
  ).action(async (options: { file?: string; name?: string; expectedVersion?: string; json?: boolean }) => {
    const problems = new FlagProblems();
    if (!options.file) problems.add('-f FILE is required (policy show NAME --yaml prints the stored one)');
    if (options.name) problems.check(() => checkName('policy name', options.name!), '--name: ');
    if (options.expectedVersion !== undefined && !/^[1-9][0-9]{0,14}$/.test(options.expectedVersion)) {
      problems.add(`--expected-version must be a version number (1 or more), not '${options.expectedVersion}'`);
    }
    problems.done();
    const policyYaml = readPolicyFile(options.file!, '-f');
    const { policy: updated, changed } = await call<UpdatePolicyResponse__Output>('UpdatePolicy', { policyYaml, name: options.name ?? '', expectedVersion: options.expectedVersion ?? '0' });
    if (options.json) return printJson({ changed, policy: policyJson(updated!) });
    print(changed ? `updated policy ${updated!.name} to version ${updated!.version}` : `policy ${updated!.name} unchanged: the file is what version ${updated!.version} holds, no new version`);
  });

  json(policy.command('list').description("the organization's policies")).action(async (options: { json?: boolean }) => {
    const { policies } = await call<{ policies: Policy__Output[] }>('ListPolicies', {});
    if (options.json) return printJson(policies.map(policyJson));
    print(table(['NAME', 'EGRESS', 'ENDPOINTS', 'LOCKDOWN', 'VERSION', 'UPDATED'], policies.map((p) => [p.name, p.egressPolicy, String(p.allowedEndpoints.length), p.lockdownMode?.enabled ? p.lockdownMode.detections.join(',') : 'off', p.version, p.updatedAt])));
  });

  json(
    policy
      .command('show')
      .description('a policy: its file form with its version, or --yaml (the file form only, which update -f takes back) or --json')
      .argument('<name>', 'the policy')
      .option('--yaml', 'print the policy file form only (docs/policy.md)'),
  ).action(async (name: string, options: { json?: boolean; yaml?: boolean }) => {
    if (options.json && options.yaml) throw new RingfenceError('--json and --yaml: give one', 'RF_USAGE');
    const p = await call<Policy__Output>('GetPolicy', { name });
    print(options.json ? JSON.stringify(policyJson(p)) : options.yaml ? policyYaml(p) : showPolicy(p));
  });

  json(policy.command('history').description("a policy's versions: who changed what, when").argument('<name>', 'the policy')).action(async (name: string, options: { json?: boolean }) => {
    const { versions } = await call<{ versions: PolicyVersion__Output[] }>('PolicyHistory', { name });
    if (options.json) return printJson(versions.map(versionJson));
    print(table(['VERSION', 'WHEN', 'WHO', 'CHANGES'], versions.map((v) => [v.version, v.createdAt, v.author, v.changes.join('; ')])));
  });

  json(
    policy
      .command('delete')
      .description('delete a policy and its history; an attached policy needs --force, which detaches it everywhere')
      .argument('<name>', 'the policy')
      .option('--force', 'also when it is attached (its jobs then get the next attachment that covers them, or audit mode)'),
  ).action(async (name: string, options: { json?: boolean; force?: boolean }) => {
    const { attachments } = await call<DeletePolicyResponse__Output>('DeletePolicy', { name, force: Boolean(options.force) });
    const scopes = attachments.map((a) => scopeFromProto(a.scope));
    if (options.json) return printJson({ policy: name, detached: scopes });
    print(
      scopes.length
        ? `deleted policy ${name} and detached it from ${scopes.map(describeScope).join(', ')}: jobs there now get the next attachment that covers them, or none (audit mode)`
        : `deleted policy ${name}`,
    );
  });

  json(
    policy
      .command('attachments')
      .description("where policies are attached: all of the organization's, or NAME's")
      .argument('[name]', 'only this policy'),
  ).action(async (name: string | undefined, options: { json?: boolean }) => {
    const { attachments } = await call<{ attachments: Attachment__Output[] }>('ListAttachments', { policy: name ?? '' });
    if (options.json) return printJson(attachments.map(attachmentJson));
    print(table(['POLICY', 'SCOPE', 'CREATED', 'BY'], attachments.map((a) => [a.policy, scopeText(a.scope), a.createdAt, a.createdBy])));
  });

  for (const verb of ['attach', 'detach'] as const) {
    json(
      policy
        .command(verb)
        .description(verb === 'attach' ? 'make a policy the one of a scope (organization, repository, workflow, cluster)' : 'take a policy off a scope')
        .argument('<name>', 'the policy')
        .option('--org <org>', 'the organization (the scope, unless --repo)')
        .option('--repo <repo>', 'a repository: NAME or OWNER/NAME')
        .option('--workflow <path>', 'a workflow file of --repo, e.g. .github/workflows/ci.yml')
        .option('--cluster <cluster>', 'a runner group / ARC cluster'),
    ).action(async (name: string, flags: ScopeFlags & { json?: boolean }) => {
      const problems = new FlagProblems();
      problems.check(() => checkName('policy name', name));
      const scope = scopeFromFlags(flags, problems);
      problems.done();
      const request = { policy: name, scope, org: flags.org ?? '' };
      if (verb === 'attach') {
        const attachment = await call<Attachment__Output>('Attach', request);
        print(flags.json ? JSON.stringify(attachmentJson(attachment)) : `attached ${name} to ${scopeText(attachment.scope)}`);
      } else {
        const { scope: stored } = await call<DetachResponse__Output>('Detach', request);
        print(flags.json ? JSON.stringify({ policy: name, scope: scopeFromProto(stored) }) : `detached ${name} from ${scopeText(stored)}`);
      }
    });
  }

  json(
    policy
      .command('resolve')
      .description('which policy a job gets, and which attachment chose it')
      .option('--org <org>', "the job's organization (may be left out with --cluster: the token's)")
      .option('--repo <repo>', "the job's repository: NAME or OWNER/NAME")
      .option('--workflow <path>', "the job's workflow file, e.g. .github/workflows/ci.yml")
      .option('--job <job>', "the job's name")
      .option('--cluster <cluster>', "the runner's cluster / runner group"),
  ).action(async (options: ScopeFlags & { job?: string; json?: boolean }) => {
    const problems = new FlagProblems();
    checkIdentityFlags(options, problems);
    if (!options.org && !options.cluster && !options.repo && !options.workflow) problems.add('policy resolve needs --org ORG [--repo REPO [--workflow PATH]] or --cluster CLUSTER');
    problems.done();
    const result = await call<ResolvePolicyResponse__Output>('ResolvePolicy', {
      job: { org: options.org ?? '', repository: options.repo ?? '', workflow: options.workflow ?? '', job: options.job ?? '', cluster: options.cluster ?? '' },
    });
    if (options.json) return printJson(resolutionJson(result));
    print(result.policy ? `${result.policy.name} (version ${result.policy.version}), from the ${result.attachment ? scopeText(result.attachment.scope) : result.scope} attachment` : 'no policy applies: audit mode');
  });

  json(
    policy
      .command('import-endpoints')
      .description("add a file's endpoints to a policy, without duplicates")
      .argument('<name>', 'the policy')
      .option('--from <source>', 'file:PATH (one endpoint per line, # comments) (required)')
      .option('--dry-run', 'show what would be added, change nothing'),
  ).action(async (name: string, options: { from?: string; dryRun?: boolean; json?: boolean }) => {
    const problems = new FlagProblems();
    problems.check(() => checkName('policy name', name));
    if (!options.from) problems.add('--from file:PATH is required');
    else if (!options.from.startsWith('file:')) problems.add(`unknown import source '${options.from}': only file:PATH today`);
    problems.done();
    const file = options.from!.slice('file:'.length);
    const text = readTextFile(file, '--from');
    const result = await call<{ added: string[]; unchanged: string[]; policy: Policy__Output }>('ImportEndpoints', { name, file: { text, path: file }, dryRun: Boolean(options.dryRun) });
    if (options.json) return printJson({ added: result.added, unchanged: result.unchanged, dryRun: Boolean(options.dryRun), policy: policyJson(result.policy) });
    for (const e of result.added) print(`+ ${e}`);
    print(`${options.dryRun ? 'would add' : 'added'} ${result.added.length}, ${result.unchanged.length} already in ${name}${options.dryRun ? '' : ` (version ${result.policy.version})`}`);
  });

  policy
    .command('export-endpoints')
    .description("a policy's endpoints, one a line (the form import-endpoints reads)")
    .argument('<name>', 'the policy')
    .option('-o, --output <file>', 'write to FILE instead of stdout')
    .action(async (name: string, options: { output?: string }) => {
      const { text } = await call<{ text: string }>('ExportEndpoints', { name });
      if (!options.output) return void process.stdout.write(text);
      try {
        fs.writeFileSync(options.output, text);
      } catch (error) {
        throw fileError('-o', options.output, 'write', error);
      }
    });
}
