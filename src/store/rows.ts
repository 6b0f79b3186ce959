/**
 * Table rows to the model, shared by both repositories (the schema is the
 * same SQL in both: migrations.ts).
 */
import { StoreError } from './errors';
import type { Attachment, PolicyContent, PolicyVersion, Scope, StoredPolicy } from './model';
import type { TokenRecord } from './repository';

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

/** The policies columns egress_policy, allowed_endpoints, lockdown_enabled, lockdown_detections. */
export function contentColumns(content: PolicyContent): [string, string, number, string] {
  return [content.egressPolicy, JSON.stringify(content.allowedEndpoints), content.lockdown.enabled ? 1 : 0, JSON.stringify(content.lockdown.detections)];
}

/** The attachments columns repository, workflow, cluster of a stored scope ('' where unused). */
export function scopeColumns(scope: Scope): [string, string, string] {
  return [scope.repository ?? '', scope.workflow ?? '', scope.cluster ?? ''];
}

/** Refuses an update made on an older version than the stored one (optimistic concurrency). */
export function checkExpectedVersion(name: string, stored: number, expected: number | undefined): void {
  if (expected && stored !== expected) {
    throw new StoreError('FAILED_PRECONDITION', `policy ${name} is at version ${stored}, not ${expected}: it changed since you read it`);
  }
}

export interface VersionRow {
  org: string;
  version: number | string;
  author: string;
  created_at: string;
  changes: string;
  policy: string;
}

export function versionFromRow(row: VersionRow): PolicyVersion {
  // the row's org, not the copy's: schema 2 lowered the column (migrations.ts), not the JSON
  const policy = { ...(JSON.parse(row.policy) as StoredPolicy), org: row.org };
  return { version: Number(row.version), author: row.author, createdAt: row.created_at, changes: JSON.parse(row.changes), policy };
}

export interface TokenRow {
  id: string;
  org: string;
  role: TokenRecord['role'];
  description: string;
  created_at: string;
}

export function tokenFromRow(row: TokenRow): TokenRecord {
  return { id: row.id, org: row.org, role: row.role, description: row.description, createdAt: row.created_at };
}

export function attachmentFromRow(row: AttachmentRow): Attachment {
  const scope: Scope = { kind: row.kind };
  if (row.repository) scope.repository = row.repository;
  if (row.workflow) scope.workflow = row.workflow;
  if (row.cluster) scope.cluster = row.cluster;
  return { org: row.org, policy: row.policy, scope, createdBy: row.created_by, createdAt: row.created_at };
}

/**
 * The attachments that can apply to a job: its organization's, its
 * repository's, its workflow's and its cluster's. Four exact lookups on the
 * primary key (org, kind, repository, workflow, cluster), one per scope kind,
 * since stored scopes leave the columns they do not use empty (normalizeScope):
 * an OR of the four made both databases scan all of the org's attachments.
 * Parameters, PostgreSQL style: $1 org, $2 repository, $3 workflow, $4 cluster.
 */
export const ATTACHMENTS_FOR_JOB_SQL = [
  ['organization', "''", "''", "''"],
  ['repository', '$2', "''", "''"],
  ['workflow', '$2', '$3', "''"],
  ['cluster', "''", "''", '$4'],
]
  .map(([kind, repository, workflow, cluster]) => `SELECT * FROM attachments WHERE org = $1 AND kind = '${kind}' AND repository = ${repository} AND workflow = ${workflow} AND cluster = ${cluster}`)
  .join('\nUNION ALL ');

/** `sql` with $N parameters as SQLite's positional `?`, and the N of each in order. */
export function positionalParameters(sql: string): { text: string; order: number[] } {
  const order: number[] = [];
  const text = sql.replace(/\$(\d+)/g, (_, n: string) => (order.push(Number(n)), '?'));
  return { text, order };
}
