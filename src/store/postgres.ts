/**
 * The policy store in PostgreSQL, for several server replicas behind a load
 * balancer. Updates lock the policy row (SELECT … FOR UPDATE), so concurrent
 * updates from any replica are serialized and none is lost.
 */
import { Pool, type PoolClient } from 'pg';
import { StoreError } from './errors';
import { conflictError, pendingMigrations } from './migrations';
import { attachedPolicyError, describeChanges, sameContent, type Attachment, type PolicyContent, type PolicyVersion, type Scope, type StoredPolicy } from './model';
import { now, type PolicyRepository, type PolicyUpdate, type TokenRecord } from './repository';
import { ATTACHMENTS_FOR_JOB_SQL, attachmentFromRow, checkExpectedVersion, contentColumns, policyFromRow, scopeColumns, tokenFromRow, versionFromRow } from './rows';

/** Serialization failures and deadlocks are retried; everything else is final. */
const RETRYABLE = new Set(['40001', '40P01']);

/** The order listAttachments gives (kind, repository, workflow, cluster), for rows RETURNING gave in any order. */
function sortAttachments(attachments: Attachment[]): Attachment[] {
  const key = (a: Attachment) => [a.scope.kind, a.scope.repository ?? '', a.scope.workflow ?? '', a.scope.cluster ?? ''].join('\0');
  return [...attachments].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

export class PostgresRepository implements PolicyRepository {
  private readonly pool: Pool;

  constructor(url: string) {
    this.pool = new Pool({ connectionString: url, max: 16 });
  }

  private async transaction<T>(work: (client: PoolClient) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const client = await this.pool.connect();
      try {
        await client.query('BEGIN');
        const result = await work(client);
        await client.query('COMMIT');
        return result;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        if (attempt < 5 && RETRYABLE.has((error as { code?: string }).code ?? '')) continue;
        if ((error as { code?: string }).code === '23505') throw new StoreError('ALREADY_EXISTS', (error as Error).message);
        throw error;
      } finally {
        client.release();
      }
    }
  }

  async migrate(target?: number): Promise<void> {
    await this.transaction(async (client) => {
      // one migrator at a time, whichever replica starts first
      await client.query('SELECT pg_advisory_xact_lock(7465201)');
      await client.query('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)');
      const { rows } = await client.query('SELECT COALESCE(MAX(version), 0) AS version FROM schema_migrations');
      for (const { version, migration } of pendingMigrations(Number(rows[0].version), target)) {
        const problems: string[] = [];
        for (const sql of migration.conflicts ?? []) problems.push(...(await client.query<{ problem: string }>(sql)).rows.map((row) => row.problem));
        if (problems.length) throw conflictError(version, problems);
        for (const statement of migration.statements) await client.query(statement);
        await client.query('INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)', [version, now()]);
      }
    });
  }

  async schemaVersion(): Promise<number> {
    const { rows } = await this.pool.query('SELECT COALESCE(MAX(version), 0) AS version FROM schema_migrations');
    return Number(rows[0].version);
  }

  private async recordVersion(client: PoolClient, policy: StoredPolicy, changes: string[]): Promise<void> {
    await client.query('INSERT INTO policy_versions (org, name, version, author, created_at, changes, policy) VALUES ($1, $2, $3, $4, $5, $6, $7)', [
      policy.org,
      policy.name,
      policy.version,
      policy.updatedBy,
      policy.updatedAt,
      JSON.stringify(changes),
      JSON.stringify(policy),
    ]);
  }

  async createPolicy(org: string, name: string, content: PolicyContent, author: string): Promise<StoredPolicy> {
    return this.transaction(async (client) => {
      const policy: StoredPolicy = { org, name, ...content, version: 1, updatedBy: author, updatedAt: now() };
      const inserted = await client.query(
        `INSERT INTO policies (org, name, version, egress_policy, allowed_endpoints, lockdown_enabled, lockdown_detections, updated_by, updated_at)
         VALUES ($1, $2, 1, $3, $4, $5, $6, $7, $8) ON CONFLICT (org, name) DO NOTHING`,
        [org, name, ...contentColumns(content), author, policy.updatedAt],
      );
      if (inserted.rowCount === 0) throw new StoreError('ALREADY_EXISTS', `policy ${name} already exists in ${org}`);
      await this.recordVersion(client, policy, describeChanges(undefined, content));
      return policy;
    });
  }

  async updatePolicy(org: string, name: string, content: PolicyContent, author: string, expectedVersion?: number): Promise<PolicyUpdate> {
    return this.transaction(async (client): Promise<PolicyUpdate> => {
      const { rows } = await client.query('SELECT * FROM policies WHERE org = $1 AND name = $2 FOR UPDATE', [org, name]);
      if (rows.length === 0) throw new StoreError('NOT_FOUND', `policy ${name} does not exist in ${org}`);
      const before = policyFromRow(rows[0]);
      checkExpectedVersion(name, before.version, expectedVersion);
      if (sameContent(before, content)) return { policy: before, changed: false };
      const policy: StoredPolicy = { org, name, ...content, version: before.version + 1, updatedBy: author, updatedAt: now() };
      await client.query(
        `UPDATE policies SET version = $1, egress_policy = $2, allowed_endpoints = $3, lockdown_enabled = $4, lockdown_detections = $5, updated_by = $6, updated_at = $7
         WHERE org = $8 AND name = $9`,
        [policy.version, ...contentColumns(content), author, policy.updatedAt, org, name],
      );
      await this.recordVersion(client, policy, describeChanges(before, content));
      return { policy, changed: true };
    });
  }

  async getPolicy(org: string, name: string): Promise<StoredPolicy | undefined> {
    const { rows } = await this.pool.query('SELECT * FROM policies WHERE org = $1 AND name = $2', [org, name]);
    return rows[0] ? policyFromRow(rows[0]) : undefined;
  }

  async listPolicies(org: string): Promise<StoredPolicy[]> {
    const { rows } = await this.pool.query('SELECT * FROM policies WHERE org = $1 ORDER BY name', [org]);
    return rows.map(policyFromRow);
  }

  async deletePolicy(org: string, name: string, force: boolean): Promise<{ detached: Attachment[] }> {
    return this.transaction(async (client) => {
      const found = await client.query('SELECT 1 FROM policies WHERE org = $1 AND name = $2 FOR UPDATE', [org, name]);
      if (found.rowCount === 0) throw new StoreError('NOT_FOUND', `policy ${name} does not exist in ${org}`);
      // a concurrent attach waits on the row lock (its foreign key check) and fails once this commits
      const detached = (await client.query('DELETE FROM attachments WHERE org = $1 AND policy = $2 RETURNING *', [org, name])).rows.map(attachmentFromRow);
      if (detached.length && !force) throw attachedPolicyError(name, sortAttachments(detached));
      await client.query('DELETE FROM policy_versions WHERE org = $1 AND name = $2', [org, name]);
      await client.query('DELETE FROM policies WHERE org = $1 AND name = $2', [org, name]);
      return { detached: sortAttachments(detached) };
    });
  }

  async history(org: string, name: string): Promise<PolicyVersion[]> {
    if (!(await this.getPolicy(org, name))) throw new StoreError('NOT_FOUND', `policy ${name} does not exist in ${org}`);
    const { rows } = await this.pool.query('SELECT * FROM policy_versions WHERE org = $1 AND name = $2 ORDER BY version', [org, name]);
    return rows.map(versionFromRow);
  }

  async attach(org: string, policy: string, scope: Scope, author: string): Promise<Attachment> {
    return this.transaction(async (client) => {
      const found = await client.query('SELECT 1 FROM policies WHERE org = $1 AND name = $2', [org, policy]);
      if (found.rowCount === 0) throw new StoreError('NOT_FOUND', `policy ${policy} does not exist in ${org}`);
      const createdAt = now();
      const inserted = await client.query(
        `INSERT INTO attachments (org, policy, kind, repository, workflow, cluster, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (org, kind, repository, workflow, cluster) DO NOTHING`,
        [org, policy, scope.kind, ...scopeColumns(scope), author, createdAt],
      );
      if (inserted.rowCount === 0) {
        const { rows } = await client.query('SELECT policy FROM attachments WHERE org = $1 AND kind = $2 AND repository = $3 AND workflow = $4 AND cluster = $5', [org, scope.kind, ...scopeColumns(scope)]);
        throw new StoreError('ALREADY_EXISTS', `policy ${rows[0]?.policy ?? '?'} is already attached there; detach it first`);
      }
      return { org, policy, scope, createdBy: author, createdAt };
    });
  }

  async detach(org: string, policy: string, scope: Scope): Promise<void> {
    const result = await this.pool.query('DELETE FROM attachments WHERE org = $1 AND policy = $2 AND kind = $3 AND repository = $4 AND workflow = $5 AND cluster = $6', [org, policy, scope.kind, ...scopeColumns(scope)]);
    if (result.rowCount === 0) throw new StoreError('NOT_FOUND', `policy ${policy} is not attached there`);
  }

  async attachmentsFor(org: string, repository: string | undefined, workflow: string | undefined, cluster: string | undefined): Promise<Attachment[]> {
    const { rows } = await this.pool.query({ name: 'attachments-for-job', text: ATTACHMENTS_FOR_JOB_SQL, values: [org, repository ?? '', workflow ?? '', cluster ?? ''] });
    return rows.map(attachmentFromRow);
  }

  async listAttachments(org: string, policy?: string): Promise<Attachment[]> {
    const { rows } =
      policy === undefined
        ? await this.pool.query('SELECT * FROM attachments WHERE org = $1 ORDER BY kind, repository, workflow, cluster', [org])
        : await this.pool.query('SELECT * FROM attachments WHERE org = $1 AND policy = $2 ORDER BY kind, repository, workflow, cluster', [org, policy]);
    return rows.map(attachmentFromRow);
  }

  async createToken(record: TokenRecord, hash: string): Promise<void> {
    await this.pool.query('INSERT INTO tokens (id, org, role, description, created_at, hash) VALUES ($1, $2, $3, $4, $5, $6)', [
      record.id,
      record.org,
      record.role,
      record.description,
      record.createdAt,
      hash,
    ]);
  }

  async findToken(hash: string): Promise<TokenRecord | undefined> {
    const { rows } = await this.pool.query('SELECT id, org, role, description, created_at FROM tokens WHERE hash = $1', [hash]);
    return rows[0] ? tokenFromRow(rows[0]) : undefined;
  }

  async listTokens(org?: string): Promise<TokenRecord[]> {
    const columns = 'SELECT id, org, role, description, created_at FROM tokens';
    const { rows } = org === undefined ? await this.pool.query(`${columns} ORDER BY created_at, id`) : await this.pool.query(`${columns} WHERE org = $1 ORDER BY created_at, id`, [org]);
    return rows.map(tokenFromRow);
  }

  async deleteToken(id: string): Promise<boolean> {
    return ((await this.pool.query('DELETE FROM tokens WHERE id = $1', [id])).rowCount ?? 0) > 0;
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
