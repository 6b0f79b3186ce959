/**
 * Table rows to the model, shared by both repositories (the schema is the
 * same SQL in both: migrations.ts).
 */
import type { Attachment, Scope, StoredPolicy } from './model';

export interface PolicyRow {
  org: string;
  name: string;
  version: number;
  egress_policy: 'audit' | 'block';
  allowed_endpoints: string;
  lockdown_enabled: number;
  lockdown_detections: string;
  updated_by: string;
  updated_at: string;
}

export interface AttachmentRow {
  org: string;
  policy: string;
  kind: Scope['kind'];
  repository: string;
  workflow: string;
  cluster: string;
  created_by: string;
  created_at: string;
}

export function policyFromRow(row: PolicyRow): StoredPolicy {
  return {
    org: row.org,
    name: row.name,
    egressPolicy: row.egress_policy,
    allowedEndpoints: JSON.parse(row.allowed_endpoints) as string[],
    lockdown: { enabled: Boolean(row.lockdown_enabled), detections: JSON.parse(row.lockdown_detections) as string[] },
    version: Number(row.version),
    updatedBy: row.updated_by,
    updatedAt: row.updated_at,
  };
}

export function attachmentFromRow(row: AttachmentRow): Attachment {
  const scope: Scope = { kind: row.kind };
  if (row.repository) scope.repository = row.repository;
  if (row.workflow) scope.workflow = row.workflow;
  if (row.cluster) scope.cluster = row.cluster;
  return { org: row.org, policy: row.policy, scope, createdBy: row.created_by, createdAt: row.created_at };
}
