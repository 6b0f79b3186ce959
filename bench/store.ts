/**
 * Policy store: resolve requests/s and latency with 1,000 concurrent agents,
 * simulated by one client process (bench/grpc-load-client.ts), against `ringfence server` in a process of
 * its own, on SQLite and on PostgreSQL.
 */
import { performance } from 'node:perf_hooks';
import { StoreClient } from '../src/store/client';
import { loadPolicyStoreProto } from '../src/store/proto';
import { openRepository } from '../src/store/open';
import { PolicyService } from '../src/store/service';
import { callerForToken, createToken } from '../src/store/tokens';
import { freshPostgresDatabase, freshSqliteDatabase, startStoreServer } from '../test/helpers/store';
import { percentile } from './stats';
import { encodeUnary, GrpcLoadConnection } from './grpc-load-client';


export interface LoadResult {
  requests: number;
  errors: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  /** Every successful call's latency, to pool rounds. */
  latenciesMs: number[];
}

export interface ResolveBenchResult {
  backend: string;
  agents: number;
  seconds: number;
  /** Every agent resolving back to back: the most the server answers. */
  saturated: LoadResult;
  /** Every agent resolving once per `intervalMs` (open loop): latency at that load, one result per round. */
  paced: LoadResult[];
  /** p99 and maximum of all paced rounds' calls together: the target is judged on these. */
  pacedPooled: { p99Ms: number; maxMs: number };
  intervalMs: number;
  offeredRps: number;
  /** The same paced load from @grpc/grpc-js clients in the one process: the generator's own GC included. */
  pacedGrpcJs: LoadResult;
}

const INTERVAL_MS = 1000;
const RELEASE = '.github/workflows/release.yml';

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
    if (i % 10 === 0) await service.attach(admin, `org-default`, { kind: 'workflow', repository: `repo${i}`, workflow: RELEASE });
  }
  const { token } = await createToken(repository, 'acme', 'agent', 'bench');
  await repository.close();
  return token;
}


/**
 * The jobs agents run: each of the 100 repositories in its ci and its release
 * workflow, with the policy each must get. Agent `agent`'s `i`th call runs
 * JOBS[jobIndex(agent, i)], so every agent cycles through all of them.
 */
const JOBS = Array.from({ length: 200 }, (_, index) => {
  const repo = index >> 1;
  const release = (index & 1) === 1;
  return {
    request: { job: { org: 'acme', repository: `repo${repo}`, workflow: release ? RELEASE : '.github/workflows/ci.yml', cluster: 'linux' } },
    expected: release && repo % 10 === 0 ? 'org-default' : `repo-${repo}`,
  };
});
const jobIndex = (agent: number, i: number) => ((agent + i) % 100) * 2 + (i % 2);

/** One simulated agent: sends the call for (agent, i), resolves with whether the right policy came back. */
type AgentCall = (agent: number, i: number) => Promise<boolean>;

/** Latencies and failures of calls, and the load's result at the end. */
function recorder() {
  const latencies: number[] = [];
  let errors = 0;
  const start = performance.now();
  return {
    /** Times one call; never rejects. */
    timed(call: () => Promise<boolean>): Promise<void> {
      const sent = performance.now();
      return call().then(
        (ok) => void (ok ? latencies.push(performance.now() - sent) : errors++),
        () => void errors++,
      );
    },
    result(): LoadResult {
      const elapsed = (performance.now() - start) / 1000;
      return { requests: latencies.length, errors, rps: latencies.length / elapsed, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), latenciesMs: latencies };
    },
  };
}

