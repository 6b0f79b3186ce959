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
import type { DetachResponse__Output } from '../proto/ringfence/policy/v1/DetachResponse';
import type { Policy__Output } from '../proto/ringfence/policy/v1/Policy';
import { StoreClient } from '../store/client';
import { DEFAULT_AUDIENCE, GITHUB_ISSUER, OidcVerifier } from '../store/oidc';
import { DEFAULT_DB, describeDb, openRepository } from '../store/open';
import { checkName } from '../store/model';
import { SCOPE_KINDS } from '../store/proto';
import type { PolicyRepository } from '../store/repository';
import { createPolicyStoreServer } from '../store/server';
import { createToken, listTokens, revokeToken, TOKEN_CACHE_MS } from '../store/tokens';
import { parseEndpoint } from '../policy/endpoint';
import { DETECTIONS, parsePolicy } from '../policy/policy';
import { policyYaml } from '../agent/store-policy';
import { RingfenceError } from '../util/errors';

export const DEFAULT_LISTEN = '127.0.0.1:7070';

function client(): StoreClient {
  const token = process.env.RINGFENCE_TOKEN;
  if (!token) throw new RingfenceError('RINGFENCE_TOKEN is not set: create a token with `ringfence token create --org ORG --role admin` on the server host', 'RF_USAGE');
  return new StoreClient({ address: process.env.RINGFENCE_SERVER || DEFAULT_LISTEN, token });
}

/** One call; a gRPC failure becomes the one line (plus problem lines) a user reads. */
async function call<Res>(method: string, request: unknown): Promise<Res> {
  const c = client();
  try {
    return await c.call<unknown, Res>(method as never, request);
  } catch (error) {
    const e = error as grpc.ServiceError;
    if (e.code === grpc.status.UNAVAILABLE) throw new RingfenceError(`cannot reach the policy store at ${process.env.RINGFENCE_SERVER || DEFAULT_LISTEN} (set RINGFENCE_SERVER)`, 'RF_UNAVAILABLE');
    const [first, ...problems] = String(e.details ?? e.message).split('\n');
    throw new RingfenceError(`${grpc.status[e.code] ?? e.code}: ${first}`, 'RF_STORE', problems.join('\n') || undefined);
  } finally {
    c.close();
  }
}

const print = (text: string): void => void process.stdout.write(text.endsWith("\n") ? text : text + "\n");

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (c ?? '').padEnd(widths[i])).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

function showPolicy(p: Policy__Output): string {
  return policyYaml(p) + `# version ${p.version}, ${p.updatedAt} by ${p.updatedBy}\n`;
}

function scopeText(s: { kind: string | number; repository?: string; workflow?: string; cluster?: string }): string {
  const kind = SCOPE_KINDS.fromProto[String(s.kind)];
  return kind === 'workflow' ? `workflow ${s.repository}:${s.workflow}` : kind === 'repository' ? `repository ${s.repository}` : kind === 'cluster' ? `cluster ${s.cluster}` : 'organization';
}

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

