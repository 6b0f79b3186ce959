/**
 * ringfenced's Prometheus metrics (docs/ringfenced.md, "Metrics"), on a
 * Registry of their own (never prom-client's global one, so two daemons in
 * one test process do not share counts), and the server that exposes them:
 * `GET /metrics` on a unix socket or a loopback TCP port, nothing else. The
 * metrics say what jobs ran, what was refused and what the agent lost:
 * they are for this machine's operator, not for the network.
 */
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { isLoopback, parseIp } from '../net/address';
import type { DetectionName, EgressVerdict, ProbeName, SensorEventType } from '../sensor/events';
import { RingfenceError } from '../util/errors';
import type { ExitReason } from '../jobs/exit-status';

/** Where the metrics are served: a unix socket, or a loopback address and port. */
export type MetricsListen = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

const EXPECTED = 'expected a unix socket path, 127.0.0.1:PORT or [::1]:PORT';

/** sun_path holds 108 bytes with its NUL. */
export const MAX_UNIX_SOCKET_PATH_BYTES = 107;

/** Why `socketPath` cannot be a unix socket's path, or undefined. */
export function unixSocketPathProblem(socketPath: string): string | undefined {
  const bytes = Buffer.byteLength(socketPath);
  if (bytes > MAX_UNIX_SOCKET_PATH_BYTES) return `is too long for a unix socket (${bytes} bytes, at most ${MAX_UNIX_SOCKET_PATH_BYTES})`;
  if (socketPath.includes('\0')) return 'holds a NUL byte';
  return undefined;
}

/**
 * `/PATH`, `IPv4:PORT` or `[IPv6]:PORT`, the address a loopback one. Throws
 * an Error whose message starts with the spec quoted, for the caller to
 * prefix with what it is (`metrics.listen`).
 */
export function parseMetricsListen(spec: string): MetricsListen {
  if (spec.startsWith('/')) {
    const problem = unixSocketPathProblem(spec);
    if (problem) throw new Error(`'${spec}' ${problem}`);
    return { kind: 'unix', path: spec };
  }
  const match = /^(?:\[([^\]]*)\]|([^:[\]]*)):(\d+)$/.exec(spec);
  if (!match) throw new Error(`'${spec}': ${EXPECTED}`);
  const host = match[1] ?? match[2];
  const port = Number(match[3]);
  const ip = parseIp(host);
  if (!ip) throw new Error(`'${spec}': give an address, not a name (${EXPECTED})`);
  // a bracketed IPv4 or a bare IPv6 is not what anyone means
  if ((match[1] !== undefined) !== (ip.family === 6)) throw new Error(`'${spec}': ${EXPECTED}`);
  if (!isLoopback(ip)) throw new Error(`'${spec}' is not a loopback address: metrics are served on a unix socket or on 127.0.0.1:PORT / [::1]:PORT only`);
  if (!(port >= 1 && port <= 65535)) throw new Error(`'${spec}': port ${match[3]} is not 1-65535`);
  return { kind: 'tcp', host, port };
}

export type VerdictKind = 'dns' | 'network';
export type DetectionAction = 'killed' | 'audited';
/** How a job ended: the reason of its exit status (src/jobs/exit-status.ts). */
export type JobOutcome = ExitReason;

const OUTCOMES: readonly JobOutcome[] = ['command', 'blocked', 'interrupted', 'agent-failure', 'lockdown'];
const VERDICTS: readonly EgressVerdict[] = ['allowed', 'blocked', 'audited'];
const DETECTIONS: readonly DetectionName[] = ['Reverse-Shell', 'Runner-Worker-Memory-Read', 'Privileged-Container', 'Cgroup-Escape', 'Agent-Tamper'];

/** DNS answers are local (cache-less proxy → upstream): from a fraction of a millisecond to the upstream's timeout. */
const DNS_LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/**
 * The daemon's metrics and what the supervisor tells them. Counters of a
 * known set of label values (job outcomes, verdicts, detections) start at
 * 0 for every value, so a rate or an alert on "any blocked" works before
 * the first one.
 */
export class DaemonMetrics {
  readonly registry = new Registry();
  private readonly events: Counter<'type'>;
  private readonly probeDrops: Counter<'probe'>;
  private readonly ringBufferFill: Gauge;
  private readonly jobsActive: Gauge;
  private readonly jobs: Counter<'outcome'>;
  private readonly verdicts: Counter<'kind' | 'verdict'>;
  private readonly dnsLatency: Histogram;
  private readonly detections: Counter<'detection' | 'action'>;
  private readonly failures: Counter<'what'>;
  /** The kernel's drop counters are totals since load: what was already counted, per probe. */
  private readonly dropsCounted = new Map<ProbeName, number>();

