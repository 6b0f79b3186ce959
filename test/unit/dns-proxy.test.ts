/** The DNS proxy on loopback against a test-owned upstream: verdicts, learning, CNAME chains, garbage. */
import dgram from 'node:dgram';
import net from 'node:net';
import * as dnsPacket from 'dns-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DnsProxy, type DnsQueryRecord } from '../../src/dns/proxy';
import { formatIp, type IpAddress } from '../../src/net/address';
import { EgressMatcher } from '../../src/policy/matcher';
import { parsePolicy } from '../../src/policy/policy';
import { startDnsServer, type TestDnsServer } from '../helpers/dns-server';

let upstream: TestDnsServer;
let proxy: DnsProxy;
const learned: string[] = [];
const records: DnsQueryRecord[] = [];

beforeAll(async () => {
  upstream = await startDnsServer({
    'allowed.test': { A: ['198.18.1.10'], AAAA: ['fd00:18:1::10'] },
    'a.wild.test': { A: ['198.18.1.11'] },
    'alias.test': { CNAME: 'hop.elsewhere.test' },
    'hop.elsewhere.test': { CNAME: 'final.elsewhere.test' },
    'final.elsewhere.test': { A: ['198.18.1.12'] },
    'denied.test': { A: ['198.18.1.13'] },
  });
  const policy = parsePolicy('egress-policy: block\nallowed-endpoints: >\n  allowed.test:443 allowed.test:80\n  *.wild.test\n  alias.test:8443\n');
  proxy = await DnsProxy.start({
    matcher: new EgressMatcher(policy),
    mode: policy.egressPolicy,
    upstream: { host: upstream.host, port: upstream.port },
    learn: (addresses: IpAddress[], ports: number[]) => learned.push(`${addresses.map(formatIp).join(',')} ${ports.join(',')}`),
    record: (r) => records.push(r),
  });
});

afterAll(async () => {
  await proxy?.close();
  await upstream?.close();
});

/** The data of each answer record. */
const dataOf = (response: dnsPacket.Packet) => (response.answers ?? []).map((a) => (a as { data?: unknown }).data);

async function queryUdp(name: string, type: 'A' | 'AAAA' = 'A', host = '127.0.0.1'): Promise<dnsPacket.Packet> {
  const socket = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  const message = dnsPacket.encode({ type: 'query', id: 7, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] });
  return new Promise((resolve) => {
    socket.on('message', (response) => {
      socket.close();
      resolve(dnsPacket.decode(response));
    });
    socket.send(message, proxy.port, host);
  });
}

describe('DnsProxy', () => {
  it('forwards an allowed name and learns its addresses, on its ports, before answering', async () => {
    const response = await queryUdp('allowed.test');
    expect(dataOf(response)).toEqual(['198.18.1.10']);
    expect(learned).toContain('198.18.1.10 443,80');
    expect(records.at(-1)).toMatchObject({ name: 'allowed.test', verdict: 'allowed', answers: ['198.18.1.10'], rcode: 'NOERROR', ttl: 60 });
  });

  it('answers AAAA over IPv6 loopback', async () => {
    const response = await queryUdp('allowed.test', 'AAAA', '::1');
    expect(dataOf(response)).toEqual(['fd00:18:1::10']);
    expect(learned).toContain('fd00:18:1::10 443,80');
  });

  it('follows a CNAME chain to addresses outside the allowed names', async () => {
    await queryUdp('alias.test');
    expect(learned).toContain('198.18.1.12 8443');
    expect(records.at(-1)?.answers).toEqual(['hop.elsewhere.test', 'final.elsewhere.test', '198.18.1.12']);
  });

  it('matches wildcards', async () => {
    const response = await queryUdp('A.Wild.Test.');
    expect(dataOf(response)).toEqual(['198.18.1.11']);
  });

  it('answers NXDOMAIN for a name not allowed, without asking upstream or learning', async () => {
    const before = upstream.queries.length;
    const learnedBefore = learned.length;
    const response = await queryUdp('denied.test');
    expect((response as { rcode?: string }).rcode).toBe('NXDOMAIN');
    expect(response.answers).toEqual([]);
    expect(upstream.queries.length).toBe(before);
    expect(learned.length).toBe(learnedBefore);
    expect(records.at(-1)).toMatchObject({ name: 'denied.test', verdict: 'blocked', rcode: 'NXDOMAIN' });
  });

  it('serves DNS over TCP', async () => {
    const socket = net.connect(proxy.port, '127.0.0.1');
    const response = await new Promise<dnsPacket.Packet>((resolve) => {
      socket.on('connect', () => socket.write(dnsPacket.streamEncode({ type: 'query', id: 9, questions: [{ type: 'A', name: 'allowed.test' }] })));
      socket.on('data', (data) => resolve(dnsPacket.streamDecode(data)));
    });
    socket.destroy();
    expect(dataOf(response)).toEqual(['198.18.1.10']);
    expect(upstream.queries.at(-1)).toBe('allowed.test A tcp');
  });

  it('survives garbage and keeps answering', async () => {
    const socket = dgram.createSocket('udp4');
    for (const junk of [Buffer.from('x'), Buffer.alloc(12, 0xff), Buffer.from('\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c', 'latin1')]) {
      socket.send(junk, proxy.port, '127.0.0.1');
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    socket.close();
    expect(proxy.stats.malformed).toBeGreaterThanOrEqual(3);
    const response = await queryUdp('allowed.test');
    expect(response.answers?.length).toBe(1);
  });
});
