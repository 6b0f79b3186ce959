/**
 * One event contract, end to end: `trace --json` and `run --events` write
 * the same schema (docs/events.md), every event carries the job's identity,
 * agentId and sequence, audit mode names the domain of an address it learned
 * from DNS, DNS events name the process that asked, and the `completed`
 * counts are what the events file holds.
 */
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DnsJobEvent, JobEvent, JobPhaseEvent, NetworkJobEvent, Written } from '../../src/jobs/job-events';
import { startDnsServer, type TestDnsServer } from '../helpers/dns-server';
import { fixture } from '../helpers/job';
import { createTestHost, type TestHost } from '../helpers/netns';
import { runScriptJob } from '../helpers/run-job';
import { EVENTS_DOC, parseEventsDoc, undocumented } from '../unit/events-doc';

const RINGFENCE = path.resolve(__dirname, '../../bin/ringfence');
const IDENTITY_KEYS = ['org', 'repo', 'workflow', 'jobName', 'runId', 'runAttempt', 'runner', 'host', 'cluster'];

let host: TestHost;
let dns: TestDnsServer;
let resolverIp: string; // a test-owned address with no DNS server: the job's queries must be redirected
let asker: string; // a DNS client that keeps its socket open a moment after the answer, as resolvers with a cache or retries do

const ASKER = `import socket, struct, sys, time
name, transport, resolver = sys.argv[1:4]
q = struct.pack('>HHHHHH', 0x1234, 0x0100, 1, 0, 0, 0) + b''.join(bytes([len(p)]) + p.encode() for p in name.split('.')) + b'\\0' + struct.pack('>HH', 1, 1)
tcp = transport == 'tcp'
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
s.connect((resolver, 53))
s.send(struct.pack('>H', len(q)) + q if tcp else q)
s.recv(4096)
time.sleep(0.3)
print('answered')
`;

beforeAll(async () => {
  host = createTestHost(34);
  resolverIp = host.ip4.replace(/\.2$/, '.53');
  const server = host.spawn(fixture('listen_any'), ['7000']);
  await new Promise<void>((resolve) => server.stdout!.once('data', () => resolve()));
  dns = await startDnsServer({ 'allowed.test': { A: [host.ip4] }, 'other.test': { A: [host.ip4] } });
  asker = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ringfence-asker-')), 'ask.py');
  fs.writeFileSync(asker, ASKER);
});

afterAll(async () => {
  if (asker) fs.rmSync(path.dirname(asker), { recursive: true, force: true });
  await dns?.close();
  host?.destroy();
});

const ACTIONS_ENV = {
  GITHUB_REPOSITORY_OWNER: 'acme',
  GITHUB_REPOSITORY: 'acme/web',
  GITHUB_WORKFLOW: 'CI',
  GITHUB_WORKFLOW_REF: 'acme/web/.github/workflows/ci.yml@refs/heads/main',
  GITHUB_JOB: 'build',
  GITHUB_RUN_ID: '7012345678',
  GITHUB_RUN_ATTEMPT: '2',
  RUNNER_NAME: 'runner-7',
};

const readEvents = (file: string): Written[] =>
  fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Written);

