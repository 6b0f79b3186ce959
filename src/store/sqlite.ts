/**
 * The policy store in SQLite (better-sqlite3, WAL): zero set-up, one file.
 * Writes run in IMMEDIATE transactions, so concurrent updaters (several
 * server processes on one file, too) are serialized and none is lost.
 */
import Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';
import { StoreError } from './errors';
import { attachedPolicyError, describeChanges, sameContent, type Attachment, type PolicyContent, type PolicyVersion, type Scope, type StoredPolicy } from './model';
import { now, type PolicyRepository, type PolicyUpdate, type TokenRecord } from './repository';
import {
  ATTACHMENTS_FOR_JOB_SQL,
  attachmentFromRow,
  checkExpectedVersion,
  contentColumns,
  policyFromRow,
  positionalParameters,
  scopeColumns,
  tokenFromRow,
  versionFromRow,
  type AttachmentRow,
  type PolicyRow,
  type TokenRow,
  type VersionRow,
} from './rows';

const ATTACHMENTS_FOR_JOB = positionalParameters(ATTACHMENTS_FOR_JOB_SQL);
import { conflictError, pendingMigrations } from './migrations';

/**
 * The database holds token hashes and every policy: a new file is 0600 and a
 * directory ringfence makes is 0700 (SQLite gives -wal and -shm the file's
 * mode). A directory that is not there is an error, not a new empty store
 * somewhere unexpected: a typo in --db would otherwise serve no policies.
 * Only the default path's directory (/var/lib/ringfence) is made, as a
 * package would make it.
 */
export function prepareDatabaseFile(file: string, createDirectory: boolean): void {
  const directory = path.dirname(path.resolve(file));
  let stat: fs.Stats | undefined;
  try {
    stat = fs.statSync(directory);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOTDIR') throw new StoreSetupError(`${nearestFile(directory)} is not a directory`);
    if (code !== 'ENOENT') throw new StoreSetupError(`cannot use directory ${directory} (${code})`);
  }
  if (stat && !stat.isDirectory()) throw new StoreSetupError(`${directory} is not a directory`);
  if (!stat) {
    if (!createDirectory) throw new StoreSetupError(`directory ${directory} does not exist: create it (mode 0700) or give another sqlite:PATH`);
    fs.mkdirSync(directory, { recursive: true, mode: 0o700 });
    fs.chmodSync(directory, 0o700);
  }
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_RDWR, 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
      if (fs.statSync(file).isDirectory()) throw new StoreSetupError(`${file} is a directory, not a database file`);
      return; // an existing database keeps the mode its owner gave it
    }
    throw error;
  }
  try {
    fs.fchmodSync(fd, 0o600); // exactly 0600, whatever the umask
  } finally {
    fs.closeSync(fd);
  }
}

/** The part of a path that exists (for ENOTDIR: the file that stands where a directory should be). */
function nearestFile(directory: string): string {
  let at = directory;
  while (!fs.existsSync(at) && path.dirname(at) !== at) at = path.dirname(at);
  return at;
}

/** A database path that cannot be used, said in a line; open.ts adds which --db it was. */
export class StoreSetupError extends Error {
  override name = 'StoreSetupError';
}

export class SqliteRepository implements PolicyRepository {
  private readonly db: Database.Database;
  private readonly statements = new Map<string, Database.Statement>();

  /** Prepared once, reused: parsing SQL dominated the cost of a resolve. */
  private sql(text: string): Database.Statement {
    let statement = this.statements.get(text);
    if (!statement) {
      statement = this.db.prepare(text);
      this.statements.set(text, statement);
    }
    return statement;
  }

  /** createDirectory: make the file's directory (0700) if missing; only for the default path, see prepareDatabaseFile. */
  constructor(file: string, options: { createDirectory?: boolean } = {}) {
    if (file !== ':memory:') prepareDatabaseFile(file, options.createDirectory ?? false);
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('busy_timeout = 5000');
    this.db.pragma('foreign_keys = ON');
  }

