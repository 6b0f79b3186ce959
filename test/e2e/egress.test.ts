/**
 * Egress policy end to end: real jobs, a test-owned DNS server on loopback as
 * upstream, and a test-owned host (198.18.x.2, fd00:18:x::2) in a network
 * namespace with TCP/UDP listeners on ports 7000 and 7001.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DnsJobEvent, NetworkJobEvent } from '../../src/jobs/job-events';
import { startDnsServer, type TestDnsServer } from '../helpers/dns-server';
import { fixture } from '../helpers/job';
import { createTestHost, type TestHost } from '../helpers/netns';
import { runScriptJob, type ScriptJob } from '../helpers/run-job';

let host: TestHost;
let dns: TestDnsServer;
let resolverIp: string; // a test-owned address with no DNS server: queries must be redirected

const BLOCK_POLICY = `name: e2e-block
egress-policy: block
allowed-endpoints: >
  allowed.test:7000
  *.wild.test:7000
  alias.test:7000
  v6only.test:7000
`;

beforeAll(async () => {
  host = createTestHost(1);
  resolverIp = host.ip4.replace(/\.2$/, '.53');
  for (const port of ['7000', '7001']) {
    const server = host.spawn(fixture('listen_any'), [port]);
    await new Promise<void>((resolve) => server.stdout!.once('data', () => resolve()));
  }
  dns = await startDnsServer({
    'allowed.test': { A: [host.ip4], AAAA: [host.ip6] },
    'a.wild.test': { A: [host.ip4] },
    'deep.er.wild.test': { A: [host.ip4] },
    'wild.test': { A: [host.ip4] },
    'alias.test': { CNAME: 'edge.cdn.test' },
    'edge.cdn.test': { A: [host.ip4] },
    'denied.test': { A: [host.ip4] },
    'v6only.test': { AAAA: [host.ip6] },
  });
});

afterAll(async () => {
  await dns?.close();
  host?.destroy();
});

function job(script: string, policy = BLOCK_POLICY, resolvConf = `nameserver ${resolverIp}\n`): Promise<ScriptJob> {
  return runScriptJob(script, { policy, upstream: { host: dns.host, port: dns.port }, resolvConf });
}

const network = (j: ScriptJob) => j.events.filter((e): e is NetworkJobEvent => e.kind === 'network');
const dnsEvents = (j: ScriptJob) => j.events.filter((e): e is DnsJobEvent => e.kind === 'dns');
const connect = fixture('connect_to');
const resolve4 = (name: string) => `$(getent ahostsv4 ${name} | head -1 | cut -d' ' -f1)`;

describe('block mode', () => {
  it('an allowed name resolves and connects; its DNS answer is what allows the IP', async () => {
    const j = await job(`ip=${resolve4('allowed.test')}; echo "ip=$ip"; ${connect} $ip 7000`);
    expect(j.stdout).toBe(`ip=${host.ip4}\nok\n`);
    expect(j.exitStatus).toBe(0);
    expect(dnsEvents(j).find((e) => e.name === 'allowed.test')).toMatchObject({ verdict: 'allowed', answers: [host.ip4], policy: 'e2e-block' });
    expect(network(j)).toEqual([expect.objectContaining({ protocol: 'tcp', ip: host.ip4, port: 7000, domain: 'allowed.test', verdict: 'allowed' })]);
    expect(network(j)[0].process).toMatchObject({ exe: connect, argv: [connect, host.ip4, '7000'] });
  });

  it('a name not allowed gets NXDOMAIN, and its IP cannot be reached directly', async () => {
    const j = await job(`getent ahostsv4 denied.test; echo "getent=$?"; ${connect} ${host.ip4} 7000; exit 0`);
    expect(j.stdout).toBe('getent=2\nerrno 1\n');
    expect(dnsEvents(j).map((e) => [e.name, e.verdict, e.rcode])).toContainEqual(['denied.test', 'blocked', 'NXDOMAIN']);
    expect(network(j)).toEqual([expect.objectContaining({ ip: host.ip4, port: 7000, verdict: 'blocked' })]);
    expect(dns.queries.some((q) => q.startsWith('denied.test'))).toBe(false);
    expect(j.exitCode).toBe(0);
    expect(j.exitStatus).toBe(1); // CMD succeeded, but a request was blocked
    expect(j.summary).toMatch(/BLOCKED +198\.18\.\d+\.2:7000\/tcp/);
  });

  it('wildcards match any depth but not the apex', async () => {
    const j = await job(`for n in a.wild.test deep.er.wild.test wild.test; do getent ahostsv4 $n >/dev/null; echo "$n=$?"; done`);
    expect(j.stdout).toBe('a.wild.test=0\ndeep.er.wild.test=0\nwild.test=2\n');
  });

  it('enforces the port of the entry', async () => {
    const j = await job(`ip=${resolve4('allowed.test')}; ${connect} $ip 7000; ${connect} $ip 7001`);
    expect(j.stdout).toBe('ok\nerrno 1\n');
    expect(network(j).map((e) => [e.port, e.verdict])).toEqual([
      [7000, 'allowed'],
      [7001, 'blocked'],
    ]);
  });

  it('follows a CNAME chain to an address outside the allowed names', async () => {
    const j = await job(`ip=${resolve4('alias.test')}; ${connect} $ip 7000`);
    expect(j.stdout).toBe('ok\n');
    expect(dnsEvents(j).find((e) => e.name === 'alias.test' && e.type === 'A')?.answers).toEqual(['edge.cdn.test', host.ip4]);
  });

  it('allows AAAA answers over IPv6', async () => {
    const j = await job(`ip=$(getent ahostsv6 v6only.test | head -1 | cut -d' ' -f1); echo "ip=$ip"; ${connect} $ip 7000; ${connect} $ip 7001`);
    expect(j.stdout).toBe(`ip=${host.ip6}\nok\nerrno 1\n`);
  });

  it('redirects queries to an IPv6 resolver, and their answers seem to come from it', async () => {
    const resolver6 = host.ip6.replace(/::2$/, '::53'); // no DNS server there either
    const j = await job(`echo ${resolve4('allowed.test')}; getent ahostsv4 denied.test; echo "denied=$?"`, BLOCK_POLICY, `nameserver ${resolver6}\n`);
    expect(j.stdout).toBe(`${host.ip4}\ndenied=2\n`);
    expect(dnsEvents(j).map((e) => [e.name, e.verdict])).toEqual(expect.arrayContaining([['allowed.test', 'allowed'], ['denied.test', 'blocked']]));
  });

  it('judges an IPv4-mapped IPv6 destination as the IPv4 address', async () => {
    const j = await job(`${connect} ::ffff:${host.ip4} 7000; ip=${resolve4('allowed.test')}; ${connect} ::ffff:$ip 7000`);
    expect(j.stdout).toBe('errno 1\nok\n');
    expect(network(j).map((e) => e.verdict)).toEqual(['blocked', 'allowed']);
  });

  it('refuses UDP datagrams to addresses not allowed', async () => {
    const j = await job(`${fixture('send_to')} ${host.ip4} 7001`);
    expect(j.stdout).toBe('errno 1\n');
    expect(network(j)).toEqual([expect.objectContaining({ protocol: 'udp', ip: host.ip4, port: 7001, verdict: 'blocked' })]);
  });

  it('drops ICMP from raw sockets to addresses not allowed', async () => {
    const j = await job(`${fixture('icmp_echo')} ${host.ip4}`);
    expect(j.stdout).not.toMatch(/reply/);
    expect(network(j)).toEqual([expect.objectContaining({ protocol: 'icmp', ip: host.ip4, verdict: 'blocked' })]);
  });

  it('redirects DNS over TCP and queries sent straight to another resolver', async () => {
    const tcp = await job(`getent ahostsv4 allowed.test | head -1 | cut -d' ' -f1; getent ahostsv4 denied.test; echo "denied=$?"`, BLOCK_POLICY, `nameserver ${resolverIp}\noptions use-vc\n`);
    expect(tcp.stdout).toBe(`${host.ip4}\ndenied=2\n`);
    expect(dns.queries).toContain('allowed.test A tcp');
    const elsewhere = await job(`getent ahostsv4 allowed.test | head -1 | cut -d' ' -f1`, BLOCK_POLICY, `nameserver ${host.ip4.replace(/\.2$/, '.99')}\n`);
    expect(elsewhere.stdout).toBe(`${host.ip4}\n`);
  });

  it('shows the resolver as the source of DNS replies, and the real sender of other datagrams on that socket', async () => {
    const j = await job(`${fixture('dns_then_udp')} ${resolverIp}`);
    const [dnsLine, udpLine] = j.stdout.trim().split('\n');
    expect(dnsLine).toBe(`dns from ${resolverIp}:53`);
    const [, source, sender] = /^udp from (\S+) sender (\S+)$/.exec(udpLine ?? '') ?? [];
    expect(source).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(source).toBe(sender);
  });

  it('a double-forked child is held to the policy too', async () => {
    const j = await job(`(setsid bash -c '${connect} ${host.ip4} 7001 > /dev/stderr' &) ; sleep 0.5`);
    expect(j.stderr).toContain('errno 1');
    expect(network(j)).toEqual([expect.objectContaining({ port: 7001, verdict: 'blocked' })]);
  });
});

describe('audit mode', () => {
  it('blocks nothing and records the same verdicts', async () => {
    const policy = BLOCK_POLICY.replace('egress-policy: block', 'egress-policy: audit');
    const j = await job(`getent ahostsv4 denied.test | head -1 | cut -d' ' -f1; ${connect} ${host.ip4} 7001; ip=${resolve4('allowed.test')}; ${connect} $ip 7000`, policy);
    expect(j.stdout).toBe(`${host.ip4}\nok\nok\n`);
    expect(dnsEvents(j).find((e) => e.name === 'denied.test')?.verdict).toBe('audited');
    expect(network(j).map((e) => [e.port, e.verdict])).toEqual([
      [7001, 'audited'],
      [7000, 'allowed'],
    ]);
    expect(j.exitStatus).toBe(0);
  });
});

describe('isolation', () => {
  it('a process outside the job is unaffected', async () => {
    const { execFileSync } = await import('node:child_process');
    const during = job(`sleep 0.3`);
    const outside = execFileSync(connect, [host.ip4, '7001'], { encoding: 'utf8' });
    expect(outside).toBe('ok\n');
    await during;
  });

  it('concurrent jobs with different policies do not see each other’s allowances', async () => {
    const allowing = `egress-policy: block\nallowed-endpoints: ${host.ip4}:7001\n`;
    const [a, b] = await Promise.all([
      job(`sleep 0.2; ${connect} ${host.ip4} 7001`, allowing),
      job(`sleep 0.2; ${connect} ${host.ip4} 7001`, BLOCK_POLICY),
    ]);
    expect(a.stdout).toBe('ok\n');
    expect(b.stdout).toBe('errno 1\n');
  });
});
