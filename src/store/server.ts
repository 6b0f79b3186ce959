/**
 * The policy store's gRPC server (proto/ringfence/policy/v1/policy_store.proto).
 * Every call authenticates with `authorization: Bearer TOKEN` and acts in the
 * token's organization; errors carry a gRPC status and one clear line.
 */
import * as grpc from '@grpc/grpc-js';
import type { PolicyStoreHandlers } from '../proto/ringfence/policy/v1/PolicyStore';
import type { Policy__Output as PolicyMessage } from '../proto/ringfence/policy/v1/Policy';
import type { Scope__Output as ScopeMessage } from '../proto/ringfence/policy/v1/Scope';
import type { Attachment__Output as AttachmentMessage } from '../proto/ringfence/policy/v1/Attachment';
import { loadPolicyStoreProto, SCOPE_KINDS } from './proto';
import { StoreError } from './errors';
import type { Attachment, Scope, StoredPolicy } from './model';
import type { PolicyRepository } from './repository';
import { PolicyService, type Caller } from './service';
import { callerForToken } from './tokens';
import type { JobIdentityVerifier } from './oidc';

const STATUS: Record<StoreError['code'], grpc.status> = {
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  NOT_FOUND: grpc.status.NOT_FOUND,
  ALREADY_EXISTS: grpc.status.ALREADY_EXISTS,
  FAILED_PRECONDITION: grpc.status.FAILED_PRECONDITION,
  PERMISSION_DENIED: grpc.status.PERMISSION_DENIED,
  UNAUTHENTICATED: grpc.status.UNAUTHENTICATED,
};

export function policyMessage(p: StoredPolicy): PolicyMessage {
  return {
    org: p.org,
    name: p.name,
    egressPolicy: p.egressPolicy,
    allowedEndpoints: p.allowedEndpoints,
    lockdownMode: { enabled: p.lockdown.enabled, detections: p.lockdown.detections },
    version: String(p.version),
    updatedBy: p.updatedBy,
    updatedAt: p.updatedAt,
  };
}

export function scopeFromMessage(scope: ScopeMessage | null | undefined): Scope {
  const kind = SCOPE_KINDS.fromProto[String(scope?.kind ?? '')];
  if (!scope || !kind) throw new StoreError('INVALID_ARGUMENT', 'a scope kind is required (cluster, organization, repository or workflow)');
  return { kind, repository: scope.repository || undefined, workflow: scope.workflow || undefined, cluster: scope.cluster || undefined };
}

export function attachmentMessage(a: Attachment): AttachmentMessage {
  return {
    policy: a.policy,
    scope: { kind: SCOPE_KINDS.toProto[a.scope.kind], repository: a.scope.repository ?? '', workflow: a.scope.workflow ?? '', cluster: a.scope.cluster ?? '' },
    createdBy: a.createdBy,
    createdAt: a.createdAt,
  };
}

export interface ServerOptions {
  repository: PolicyRepository;
  /** Verifies GitHub OIDC id-tokens of jobs; without it, only tokens work. */
  jobIdentity?: JobIdentityVerifier;
  log?: (line: string) => void;
}

type Call = grpc.ServerUnaryCall<unknown, unknown>;

