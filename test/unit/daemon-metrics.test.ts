/** ringfenced's Prometheus metrics and their server (docs/ringfenced.md, "Metrics"). */
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Gauge, register as globalRegistry, Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DaemonMetrics, parseMetricsListen, serveMetrics, type MetricsServer } from '../../src/agent/metrics';
import { RingfenceError } from '../../src/util/errors';

/** The sample lines of a scrape (no # HELP / # TYPE). */
const samples = (text: string) => text.split('\n').filter((line) => line && !line.startsWith('#'));

function get(target: { socketPath: string } | { host: string; port: number }, urlPath = '/metrics', method = 'GET'): Promise<{ status: number; type?: string; body: string }> {
  return new Promise((resolve, reject) => {
    const request = http.request({ ...target, path: urlPath, method }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode!, type: response.headers['content-type'], body }));
    });
    request.on('error', reject);
    request.end();
  });
}

describe('daemon metrics', () => {
  it('every metric is there from the start, the known label values at 0', async () => {
    const metrics = new DaemonMetrics({ processMetrics: false });
    const text = await metrics.text();
    expect(text).toContain('# HELP ringfence_events_total Sensor events decoded, by event type\n# TYPE ringfence_events_total counter\n');
    expect(text).toContain('# TYPE ringfence_dns_latency_seconds histogram\n');
    expect(samples(text).filter((l) => !l.startsWith('ringfence_dns_latency_seconds'))).toEqual([
      'ringfence_ring_buffer_fill_ratio 0',
      'ringfence_jobs_active 0',
      'ringfence_jobs_total{outcome="command"} 0',
      'ringfence_jobs_total{outcome="blocked"} 0',
      'ringfence_jobs_total{outcome="interrupted"} 0',
      'ringfence_jobs_total{outcome="agent-failure"} 0',
      'ringfence_jobs_total{outcome="lockdown"} 0',
      'ringfence_verdicts_total{kind="dns",verdict="allowed"} 0',
      'ringfence_verdicts_total{kind="dns",verdict="blocked"} 0',
      'ringfence_verdicts_total{kind="dns",verdict="audited"} 0',
      'ringfence_verdicts_total{kind="network",verdict="allowed"} 0',
      'ringfence_verdicts_total{kind="network",verdict="blocked"} 0',
      'ringfence_verdicts_total{kind="network",verdict="audited"} 0',
      'ringfence_detections_total{detection="Reverse-Shell",action="killed"} 0',
      'ringfence_detections_total{detection="Reverse-Shell",action="audited"} 0',
      'ringfence_detections_total{detection="Runner-Worker-Memory-Read",action="killed"} 0',
      'ringfence_detections_total{detection="Runner-Worker-Memory-Read",action="audited"} 0',
      'ringfence_detections_total{detection="Privileged-Container",action="killed"} 0',
      'ringfence_detections_total{detection="Privileged-Container",action="audited"} 0',
      'ringfence_detections_total{detection="Cgroup-Escape",action="killed"} 0',
      'ringfence_detections_total{detection="Cgroup-Escape",action="audited"} 0',
      'ringfence_detections_total{detection="Agent-Tamper",action="killed"} 0',
      'ringfence_detections_total{detection="Agent-Tamper",action="audited"} 0',
    ]);
    expect(samples(text)).toContain('ringfence_dns_latency_seconds_count 0');
  });

  it('counts what the supervisor tells it', async () => {
    const metrics = new DaemonMetrics({ processMetrics: false });
    metrics.eventsSeen('exec', 3);
    metrics.eventsSeen('connect');
    metrics.eventsSeen('exec');
    metrics.jobStarted();
    metrics.jobStarted();
    metrics.jobStarted();
    metrics.jobEnded('blocked');
    metrics.verdict('dns', 'blocked');
    metrics.verdict('network', 'allowed', 4);
    metrics.detection('Reverse-Shell', 'killed');
    metrics.agentFailure('events-output');
    metrics.agentFailure('events-output', 2);
    metrics.ringBufferFilled(0.25);
    const lines = samples(await metrics.text());
    for (const line of [
      'ringfence_events_total{type="exec"} 4',
      'ringfence_events_total{type="connect"} 1',
      'ringfence_jobs_active 2',
      'ringfence_jobs_total{outcome="blocked"} 1',
      'ringfence_jobs_total{outcome="command"} 0',
      'ringfence_verdicts_total{kind="dns",verdict="blocked"} 1',
      'ringfence_verdicts_total{kind="network",verdict="allowed"} 4',
      'ringfence_detections_total{detection="Reverse-Shell",action="killed"} 1',
      'ringfence_agent_failures_total{what="events-output"} 3',
      'ringfence_ring_buffer_fill_ratio 0.25',
    ]) {
      expect(lines).toContain(line);
    }
    metrics.jobsRunning(7);
    expect(samples(await metrics.text())).toContain('ringfence_jobs_active 7');
  });

  it('the fill ratio is held to 0-1', async () => {
    const metrics = new DaemonMetrics({ processMetrics: false });
    metrics.ringBufferFilled(1.5);
    expect(samples(await metrics.text())).toContain('ringfence_ring_buffer_fill_ratio 1');
    metrics.ringBufferFilled(-0.1);
    expect(samples(await metrics.text())).toContain('ringfence_ring_buffer_fill_ratio 0');
  });

  it("probe drops: the kernel's totals become increments, and a sensor loaded anew counts again", async () => {
    const metrics = new DaemonMetrics({ processMetrics: false });
    const drops = async () => samples(await metrics.text()).filter((l) => l.startsWith('ringfence_probe_drops_total'));
    metrics.probeDropTotal('connect', 0);
    expect(await drops()).toEqual([]);
    metrics.probeDropTotal('connect', 5);
    metrics.probeDropTotal('exec', 2);
    metrics.probeDropTotal('connect', 5);
    metrics.probeDropTotal('connect', 8);
    expect(await drops()).toEqual(['ringfence_probe_drops_total{probe="connect"} 8', 'ringfence_probe_drops_total{probe="exec"} 2']);
    metrics.probeDropTotal('connect', 3); // reloaded: 3 new drops since
    expect(await drops()).toEqual(['ringfence_probe_drops_total{probe="connect"} 11', 'ringfence_probe_drops_total{probe="exec"} 2']);
  });

  it('DNS latency is a histogram in seconds', async () => {
    const metrics = new DaemonMetrics({ processMetrics: false });
    metrics.dnsAnswered(0.0007);
    metrics.dnsAnswered(0.03);
    metrics.dnsAnswered(7);
    const lines = samples(await metrics.text()).filter((l) => l.startsWith('ringfence_dns_latency_seconds'));
    expect(lines).toEqual([
      'ringfence_dns_latency_seconds_bucket{le="0.0005"} 0',
      'ringfence_dns_latency_seconds_bucket{le="0.001"} 1',
      'ringfence_dns_latency_seconds_bucket{le="0.0025"} 1',
      'ringfence_dns_latency_seconds_bucket{le="0.005"} 1',
      'ringfence_dns_latency_seconds_bucket{le="0.01"} 1',
      'ringfence_dns_latency_seconds_bucket{le="0.025"} 1',
      'ringfence_dns_latency_seconds_bucket{le="0.05"} 2',
      'ringfence_dns_latency_seconds_bucket{le="0.1"} 2',
      'ringfence_dns_latency_seconds_bucket{le="0.25"} 2',
      'ringfence_dns_latency_seconds_bucket{le="0.5"} 2',
      'ringfence_dns_latency_seconds_bucket{le="1"} 2',
      'ringfence_dns_latency_seconds_bucket{le="2.5"} 2',
      'ringfence_dns_latency_seconds_bucket{le="5"} 2',
      'ringfence_dns_latency_seconds_bucket{le="+Inf"} 3',
      'ringfence_dns_latency_seconds_sum 7.0307',
      'ringfence_dns_latency_seconds_count 3',
    ]);
  });

  it("has the process metrics by default, each daemon its own registry, none in prom-client's global one", async () => {
    const one = new DaemonMetrics();
    const two = new DaemonMetrics();
    one.eventsSeen('fork', 2);
    const text = await one.text();
    expect(text).toContain('# TYPE process_cpu_user_seconds_total counter');
    expect(text).toContain('# TYPE nodejs_heap_size_used_bytes gauge');
    expect(samples(text)).toContain('ringfence_events_total{type="fork"} 2');
    expect(samples(await two.text()).filter((l) => l.startsWith('ringfence_events_total'))).toEqual([]);
    expect(globalRegistry.getMetricsAsArray().map((m) => m.name).filter((name) => name.startsWith('ringfence_'))).toEqual([]);
  });
});

