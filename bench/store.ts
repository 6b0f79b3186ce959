/**
 * Policy store: resolve requests/s and latency with 1,000 concurrent agents,
 * simulated by one client process, against `ringfence server` in a process of
 * its own, on SQLite and on PostgreSQL.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { StoreClient } from '../src/store/client';
import { openRepository } from '../src/store/open';
import { PolicyService } from '../src/store/service';
import { callerForToken, createToken } from '../src/store/tokens';
import { freshPostgresDatabase, startStoreServer } from '../test/helpers/store';
import { percentile } from './egress';


export interface LoadResult {
  requests: number;
  errors: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
}

export interface ResolveBenchResult {
  backend: string;
  agents: number;
  seconds: number;
  /** Every agent resolving back to back: the most the server answers. */
  saturated: LoadResult;
  /** Every agent resolving once per `intervalMs` (open loop): latency at that load. */
  paced: LoadResult & { intervalMs: number; offeredRps: number };
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
  const { process: server, address } = await startStoreServer(db);
  try {
    const clients = Array.from({ length: agents }, () => new StoreClient({ address, token, deadlineMs: 30_000 }));
    const job = (agent: number, i: number) => ({ job: { org: 'acme', repository: `repo${(agent + i) % 100}`, workflow: i % 2 ? '.github/workflows/release.yml' : '.github/workflows/ci.yml', cluster: 'linux' } });
    // warm up the connection and the server's code paths
    await Promise.all(clients.slice(0, 50).map((c, a) => c.call('ResolvePolicy' as never, job(a, 0))));

    const measure = async (agentLoop: (client: StoreClient, agent: number, until: number, record: (ms: number | null) => void) => Promise<void>): Promise<LoadResult> => {
      const latencies: number[] = [];
      let errors = 0;
      const until = Date.now() + seconds * 1000;
      const started = Date.now();
      await Promise.all(clients.map((client, agent) => agentLoop(client, agent, until, (ms) => (ms === null ? errors++ : latencies.push(ms)))));
      const elapsed = (Date.now() - started) / 1000;
      return { requests: latencies.length, errors, rps: latencies.length / elapsed, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) };
    };
    const timed = async (client: StoreClient, request: unknown, record: (ms: number | null) => void) => {
      const t = process.hrtime.bigint();
      try {
        await client.call('ResolvePolicy' as never, request);
        record(Number(process.hrtime.bigint() - t) / 1e6);
      } catch {
        record(null);
      }
    };

    const saturated = await measure(async (client, agent, until, record) => {
      for (let i = 0; Date.now() < until; i++) await timed(client, job(agent, i), record);
    });
    const intervalMs = 1000;
    const paced = await measure(async (client, agent, until, record) => {
      // each agent starts at a random point of the interval, as real agents would
      await new Promise((resolve) => setTimeout(resolve, Math.random() * intervalMs));
      const pending: Promise<void>[] = [];
      for (let i = 0; Date.now() < until; i++) {
        pending.push(timed(client, job(agent, i), record));
        await new Promise((resolve) => setTimeout(resolve, intervalMs));
      }
      await Promise.all(pending);
    });
    clients.forEach((c) => c.close());
    return { backend, agents, seconds, saturated, paced: { ...paced, intervalMs, offeredRps: agents / (intervalMs / 1000) } };
  } finally {
    server.kill('SIGTERM');
  }
}

export function sqliteBenchDb(): string {
  return `sqlite:${path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'rf-bench-store-')), 'store.db')}`;
}


/** A fresh database in the local cluster scripts/setup.sh starts (or RINGFENCE_TEST_POSTGRES's). */
export const postgresBenchDb = () => freshPostgresDatabase(`rf_bench_${process.pid}`);

/** The server's own work per resolve (token check + resolution), in-process, without gRPC. */
export async function inProcessResolve(db: string, iterations: number): Promise<{ p50Us: number; p99Us: number }> {
  const token = await populate(db);
  const repository = await openRepository(db);
  const service = new PolicyService(repository);
  const latencies: number[] = [];
  try {
    for (let i = 0; i < iterations; i++) {
      const t = process.hrtime.bigint();
      const caller = await callerForToken(repository, token);
      await service.resolve(caller, { org: 'acme', repository: `repo${i % 100}`, workflow: '.github/workflows/ci.yml', cluster: 'linux' });
      latencies.push(Number(process.hrtime.bigint() - t) / 1000);
    }
  } finally {
    await repository.close();
  }
  return { p50Us: percentile(latencies, 50), p99Us: percentile(latencies, 99) };
}
