/** Loads proto/ringfence/policy/v1/policy_store.proto (types are generated into src/proto/). */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import path from 'node:path';
import { REPO_ROOT } from '../util/paths';
import type { ProtoGrpcType } from '../proto/policy_store';
import type { ScopeKind__Output } from '../proto/ringfence/policy/v1/ScopeKind';
import type { ScopeKind } from './model';

export const PROTO_FILE = path.join(REPO_ROOT, 'proto/ringfence/policy/v1/policy_store.proto');

/** Options shared by the loader and the type generator (package.json build:proto). */
const LOADER_OPTIONS: protoLoader.Options = { keepCase: false, longs: String, enums: String, defaults: true, oneofs: true };

let loaded: ProtoGrpcType | undefined;

export function loadPolicyStoreProto(): ProtoGrpcType['ringfence']['policy']['v1']['PolicyStore'] {
  loaded ??= grpc.loadPackageDefinition(protoLoader.loadSync(PROTO_FILE, LOADER_OPTIONS)) as unknown as ProtoGrpcType;
  return loaded.ringfence.policy.v1.PolicyStore;
}

export const SCOPE_KINDS = {
  toProto: {
    cluster: 'SCOPE_KIND_CLUSTER',
    organization: 'SCOPE_KIND_ORGANIZATION',
    repository: 'SCOPE_KIND_REPOSITORY',
    workflow: 'SCOPE_KIND_WORKFLOW',
  } as Record<ScopeKind, ScopeKind__Output>,
  fromProto: {
    SCOPE_KIND_CLUSTER: 'cluster',
    SCOPE_KIND_ORGANIZATION: 'organization',
    SCOPE_KIND_REPOSITORY: 'repository',
    SCOPE_KIND_WORKFLOW: 'workflow',
  } as Record<string, ScopeKind>,
};