/** A file the user named, or one line saying why it cannot be read. */
function readUserFile(file: string, flag: string): string {
  return readUserBytes(file, flag).toString('utf8');
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

/** A policy file's text, checked here the way the server will check it, with the file's own name and lines. */
function readPolicyFile(file: string, flag: string): string {
  const text = readUserFile(file, flag);
  parsePolicy(text, file);
  return text;
}

/** --cluster names a scope on its own; --org with it only says which organization the user means. */
function scopeFromFlags(flags: ScopeFlags) {
  if (flags.cluster) {
    if (flags.repo || flags.workflow) throw new RingfenceError('--cluster cannot be combined with --repo or --workflow', 'RF_USAGE');
    return { kind: SCOPE_KINDS.toProto.cluster, cluster: flags.cluster };
  }
  if (!flags.org) throw new RingfenceError('name the scope: --org ORG [--repo REPO [--workflow PATH]] or --cluster CLUSTER', 'RF_USAGE');
  if (flags.workflow && !flags.repo) throw new RingfenceError('--workflow needs --repo', 'RF_USAGE');
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
  group.usage('[options] <command>').argument('[command]').action((name?: string) => {
    const known = group.commands.map((c) => c.name()).join(', ');
    throw new RingfenceError(name ? `unknown command '${group.name()} ${name}' (known: ${known})` : `${group.name()} needs a command: ${known} (--help for more)`, 'RF_USAGE');
  });
}

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
      if (Boolean(options.tlsCert) !== Boolean(options.tlsKey)) throw new RingfenceError('--tls-cert and --tls-key go together', 'RF_USAGE');
      const credentials = options.tlsCert && options.tlsKey ? { cert: readUserBytes(options.tlsCert, '--tls-cert'), key: readUserBytes(options.tlsKey, '--tls-key') } : undefined;
      const repository = await openRepository(options.db);
      const jobIdentity = options.oidc ? new OidcVerifier({ issuer: options.oidcIssuer, audience: options.oidcAudience }) : undefined;
      const server = createPolicyStoreServer({ repository, jobIdentity, log: (line) => process.stderr.write(line + '\n') });
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
    .requiredOption('--org <org>', 'the organization it acts in')
    .requiredOption('--role <role>', 'admin (manage policies) or agent (resolve only)')
    .option('--description <text>', 'what it is for', '')
    .option('--db <url>', 'sqlite:PATH or postgres://…', DEFAULT_DB)
    .action(async (options: { org: string; role: 'admin' | 'agent'; description: string; db: string }) => {
      const { token: secret, record } = await withRepository(options.db, (repository) => createToken(repository, options.org, options.role, options.description));
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
      if (options.json) return print(JSON.stringify(tokens));
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
  const json = (cmd: Command) => cmd.option('--json', 'print JSON');

  json(
    policy
      .command('create')
      .argument('[name]', 'policy name (with --endpoint…)')
      .option('-f, --file <file>', 'policy file (docs/policy.md)')
      .option('--endpoint <endpoint...>', 'allowed endpoints')
      .option('--egress-policy <mode>', 'audit or block', 'audit')
      .option('--lockdown <detection...>', 'enable lockdown with these detections'),
  ).action(async (name: string | undefined, options: { file?: string; endpoint?: string[]; egressPolicy: string; lockdown?: string[]; json?: boolean }) => {
    let yaml: string;
    if (options.file) {
      if (options.endpoint || options.lockdown) throw new RingfenceError('policy create takes -f FILE or --endpoint/--lockdown flags, not both', 'RF_USAGE');
      yaml = readPolicyFile(options.file, '-f');
    } else {
      if (!name) throw new RingfenceError('policy create needs -f FILE, or NAME with --endpoint…', 'RF_USAGE');
      checkName('policy name', name);
      checkPolicyFlags(options);
      yaml = YAML.stringify({
        name,
        'egress-policy': options.egressPolicy,
        'allowed-endpoints': options.endpoint ?? [],
        ...(options.lockdown ? { 'lockdown-mode': { enabled: true, detections: options.lockdown } } : {}),
      });
    }
    const created = await call<Policy__Output>('CreatePolicy', { policyYaml: yaml, name: options.file ? (name ?? '') : name });
    print(options.json ? JSON.stringify(created) : `created policy ${created.name} (version ${created.version})`);
  });

  /**
   * The flag form is checked flag by flag before it becomes YAML, so an error
   * names the flag and value, not a line of YAML the user never wrote.
   */
  function checkPolicyFlags(options: { endpoint?: string[]; egressPolicy: string; lockdown?: string[] }): void {
    if (options.egressPolicy !== 'audit' && options.egressPolicy !== 'block') {
      throw new RingfenceError(`--egress-policy must be 'audit' or 'block', not '${options.egressPolicy}'; nothing was done`, 'RF_USAGE');
    }
    for (const entry of options.endpoint ?? []) {
      try {
        parseEndpoint(entry);
      } catch (error) {
        throw new RingfenceError(`--endpoint '${entry}': ${(error as Error).message}; nothing was done`, 'RF_USAGE');
      }
    }
    for (const detection of options.lockdown ?? []) {
      if (!(DETECTIONS as readonly string[]).includes(detection)) {
        throw new RingfenceError(`--lockdown: unknown detection '${detection}' (known: ${DETECTIONS.join(', ')}); nothing was done`, 'RF_USAGE');
      }
    }
  }

  json(policy.command('update').requiredOption('-f, --file <file>', 'policy file').option('--name <name>', 'when the file has none').option('--expected-version <n>', 'fail if it changed since this version')).action(
    async (options: { file: string; name?: string; expectedVersion?: string; json?: boolean }) => {
      if (options.expectedVersion !== undefined && !/^[1-9][0-9]{0,14}$/.test(options.expectedVersion)) {
        throw new RingfenceError(`--expected-version must be a version number (1 or more), not '${options.expectedVersion}'`, 'RF_USAGE');
      }
      const policyYaml = readPolicyFile(options.file, '-f');
      const updated = await call<Policy__Output>('UpdatePolicy', { policyYaml, name: options.name ?? '', expectedVersion: options.expectedVersion ?? '0' });
      print(options.json ? JSON.stringify(updated) : `updated policy ${updated.name} to version ${updated.version}`);
    },
  );

  json(policy.command('list')).action(async (options: { json?: boolean }) => {
    const { policies } = await call<{ policies: Policy__Output[] }>('ListPolicies', {});
    if (options.json) return print(JSON.stringify(policies));
    print(table(['NAME', 'EGRESS', 'ENDPOINTS', 'LOCKDOWN', 'VERSION', 'UPDATED'], policies.map((p) => [p.name, p.egressPolicy, String(p.allowedEndpoints.length), p.lockdownMode?.enabled ? p.lockdownMode.detections.join(',') : 'off', p.version, p.updatedAt])));
  });

  json(policy.command('show').argument('<name>')).action(async (name: string, options: { json?: boolean }) => {
    const p = await call<Policy__Output>('GetPolicy', { name });
    print(options.json ? JSON.stringify(p) : showPolicy(p));
  });

  json(policy.command('history').argument('<name>')).action(async (name: string, options: { json?: boolean }) => {
    const { versions } = await call<{ versions: { version: string; author: string; createdAt: string; changes: string[] }[] }>('PolicyHistory', { name });
    if (options.json) return print(JSON.stringify(versions));
    print(table(['VERSION', 'WHEN', 'WHO', 'CHANGES'], versions.map((v) => [v.version, v.createdAt, v.author, v.changes.join('; ')])));
  });

  json(policy.command('delete').argument('<name>')).action(async (name: string, options: { json?: boolean }) => {
    const { detached } = await call<{ detached: number }>('DeletePolicy', { name });
    print(options.json ? JSON.stringify({ deleted: name, detached }) : `deleted policy ${name}${detached ? ` and its ${detached} attachment(s)` : ''}`);
  });

  for (const verb of ['attach', 'detach'] as const) {
    json(
      policy
        .command(verb)
        .argument('<name>')
        .option('--org <org>', 'the organization (the scope, unless --repo)')
        .option('--repo <repo>', 'a repository: NAME or OWNER/NAME')
        .option('--workflow <path>', 'a workflow file of --repo, e.g. .github/workflows/ci.yml')
        .option('--cluster <cluster>', 'a runner group / ARC cluster'),
    ).action(async (name: string, flags: ScopeFlags & { json?: boolean }) => {
      const request = { policy: name, scope: scopeFromFlags(flags), org: flags.org ?? '' };
      if (verb === 'attach') {
        const attachment = await call<Attachment__Output>('Attach', request);
        print(flags.json ? JSON.stringify(attachment) : `attached ${name} to ${scopeText(attachment.scope!)}`);
      } else {
        const { scope } = await call<DetachResponse__Output>('Detach', request);
        print(flags.json ? JSON.stringify({ detached: name, scope }) : `detached ${name} from ${scopeText(scope!)}`);
      }
    });
  }

  json(
    policy
      .command('resolve')
      .description('which policy a job gets, and which attachment chose it')
      .requiredOption('--org <org>')
      .option('--repo <repo>')
      .option('--workflow <path>')
      .option('--job <job>')
      .option('--cluster <cluster>'),
  ).action(async (options: { org: string; repo?: string; workflow?: string; job?: string; cluster?: string; json?: boolean }) => {
    const result = await call<{ policy: Policy__Output | null; scope: string; attachment: Attachment__Output | null }>('ResolvePolicy', {
      job: { org: options.org, repository: options.repo ?? '', workflow: options.workflow ?? '', job: options.job ?? '', cluster: options.cluster ?? '' },
    });
    if (options.json) {
      return print(
        JSON.stringify({
          policy: result.policy
            ? { name: result.policy.name, 'egress-policy': result.policy.egressPolicy, 'allowed-endpoints': result.policy.allowedEndpoints, 'lockdown-mode': result.policy.lockdownMode, version: Number(result.policy.version) }
            : null,
          scope: result.scope,
        }),
      );
    }
    print(result.policy ? `${result.policy.name} (version ${result.policy.version}), from the ${result.attachment ? scopeText(result.attachment.scope!) : result.scope} attachment` : 'no policy applies: audit mode');
  });

  json(policy.command('import-endpoints').argument('<name>').requiredOption('--from <source>', 'file:PATH (one endpoint per line, # comments)').option('--dry-run', 'show what would be added, change nothing')).action(
    async (name: string, options: { from: string; dryRun?: boolean; json?: boolean }) => {
      if (!options.from.startsWith('file:')) throw new RingfenceError(`unknown import source '${options.from}': only file:PATH today`, 'RF_USAGE');
      const file = options.from.slice('file:'.length);
      const text = readUserFile(file, '--from');
      const result = await call<{ added: string[]; unchanged: string[]; policy: Policy__Output }>('ImportEndpoints', { name, file: { text, path: file }, dryRun: Boolean(options.dryRun) });
      if (options.json) return print(JSON.stringify(result));
      for (const e of result.added) print(`+ ${e}`);
      print(`${options.dryRun ? 'would add' : 'added'} ${result.added.length}, ${result.unchanged.length} already in ${name}${options.dryRun ? '' : ` (version ${result.policy.version})`}`);
    },
  );

  policy
    .command('export-endpoints')
    .argument('<name>')
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