  /** `processMetrics: false` leaves out prom-client's process_* and nodejs_* metrics (tests that assert whole scrapes). */
  constructor(options: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.events = new Counter({ name: 'ringfence_events_total', help: 'Sensor events decoded, by event type', labelNames: ['type'], registers });
    this.probeDrops = new Counter({ name: 'ringfence_probe_drops_total', help: 'Records a probe could not write because the ring buffer was full', labelNames: ['probe'], registers });
    this.ringBufferFill = new Gauge({ name: 'ringfence_ring_buffer_fill_ratio', help: 'How full the ring buffer was when last sampled (0-1)', registers });
    this.jobsActive = new Gauge({ name: 'ringfence_jobs_active', help: 'Jobs running now', registers });
    this.jobs = new Counter({ name: 'ringfence_jobs_total', help: 'Jobs ended, by outcome (the reason of the exit status)', labelNames: ['outcome'], registers });
    this.verdicts = new Counter({ name: 'ringfence_verdicts_total', help: 'Egress decisions: DNS queries and connections, by verdict', labelNames: ['kind', 'verdict'], registers });
    this.dnsLatency = new Histogram({ name: 'ringfence_dns_latency_seconds', help: "Time from a job's DNS query to its answer", buckets: DNS_LATENCY_BUCKETS, registers });
    this.detections = new Counter({ name: 'ringfence_detections_total', help: 'Lockdown detections, by detection and action', labelNames: ['detection', 'action'], registers });
    this.failures = new Counter({ name: 'ringfence_agent_failures_total', help: 'What the agent failed to do or lost, by what', labelNames: ['what'], registers });
    for (const outcome of OUTCOMES) this.jobs.inc({ outcome }, 0);
    for (const kind of ['dns', 'network'] as const) for (const verdict of VERDICTS) this.verdicts.inc({ kind, verdict }, 0);
    for (const detection of DETECTIONS) for (const action of ['killed', 'audited'] as const) this.detections.inc({ detection, action }, 0);
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  eventsSeen(type: SensorEventType, count = 1): void {
    this.events.inc({ type }, count);
  }

  /** A probe's drop counter as the kernel reports it (a total since the sensor was loaded). */
  probeDropTotal(probe: ProbeName, total: number): void {
    const counted = this.dropsCounted.get(probe) ?? 0;
    // a smaller total: the sensor was loaded anew and counts from 0 again
    const fresh = total >= counted ? total - counted : total;
    if (fresh > 0) this.probeDrops.inc({ probe }, fresh);
    this.dropsCounted.set(probe, total);
  }

  ringBufferFilled(ratio: number): void {
    this.ringBufferFill.set(Math.min(1, Math.max(0, ratio)));
  }

  jobStarted(): void {
    this.jobsActive.inc();
  }

  jobEnded(outcome: JobOutcome): void {
    this.jobsActive.dec();
    this.jobs.inc({ outcome });
  }

  /** Jobs re-adopted after a restart are running without a jobStarted of this process. */
  jobsRunning(count: number): void {
    this.jobsActive.set(count);
  }

  verdict(kind: VerdictKind, verdict: EgressVerdict, count = 1): void {
    this.verdicts.inc({ kind, verdict }, count);
  }

  dnsAnswered(seconds: number): void {
    this.dnsLatency.observe(seconds);
  }

  detection(detection: DetectionName, action: DetectionAction): void {
    this.detections.inc({ detection, action });
  }

  /**
   * `what` is a short fixed word (`events-output`, `ring-buffer-drop`,
   * `policy-fetch`…), never a message: each distinct value is a series.
   */
  agentFailure(what: string, count = 1): void {
    this.failures.inc({ what }, count);
  }

  /** The exposition text, as a scrape gets it. */
  text(): Promise<string> {
    return this.registry.metrics();
  }
}

export interface MetricsServer {
  /** Where it listens: the socket's path, or ADDRESS:PORT (the port the kernel chose for port 0). */
  address: string;
  close(): Promise<void>;
}

export interface ServeOptions {
  /** A unix socket's group: mode 0660 with it, 0600 (root only) without. */
  gid?: number;
  /** A scrape that failed to collect (answered 500), or the server failing once it listens: for the daemon's log and metrics. */
  onError?: (error: Error) => void;
}

/**
 * Serves `GET /metrics` of `registry` on `listen` (a string as in the config
 * file, or parsed; a TCP port 0 picks a free one). Anything but a unix
 * socket or a loopback address is refused with one line, and so is a path
 * that is not a socket or a socket another process listens on; a stale
 * socket left by a dead daemon is replaced.
 */
export async function serveMetrics(listen: string | MetricsListen, registry: Registry, options: ServeOptions = {}): Promise<MetricsServer> {
  const where = typeof listen === 'string' ? listen : listenText(listen);
  let target: MetricsListen;
  try {
    target = typeof listen === 'string' ? parseMetricsListen(listen) : checked(listen);
  } catch (error) {
    throw new RingfenceError(`metrics listen ${(error as Error).message}`, 'RF_USAGE');
  }

  const server = http.createServer((request, response) => {
    const url = request.url?.split('?')[0];
    if (url !== '/metrics') return void response.writeHead(404, { 'content-type': 'text/plain' }).end('not found: metrics are at /metrics\n');
    if (request.method !== 'GET' && request.method !== 'HEAD') return void response.writeHead(405, { allow: 'GET, HEAD' }).end();
    registry.metrics().then(
      (body) => response.writeHead(200, { 'content-type': registry.contentType }).end(request.method === 'HEAD' ? undefined : body),
      (error: Error) => {
        options.onError?.(error);
        response.writeHead(500, { 'content-type': 'text/plain' }).end(`cannot collect the metrics: ${error.message}\n`);
      },
    );
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;

  if (target.kind === 'unix') await listenUnix(server, target.path, options.gid);
  else await listenOn(server, { host: target.host, port: target.port }, where);

  // once listening, an error (an accept failing for want of descriptors…) is reported, never an unhandled 'error' that ends the daemon
  server.on('error', (error) => options.onError?.(error));

  const bound = server.address();
  const address = target.kind === 'unix' ? target.path : typeof bound === 'object' && bound ? `${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}` : where;
  return {
    address,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}

/** As the config file writes it. */
function listenText(listen: MetricsListen): string {
  if (listen.kind === 'unix') return listen.path;
  return listen.host.includes(':') ? `[${listen.host}]:${listen.port}` : `${listen.host}:${listen.port}`;
}

/** A MetricsListen built in code is held to what the config file may say. */
function checked(listen: MetricsListen): MetricsListen {
  if (listen.kind === 'unix') {
    if (!path.isAbsolute(listen.path)) throw new Error(`'${listen.path}': ${EXPECTED}`);
    const problem = unixSocketPathProblem(listen.path);
    if (problem) throw new Error(`'${listen.path}' ${problem}`);
    return listen;
  }
  const ip = parseIp(listen.host);
  if (!ip || !isLoopback(ip)) throw new Error(`'${listenText(listen)}' is not a loopback address: metrics are served on a unix socket or on 127.0.0.1:PORT / [::1]:PORT only`);
  return listen;
}

function listenOn(server: http.Server, options: net.ListenOptions, where: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const failed = (error: NodeJS.ErrnoException) => reject(new RingfenceError(`metrics listen '${where}': ${error.code === 'EADDRINUSE' ? 'in use by another process' : error.message}`, 'RF_LISTEN'));
    server.once('error', failed);
    server.listen(options, () => {
      server.off('error', failed);
      resolve();
    });
  });
}

/**
 * A unix socket that only root (and `gid`) can connect to at its path: bound
 * under a temporary name beside it, given its owner and mode, then renamed
 * into place (process.umask() would do it in one step, but it is
 * process-wide and not allowed in worker threads).
 */
async function listenUnix(server: http.Server, socketPath: string, gid: number | undefined): Promise<void> {
  await removeStaleSocket(socketPath);
  fs.mkdirSync(path.dirname(socketPath), { recursive: true, mode: 0o755 });
  const mode = gid === undefined ? 0o600 : 0o660;
  const temporary = path.join(path.dirname(socketPath), `.m${process.pid}-${Date.now().toString(36)}.sock`);
  await listenOn(server, { path: temporary }, socketPath);
  try {
    if (gid !== undefined) fs.chownSync(temporary, 0, gid);
    fs.chmodSync(temporary, mode);
    fs.renameSync(temporary, socketPath);
  } catch (error) {
    server.close();
    fs.rmSync(temporary, { force: true });
    throw new RingfenceError(`metrics listen '${socketPath}': cannot set its owner and mode: ${(error as Error).message}`, 'RF_LISTEN');
  }
  // the server unlinks the name it bound (renamed away) when it closes: the socket at our path goes with it
  server.once('close', () => fs.rmSync(socketPath, { force: true }));
}

/** A socket file left by a daemon that died goes; a live one, or anything that is not a socket, is refused. */
async function removeStaleSocket(socketPath: string): Promise<void> {
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(socketPath);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new RingfenceError(`metrics listen '${socketPath}': ${(error as Error).message}`, 'RF_LISTEN');
  }
  if (!stat.isSocket()) throw new RingfenceError(`metrics listen '${socketPath}': exists and is not a socket`, 'RF_LISTEN');
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.connect(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new RingfenceError(`metrics listen '${socketPath}': another process listens on it`, 'RF_LISTEN');
  fs.unlinkSync(socketPath);
}
