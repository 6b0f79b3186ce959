/**
 * The DNS proxy's decisions without sockets (src/dns/decision.ts): which
 * messages are served, which names are allowed, blocked or audited, what the
 * job is answered, what is learned and what each query's record says. Every
 * case builds its own packets and policy.
 */
import * as dnsPacket from 'dns-packet';
import { describe, expect, it } from 'vitest';
import { decideAnswer, decideQuery, errorReply, isFromUpstream, type JudgedQuestion } from '../../src/dns/decision';
import { formatIp } from '../../src/net/address';
import { EgressMatcher } from '../../src/policy/matcher';
import { parsePolicy } from '../../src/policy/policy';

const OPCODE_SHIFT = 11;

/** A query as a client sends it. */
function queryBytes(questions: dnsPacket.Question[], flags: number = dnsPacket.RECURSION_DESIRED, id = 4242): Buffer {
  return dnsPacket.encode({ type: 'query', id, flags, questions });
}

function judge(policyText: string, message: Buffer) {
  const policy = parsePolicy(policyText);
  return decideQuery(message, new EgressMatcher(policy), policy.egressPolicy);
}

const BLOCK = 'egress-policy: block\nallowed-endpoints: >\n  asked.test:443 asked.test:80 asked.test:443\n  *.wild.test:8443\n';
const AUDIT = 'egress-policy: audit\nallowed-endpoints: asked.test:8443\n';

const rcodeOf = (p: dnsPacket.Packet) => (p as { rcode?: string }).rcode;

describe('decideQuery: which messages are served', () => {
  it.each<[string, () => Buffer]>([
    ['one byte', () => Buffer.from('x')],
    ['an empty datagram', () => Buffer.alloc(0)],
    ['a header claiming a question that is not there', () => Buffer.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0])],
  ])('drops %s without a word', (_label, message) => {
    expect(judge(BLOCK, message())).toEqual({ action: 'drop' });
  });

  it('answers FORMERR to a response sent as a query, echoing id and question', () => {
    const message = dnsPacket.encode({ type: 'response', id: 99, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name: 'asked.test' }] });
    const decision = judge(BLOCK, message);
    expect(decision.action).toBe('refuse');
    const reply = dnsPacket.decode((decision as { reply: Buffer }).reply);
    expect([reply.type, reply.id, rcodeOf(reply), reply.questions]).toEqual(['response', 99, 'FORMERR', [{ type: 'A', class: 'IN', name: 'asked.test' }]]);
  });

  it('answers FORMERR to a query without a question', () => {
    const decision = judge(BLOCK, queryBytes([]));
    expect(decision.action).toBe('refuse');
    expect(rcodeOf(dnsPacket.decode((decision as { reply: Buffer }).reply))).toBe('FORMERR');
  });

  it('answers FORMERR to a second question, which would reach upstream unjudged (even behind an allowed first one)', () => {
    const decision = judge(BLOCK, queryBytes([{ type: 'A', name: 'asked.test' }, { type: 'TXT', name: 'secret-data.exfil.test' }]));
    expect(decision.action).toBe('refuse');
    const reply = dnsPacket.decode((decision as { reply: Buffer }).reply);
    expect(rcodeOf(reply)).toBe('FORMERR');
    expect(reply.answers).toEqual([]);
  });

  it.each([
    ['IQUERY', 1],
    ['STATUS', 2],
    ['NOTIFY', 4],
    ['UPDATE', 5],
  ])('answers NOTIMP to opcode %s for an allowed name, without forwarding it', (_opcode, code) => {
    const decision = judge(BLOCK, queryBytes([{ type: 'SOA', name: 'asked.test' }], code << OPCODE_SHIFT));
    expect(decision.action).toBe('refuse');
    expect(rcodeOf(dnsPacket.decode((decision as { reply: Buffer }).reply))).toBe('NOTIMP');
  });
});

