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
];

