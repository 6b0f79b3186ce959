/**
 * The store's records as the CLI's --json prints them: one style for every
 * command (camelCase keys, numbers as numbers, scope kinds and resolution
 * scopes in the words of docs/policy-store.md), and a field that does not
 * apply is left out rather than printed as "" or null. The wire messages
 * (proto3: int64 as strings, enum names, "" for unset) stay the wire's.
 */
import type { Attachment__Output } from '../proto/ringfence/policy/v1/Attachment';
import type { Policy__Output } from '../proto/ringfence/policy/v1/Policy';
import type { Scope__Output } from '../proto/ringfence/policy/v1/Scope';
import type { Scope } from './model';
import { SCOPE_KINDS } from './proto';
import type { TokenRecord } from './repository';

export interface PolicyJson {
  org: string;
  name: string;
  egressPolicy: 'audit' | 'block';
  allowedEndpoints: string[];
  lockdownMode: { enabled: boolean; detections: string[] };
  version: number;
  updatedBy: string;
  updatedAt: string;
}

export function policyJson(p: Policy__Output): PolicyJson {
  return {
    org: p.org,
    name: p.name,
    egressPolicy: p.egressPolicy as PolicyJson['egressPolicy'],
    allowedEndpoints: [...p.allowedEndpoints],
    lockdownMode: { enabled: p.lockdownMode?.enabled ?? false, detections: [...(p.lockdownMode?.detections ?? [])] },
    version: Number(p.version),
    updatedBy: p.updatedBy,
    updatedAt: p.updatedAt,
  };
}

/** A wire scope in the model's form: its kind's word, and only the fields it uses. */
export function scopeFromProto(s: Scope__Output | null | undefined): Scope {
  const scope: Scope = { kind: SCOPE_KINDS.fromProto[String(s?.kind)] };
  if (s?.repository) scope.repository = s.repository;
  if (s?.workflow) scope.workflow = s.workflow;
  if (s?.cluster) scope.cluster = s.cluster;
  return scope;
}

export function attachmentJson(a: Attachment__Output): { policy: string; scope: Scope; createdBy: string; createdAt: string } {
  return { policy: a.policy, scope: scopeFromProto(a.scope), createdBy: a.createdBy, createdAt: a.createdAt };
}

export function versionJson(v: { version: string; author: string; createdAt: string; changes: string[]; policy: Policy__Output | null }) {
  return { version: Number(v.version), author: v.author, createdAt: v.createdAt, changes: [...v.changes], ...(v.policy ? { policy: policyJson(v.policy) } : {}) };
}

export function tokenJson(t: TokenRecord) {
  return { id: t.id, org: t.org, role: t.role, createdAt: t.createdAt, ...(t.description ? { description: t.description } : {}) };
}

/** `policy resolve --json`: the scope that decided, and the policy and attachment when there are. */
export function resolutionJson(r: { policy: Policy__Output | null; scope: string; attachment: Attachment__Output | null }) {
  return { scope: r.scope, ...(r.policy ? { policy: policyJson(r.policy) } : {}), ...(r.attachment ? { attachment: attachmentJson(r.attachment) } : {}) };
}
