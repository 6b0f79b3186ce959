/** Policy-store plumbing shared by the store's tests and its benchmark. */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { Client } from 'pg';

export const RINGFENCE = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../../../bin/ringfence' : '../../bin/ringfence');

/** The role scripts/setup.sh creates in the local cluster it starts. */
export const TEST_POSTGRES = process.env.RINGFENCE_TEST_POSTGRES ?? 'postgresql://ringfence_test:ringfence_test@127.0.0.1:5432/postgres';

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
export async function startStoreServer(db: string, extraArgs: string[] = ['--no-oidc'], nodeArgs: string[] = []): Promise<{ process: ChildProcess; address: string }> {
  const server = spawn(process.execPath, [...nodeArgs, RINGFENCE, 'server', '--db', db, '--listen', '127.0.0.1:0', ...extraArgs], { stdio: ['ignore', 'ignore', 'pipe'] });
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