export function createPolicyStoreServer(options: ServerOptions): grpc.Server {
  const service = new PolicyService(options.repository);
  const log = options.log ?? (() => undefined);

  async function authenticate(call: Call): Promise<Caller> {
    const header = String(call.metadata.get('authorization')[0] ?? '');
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match) throw new StoreError('UNAUTHENTICATED', 'missing "authorization: Bearer TOKEN" metadata');
    const credential = match[1];
    if (credential.split('.').length === 3) {
      if (!options.jobIdentity) throw new StoreError('UNAUTHENTICATED', 'this server does not accept OIDC id-tokens (no issuer configured)');
      return options.jobIdentity.verify(credential);
    }
    return callerForToken(options.repository, credential);
  }

  /** Wraps a handler: authentication, errors to statuses, nothing thrown past here. */
  function unary<Req, Res>(name: string, handler: (caller: Caller, request: Req) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      authenticate(call as Call)
        .then((caller) => handler(caller, call.request))
        .then(
          (response) => callback(null, response),
          (error: unknown) => {
            if (error instanceof StoreError) {
              const metadata = new grpc.Metadata();
              error.details.forEach((line, i) => metadata.set(`problem-${i}`, line));
              callback({ code: STATUS[error.code], details: error.message + (error.details.length ? `:\n${error.details.join('\n')}` : ''), metadata });
            } else {
              log(`policy store: ${name}: ${(error as Error).stack ?? String(error)}`);
              callback({ code: grpc.status.INTERNAL, details: `internal error in ${name}` });
            }
          },
        );
    };
  }

  const handlers: PolicyStoreHandlers = {
    CreatePolicy: unary('CreatePolicy', async (caller, req) => policyMessage(await service.create(caller, req.policyYaml, req.name || undefined))),
    UpdatePolicy: unary('UpdatePolicy', async (caller, req) => policyMessage(await service.update(caller, req.policyYaml, req.name || undefined, Number(req.expectedVersion) || undefined))),
    GetPolicy: unary('GetPolicy', async (caller, req) => policyMessage(await service.get(caller, req.name))),
    ListPolicies: unary('ListPolicies', async (caller) => ({ policies: (await service.list(caller)).map(policyMessage) })),
    DeletePolicy: unary('DeletePolicy', async (caller, req) => service.remove(caller, req.name)),
    PolicyHistory: unary('PolicyHistory', async (caller, req) => ({
      versions: (await service.history(caller, req.name)).map((v) => ({ version: String(v.version), author: v.author, createdAt: v.createdAt, changes: v.changes, policy: policyMessage(v.policy) })),
    })),
    Attach: unary('Attach', async (caller, req) => attachmentMessage(await service.attach(caller, req.policy, scopeFromMessage(req.scope)))),
    Detach: unary('Detach', async (caller, req) => {
      await service.detach(caller, req.policy, scopeFromMessage(req.scope));
      return {};
    }),
    ListAttachments: unary('ListAttachments', async (caller) => ({ attachments: (await service.attachments(caller)).map(attachmentMessage) })),
    ResolvePolicy: unary('ResolvePolicy', async (caller, req) => {
      const job = req.job;
      if (!job?.org) throw new StoreError('INVALID_ARGUMENT', 'a job context with at least its organization is required');
      const resolution = await service.resolve(caller, {
        org: job.org,
        repository: job.repository || undefined,
        workflow: job.workflow || undefined,
        job: job.job || undefined,
        cluster: job.cluster || undefined,
        namedPolicy: job.namedPolicy || undefined,
      });
      return {
        policy: resolution.policy ? policyMessage(resolution.policy) : null,
        scope: resolution.scope,
        attachment: resolution.attachment ? attachmentMessage(resolution.attachment) : null,
      };
    }),
    ImportEndpoints: unary('ImportEndpoints', async (caller, req) => {
      if (!req.file) throw new StoreError('INVALID_ARGUMENT', 'an import source is required (a file)');
      const result = await service.importEndpoints(caller, req.name, { text: req.file.text, path: req.file.path }, req.dryRun);
      return { added: result.added, unchanged: result.unchanged, policy: policyMessage(result.policy) };
    }),
    ExportEndpoints: unary('ExportEndpoints', async (caller, req) => ({ text: await service.exportEndpoints(caller, req.name) })),
  } as PolicyStoreHandlers;

  // channelz keeps per-call statistics nobody reads here, and its per-call
  // objects are promoted with each HTTP/2 stream (see docs/benchmarks.md)
  const server = new grpc.Server({ 'grpc.enable_channelz': 0 });
  server.addService(loadPolicyStoreProto().service, handlers as unknown as grpc.UntypedServiceImplementation);
  return server;
}
