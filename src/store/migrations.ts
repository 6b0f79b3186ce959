/**
 * Versioned schema migrations: entry i brings the schema from version i to
 * i+1. Append, never edit an applied one. Plain SQL that SQLite and
 * PostgreSQL both take, so the two stores cannot drift apart.
 */

export const MIGRATIONS: string[][] = [
  [
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
  // 2: organization and repository names are case-insensitive (model.ts orgName): kept in lower case.
  // The policy rows are copied rather than updated in place because attachments reference them
  // and neither database defers that check by default. Two policies whose orgs differ only in
  // case collide on the primary key and the migration stops, changing nothing.
  [
    `INSERT INTO policies (org, name, version, egress_policy, allowed_endpoints, lockdown_enabled, lockdown_detections, updated_by, updated_at)
     SELECT lower(org), name, version, egress_policy, allowed_endpoints, lockdown_enabled, lockdown_detections, updated_by, updated_at
     FROM policies WHERE org <> lower(org)`,
    `UPDATE attachments SET org = lower(org), repository = lower(repository) WHERE org <> lower(org) OR repository <> lower(repository)`,
    `DELETE FROM policies WHERE org <> lower(org)`,
    `UPDATE policy_versions SET org = lower(org) WHERE org <> lower(org)`,
    `UPDATE tokens SET org = lower(org) WHERE org <> lower(org)`,
  ],
];

