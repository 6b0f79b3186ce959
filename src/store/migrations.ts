/**
 * Versioned schema migrations: entry i brings the schema from version i to
 * i+1. Append, never edit an applied one. Plain SQL that SQLite and
 * PostgreSQL both take, so the two stores cannot drift apart. Each
 * repository applies all pending migrations in one transaction.
 */

export interface Migration {
  /**
   * Queries that find data the migration cannot carry over on its own; each
   * row's `problem` column is one line for the person who must decide. Any
   * row stops the migration before it changes anything.
   */
  conflicts?: string[];
  statements: string[];
}

/** The error that stops a migration: what to resolve, at most a few lines of it. */
export function conflictError(version: number, problems: string[]): Error {
  const shown = problems.slice(0, 5).join('; ') + (problems.length > 5 ? `; and ${problems.length - 5} more` : '');
  return new Error(`schema ${version} cannot be applied, nothing was changed: ${shown}`);
}

/**
 * The migrations that bring a database from schema `applied` to `target`,
 * each with the version it makes. A database written by a newer ringfence is
 * refused: this one would misread it, or write rows it no longer expects.
 */
export function pendingMigrations(applied: number, target = MIGRATIONS.length): { version: number; migration: Migration }[] {
  if (applied > MIGRATIONS.length) throw new Error(`the database is at schema ${applied}, newer than this ringfence knows (${MIGRATIONS.length}): run a newer ringfence`);
  return MIGRATIONS.slice(applied, target).map((migration, i) => ({ version: applied + i + 1, migration }));
}

export const MIGRATIONS: Migration[] = [
  {
    statements: [
    `CREATE TABLE policies (
      org TEXT NOT NULL,
      name TEXT NOT NULL,
      version INTEGER NOT NULL,
      egress_policy TEXT NOT NULL CHECK (egress_policy IN ('audit', 'block')),
      allowed_endpoints TEXT NOT NULL,
      lockdown_enabled INTEGER NOT NULL,
      lockdown_detections TEXT NOT NULL,
      updated_by TEXT NOT NULL,
      updated_at TEXT NOT NULL,
      PRIMARY KEY (org, name)
    )`,
    `CREATE TABLE policy_versions (
      org TEXT NOT NULL,
      name TEXT NOT NULL,
      version INTEGER NOT NULL,
      author TEXT NOT NULL,
      created_at TEXT NOT NULL,
      changes TEXT NOT NULL,
      policy TEXT NOT NULL,
      PRIMARY KEY (org, name, version)
    )`,
    `CREATE TABLE attachments (
      org TEXT NOT NULL,
      policy TEXT NOT NULL,
      kind TEXT NOT NULL CHECK (kind IN ('cluster', 'organization', 'repository', 'workflow')),
      repository TEXT NOT NULL DEFAULT '',
      workflow TEXT NOT NULL DEFAULT '',
      cluster TEXT NOT NULL DEFAULT '',
      created_by TEXT NOT NULL,
      created_at TEXT NOT NULL,
      PRIMARY KEY (org, kind, repository, workflow, cluster),
      FOREIGN KEY (org, policy) REFERENCES policies (org, name)
    )`,
    `CREATE TABLE tokens (
      id TEXT PRIMARY KEY,
      org TEXT NOT NULL,
      role TEXT NOT NULL CHECK (role IN ('admin', 'agent')),
      description TEXT NOT NULL,
      created_at TEXT NOT NULL,
      hash TEXT NOT NULL UNIQUE
    )`,
    ],
  },
  // 2: organization and repository names are case-insensitive (model.ts orgName): kept in lower case.
  // The policy rows are copied rather than updated in place because attachments reference them
  // and neither database defers that check by default. Where lowering would make two policies or
  // two attachments one, the migration stops and says which: which to keep is a person's decision.
  {
    conflicts: [
      `SELECT 'policy ' || name || ' exists under ' || CAST(count(*) AS TEXT) || ' spellings of organization ' || lower(org) AS problem
       FROM policies GROUP BY lower(org), name HAVING count(*) > 1`,
      `SELECT 'organization ' || lower(org) || ' has ' || CAST(count(*) AS TEXT) || ' attachments on the ' || kind || ' scope'
         || CASE WHEN lower(repository) <> '' THEN ' ' || lower(repository) ELSE '' END
         || CASE WHEN workflow <> '' THEN ':' || workflow ELSE '' END
         || CASE WHEN cluster <> '' THEN ' ' || cluster ELSE '' END
         || ' that differ only in case (detach all but one)' AS problem
       FROM attachments GROUP BY lower(org), kind, lower(repository), workflow, cluster HAVING count(*) > 1`,
    ],
    statements: [
    `INSERT INTO policies (org, name, version, egress_policy, allowed_endpoints, lockdown_enabled, lockdown_detections, updated_by, updated_at)
     SELECT lower(org), name, version, egress_policy, allowed_endpoints, lockdown_enabled, lockdown_detections, updated_by, updated_at
     FROM policies WHERE org <> lower(org)`,
    `UPDATE attachments SET org = lower(org), repository = lower(repository) WHERE org <> lower(org) OR repository <> lower(repository)`,
    `DELETE FROM policies WHERE org <> lower(org)`,
    `UPDATE policy_versions SET org = lower(org) WHERE org <> lower(org)`,
    `UPDATE tokens SET org = lower(org) WHERE org <> lower(org)`,
    ],
  },
];

