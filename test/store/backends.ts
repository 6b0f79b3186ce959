/**
 * The storage backends every policy-store test runs against: SQLite (a
 * temporary file) and PostgreSQL (the cluster scripts/setup.sh starts, or
 * RINGFENCE_TEST_POSTGRES). A missing PostgreSQL fails the suite rather than
 * skipping it.
 */
import type { PolicyRepository } from '../../src/store/repository';
import { openRepository } from '../../src/store/open';
import { freshPostgresDatabase, freshSqliteDatabase } from '../helpers/store';

export interface Backend {
  name: string;
  /** A fresh, empty, migrated repository. */
  open(): Promise<PolicyRepository>;
  /** The --db URL of the last opened repository (for CLI tests). */
  url(): string;
  /** The --db URL of a new, empty database. */
  fresh(): Promise<string>;
  /** The repository at spec, migrated to schema `target` only (for migration tests). */
  openAt(spec: string, target: number): Promise<PolicyRepository>;
  /** Runs one SQL statement on the database at spec, outside any repository. */
  exec(spec: string, sql: string): Promise<void>;
}

async function exec(spec: string, sql: string): Promise<void> {
  if (spec.startsWith('sqlite:')) {
    const Database = (await import('better-sqlite3')).default;
    const db = new Database(spec.slice('sqlite:'.length));
    try {
      db.exec(sql);
    } finally {
      db.close();
    }
    return;
  }
  const { Client } = await import('pg');
  const client = new Client({ connectionString: spec });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

async function openAt(spec: string, target: number): Promise<PolicyRepository> {
  const repository = spec.startsWith('sqlite:')
    ? new (await import('../../src/store/sqlite')).SqliteRepository(spec.slice('sqlite:'.length))
    : new (await import('../../src/store/postgres')).PostgresRepository(spec);
  await repository.migrate(target);
  return repository;
}

let databases = 0;


export const BACKENDS: Backend[] = [
  (() => {
    let last = '';
    return {
      name: 'sqlite',
      async open() {
        last = freshSqliteDatabase('rf-store-');
        return openRepository(last);
      },
      url: () => last,
      fresh: async () => freshSqliteDatabase('rf-store-'),
      openAt,
      exec,
    };
  })(),
  (() => {
    let last = '';
    return {
      name: 'postgres',
      async open() {
        last = await freshPostgresDatabase(`rf_test_${process.pid}_${++databases}`);
        return openRepository(last);
      },
      url: () => last,
      fresh: () => freshPostgresDatabase(`rf_test_${process.pid}_${++databases}`),
      openAt,
      exec,
    };
  })(),
];