  async migrate(target?: number): Promise<void> {
    this.db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)');
    // IMMEDIATE: a second process starting on the same file waits, then finds the work done
    this.db.transaction(() => {
      for (const { version, migration } of pendingMigrations(this.appliedVersion(), target)) {
        const problems = (migration.conflicts ?? []).flatMap((sql) => (this.db.prepare(sql).all() as { problem: string }[]).map((row) => row.problem));
        if (problems.length) throw conflictError(version, problems);
        for (const statement of migration.statements) this.db.exec(statement);
        this.sql('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)').run(version, now());
      }
    }).immediate();
  }

  private appliedVersion(): number {
    const row = this.sql('SELECT MAX(version) AS version FROM schema_migrations').get() as { version: number | null };
    return row.version ?? 0;
  }

  async schemaVersion(): Promise<number> {
    return this.appliedVersion();
  }

  private row(org: string, name: string): PolicyRow | undefined {
    return this.sql('SELECT * FROM policies WHERE org = ? AND name = ?').get(org, name) as PolicyRow | undefined;
  }

  private recordVersion(policy: StoredPolicy, changes: string[]): void {
    this.sql('INSERT INTO policy_versions (org, name, version, author, created_at, changes, policy) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(policy.org, policy.name, policy.version, policy.updatedBy, policy.updatedAt, JSON.stringify(changes), JSON.stringify(policy));
  }

  async createPolicy(org: string, name: string, content: PolicyContent, author: string): Promise<StoredPolicy> {
    return this.db.transaction(() => {
      if (this.row(org, name)) throw new StoreError('ALREADY_EXISTS', `policy ${name} already exists in ${org}`);
      const policy: StoredPolicy = { org, name, ...content, version: 1, updatedBy: author, updatedAt: now() };
      this.sql('INSERT INTO policies (org, name, version, egress_policy, allowed_endpoints, lockdown_enabled, lockdown_detections, updated_by, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
        .run(org, name, 1, ...contentColumns(content), author, policy.updatedAt);
      this.recordVersion(policy, describeChanges(undefined, content));
      return policy;
    }).immediate();
  }

  async updatePolicy(org: string, name: string, content: PolicyContent, author: string, expectedVersion?: number): Promise<PolicyUpdate> {
    return this.db.transaction((): PolicyUpdate => {
      const row = this.row(org, name);
      if (!row) throw new StoreError('NOT_FOUND', `policy ${name} does not exist in ${org}`);
      const before = policyFromRow(row);
      checkExpectedVersion(name, before.version, expectedVersion);
      if (sameContent(before, content)) return { policy: before, changed: false };
      const policy: StoredPolicy = { org, name, ...content, version: before.version + 1, updatedBy: author, updatedAt: now() };
      this.sql('UPDATE policies SET version = ?, egress_policy = ?, allowed_endpoints = ?, lockdown_enabled = ?, lockdown_detections = ?, updated_by = ?, updated_at = ? WHERE org = ? AND name = ? AND version = ?')
        .run(policy.version, ...contentColumns(content), author, policy.updatedAt, org, name, before.version);
      this.recordVersion(policy, describeChanges(before, content));
      return { policy, changed: true };
    }).immediate();
  }

  async getPolicy(org: string, name: string): Promise<StoredPolicy | undefined> {
    const row = this.row(org, name);
    return row ? policyFromRow(row) : undefined;
  }

  async listPolicies(org: string): Promise<StoredPolicy[]> {
    return (this.sql('SELECT * FROM policies WHERE org = ? ORDER BY name').all(org) as PolicyRow[]).map(policyFromRow);
  }

  async deletePolicy(org: string, name: string, force: boolean): Promise<{ detached: Attachment[] }> {
    return this.db.transaction(() => {
      if (!this.row(org, name)) throw new StoreError('NOT_FOUND', `policy ${name} does not exist in ${org}`);
      const detached = this.attachmentsOf(org, name);
      if (detached.length && !force) throw attachedPolicyError(name, detached);
      this.sql('DELETE FROM attachments WHERE org = ? AND policy = ?').run(org, name);
      this.sql('DELETE FROM policy_versions WHERE org = ? AND name = ?').run(org, name);
      this.sql('DELETE FROM policies WHERE org = ? AND name = ?').run(org, name);
      return { detached };
    }).immediate();
  }

  async history(org: string, name: string): Promise<PolicyVersion[]> {
    if (!this.row(org, name)) throw new StoreError('NOT_FOUND', `policy ${name} does not exist in ${org}`);
    return (this.sql('SELECT * FROM policy_versions WHERE org = ? AND name = ? ORDER BY version').all(org, name) as VersionRow[]).map(versionFromRow);
  }

  async attach(org: string, policy: string, scope: Scope, author: string): Promise<Attachment> {
    return this.db.transaction(() => {
      if (!this.row(org, policy)) throw new StoreError('NOT_FOUND', `policy ${policy} does not exist in ${org}`);
      const existing = this.sql('SELECT * FROM attachments WHERE org = ? AND kind = ? AND repository = ? AND workflow = ? AND cluster = ?')
        .get(org, scope.kind, ...scopeColumns(scope)) as AttachmentRow | undefined;
      if (existing) {
        throw new StoreError('ALREADY_EXISTS', `policy ${existing.policy} is already attached there; detach it first`);
      }
      const createdAt = now();
      this.sql('INSERT INTO attachments (org, policy, kind, repository, workflow, cluster, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
        .run(org, policy, scope.kind, ...scopeColumns(scope), author, createdAt);
      return { org, policy, scope, createdBy: author, createdAt };
    }).immediate();
  }

  async detach(org: string, policy: string, scope: Scope): Promise<void> {
    const changes = this.sql('DELETE FROM attachments WHERE org = ? AND policy = ? AND kind = ? AND repository = ? AND workflow = ? AND cluster = ?')
      .run(org, policy, scope.kind, ...scopeColumns(scope)).changes;
    if (changes === 0) throw new StoreError('NOT_FOUND', `policy ${policy} is not attached there`);
  }

  async attachmentsFor(org: string, repository: string | undefined, workflow: string | undefined, cluster: string | undefined): Promise<Attachment[]> {
    const values = [org, repository ?? '', workflow ?? '', cluster ?? ''];
    return (this.sql(ATTACHMENTS_FOR_JOB.text).all(ATTACHMENTS_FOR_JOB.order.map((n) => values[n - 1])) as AttachmentRow[]).map(attachmentFromRow);
  }

  async listAttachments(org: string, policy?: string): Promise<Attachment[]> {
    if (policy !== undefined) return this.attachmentsOf(org, policy);
    return (this.sql('SELECT * FROM attachments WHERE org = ? ORDER BY kind, repository, workflow, cluster').all(org) as AttachmentRow[]).map(attachmentFromRow);
  }

  private attachmentsOf(org: string, policy: string): Attachment[] {
    return (this.sql('SELECT * FROM attachments WHERE org = ? AND policy = ? ORDER BY kind, repository, workflow, cluster').all(org, policy) as AttachmentRow[]).map(attachmentFromRow);
  }

  async createToken(record: TokenRecord, hash: string): Promise<void> {
    this.sql('INSERT INTO tokens (id, org, role, description, created_at, hash) VALUES (?, ?, ?, ?, ?, ?)')
      .run(record.id, record.org, record.role, record.description, record.createdAt, hash);
  }

  async findToken(hash: string): Promise<TokenRecord | undefined> {
    const row = this.sql('SELECT id, org, role, description, created_at FROM tokens WHERE hash = ?').get(hash) as TokenRow | undefined;
    return row ? tokenFromRow(row) : undefined;
  }

  async listTokens(org?: string): Promise<TokenRecord[]> {
    const columns = 'SELECT id, org, role, description, created_at FROM tokens';
    const rows = org === undefined ? this.sql(`${columns} ORDER BY created_at, id`).all() : this.sql(`${columns} WHERE org = ? ORDER BY created_at, id`).all(org);
    return (rows as TokenRow[]).map(tokenFromRow);
  }

  async deleteToken(id: string): Promise<boolean> {
    return this.sql('DELETE FROM tokens WHERE id = ?').run(id).changes > 0;
  }

  async close(): Promise<void> {
    this.db.close();
  }
}
