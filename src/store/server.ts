/**
 * The policy store's gRPC server (proto/ringfence/policy/v1/policy_store.proto)
 * on our gRPC transport (src/rpc/, why there: docs/policy-store.md
 * "Performance"). Every call authenticates with `authorization: Bearer TOKEN`
 * and acts in the token's organization; errors carry a gRPC status and one
 * clear line.
 */
import type * as grpc from '@grpc/grpc-js';
import { GrpcServer, RpcError, Status, type UnaryMethod } from '../rpc/grpc-server';
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

const STATUS: Record<StoreError['code'], Status> = {
  INVALID_ARGUMENT: Status.INVALID_ARGUMENT,
  NOT_FOUND: Status.NOT_FOUND,
  ALREADY_EXISTS: Status.ALREADY_EXISTS,
  FAILED_PRECONDITION: Status.FAILED_PRECONDITION,
  PERMISSION_DENIED: Status.PERMISSION_DENIED,
  UNAUTHENTICATED: Status.UNAUTHENTICATED,
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

export function scopeMessage(scope: Scope): ScopeMessage {
  return { kind: SCOPE_KINDS.toProto[scope.kind], repository: scope.repository ?? '', workflow: scope.workflow ?? '', cluster: scope.cluster ?? '' };
}

export function attachmentMessage(a: Attachment): AttachmentMessage {
  return {
    policy: a.policy,
    scope: scopeMessage(a.scope),
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

type MethodName = keyof PolicyStoreHandlers & keyof ReturnType<typeof loadPolicyStoreProto>['service'];
type RequestOf<K extends MethodName> = PolicyStoreHandlers[K] extends grpc.handleUnaryCall<infer Req, unknown> ? Req : never;
type ResponseOf<K extends MethodName> = PolicyStoreHandlers[K] extends grpc.handleUnaryCall<never, infer Res> ? Res : never;

export function createPolicyStoreServer(options: ServerOptions): GrpcServer {
  const service = new PolicyService(options.repository);
  const definition = loadPolicyStoreProto().service;
  const server = new GrpcServer({ log: options.log });

  async function authenticate(header: string | undefined): Promise<Caller> {
    const match = /^Bearer\s+(\S+)$/i.exec(header ?? '');
    if (!match) throw new StoreError('UNAUTHENTICATED', 'missing "authorization: Bearer TOKEN" metadata');
    const credential = match[1];
    if (credential.split('.').length === 3) {
      if (!options.jobIdentity) throw new StoreError('UNAUTHENTICATED', 'this server does not accept OIDC id-tokens (no issuer configured)');
      return options.jobIdentity.verify(credential);
    }
    return callerForToken(options.repository, credential);
  }

  /** Serves a method: authentication first, store errors to statuses (their details as problem-N trailers). */
  function unary<K extends MethodName>(name: K, handler: (caller: Caller, request: RequestOf<K>) => Promise<ResponseOf<K>>): void {
    server.addUnary(definition[name] as unknown as UnaryMethod<RequestOf<K>, ResponseOf<K>>, async (call) => {
      try {
        return await handler(await authenticate(call.metadata('authorization')), call.request);
      } catch (error) {
        if (!(error instanceof StoreError)) throw error;
        const message = error.message + (error.details.length ? `:\n${error.details.join('\n')}` : '');
        throw new RpcError(STATUS[error.code], message, error.details.map((line, i) => [`problem-${i}`, line] as const));
      }
    });
  }

  unary('CreatePolicy', async (caller, req) => policyMessage(await service.create(caller, req.policyYaml, req.name || undefined)));
  // expected_version 0 is proto3's "not set"
  unary('UpdatePolicy', async (caller, req) => {
    const { policy, changed } = await service.update(caller, req.policyYaml, req.name || undefined, req.expectedVersion === '0' ? undefined : Number(req.expectedVersion));
    return { policy: policyMessage(policy), changed };
  });
  unary('GetPolicy', async (caller, req) => policyMessage(await service.get(caller, req.name)));
  unary('ListPolicies', async (caller) => ({ policies: (await service.list(caller)).map(policyMessage) }));
  unary('DeletePolicy', async (caller, req) => {
    const { detached } = await service.remove(caller, req.name, req.force);
    return { detached: detached.length, attachments: detached.map(attachmentMessage) };
  });
  unary('PolicyHistory', async (caller, req) => ({
    versions: (await service.history(caller, req.name)).map((v) => ({ version: String(v.version), author: v.author, createdAt: v.createdAt, changes: v.changes, policy: policyMessage(v.policy) })),
  }));
  unary('Attach', async (caller, req) => attachmentMessage(await service.attach(caller, req.policy, scopeFromMessage(req.scope), req.org || undefined)));
  unary('Detach', async (caller, req) => ({ scope: scopeMessage(await service.detach(caller, req.policy, scopeFromMessage(req.scope), req.org || undefined)) }));
  unary('ListAttachments', async (caller, req) => ({ attachments: (await service.attachments(caller, req.policy || undefined)).map(attachmentMessage) }));
  unary('ResolvePolicy', async (caller, req) => {
    const job = req.job;
    if (!job) throw new StoreError('INVALID_ARGUMENT', 'a job context is required');
    const resolution = await service.resolve(caller, {
      org: job.org || undefined,
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
  });
  unary('ImportEndpoints', async (caller, req) => {
    if (!req.file) throw new StoreError('INVALID_ARGUMENT', 'an import source is required (a file)');
    const result = await service.importEndpoints(caller, req.name, { text: req.file.text, path: req.file.path }, req.dryRun);
    return { added: result.added, unchanged: result.unchanged, policy: policyMessage(result.policy) };
  });
  unary('ExportEndpoints', async (caller, req) => ({ text: await service.exportEndpoints(caller, req.name) }));
  return server;
}
