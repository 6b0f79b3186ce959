/**
 * What the DNS proxy learns (allows in the kernel) and answers: only A/AAAA
 * records on the asked name's CNAME chain, and only for names the policy
 * allows. Each case starts its own fake upstream and proxy, with fresh
 * arrays, so no case passes on another's entries.
 */
import dgram from 'node:dgram';
import * as dnsPacket from 'dns-packet';
import { describe, expect, it } from 'vitest';
import { followAnswer } from '../../src/dns/decision';
import { DnsProxy, type DnsQueryRecord } from '../../src/dns/proxy';
import { formatIp } from '../../src/net/address';
import { EgressMatcher } from '../../src/policy/matcher';
import { parsePolicy } from '../../src/policy/policy';

type Answer = dnsPacket.Answer;
const a = (name: string, data: string, ttl = 60): Answer => ({ type: 'A', name, ttl, data });
const aaaa = (name: string, data: string, ttl = 60): Answer => ({ type: 'AAAA', name, ttl, data });
const cname = (name: string, data: string, ttl = 60): Answer => ({ type: 'CNAME', name, ttl, data });

describe('followAnswer', () => {
  // Each row builds its answers afresh (a function), so no row shares an array.
  it.each<[string, string, () => Answer[], string[], string[], number | undefined]>([
    ['only the asked name, not an unrelated A in the same answer', 'asked.test', () => [a('asked.test', '198.18.0.1'), a('unrelated.test', '198.18.0.66')], ['198.18.0.1'], [], 60],
    ['an unrelated A listed first', 'asked.test', () => [a('unrelated.test', '198.18.0.66'), a('asked.test', '198.18.0.1')], ['198.18.0.1'], [], 60],
    ['AAAA of the asked name', 'asked.test', () => [aaaa('asked.test', 'fd00::1'), aaaa('other.test', 'fd00::66')], ['fd00::1'], [], 60],
    ['through a CNAME chain, not an unrelated A', 'asked.test', () => [cname('asked.test', 'hop.test'), cname('hop.test', 'final.test'), a('final.test', '198.18.0.2'), a('unrelated.test', '198.18.0.66')], ['198.18.0.2'], ['hop.test', 'final.test'], 60],
    ['CNAMEs in reverse order', 'asked.test', () => [a('final.test', '198.18.0.2'), cname('hop.test', 'final.test'), cname('asked.test', 'hop.test')], ['198.18.0.2'], ['hop.test', 'final.test'], 60],
    ['not a CNAME that starts at another name', 'asked.test', () => [a('asked.test', '198.18.0.1'), cname('other.test', 'evil.test'), a('evil.test', '198.18.0.66')], ['198.18.0.1'], [], 60],
    ['names compared case- and dot-insensitively', 'Asked.Test.', () => [cname('ASKED.test.', 'Hop.Test'), a('hop.test.', '198.18.0.3')], ['198.18.0.3'], ['hop.test'], 60],
    ['a CNAME loop ends', 'asked.test', () => [cname('asked.test', 'b.test'), cname('b.test', 'asked.test')], [], ['b.test'], 60],
    ['nothing for an answer about other names', 'asked.test', () => [a('other.test', '198.18.0.66')], [], [], undefined],
    ['nothing for an empty answer', 'asked.test', () => [], [], [], undefined],
    ['no address from an A record whose data is no address', 'asked.test', () => [a('asked.test', 'not-an-address'), a('asked.test', '198.18.0.1')], ['198.18.0.1'], [], 60],
    ['other record types on the chain are neither addresses nor TTLs', 'asked.test', () => [{ type: 'TXT', name: 'asked.test', ttl: 1, data: '198.18.0.9' }, a('asked.test', '198.18.0.1', 30)], ['198.18.0.1'], [], 30],
    ['a record without a TTL does not make the TTL unknown', 'asked.test', () => [{ type: 'A', name: 'asked.test', data: '198.18.0.1' }, a('asked.test', '198.18.0.2', 45)], ['198.18.0.1', '198.18.0.2'], [], 45],
    ['a CNAME target of another chain is not followed even when it is listed before', 'asked.test', () => [cname('evil.test', 'asked.test'), a('evil.test', '198.18.0.66'), a('asked.test', '198.18.0.1')], ['198.18.0.1'], [], 60],
  ])('%s', (_label, name, answers, addresses, names, ttl) => {
    const result = followAnswer(name, answers());
    expect(result.addresses.map(formatIp)).toEqual(addresses);
    expect(result.names).toEqual(names);
    expect(result.ttl).toBe(ttl);
  });

  it.each<[string, () => Answer[], number]>([
    ['the smallest TTL on the chain', () => [cname('asked.test', 'hop.test', 300), a('hop.test', '198.18.0.2', 40), a('hop.test', '198.18.0.4', 90)], 40],
    ['not the TTL of an unrelated record', () => [a('asked.test', '198.18.0.1', 120), a('unrelated.test', '198.18.0.66', 5), cname('x.test', 'y.test', 1)], 120],
    ['a CNAME TTL smaller than the address TTL', () => [cname('asked.test', 'hop.test', 7), a('hop.test', '198.18.0.2', 40)], 7],
  ])('ttl: %s', (_label, answers, ttl) => {
    expect(followAnswer('asked.test', answers()).ttl).toBe(ttl);
  });
});