describe('decideQuery: verdicts', () => {
  it('forwards an allowed name, canonical, with the distinct ports of the entries that allow it', () => {
    const decision = judge(BLOCK, queryBytes([{ type: 'AAAA', name: 'Asked.TEST.' }]));
    expect(decision.action).toBe('forward');
    expect((decision as { question: JudgedQuestion }).question).toEqual({ name: 'asked.test', type: 'AAAA', verdict: 'allowed', ports: [443, 80] });
  });

  it('allows a name by a wildcard entry, on its port', () => {
    const decision = judge(BLOCK, queryBytes([{ type: 'A', name: 'a.wild.test' }]));
    expect((decision as { question: JudgedQuestion }).question).toEqual({ name: 'a.wild.test', type: 'A', verdict: 'allowed', ports: [8443] });
  });

  it('forwards the query as the client sent it', () => {
    const message = queryBytes([{ type: 'A', name: 'asked.test' }], dnsPacket.RECURSION_DESIRED, 777);
    const decision = judge(BLOCK, message);
    expect(decision.action).toBe('forward');
    const { query } = decision as { query: dnsPacket.Packet };
    expect([query.id, query.questions]).toEqual([777, [{ type: 'A', class: 'IN', name: 'asked.test' }]]);
  });

  it('block mode: answers NXDOMAIN itself for a name outside the policy, and records it blocked', () => {
    const decision = judge(BLOCK, queryBytes([{ type: 'A', name: 'Denied.Test' }], dnsPacket.RECURSION_DESIRED, 31));
    expect(decision.action).toBe('answer');
    const { reply, question, outcome } = decision as { reply: Buffer; question: JudgedQuestion; outcome: unknown };
    expect(question).toEqual({ name: 'denied.test', type: 'A', verdict: 'blocked', ports: [] });
    expect(outcome).toEqual({ rcode: 'NXDOMAIN', answers: [] });
    const packet = dnsPacket.decode(reply);
    expect([packet.type, packet.id, rcodeOf(packet), packet.answers, packet.questions]).toEqual(['response', 31, 'NXDOMAIN', [], [{ type: 'A', class: 'IN', name: 'Denied.Test' }]]);
  });

  it('block mode: a name that only ends like a wildcard entry is not allowed by it', () => {
    expect((judge(BLOCK, queryBytes([{ type: 'A', name: 'notwild.test' }])) as { question: JudgedQuestion }).question.verdict).toBe('blocked');
  });

  it('audit mode: forwards a name outside the policy, audited, with no ports', () => {
    const decision = judge(AUDIT, queryBytes([{ type: 'A', name: 'outside.test' }]));
    expect(decision.action).toBe('forward');
    expect((decision as { question: JudgedQuestion }).question).toEqual({ name: 'outside.test', type: 'A', verdict: 'audited', ports: [] });
  });

  it('audit mode: a name in the policy is allowed, on its port', () => {
    const decision = judge(AUDIT, queryBytes([{ type: 'A', name: 'asked.test' }]));
    expect((decision as { question: JudgedQuestion }).question).toEqual({ name: 'asked.test', type: 'A', verdict: 'allowed', ports: [8443] });
  });
});

describe('errorReply', () => {
  it('keeps the id, the question and recursion-desired, offers recursion, and drops every other flag', () => {
    const query = dnsPacket.decode(queryBytes([{ type: 'A', name: 'asked.test' }], dnsPacket.RECURSION_DESIRED | dnsPacket.CHECKING_DISABLED | dnsPacket.AUTHENTIC_DATA, 5));
    const reply = dnsPacket.decode(errorReply(query, 'SERVFAIL'));
    expect(reply).toMatchObject({ id: 5, type: 'response', flag_rd: true, flag_ra: true, flag_cd: false, flag_ad: false, flag_aa: false, rcode: 'SERVFAIL' });
    expect(reply.questions).toEqual([{ type: 'A', class: 'IN', name: 'asked.test' }]);
  });

  it('does not claim recursion was desired when it was not', () => {
    const query = dnsPacket.decode(queryBytes([{ type: 'A', name: 'asked.test' }], 0));
    expect(dnsPacket.decode(errorReply(query, 'NXDOMAIN'))).toMatchObject({ flag_rd: false, flag_ra: true, rcode: 'NXDOMAIN' });
  });

  it('answers a packet without flags or questions', () => {
    const reply = dnsPacket.decode(errorReply({ type: 'query', id: 8 }, 'FORMERR'));
    expect(reply).toMatchObject({ id: 8, flag_rd: false, flag_ra: true, rcode: 'FORMERR', questions: [] });
  });
});

type Answer = dnsPacket.Answer;
const a = (name: string, data: string, ttl = 60): Answer => ({ type: 'A', name, ttl, data });
const aaaa = (name: string, data: string, ttl = 60): Answer => ({ type: 'AAAA', name, ttl, data });
const cname = (name: string, data: string, ttl = 60): Answer => ({ type: 'CNAME', name, ttl, data });

function forwarded(name: string): dnsPacket.Packet {
  return dnsPacket.decode(queryBytes([{ type: 'A', name }], dnsPacket.RECURSION_DESIRED, 1234));
}

function upstreamAnswer(query: dnsPacket.Packet, answers: Answer[], rcode = 0): Buffer {
  return dnsPacket.encode({ type: 'response', id: query.id, flags: dnsPacket.RECURSION_AVAILABLE | rcode, questions: query.questions, answers });
}

const allowed = (name: string, ports: number[]): JudgedQuestion => ({ name, type: 'A', verdict: 'allowed', ports });