/** Latency percentiles of `call` with every agent calling once per INTERVAL_MS, from random offsets. */
async function pacedLoad(agents: number, seconds: number, call: AgentCall): Promise<LoadResult> {
  // one dispatcher instead of a timer per agent: the generator should cost little
  const schedule = Array.from({ length: agents }, (_, agent) => ({ agent, offset: Math.random() * INTERVAL_MS })).sort((a, b) => a.offset - b.offset);
  const record = recorder();
  let inFlight = 0;
  const start = performance.now();
  await new Promise<void>((done) => {
    let round = 0;
    let next = 0;
    let stopped = false;
    const tick = () => {
      const now = performance.now() - start;
      while (!stopped && now >= schedule[next].offset + round * INTERVAL_MS) {
        const { agent } = schedule[next];
        const i = round;
        inFlight++;
        void record.timed(() => call(agent, i)).then(() => {
          if (--inFlight === 0 && stopped) done();
        });
        if (++next === schedule.length) [next, round] = [0, round + 1];
      }
      if (now < seconds * 1000) setTimeout(tick, 1);
      else if (((stopped = true), inFlight === 0)) done();
    };
    tick();
  });
  return record.result();
}

/** Every agent calling back to back for `seconds`. */
async function saturatedLoad(agents: number, seconds: number, call: AgentCall): Promise<LoadResult> {
  const record = recorder();
  const until = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: agents }, async (_, agent) => {
      for (let i = 0; performance.now() < until; i++) await record.timed(() => call(agent, i));
    }),
  );
  return record.result();
}

/** Runs `rounds` paced measurements of `seconds` each: the VM's tail varies from run to run. */
export async function resolveLoad(backend: string, db: string, agents: number, seconds: number, rounds: number): Promise<ResolveBenchResult> {
  const token = await populate(db);
  const { process: server, address } = await startStoreServer(db);
  try {
    const method = loadPolicyStoreProto().service.ResolvePolicy;
    const { hostname, port } = new URL(`http://${address}`);
    const metadata = { authorization: `Bearer ${token}`, 'grpc-timeout': '30S' };
    const encoded = JOBS.map(({ request }) => encodeUnary(address, method.path, metadata, method.requestSerialize(request as never)));
    // every agent has its own connection, as agents on separate runners would
    const connections = await Promise.all(Array.from({ length: agents }, () => GrpcLoadConnection.connect(hostname, Number(port))));
    let checked = 0;
    const lean: AgentCall = async (agent, i) => {
      const index = jobIndex(agent, i);
      const message = await connections[agent].call(encoded[index]);
      // decoding every answer would be the generator's garbage again; every 50th is checked
      return checked++ % 50 !== 0 || (method.responseDeserialize(message) as { policy?: { name?: string } }).policy?.name === JOBS[index].expected;
    };
    await Promise.all(connections.map((_, agent) => lean(agent, 0))); // warm: connections and the server's code paths
    // paced before saturated: the saturated run leaves the server a large heap to collect;
    // one paced round not counted: the server's heap grows to its working size with 1,000 connections open
    await pacedLoad(agents, seconds, lean);
    const paced: LoadResult[] = [];
    for (let round = 0; round < rounds; round++) paced.push(await pacedLoad(agents, seconds, lean));
    const clients = Array.from({ length: agents }, () => new StoreClient({ address, token, deadlineMs: 30_000 }));
    const grpcJs: AgentCall = async (agent, i) => {
      const { request, expected } = JOBS[jobIndex(agent, i)];
      const response = await clients[agent].call<unknown, { policy: { name: string } | null }>('ResolvePolicy', request);
      return response.policy?.name === expected;
    };
    await Promise.all(clients.map((_, agent) => grpcJs(agent, 0)));
    const pacedGrpcJs = await pacedLoad(agents, seconds, grpcJs);
    clients.forEach((c) => c.close());
    const saturated = await saturatedLoad(agents, seconds, lean);
    connections.forEach((c) => c.close());
    const pooled = paced.flatMap((r) => r.latenciesMs);
    return { backend, agents, seconds, saturated, paced, pacedPooled: { p99Ms: percentile(pooled, 99), maxMs: pooled.reduce((max, x) => Math.max(max, x), 0) }, intervalMs: INTERVAL_MS, offeredRps: agents / (INTERVAL_MS / 1000), pacedGrpcJs };
  } finally {
    server.kill('SIGTERM');
  }
}

export function sqliteBenchDb(): string {
  return freshSqliteDatabase('rf-bench-store-');
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