/** An upstream that answers each question with what `respond` builds for it. */
async function fakeUpstream(respond: (name: string) => Answer[]): Promise<{ port: number; asked: string[]; close: () => Promise<void> }> {
  const asked: string[] = [];
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
  socket.on('message', (message, from) => {
    const query = dnsPacket.decode(message);
    const question = query.questions![0];
    asked.push(question.name);
    socket.send(dnsPacket.encode({ id: query.id, type: 'response', flags: dnsPacket.RECURSION_AVAILABLE, questions: query.questions, answers: respond(question.name) }), from.port, from.address);
  });
  return { port: socket.address().port, asked, close: () => new Promise((resolve) => socket.close(() => resolve())) };
}

interface Run {
  learned: string[];
  records: DnsQueryRecord[];
  asked: string[];
  response: dnsPacket.Packet;
}

/** Starts a fresh upstream and proxy for `policyText`, asks `name` once, and tears both down. */
async function ask(policyText: string, name: string, respond: (name: string) => Answer[]): Promise<Run> {
  const learned: string[] = [];
  const records: DnsQueryRecord[] = [];
  const upstream = await fakeUpstream(respond);
  const policy = parsePolicy(policyText);
  const proxy = await DnsProxy.start({
    matcher: new EgressMatcher(policy),
    mode: policy.egressPolicy,
    upstream: { host: '127.0.0.1', port: upstream.port },
    learn: (addresses, ports) => learned.push(`${addresses.map(formatIp).join(',')} ${ports.join(',')}`),
    record: (r) => records.push(r),
    timeoutMs: 2000,
  });
  try {
    const message = dnsPacket.encode({ type: 'query', id: 42, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] });
    const bytes = await proxy.answer(message, 'udp');
    return { learned, records, asked: upstream.asked, response: dnsPacket.decode(bytes!) };
  } finally {
    await proxy.close();
    await upstream.close();
  }
}

const rcodeOf = (p: dnsPacket.Packet) => (p as { rcode?: string }).rcode;

describe('DnsProxy learning', () => {
  const BLOCK = 'egress-policy: block\nallowed-endpoints: >\n  asked.test:443 asked.test:80 asked.test:443\n';
  const AUDIT = 'egress-policy: audit\nallowed-endpoints: >\n  asked.test:8443\n';

  it('block mode: learns the asked name’s address on its (distinct) ports, not an unrelated A in the same answer', async () => {
    const run = await ask(BLOCK, 'asked.test', () => [a('asked.test', '198.18.0.1'), a('unrelated.test', '198.18.0.66')]);
    expect(run.learned).toEqual(['198.18.0.1 443,80']);
    expect(run.records).toHaveLength(1);
    expect(run.records[0]).toMatchObject({ name: 'asked.test', verdict: 'allowed', answers: ['198.18.0.1'], rcode: 'NOERROR', ttl: 60 });
  });

  it('block mode: learns the end of the CNAME chain only', async () => {
    const run = await ask(BLOCK, 'asked.test', () => [cname('asked.test', 'cdn.test'), a('cdn.test', '198.18.0.2'), cname('side.test', 'evil.test'), a('evil.test', '198.18.0.66')]);
    expect(run.learned).toEqual(['198.18.0.2 443,80']);
    expect(run.records[0].answers).toEqual(['cdn.test', '198.18.0.2']);
  });

  it('block mode: a name outside the policy gets NXDOMAIN, upstream is not asked, nothing is learned', async () => {
    const run = await ask(BLOCK, 'denied.test', () => [a('denied.test', '198.18.0.66')]);
    expect(rcodeOf(run.response)).toBe('NXDOMAIN');
    expect(run.asked).toEqual([]);
    expect(run.learned).toEqual([]);
    expect(run.records.map((r) => [r.name, r.verdict, r.rcode])).toEqual([['denied.test', 'blocked', 'NXDOMAIN']]);
  });

  it('audit mode: a name outside the policy is answered but its addresses are not learned', async () => {
    const run = await ask(AUDIT, 'outside.test', () => [a('outside.test', '198.18.0.77')]);
    expect(run.asked).toEqual(['outside.test']);
    expect(rcodeOf(run.response)).toBe('NOERROR');
    expect(run.response.answers?.map((x) => (x as { data?: unknown }).data)).toEqual(['198.18.0.77']);
    expect(run.learned).toEqual([]);
    expect(run.records.map((r) => [r.name, r.verdict, r.answers])).toEqual([['outside.test', 'audited', ['198.18.0.77']]]);
  });

  it('audit mode: a name in the policy is learned (so the case above is not vacuous)', async () => {
    const run = await ask(AUDIT, 'asked.test', () => [a('asked.test', '198.18.0.5')]);
    expect(run.learned).toEqual(['198.18.0.5 8443']);
    expect(run.records[0].verdict).toBe('allowed');
  });

  it('an allowed name whose answer has no address on its chain learns nothing', async () => {
    const run = await ask(BLOCK, 'asked.test', () => [a('unrelated.test', '198.18.0.66')]);
    expect(run.learned).toEqual([]);
    expect(run.records[0]).toMatchObject({ verdict: 'allowed', answers: [] });
  });
});
