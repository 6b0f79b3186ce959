/**
 * Storage of the policy store. One interface, two implementations: SQLite
 * (embedded, the default) and PostgreSQL (several server replicas). The
 * shared test suite (test/store/) runs against both.
 */
import type { Attachment, PolicyContent, PolicyVersion, Scope, StoredPolicy } from './model';

export type TokenRole = 'admin' | 'agent';

export interface PolicyUpdate {
  policy: StoredPolicy;
  /** False when the content was the stored one: no new version. */
  changed: boolean;
}

export interface TokenRecord {
  id: string;
  org: string;
  role: TokenRole;
  description: string;
  createdAt: string;
}

export interface PolicyRepository {
  /**
   * Creates the schema or brings it to the newest version (or to `target`,
   * for tests of a migration), in one transaction: a failing step leaves
   * the schema as it was.
   */
  migrate(target?: number): Promise<void>;
  /** The schema version in use (the number of migrations applied). */
  schemaVersion(): Promise<number>;

  /** ALREADY_EXISTS when the org has a policy of that name. */
  createPolicy(org: string, name: string, content: PolicyContent, author: string): Promise<StoredPolicy>;
  /**
   * A new version, unless the content is the stored one (sameContent): then
   * the stored policy, unchanged, and no version. NOT_FOUND when missing;
   * FAILED_PRECONDITION when expectedVersion is given and is not the stored
   * one. Concurrent updates are serialized: each becomes a version, none is lost.
   */
  updatePolicy(org: string, name: string, content: PolicyContent, author: string, expectedVersion?: number): Promise<PolicyUpdate>;
  getPolicy(org: string, name: string): Promise<StoredPolicy | undefined>;
  listPolicies(org: string): Promise<StoredPolicy[]>;
  /**
   * Deletes the policy and its history; NOT_FOUND when missing. An attached
   * policy is FAILED_PRECONDITION (attachedPolicyError) unless force, which
   * deletes its attachments too and returns them.
   */
  deletePolicy(org: string, name: string, force: boolean): Promise<{ detached: Attachment[] }>;
  history(org: string, name: string): Promise<PolicyVersion[]>;

  /** ALREADY_EXISTS when the scope already has a policy attached. */
  attach(org: string, policy: string, scope: Scope, author: string): Promise<Attachment>;
  /** NOT_FOUND when that policy is not attached there. */
  detach(org: string, policy: string, scope: Scope): Promise<void>;
  /** The org's attachments, or those of one policy. */
  listAttachments(org: string, policy?: string): Promise<Attachment[]>;
  /** The attachments that could cover a job (its workflow, repository, cluster, and the org). */
  attachmentsFor(org: string, repository: string | undefined, workflow: string | undefined, cluster: string | undefined): Promise<Attachment[]>;

  createToken(record: TokenRecord, hash: string): Promise<void>;
  findToken(hash: string): Promise<TokenRecord | undefined>;
  /** The tokens of one organization, or of all; never their hashes. Oldest first. */
  listTokens(org?: string): Promise<TokenRecord[]>;
  /** Deletes a token; false when there is none with that id. */
  deleteToken(id: string): Promise<boolean>;

  close(): Promise<void>;
}

export const now = () => new Date().toISOString();
