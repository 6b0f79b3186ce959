/**
 * The storage backends every policy-store test runs against: SQLite (a
 * temporary file) and PostgreSQL (the cluster scripts/setup.sh starts, or
 * RINGFENCE_TEST_POSTGRES). A missing PostgreSQL fails the suite rather than
 * skipping it.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import type { PolicyRepository } from '../../src/store/repository';
import { openRepository } from '../../src/store/open';

export interface Backend {
  name: string;
  /** A fresh, empty, migrated repository. */
  open(): Promise<PolicyRepository>;
  /** The --db URL of the last opened repository (for CLI tests). */
  url(): string;
}

let databases = 0;

/** The role scripts/setup.sh creates in the local cluster it starts. */
const DEFAULT_TEST_POSTGRES = 'postgresql://ringfence_test:ringfence_test@127.0.0.1:5432/postgres';

export const BACKENDS: Backend[] = [
  (() => {
    let last = '';
    return {
      name: 'sqlite',
      async open() {
        last = `sqlite:${path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'rf-store-')), 'store.db')}`;
        return openRepository(last);
      },
      url: () => last,
    };
  })(),
  (() => {
    let last = '';
    return {
      name: 'postgres',
      async open() {
        const admin = process.env.RINGFENCE_TEST_POSTGRES ?? DEFAULT_TEST_POSTGRES;
        const name = `rf_test_${process.pid}_${++databases}`;
        const client = new Client({ connectionString: admin });
        await client.connect();
        await client.query(`DROP DATABASE IF EXISTS ${name}`);
        await client.query(`CREATE DATABASE ${name}`);
        await client.end();
        const url = new URL(admin);
        url.pathname = `/${name}`;
        last = url.toString();
        return openRepository(last);
      },
      url: () => last,
    };
  })(),
];