function ringfence(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const env: NodeJS.ProcessEnv = { ...process.env, ...ACTIONS_ENV };
    delete env.RINGFENCE_SERVER;
    const child = spawn(process.execPath, [RINGFENCE, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

const work = () => fs.mkdtempSync(path.join(os.tmpdir(), 'ringfence-events-e2e-'));

describe('trace --json and run --events', () => {
  it('write one schema: the documented kinds and fields, the same envelope, exec as process', async () => {
    const dir = work();
    const policy = path.join(dir, 'p.yml');
    fs.writeFileSync(policy, 'name: events-e2e\negress-policy: audit\n');
    const script = ['/bin/bash', '-c', `/bin/true; ${fixture('connect_to')} 127.0.0.1 9 || true`];
    const ran = await ringfence(['run', '--policy', policy, '--events', path.join(dir, 'run.jsonl'), '--', ...script]);
    const traced = await ringfence(['trace', '--json', '-o', path.join(dir, 'trace.jsonl'), '--', ...script]);
    expect([ran.code, traced.code], ran.stderr + traced.stderr).toEqual([0, 0]);
    const run = readEvents(path.join(dir, 'run.jsonl'));
    const trace = readEvents(path.join(dir, 'trace.jsonl'));
    fs.rmSync(dir, { recursive: true, force: true });

    const doc = parseEventsDoc(fs.readFileSync(EVENTS_DOC, 'utf8'));
    expect(undocumented(doc, run)).toEqual([]);
    expect(undocumented(doc, trace)).toEqual([]);
    for (const events of [run, trace]) {
      // the envelope, in this order, on every line; one agent per ringfence process, numbered 1, 2, 3…
      for (const event of events) expect(Object.keys(event).slice(0, 13)).toEqual(['kind', 'time', 'job', ...IDENTITY_KEYS.filter((k) => k !== 'cluster'), 'agentId', 'sequence']);
      expect(events.map((e) => e.sequence)).toEqual(events.map((_, i) => i + 1));
      expect(new Set(events.map((e) => e.agentId)).size).toBe(1);
      expect(events[0]).toMatchObject({ kind: 'job', phase: 'started', org: 'acme', repo: 'acme/web', workflow: '.github/workflows/ci.yml', jobName: 'build', runId: '7012345678', runAttempt: 2, runner: 'runner-7', host: os.hostname() });
      expect(events.at(-1)).toMatchObject({ kind: 'job', phase: 'completed', status: { exitCode: 0, signal: null } });
    }
    expect(run[0].agentId).not.toBe(trace[0].agentId);
    expect(run[0]).toMatchObject({ policy: 'events-e2e', mode: 'audit' });
    expect(trace[0]).toMatchObject({ policy: null });

    // exec is `process` in both, field for field
    const execs = (events: Written[]) => events.filter((e) => e.kind === 'process').map((e) => ({ keys: Object.keys(e), exe: e.process!.exe }));
    expect(execs(trace)).toEqual(execs(run));
    expect(execs(run).map((e) => e.exe)).toEqual(['/bin/bash', '/bin/true', fixture('connect_to')]);
    // the sensor's own records are kinds of the same envelope; nothing of the decoder's shape is left
    expect(new Set(trace.map((e) => e.kind))).toEqual(new Set(['job', 'process', 'fork', 'exit', 'connect']));
    expect(trace.find((e) => e.kind === 'connect')).toMatchObject({ process: { exe: fixture('connect_to') }, socket: { family: 'inet', ip: '127.0.0.1', port: 9, protocol: 'tcp' } });
    for (const event of trace) expect(event).not.toHaveProperty('type');
    expect(JSON.stringify(trace)).not.toMatch(/ktimeNs|timeMs|tgid/);
  });
});

function job(script: string, policy: string, options: { policyName?: string | null } = {}) {
  return runScriptJob(script, { policy, upstream: { host: dns.host, port: dns.port }, resolvConf: `nameserver ${resolverIp}\n`, identity: { org: 'acme', repo: 'acme/web', host: 'ci-3' }, ...options });
}

const connect = fixture('connect_to');
const ofKind = <K extends JobEvent['kind']>(events: JobEvent[], kind: K) => events.filter((e) => e.kind === kind) as Extract<JobEvent, { kind: K }>[];

describe('audit mode', () => {
  it('a connection to an address of an audited answer names its domain; policy is null without a policy', async () => {
    const j = await job(`ip=$(getent ahostsv4 other.test | head -1 | cut -d' ' -f1); ${connect} $ip 7000`, 'egress-policy: audit\n', { policyName: null });
    expect(j.stdout).toBe('ok\n');
    expect(ofKind(j.events, 'dns').find((e) => e.name === 'other.test')).toMatchObject({ verdict: 'audited', answers: [host.ip4], policy: null });
    expect(ofKind(j.events, 'network')).toEqual([expect.objectContaining({ ip: host.ip4, port: 7000, verdict: 'audited', domain: 'other.test', policy: null })]);
    for (const event of j.events) {
      expect(event).toMatchObject({ org: 'acme', repo: 'acme/web', host: 'ci-3' });
      if ('policy' in event) expect(event.policy).toBeNull();
    }
  });

  it('in block mode a refused name names nothing: its address was never answered', async () => {
    const j = await job(`getent ahostsv4 other.test; ${connect} ${host.ip4} 7000; exit 0`, `egress-policy: block\nallowed-endpoints: allowed.test:7000\n`);
    expect(ofKind(j.events, 'dns').find((e) => e.name === 'other.test')?.verdict).toBe('blocked');
    expect(ofKind(j.events, 'network')).toEqual([expect.objectContaining({ ip: host.ip4, verdict: 'blocked' })]);
    expect(ofKind(j.events, 'network')[0].domain).toBeUndefined();
  });
});

describe('DNS events', () => {
  it.each([
    ['an allowed name over UDP', 'allowed.test', ''],
    ['a refused name over UDP', 'other.test', ''],
    ['an allowed name over TCP', 'allowed.test', 'options use-vc\n'],
  ])('name the process that asked: %s', async (_what, name, options) => {
    const script = `python3 ${asker} ${name} ${options ? 'tcp' : 'udp'} ${resolverIp}; getent ahostsv4 ${name} >/dev/null; exit 0`;
    const j = await runScriptJob(script, {
      policy: 'egress-policy: block\nallowed-endpoints: allowed.test:7000\n',
      upstream: { host: dns.host, port: dns.port },
      resolvConf: `nameserver ${resolverIp}\n${options}`,
    });
    expect(j.stdout).toBe('answered\n');
    const queries = ofKind(j.events, 'dns').filter((e) => e.name === name);
    const python = queries.find((e) => e.process?.exe.includes('python'));
    expect(python, JSON.stringify(queries)).toBeDefined();
    expect(python).toMatchObject({ transport: options ? 'tcp' : 'udp', process: { argv: expect.arrayContaining([asker, name]) } });
    expect(python!.process!.ancestry.at(-1)).toBe('/bin/bash');
    // whoever the proxy names is a process of this job
    for (const query of queries) if (query.process) expect(query.process.exe).toMatch(/python|getent/);
  });
});

/** Forwards UDP queries to `to` after `delayMs`, as a resolver across a network answers. */
async function slowUpstream(to: TestDnsServer, delayMs: number): Promise<{ port: number; close: () => void }> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
  socket.on('message', (message, from) => {
    const forward = dgram.createSocket('udp4');
    forward.on('message', (answer) => {
      setTimeout(() => socket.send(answer, from.port, from.address), delayMs);
      forward.close();
    });
    forward.send(message, to.port, to.host);
  });
  return { port: socket.address().port, close: () => socket.close() };
}

describe('DNS events of a glibc client (getent), which closes its socket as the answer arrives', () => {
  it('name it when upstream takes the time a real resolver takes', async () => {
    const upstream = await slowUpstream(dns, 30);
    try {
      const j = await runScriptJob(`getent ahostsv4 allowed.test >/dev/null; echo $?`, {
        policy: 'egress-policy: audit\n',
        upstream: { host: '127.0.0.1', port: upstream.port },
        resolvConf: `nameserver ${resolverIp}\n`,
      });
      expect(j.stdout).toBe('0\n');
      const [query] = ofKind(j.events, 'dns').filter((e) => e.name === 'allowed.test');
      expect(query).toMatchObject({ verdict: 'audited', process: { exe: '/usr/bin/getent', argv: ['getent', 'ahostsv4', 'allowed.test'] } });
    } finally {
      upstream.close();
    }
  });
});

describe('the completed counts', () => {
  it('are what the events file holds, per kind and verdict', async () => {
    const j = await job(
      [
        `ip=$(getent ahostsv4 allowed.test | head -1 | cut -d' ' -f1)`,
        `${connect} $ip 7000`,
        `${connect} $ip 7001`,
        `getent ahostsv4 other.test`,
        `for i in 1 2 3; do ${fixture('send_to')} ${host.ip4} 7002; done`,
        'exit 0',
      ].join('; '),
      'egress-policy: block\nallowed-endpoints: allowed.test:7000\n',
    );
    const completed = j.events.at(-1) as JobPhaseEvent;
    expect(completed).toMatchObject({ kind: 'job', phase: 'completed' });
    const dnsEvents = ofKind(j.events, 'dns') as DnsJobEvent[];
    const network = ofKind(j.events, 'network') as NetworkJobEvent[];
    const attempts = (verdict: string) => network.filter((e) => e.verdict === verdict).reduce((n, e) => n + e.count, 0);
    const queries = (verdict: string) => dnsEvents.filter((e) => e.verdict === verdict).length;
    expect(completed.counts).toEqual({
      processes: ofKind(j.events, 'process').length,
      dns: dnsEvents.length,
      network: network.reduce((n, e) => n + e.count, 0),
      blocked: queries('blocked') + attempts('blocked'),
      audited: queries('audited') + attempts('audited'),
      detections: ofKind(j.events, 'detection').length,
    });
    // and they are not all zero: the job did each of these
    expect(queries('allowed')).toBeGreaterThan(0);
    expect(queries('blocked')).toBeGreaterThan(0);
    expect([attempts('allowed'), attempts('blocked')]).toEqual([1, 4]);
    const lines = j.summary.split('\n');
    const header = lines.findIndex((l) => l.startsWith('ringfence: job '));
    expect(lines.slice(header + 1, header + 4).map((l) => l.trim().split(/\s+/)[0])).toEqual(['BLOCKED', 'BLOCKED', 'BLOCKED']);
  });
});
