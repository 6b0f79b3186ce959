/**
 * The DNS proxy's decisions, without sockets (src/dns/proxy.ts moves the
 * bytes): what a query from the job is, whether its name is allowed, blocked
 * or audited, what the job is answered, which addresses are allowed in the
 * kernel (learned) and what the query's record says.
 */
import * as dnsPacket from 'dns-packet';
import { formatIp, parseIp, type IpAddress } from '../net/address';
import { canonicalName } from '../policy/endpoint';
import type { EgressMatcher } from '../policy/matcher';
import type { EgressMode } from '../policy/policy';

export type DnsVerdict = 'allowed' | 'blocked' | 'audited';

/** The question of a query, judged. */
export interface JudgedQuestion {
  /** Canonical: lower case, no trailing dot. */
  name: string;
  type: string;
  verdict: DnsVerdict;
  /** The distinct ports of the policy entries that allow the name (none unless allowed). */
  ports: number[];
}

/** How a query ended, for its record. */
export interface DnsOutcome {
  rcode: string;
  /** CNAME targets on the asked name's chain, then its addresses. */
  answers: string[];
  /** Smallest TTL of the answer's chain, in seconds. */
  ttl?: number;
  /** Why upstream gave no usable answer. */
  error?: string;
}

export type QueryDecision =
  /** Not a DNS message at all: say nothing. */
  | { action: 'drop' }
  /** A DNS message the proxy does not serve: answered with an error, no record. */
  | { action: 'refuse'; reply: Buffer }
  /** Judged and answered here (a blocked name): the reply, and the record. */
  | { action: 'answer'; reply: Buffer; question: JudgedQuestion; outcome: DnsOutcome }
  /** Judged, to be asked upstream; decideAnswer says what comes of its answer. */
  | { action: 'forward'; query: dnsPacket.Packet; question: JudgedQuestion };

export interface AnswerDecision {
  /** What the job gets: upstream's answer as it came, or SERVFAIL. */
  reply: Buffer;
  /** Addresses to allow in the kernel, on these ports, before the reply is sent. */
  learn?: { addresses: IpAddress[]; ports: number[] };
  outcome: DnsOutcome;
  upstreamFailed: boolean;
}

const RCODES = { FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4 } as const;

/** A response to `query` carrying only its question(s) and an error code. */
export function errorReply(query: dnsPacket.Packet, rcode: keyof typeof RCODES): Buffer {
  // dns-packet takes the rcode from the low bits of flags, not from `rcode`.
  const flags = ((query.flags ?? 0) & dnsPacket.RECURSION_DESIRED) | dnsPacket.RECURSION_AVAILABLE | RCODES[rcode];
  return dnsPacket.encode({ id: query.id, type: 'response', flags, questions: query.questions ?? [] });
}

/**
 * What to do with a message from the job. Only a standard query with exactly
 * one question is served: the name judged must be the only name upstream
 * sees (a second question, or an UPDATE's records, would reach it unjudged).
 */
export function decideQuery(message: Buffer, matcher: EgressMatcher, mode: EgressMode): QueryDecision {
  let query: dnsPacket.Packet;
  try {
    query = dnsPacket.decode(message);
  } catch {
    return { action: 'drop' };
  }
  const questions = query.questions ?? [];
  if (query.type !== 'query' || questions.length !== 1) return { action: 'refuse', reply: errorReply(query, 'FORMERR') };
  if ((query as { opcode?: string }).opcode !== 'QUERY') return { action: 'refuse', reply: errorReply(query, 'NOTIMP') };
  const name = canonicalName(questions[0].name);
  const entries = matcher.nameEntries(name);
  const verdict: DnsVerdict = entries.length > 0 ? 'allowed' : mode === 'block' ? 'blocked' : 'audited';
  const question: JudgedQuestion = { name, type: String(questions[0].type), verdict, ports: [...new Set(entries.map((entry) => entry.port))] };
  if (verdict === 'blocked') return { action: 'answer', reply: errorReply(query, 'NXDOMAIN'), question, outcome: { rcode: 'NXDOMAIN', answers: [] } };
  return { action: 'forward', query, question };
}

/**
 * What comes of upstream's answer (or failure) to a forwarded query. Only an
 * allowed name's answer is learned, and of it only the addresses on the asked
 * name's CNAME chain: an audited name's addresses, or another name's records
 * in the same answer, never become allowed.
 */
export function decideAnswer(query: dnsPacket.Packet, question: JudgedQuestion, upstream: { response: Buffer } | { error: Error }): AnswerDecision {
  let parsed: dnsPacket.Packet;
  try {
    if ('error' in upstream) throw upstream.error;
    parsed = dnsPacket.decode(upstream.response);
  } catch (error) {
    return { reply: errorReply(query, 'SERVFAIL'), outcome: { rcode: 'SERVFAIL', answers: [], error: (error as Error).message }, upstreamFailed: true };
  }
  const { addresses, names, ttl } = followAnswer(question.name, parsed.answers ?? []);
  const learn = question.verdict === 'allowed' && addresses.length > 0 ? { addresses, ports: question.ports } : undefined;
  // decode always names the rcode
  const rcode = (parsed as { rcode: string }).rcode;
  return { reply: upstream.response, learn, outcome: { rcode, answers: [...names, ...addresses.map(formatIp)], ttl }, upstreamFailed: false };
}

/** Addresses and CNAME targets answering `name`, and the smallest TTL among them. */
export function followAnswer(name: string, answers: dnsPacket.Answer[]): { addresses: IpAddress[]; names: string[]; ttl?: number } {
  const chain = new Set([canonicalName(name)]);
  const names: string[] = [];
  // CNAMEs may come in any order: repeat until the chain stops growing.
  for (let grew = true; grew; ) {
    grew = false;
    for (const answer of answers) {
      if (answer.type === 'CNAME' && chain.has(canonicalName(answer.name))) {
        const target = canonicalName(String(answer.data));
        if (!chain.has(target)) {
          chain.add(target);
          names.push(target);
          grew = true;
        }
      }
    }
  }
  const addresses: IpAddress[] = [];
  let ttl: number | undefined;
  for (const answer of answers) {
    if (!chain.has(canonicalName(answer.name))) continue;
    if (answer.type === 'A' || answer.type === 'AAAA') {
      const address = parseIp(String(answer.data));
      if (address) addresses.push(address);
    }
    if ((answer.type === 'A' || answer.type === 'AAAA' || answer.type === 'CNAME') && answer.ttl !== undefined) {
      ttl = ttl === undefined ? answer.ttl : Math.min(ttl, answer.ttl);
    }
  }
  return { addresses, names, ttl };
}

/**
 * Whether a datagram on the proxy's upstream socket comes from the upstream
 * resolver: a job process can send to that socket too (loopback is always
 * allowed), and an answer it forged would be learned.
 */
export function isFromUpstream(upstream: { host: string; port: number }, from: { address: string; port: number }): boolean {
  if (from.port !== upstream.port) return false;
  const expected = parseIp(upstream.host);
  const actual = parseIp(from.address);
  return expected !== undefined && actual !== undefined && formatIp(expected) === formatIp(actual);
}