describe('decideAnswer', () => {
  it('learns an allowed name’s addresses on its chain, on its ports, and passes upstream’s answer on unchanged', () => {
    const query = forwarded('asked.test');
    const response = upstreamAnswer(query, [cname('asked.test', 'edge.cdn.test', 300), a('edge.cdn.test', '198.18.0.2', 30), aaaa('edge.cdn.test', 'fd00::2', 90), a('unrelated.test', '198.18.0.66')]);
    const decision = decideAnswer(query, allowed('asked.test', [443, 80]), { response });
    expect(decision.reply).toBe(response);
    expect(decision.upstreamFailed).toBe(false);
    expect(decision.learn?.addresses.map(formatIp)).toEqual(['198.18.0.2', 'fd00::2']);
    expect(decision.learn?.ports).toEqual([443, 80]);
    expect(decision.outcome).toEqual({ rcode: 'NOERROR', answers: ['edge.cdn.test', '198.18.0.2', 'fd00::2'], ttl: 30 });
  });

  it('audit: answers an audited name and records its addresses, but learns none', () => {
    const query = forwarded('outside.test');
    const response = upstreamAnswer(query, [a('outside.test', '198.18.0.77')]);
    const decision = decideAnswer(query, { name: 'outside.test', type: 'A', verdict: 'audited', ports: [] }, { response });
    expect(decision.learn).toBeUndefined();
    expect(decision.reply).toBe(response);
    expect(decision.outcome).toEqual({ rcode: 'NOERROR', answers: ['198.18.0.77'], ttl: 60 });
  });

  it('learns nothing for an allowed name whose answer has no address on its chain', () => {
    const query = forwarded('asked.test');
    const response = upstreamAnswer(query, [cname('other.test', 'evil.test'), a('evil.test', '198.18.0.66')]);
    const decision = decideAnswer(query, allowed('asked.test', [443]), { response });
    expect(decision.learn).toBeUndefined();
    expect(decision.outcome).toEqual({ rcode: 'NOERROR', answers: [], ttl: undefined });
  });

  it('records upstream’s rcode as it came', () => {
    const query = forwarded('asked.test');
    const decision = decideAnswer(query, allowed('asked.test', [443]), { response: upstreamAnswer(query, [], 3) });
    expect(decision.outcome.rcode).toBe('NXDOMAIN');
    expect(decision.learn).toBeUndefined();
  });

  it('answers SERVFAIL when upstream could not be reached, saying why', () => {
    const query = forwarded('asked.test');
    const decision = decideAnswer(query, allowed('asked.test', [443]), { error: new Error('upstream 127.0.0.1:53 did not answer') });
    expect(decision.upstreamFailed).toBe(true);
    expect(decision.learn).toBeUndefined();
    expect(decision.outcome).toEqual({ rcode: 'SERVFAIL', answers: [], error: 'upstream 127.0.0.1:53 did not answer' });
    const reply = dnsPacket.decode(decision.reply);
    expect([reply.id, rcodeOf(reply), reply.questions]).toEqual([1234, 'SERVFAIL', [{ type: 'A', class: 'IN', name: 'asked.test' }]]);
  });

  it('answers SERVFAIL when upstream answered garbage, and learns nothing from it', () => {
    const query = forwarded('asked.test');
    const decision = decideAnswer(query, allowed('asked.test', [443]), { response: Buffer.from([0, 1, 0x81, 0x80, 0, 1]) });
    expect(decision.upstreamFailed).toBe(true);
    expect(decision.learn).toBeUndefined();
    expect(decision.outcome.rcode).toBe('SERVFAIL');
    expect(decision.outcome.error).toMatch(/./);
    expect(rcodeOf(dnsPacket.decode(decision.reply))).toBe('SERVFAIL');
  });
});

describe('isFromUpstream', () => {
  const upstream = { host: '127.0.0.53', port: 53 };
  it.each<[string, { host: string; port: number }, { address: string; port: number }, boolean]>([
    ['the upstream address and port', upstream, { address: '127.0.0.53', port: 53 }, true],
    ['another local address on the upstream port (a job process forging answers)', upstream, { address: '127.0.0.1', port: 53 }, false],
    ['the upstream address on another port', upstream, { address: '127.0.0.53', port: 5353 }, false],
    ['an IPv6 upstream written differently', { host: 'FD00:0:0::53', port: 53 }, { address: 'fd00::53', port: 53 }, true],
    ['another IPv6 address', { host: 'fd00::53', port: 53 }, { address: 'fd00::54', port: 53 }, false],
    ['a sender address that is no address', upstream, { address: 'localhost', port: 53 }, false],
    ['an upstream host that is no address', { host: 'localhost', port: 53 }, { address: '127.0.0.1', port: 53 }, false],
  ])('%s', (_label, up, from, expected) => {
    expect(isFromUpstream(up, from)).toBe(expected);
  });
});
