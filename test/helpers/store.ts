/** Policy-store plumbing shared by the store's tests and its benchmark. */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { REPO_ROOT } from '../../src/util/paths';

export const RINGFENCE = path.join(REPO_ROOT, 'bin/ringfence');

/** The role scripts/setup.sh creates in the local cluster it starts. */
export const TEST_POSTGRES = process.env.RINGFENCE_TEST_POSTGRES ?? 'postgresql://ringfence_test:ringfence_test@127.0.0.1:5432/postgres';

/** A new, empty SQLite database file in a directory of its own; its --db URL. */
export function freshSqliteDatabase(prefix: string): string {
  return `sqlite:${path.join(fs.mkdtempSync(path.join(os.tmpdir(), prefix)), 'store.db')}`;
}

/** A new, empty database in the test cluster; its URL. */
export async function freshPostgresDatabase(name: string): Promise<string> {
  const client = new Client({ connectionString: TEST_POSTGRES });
  await client.connect();
  try {
    await client.query(`DROP DATABASE IF EXISTS ${name}`);
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  const url = new URL(TEST_POSTGRES);
  url.pathname = `/${name}`;
  return url.toString();
}

/** `ringfence server` in a process of its own on a free loopback port; resolves once it listens. */
export async function startStoreServer(db: string, extraArgs: string[] = ['--no-oidc']): Promise<{ process: ChildProcess; address: string }> {
  const server = spawn(process.execPath, [RINGFENCE, 'server', '--db', db, '--listen', '127.0.0.1:0', ...extraArgs], { stdio: ['ignore', 'ignore', 'pipe'] });
  const address = await new Promise<string>((resolve, reject) => {
    let text = '';
    server.stderr!.on('data', (d) => {
      text += d;
      const match = /listening on (\S+)/.exec(text);
      if (match) resolve(match[1]);
    });
    server.on('exit', (code) => reject(new Error(`ringfence server exited ${code}: ${text}`)));
  });
  return { process: server, address };
}
