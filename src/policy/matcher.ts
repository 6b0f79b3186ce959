/**
 * Pure egress matching: (name or IP, port) → the policy entry that allows it,
 * or none. Entries apply to TCP and UDP alike. The kernel does the same for
 * IPs through its maps; this is the reference the agent, the DNS proxy and
 * the tests use.
 */
import { parseIp, prefixMatches, unmapIPv4, type IpAddress } from '../net/address';
import { canonicalName, nameMatches, type Endpoint, type IpEndpoint, type NameEndpoint } from './endpoint';
import type { Policy } from './policy';

export class EgressMatcher {
  private readonly exact = new Map<string, NameEndpoint[]>();
  private readonly wildcards: NameEndpoint[] = [];
  private readonly ips: IpEndpoint[] = [];

  constructor(readonly policy: Policy) {
    for (const endpoint of policy.allowedEndpoints) {
      if (endpoint.kind === 'ip') this.ips.push(endpoint);
      else if (endpoint.wildcard) this.wildcards.push(endpoint);
      else this.exact.set(endpoint.pattern, [...(this.exact.get(endpoint.pattern) ?? []), endpoint]);
    }
  }

  /** Every name entry that matches `name`, on any port (what DNS answers are judged by). */
  nameEntries(name: string): NameEndpoint[] {
    const canonical = canonicalName(name);
    return [...(this.exact.get(canonical) ?? []), ...this.wildcards.filter((w) => nameMatches(w, canonical))];
  }

  /** The entry that allows `name` on `port`, if any. */
  matchName(name: string, port: number): NameEndpoint | undefined {
    return this.nameEntries(name).find((entry) => entry.port === port);
  }

  /** The IP entry that allows `address` on `port`; IPv4-mapped IPv6 is judged as IPv4. */
  matchAddress(address: string | IpAddress, port: number): IpEndpoint | undefined {
    const parsed = typeof address === 'string' ? parseIp(address) : address;
    if (!parsed) return undefined;
    const ip = unmapIPv4(parsed);
    // no family check needed: prefixMatches never equates a 4-byte network with a 16-byte one
    return this.ips.find((entry) => entry.port === port && prefixMatches(entry.bytes, ip.bytes, entry.prefixLength));
  }

  /** A connection to `address`:`port`, reached through `name` when known. */
  match(target: { name?: string; address?: string | IpAddress; port: number }): Endpoint | undefined {
    if (target.name) {
      const byName = this.matchName(target.name, target.port);
      if (byName) return byName;
    }
    return target.address !== undefined ? this.matchAddress(target.address, target.port) : undefined;
  }
}