describe('parseMetricsListen', () => {
  it('a path, a loopback IPv4 or IPv6 address and port', () => {
    expect(parseMetricsListen('/run/ringfence/metrics.sock')).toEqual({ kind: 'unix', path: '/run/ringfence/metrics.sock' });
    expect(parseMetricsListen('127.0.0.1:9464')).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 9464 });
    expect(parseMetricsListen('127.1.2.3:1')).toEqual({ kind: 'tcp', host: '127.1.2.3', port: 1 });
    expect(parseMetricsListen('[::1]:65535')).toEqual({ kind: 'tcp', host: '::1', port: 65535 });
  });
});

describe('serveMetrics', () => {
  let dir: string;
  let served: MetricsServer | undefined;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-metrics-'));
  });
  afterEach(async () => {
    await served?.close();
    served = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('serves GET /metrics on a unix socket, mode 0600 (root only)', async () => {
    const metrics = new DaemonMetrics({ processMetrics: false });
    metrics.eventsSeen('exec', 2);
    const socketPath = path.join(dir, 'metrics.sock');
    served = await serveMetrics(socketPath, metrics.registry);
    expect(served.address).toBe(socketPath);
    const stat = fs.statSync(socketPath);
    expect(stat.isSocket()).toBe(true);
    expect(stat.mode & 0o777).toBe(0o600);
    const response = await get({ socketPath });
    expect(response.status).toBe(200);
    expect(response.type).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(response.body).toBe(await metrics.text());
    expect(samples(response.body)).toContain('ringfence_events_total{type="exec"} 2');
  });

  it('with a group the socket is 0660 and that group’s', async () => {
    const socketPath = path.join(dir, 'metrics.sock');
    served = await serveMetrics({ kind: 'unix', path: socketPath }, new DaemonMetrics({ processMetrics: false }).registry, { gid: 1 });
    const stat = fs.statSync(socketPath);
    expect(stat.mode & 0o777).toBe(0o660);
    expect([stat.uid, stat.gid]).toEqual([0, 1]);
  });

  it('serves on a loopback port, IPv4 and IPv6', async () => {
    const metrics = new DaemonMetrics({ processMetrics: false });
    metrics.jobStarted();
    served = await serveMetrics({ kind: 'tcp', host: '127.0.0.1', port: 0 }, metrics.registry);
    const port = Number(/^127\.0\.0\.1:(\d+)$/.exec(served.address)![1]);
    expect(samples((await get({ host: '127.0.0.1', port })).body)).toContain('ringfence_jobs_active 1');
    await served.close();
    served = await serveMetrics({ kind: 'tcp', host: '::1', port: 0 }, metrics.registry);
    const port6 = Number(/^\[::1\]:(\d+)$/.exec(served.address)![1]);
    expect(samples((await get({ host: '::1', port: port6 })).body)).toContain('ringfence_jobs_active 1');
  });

  it('serves a config-file string as it is parsed', async () => {
    // a free port, found by listening on 0 and letting it go
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    served = await serveMetrics(`127.0.0.1:${port}`, new DaemonMetrics({ processMetrics: false }).registry);
    expect(served.address).toBe(`127.0.0.1:${port}`);
    expect((await get({ host: '127.0.0.1', port })).status).toBe(200);
  });

  it('answers only GET and HEAD of /metrics', async () => {
    const socketPath = path.join(dir, 'metrics.sock');
    served = await serveMetrics(socketPath, new DaemonMetrics({ processMetrics: false }).registry);
    expect(await get({ socketPath }, '/')).toEqual({ status: 404, type: 'text/plain', body: 'not found: metrics are at /metrics\n' });
    expect((await get({ socketPath }, '/metrics', 'POST')).status).toBe(405);
    const head = await get({ socketPath }, '/metrics', 'HEAD');
    expect([head.status, head.body]).toEqual([200, '']);
    expect((await get({ socketPath }, '/metrics?x=1')).status).toBe(200);
  });

  it('a scrape that cannot be collected is a 500 with its reason, and reported', async () => {
    const registry = new Registry();
    new Gauge({
      name: 'broken',
      help: 'a collect that fails',
      registers: [registry],
      collect() {
        throw new Error('sensor gone');
      },
    });
    const reported: string[] = [];
    const socketPath = path.join(dir, 'metrics.sock');
    served = await serveMetrics(socketPath, registry, { onError: (error) => reported.push(error.message) });
    expect(await get({ socketPath })).toEqual({ status: 500, type: 'text/plain', body: 'cannot collect the metrics: sensor gone\n' });
    expect(reported).toEqual(['sensor gone']);
  });

  it('refuses a non-loopback listen with one line, and listens nowhere', async () => {
    const registry = new DaemonMetrics({ processMetrics: false }).registry;
    await expect(serveMetrics('0.0.0.0:9464', registry)).rejects.toThrow(
      new RingfenceError("metrics listen '0.0.0.0:9464' is not a loopback address: metrics are served on a unix socket or on 127.0.0.1:PORT / [::1]:PORT only", 'RF_USAGE'),
    );
    await expect(serveMetrics({ kind: 'tcp', host: '::', port: 0 }, registry)).rejects.toThrow(
      "metrics listen '[::]:0' is not a loopback address: metrics are served on a unix socket or on 127.0.0.1:PORT / [::1]:PORT only",
    );
    await expect(serveMetrics('localhost:9464', registry)).rejects.toThrow("metrics listen 'localhost:9464': give an address, not a name (expected a unix socket path, 127.0.0.1:PORT or [::1]:PORT)");
    await expect(serveMetrics({ kind: 'unix', path: 'rel.sock' }, registry)).rejects.toThrow("metrics listen 'rel.sock': expected a unix socket path, 127.0.0.1:PORT or [::1]:PORT");
    const long = `/run/${'x'.repeat(103)}`;
    await expect(serveMetrics({ kind: 'unix', path: long }, registry)).rejects.toThrow(`metrics listen '${long}' is too long for a unix socket (108 bytes, at most 107)`);
    expect(fs.existsSync(long)).toBe(false);
  });

  it('replaces a stale socket, refuses a live one and anything that is not a socket', async () => {
    const registry = new DaemonMetrics({ processMetrics: false }).registry;
    const socketPath = path.join(dir, 'metrics.sock');
    // a socket file nobody listens on: what a killed daemon leaves
    const dead = net.createServer();
    await new Promise<void>((resolve) => dead.listen(socketPath, resolve));
    // closing unlinks the socket: move it aside meanwhile, so that it stays, dead
    fs.renameSync(socketPath, `${socketPath}.keep`);
    await new Promise((resolve) => dead.close(resolve));
    fs.renameSync(`${socketPath}.keep`, socketPath);
    expect(fs.statSync(socketPath).isSocket()).toBe(true);
    served = await serveMetrics(socketPath, registry);
    expect((await get({ socketPath })).status).toBe(200);
    await expect(serveMetrics(socketPath, registry)).rejects.toThrow(`metrics listen '${socketPath}': another process listens on it`);
    const file = path.join(dir, 'not-a-socket');
    fs.writeFileSync(file, 'x');
    await expect(serveMetrics(file, registry)).rejects.toThrow(`metrics listen '${file}': exists and is not a socket`);
    expect(fs.readFileSync(file, 'utf8')).toBe('x');
  });

  it('close() stops serving and removes its socket', async () => {
    const socketPath = path.join(dir, 'metrics.sock');
    const server = await serveMetrics(socketPath, new DaemonMetrics({ processMetrics: false }).registry);
    await server.close();
    expect(fs.existsSync(socketPath)).toBe(false);
    await expect(get({ socketPath })).rejects.toThrow(/ENOENT/);
  });

  it('a port in use is one line', async () => {
    const registry = new DaemonMetrics({ processMetrics: false }).registry;
    served = await serveMetrics({ kind: 'tcp', host: '127.0.0.1', port: 0 }, registry);
    await expect(serveMetrics(served.address, registry)).rejects.toThrow(`metrics listen '${served.address}': in use by another process`);
  });
});
