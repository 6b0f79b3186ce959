/**
 * One allowed endpoint of a policy (docs/design.md §4, docs/policy.md):
 *   name[:port]      registry.npmjs.org, *.githubusercontent.com:443, cdn.*.example.net
 *   ipv4[:port]      140.82.112.3, 140.82.112.0/20:22
 *   [ipv6][:port]    [2606:50c0::1]:443, [2606:50c0::/32]   (bare IPv6 without a port too)
 * Port 443 when absent. Names are case-insensitive, a trailing dot is
 * ignored, `_` is allowed in labels, and one `*` may stand anywhere: it
 * matches any run of characters, dots included (possibly none).
 */
import { networkOf, parseIp, type IpFamily } from '../net/address';

export const DEFAULT_PORT = 443;

export interface NameEndpoint {
  kind: 'name';
  /** The entry as written. */
  text: string;
  /** Lower case, no trailing dot; with the `*` if any. */
  pattern: string;
  /** Set when pattern has a `*`: the name must start with prefix and end with suffix. */
  wildcard?: { prefix: string; suffix: string };
  port: number;
}

export interface IpEndpoint {
  kind: 'ip';
  text: string;
  family: IpFamily;
  bytes: Uint8Array;
  /** 32 or 128 for a single address. */
  prefixLength: number;
  port: number;
}

export type Endpoint = NameEndpoint | IpEndpoint;

export class EndpointError extends Error {}

const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

function parsePort(text: string, entry: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) {
    throw new EndpointError(`bad port '${text}' in '${entry}' (1-65535)`);
  }
  return Number(text);
}

function parseCidr(text: string, entry: string): { family: IpFamily; bytes: Uint8Array; prefixLength: number } | undefined {
  const [addressText, ...lengthParts] = text.split('/');
  const address = parseIp(addressText);
  if (!address) return undefined;
  const max = address.family === 4 ? 32 : 128;
  if (lengthParts.length === 0) return { ...address, prefixLength: max };
  const lengthText = lengthParts.join('/');
  if (!/^\d{1,3}$/.test(lengthText) || Number(lengthText) > max) {
    throw new EndpointError(`bad prefix length '/${lengthText}' in '${entry}' (0-${max})`);
  }
  const prefixLength = Number(lengthText);
  // the bits past the prefix must be zero: 10.1.2.3/8 is a typo, not 10.0.0.0/8
  if (Buffer.compare(networkOf(address.bytes, prefixLength), address.bytes) !== 0) {
    throw new EndpointError(`'${entry}' has host bits set past /${prefixLength}`);
  }
  return { ...address, prefixLength };
}

function parseName(host: string, entry: string): Pick<NameEndpoint, 'pattern' | 'wildcard'> {
  const name = canonicalName(host);
  if (name.length > 253) throw new EndpointError(`name longer than 253 characters in '${entry}'`);
  const stars = name.split('*').length - 1;
  if (stars > 1) throw new EndpointError(`more than one '*' in '${entry}'`);
  // Check the labels with the `*` standing for one character of a label.
  for (const label of name.replace('*', 'x').split('.')) {
    if (label === '') throw new EndpointError(`empty label in '${entry}'`);
    if (!LABEL.test(label)) throw new EndpointError(`bad label '${label}' in '${entry}'`);
  }
  if (stars === 0) return { pattern: name };
  const star = name.indexOf('*');
  return { pattern: name, wildcard: { prefix: name.slice(0, star), suffix: name.slice(star + 1) } };
}

/** Parses one entry; throws EndpointError with a message naming it. */
export function parseEndpoint(entry: string): Endpoint {
  const text = entry.trim();
  if (text === '') throw new EndpointError('empty endpoint');

  // [ipv6 or ipv6 cidr]:port
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close === -1) throw new EndpointError(`missing ']' in '${entry}'`);
    const inner = text.slice(1, close);
    const after = text.slice(close + 1);
    if (after !== '' && !after.startsWith(':')) throw new EndpointError(`unexpected '${after}' after ']' in '${entry}'`);
    const cidr = parseCidr(inner, entry);
    if (!cidr || cidr.family !== 6) throw new EndpointError(`bad IPv6 address '${inner}' in '${entry}'`);
    return { kind: 'ip', text, ...cidr, port: after ? parsePort(after.slice(1), entry) : DEFAULT_PORT };
  }

  // bare IPv6 (more than one ':'): no port possible
  if (text.split(':').length > 2) {
    const cidr = parseCidr(text, entry);
    if (!cidr) throw new EndpointError(`bad IPv6 address '${text}' (write [address]:port for a port)`);
    return { kind: 'ip', text, ...cidr, port: DEFAULT_PORT };
  }

  const colon = text.indexOf(':');
  const host = colon === -1 ? text : text.slice(0, colon);
  const port = colon === -1 ? DEFAULT_PORT : parsePort(text.slice(colon + 1), entry);
  if (host === '') throw new EndpointError(`missing host in '${entry}'`);

  // A digit, then digits and dots (before any '/'), is an IPv4 address or
  // prefix, good or bad, never a name: 1.2.3 is a bad address, not a host
  // called 1.2.3. With at most one ':' left, nothing here can be IPv6.
  if (/^\d[\d.]*$/.test(host.split('/')[0])) {
    const cidr = parseCidr(host, entry);
    if (!cidr) throw new EndpointError(`bad IPv4 address '${host}' in '${entry}'`);
    return { kind: 'ip', text, ...cidr, port };
  }
  return { kind: 'name', text, ...parseName(host, entry), port };
}

/** Whether a (lower-case, no trailing dot) name matches a name endpoint's pattern. */
export function nameMatches(endpoint: NameEndpoint, name: string): boolean {
  if (!endpoint.wildcard) return name === endpoint.pattern;
  const { prefix, suffix } = endpoint.wildcard;
  return name.length >= prefix.length + suffix.length && name.startsWith(prefix) && name.endsWith(suffix);
}

/** Lower case, trailing dot removed: the form names are compared in. */
export function canonicalName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

/** The entries of one line of an endpoint list: white space or commas between them, `#` starts a comment. */
export function endpointEntries(line: string): string[] {
  return line.replace(/#.*/, '').match(/[^\s,]+/g) ?? [];
}

/**
 * An endpoint list file: one endpoint per line (several, space- or
 * comma-separated, work too), `#` starts a comment. Every bad entry is one
 * problem line naming the file and line; callers decide how to refuse.
 */
export function parseEndpointList(text: string, source: string): { endpoints: Endpoint[]; problems: string[] } {
  const endpoints: Endpoint[] = [];
  const problems: string[] = [];
  text.split('\n').forEach((line, index) => {
    for (const entry of endpointEntries(line)) {
      try {
        endpoints.push(parseEndpoint(entry));
      } catch (error) {
        if (!(error instanceof EndpointError)) throw error;
        problems.push(`${source}:${index + 1}: endpoint '${entry}': ${error.message}`);
      }
    }
  });
  return { endpoints, problems };
}
