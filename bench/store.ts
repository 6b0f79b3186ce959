/**
 * Policy store: resolve requests/s and latency with 1,000 concurrent agents,
 * simulated by one client process, against `ringfence server` in a process of
 * its own, on SQLite and on PostgreSQL.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { StoreClient } from '../src/store/client';
import { openRepository } from '../src/store/open';
import { PolicyService } from '../src/store/service';
import { createToken } from '../src/store/tokens';
import { percentile } from './egress';

const RINGFENCE = path.resolve(__dirname, '../../bin/ringfence');

export interface ResolveBenchResult {
  backend: string;
  agents: number;
  seconds: number;
  requests: number;
  errors: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
}

/** A realistic org: 100 repositories with policies, some workflows with exemptions. */
async function populate(db: string): Promise<string> {
  const repository = await openRepository(db);
  const service = new PolicyService(repository);
  const admin = { org: 'acme', role: 'admin' as const, subject: 'bench' };
  await service.create(admin, 'egress-policy: block\nallowed-endpoints: github.com\n', 'org-default');
  await service.attach(admin, 'org-default', { kind: 'organization' });
  for (let i = 0; i < 100; i++) {
    await service.create(admin, `egress-policy: block\nallowed-endpoints: >\n  registry.npmjs.org\n  repo${i}.example.com\n`, `repo-${i}`);
    await service.attach(admin, `repo-${i}`, { kind: 'repository', repository: `repo${i}` });
    if (i % 10 === 0) await service.attach(admin, `org-default`, { kind: 'workflow', repository: `repo${i}`, workflow: '.github/workflows/release.yml' });
  }
  const { token } = await createToken(repository, 'acme', 'agent', 'bench');
  await repository.close();
  return token;
}

export async function resolveLoad(backend: string, db: string, agents: number, seconds: number): Promise<ResolveBenchResult> {
  const token = await populate(db);
  const server = spawn(process.execPath, [RINGFENCE, 'server', '--db', db, '--listen', '127.0.0.1:0', '--no-oidc'], { stdio: ['ignore', 'ignore', 'pipe'] });
  try {
    const address = await new Promise<string>((resolve, reject) => {
      let text = '';
      server.stderr!.on('data', (d) => {
        text += d;
        const match = /listening on (\S+)/.exec(text);
        if (match) resolve(match[1]);
      });
      server.on('exit', (code) => reject(new Error(`server exited ${code}: ${text}`)));
    });
    const clients = Array.from({ length: agents }, () => new StoreClient({ address, token, deadlineMs: 30_000 }));
    const latencies: number[] = [];
    let errors = 0;
    // warm up the connection and the server's code paths
    await Promise.all(clients.slice(0, 50).map((c) => c.call('ResolvePolicy' as never, { job: { org: 'acme', repository: 'repo1', workflow: '.github/workflows/ci.yml' } })));
    const until = Date.now() + seconds * 1000;
    const started = Date.now();
    await Promise.all(
      clients.map(async (client, agent) => {
        for (let i = 0; Date.now() < until; i++) {
          const repo = (agent + i) % 100;
          const t = process.hrtime.bigint();
          try {
            await client.call('ResolvePolicy' as never, { job: { org: 'acme', repository: `repo${repo}`, workflow: i % 2 ? '.github/workflows/release.yml' : '.github/workflows/ci.yml', cluster: 'linux' } });
            latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
          } catch {
            errors++;
          }
        }
      }),
    );
    const elapsed = (Date.now() - started) / 1000;
    clients.forEach((c) => c.close());
    return { backend, agents, seconds: elapsed, requests: latencies.length, errors, rps: latencies.length / elapsed, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) };
  } finally {
    server.kill('SIGTERM');
  }
}

export function sqliteBenchDb(): string {
  return `sqlite:${path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'rf-bench-store-')), 'store.db')}`;
}

