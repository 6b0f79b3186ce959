/**
 * What a job may reach: endpoint parsing (src/policy/endpoint.ts), matching
 * (src/policy/matcher.ts) and the policy file (src/policy/policy.ts), at the
 * edges where a small bug allows more than the policy says. Every case
 * builds its own policy.
 */
import { describe, expect, it } from 'vitest';
import { EndpointError, canonicalName, nameMatches, parseEndpoint, parseEndpointList, type NameEndpoint } from '../../src/policy/endpoint';
import { EgressMatcher } from '../../src/policy/matcher';
import { parsePolicy, PolicyError, type Policy } from '../../src/policy/policy';

const matcherOf = (...entries: string[]) => new EgressMatcher({ egressPolicy: 'block', allowedEndpoints: entries.map(parseEndpoint), lockdown: { enabled: false, detections: [] } });
const nameEndpoint = (text: string): NameEndpoint => {
  const endpoint = parseEndpoint(text);
  if (endpoint.kind !== 'name') throw new Error(`test data: '${text}' is not a name`);
  return endpoint;
};
/** The problem lines of a refused policy, or the policy. */
const parsed = (text: string): string[] | Policy => {
  try {
    return parsePolicy(text, 'p.yml');
  } catch (error) {
    if (error instanceof PolicyError) return error.message.split('\n');
    throw error;
  }
};

describe('wildcard names', () => {
  // [pattern, name, matches]; names as the matcher compares them (lower case, no trailing dot)
  it.each([
    // shorter than prefix + suffix: the prefix and suffix overlap
    ['cdn.*.example.net', 'cdn.example.net', false],
    ['cdn.*.example.net', 'cdn.eu.example.net', true],
    ['cdn.*.example.net', 'cdn.a.b.example.net', true],
    ['cdn.*.example.net', 'cdnx.example.net', false],
    ['cdn.*.example.net', 'img.eu.example.net', false],
    ['cdn.*.example.net', 'cdn.eu.example.net.evil.test', false],
    ['a*a', 'a', false],
    ['a*a', 'aa', true],
    // the apex is not a subdomain
    ['*.example.com', 'example.com', false],
    ['*.example.com', 'www.example.com', true],
    ['*.example.com', 'a.b.c.example.com', true],
    ['*.example.com', 'badexample.com', false],
    ['*.example.com', 'example.com.evil.test', false],
    ['prefix*.blob.core.windows.net', 'prefix.blob.core.windows.net', true],
    ['prefix*.blob.core.windows.net', 'prefixa.b.blob.core.windows.net', true],
    ['prefix*.blob.core.windows.net', 'prefi.blob.core.windows.net', false],
    ['build*', 'build', true],
    ['build*', 'builds.evil.test', true],
    ['build*', 'buil', false],
    // no star: the exact name only
    ['example.com', 'example.com', true],
    ['example.com', 'www.example.com', false],
    ['example.com', 'example.co', false],
  ])('%s vs %s → %s', (pattern, name, matches) => {
    expect(nameMatches(nameEndpoint(pattern), name)).toBe(matches);
  });

  it('splits the pattern at the star', () => {
    expect(nameEndpoint('CDN.*.Example.NET.:8443')).toEqual({ kind: 'name', text: 'CDN.*.Example.NET.:8443', pattern: 'cdn.*.example.net', wildcard: { prefix: 'cdn.', suffix: '.example.net' }, port: 8443 });
    expect(nameEndpoint('registry.npmjs.org')).toEqual({ kind: 'name', text: 'registry.npmjs.org', pattern: 'registry.npmjs.org', port: 443 });
  });

  it.each([
    ['a.com', 'a.com'],
    ['A.Com', 'a.com'],
    ['a.com.', 'a.com'],
    ['A.COM.', 'a.com'],
    ['.', ''],
  ])('canonicalName(%j) → %j', (name, expected) => {
    expect(canonicalName(name)).toBe(expected);
  });
});

describe('EgressMatcher by name', () => {
  // [entries, name, port, entry that allows it]
  it.each([
    [['cdn.*.example.net'], 'cdn.example.net', 443, undefined],
    [['cdn.*.example.net'], 'CDN.EU.Example.NET.', 443, 'cdn.*.example.net'],
    [['*.example.com'], 'example.com', 443, undefined],
    [['*.example.com'], 'example.com.', 443, undefined],
    [['*.example.com'], 'WWW.EXAMPLE.COM.', 443, '*.example.com'],
    [['Registry.NPMJS.org.'], 'registry.npmjs.org', 443, 'Registry.NPMJS.org.'],
    [['registry.npmjs.org'], 'REGISTRY.npmjs.ORG.', 443, 'registry.npmjs.org'],
    [['registry.npmjs.org'], 'registry.npmjs.org', 80, undefined],
    [['registry.npmjs.org:80'], 'registry.npmjs.org', 443, undefined],
    // several entries for one name: each port is its own
    [['a.test:80', 'a.test:8080'], 'a.test', 80, 'a.test:80'],
    [['a.test:80', 'a.test:8080'], 'a.test', 8080, 'a.test:8080'],
    [['a.test:80', 'a.test:8080'], 'a.test', 443, undefined],
    // an exact entry and a wildcard that both cover the name
    [['a.test:80', '*.test:443'], 'a.test', 443, '*.test:443'],
  ])('%j: %s:%d → %s', (entries, name, port, expected) => {
    expect(matcherOf(...entries).matchName(name, port)?.text).toBe(expected);
  });

  it('gives every entry of a name, on any port, for judging DNS', () => {
    const matcher = matcherOf('a.test:80', 'a.test:8080', '*.test:22', 'b.test');
    expect(matcher.nameEntries('A.TEST.').map((e) => e.text)).toEqual(['a.test:80', 'a.test:8080', '*.test:22']);
    expect(matcher.nameEntries('test')).toEqual([]);
  });
});

describe('EgressMatcher by address', () => {
  // [entries, address, port, entry that allows it]
  it.each([
    [['10.1.16.0/20'], '10.1.31.255', 443, '10.1.16.0/20'],
    [['10.1.16.0/20'], '10.1.32.0', 443, undefined],
    [['10.1.16.0/20'], '10.1.15.255', 443, undefined],
    [['10.8.0.0/13:22'], '10.15.0.1', 22, '10.8.0.0/13:22'],
    [['10.8.0.0/13:22'], '10.16.0.1', 22, undefined],
    [['10.8.0.0/13:22'], '10.15.0.1', 443, undefined],
    [['[2001:db8::80/121]'], '2001:db8::ff', 443, '[2001:db8::80/121]'],
    [['[2001:db8::80/121]'], '2001:db8::7f', 443, undefined],
    [['[2001:db8::80/121]'], '2001:db8::100', 443, undefined],
    // IPv4-mapped IPv6 is judged as the IPv4 address
    [['10.1.16.0/20'], '::ffff:10.1.20.1', 443, '10.1.16.0/20'],
    [['10.1.16.0/20'], '::ffff:10.1.32.1', 443, undefined],
    [['192.0.2.7'], '::ffff:c000:207', 443, '192.0.2.7'],
    // only ::ffff:0:0/96 is mapped: any other bit set is an IPv6 address
    [['192.0.2.7'], '100::ffff:192.0.2.7', 443, undefined],
    [['192.0.2.7'], '::1:ffff:192.0.2.7', 443, undefined],
    [['192.0.2.7'], '::fffe:192.0.2.7', 443, undefined],
    // families never cross: /0 of one family is not the other's
    [['0.0.0.0/0'], '2001:db8::1', 443, undefined],
    [['[::/0]'], '192.0.2.7', 443, undefined],
    [['0.0.0.0/0'], '192.0.2.7', 443, '0.0.0.0/0'],
    [['192.0.2.7:53'], '192.0.2.7', 53, '192.0.2.7:53'],
    [['192.0.2.7:53'], '192.0.2.7', 443, undefined],
    [['192.0.2.7'], 'not-an-ip', 443, undefined],
  ])('%j: %s:%d → %s', (entries, address, port, expected) => {
    expect(matcherOf(...entries).matchAddress(address, port)?.text).toBe(expected);
  });

  it('takes a parsed address too', () => {
    expect(matcherOf('10.1.16.0/20').matchAddress({ family: 4, bytes: Uint8Array.from([10, 1, 17, 1]) }, 443)?.text).toBe('10.1.16.0/20');
    expect(matcherOf('10.1.16.0/20').matchAddress({ family: 4, bytes: Uint8Array.from([10, 1, 33, 1]) }, 443)).toBeUndefined();
  });
});

describe('EgressMatcher.match', () => {
  // [target, entry that allows it]
  it.each([
    [{ name: 'a.test', address: '192.0.2.9', port: 443 }, 'a.test'],
    [{ name: 'other.test', address: '192.0.2.7', port: 443 }, '192.0.2.7'],
    [{ name: 'other.test', address: '192.0.2.9', port: 443 }, undefined],
    [{ name: 'a.test', port: 80 }, undefined],
    [{ address: '192.0.2.7', port: 443 }, '192.0.2.7'],
    [{ port: 443 }, undefined],
    [{ name: '', address: '192.0.2.7', port: 443 }, '192.0.2.7'],
  ])('%j → %s', (target, expected) => {
    expect(matcherOf('a.test', '192.0.2.7').match(target)?.text).toBe(expected);
  });
});

describe('ports', () => {
  // [entry, port]
  it.each([
    ['example.com', 443],
    ['example.com:1', 1],
    ['example.com:65535', 65535],
    ['example.com:080', 80],
    ['*.example.com:8443', 8443],
    ['192.0.2.7', 443],
    ['192.0.2.7:22', 22],
    ['10.1.16.0/20:5432', 5432],
    ['[2001:db8::1]', 443],
    ['[2001:db8::1]:8443', 8443],
    ['[2001:db8::/32]:22', 22],
    ['2001:db8::1', 443],
    // a bare IPv6 cannot have a port: the last group is part of the address
    ['2001:db8::1:80', 443],
    ['[::ffff:192.0.2.7]:80', 80],
  ])('%s → port %d', (entry, port) => {
    expect(parseEndpoint(entry).port).toBe(port);
  });

  it.each([
    ['example.com:0', "bad port '0' in 'example.com:0' (1-65535)"],
    ['example.com:65536', "bad port '65536' in 'example.com:65536' (1-65535)"],
    ['example.com:99999', "bad port '99999' in 'example.com:99999' (1-65535)"],
    ['example.com:100000', "bad port '100000' in 'example.com:100000' (1-65535)"],
    ['example.com:-1', "bad port '-1' in 'example.com:-1' (1-65535)"],
    ['example.com:', "bad port '' in 'example.com:' (1-65535)"],
    ['example.com:https', "bad port 'https' in 'example.com:https' (1-65535)"],
    ['192.0.2.7:0', "bad port '0' in '192.0.2.7:0' (1-65535)"],
    ['192.0.2.7:65536', "bad port '65536' in '192.0.2.7:65536' (1-65535)"],
    ['[2001:db8::1]:0', "bad port '0' in '[2001:db8::1]:0' (1-65535)"],
    ['[2001:db8::1]:65536', "bad port '65536' in '[2001:db8::1]:65536' (1-65535)"],
    ['[2001:db8::1]:', "bad port '' in '[2001:db8::1]:' (1-65535)"],
    ['[2001:db8::1]443', "unexpected '443' after ']' in '[2001:db8::1]443'"],
    // what Number() would read as a port, but is none
    ['example.com:+443', "bad port '+443' in 'example.com:+443' (1-65535)"],
    ['example.com:1e3', "bad port '1e3' in 'example.com:1e3' (1-65535)"],
    ['example.com:443/tcp', "bad port '443/tcp' in 'example.com:443/tcp' (1-65535)"],
    ['192.0.2.7:0x1bb', "bad port '0x1bb' in '192.0.2.7:0x1bb' (1-65535)"],
  ])('refuses %s', (entry, message) => {
    expect.assertions(2);
    try {
      parseEndpoint(entry);
    } catch (error) {
      expect(error).toBeInstanceOf(EndpointError);
      expect((error as Error).message).toBe(message);
    }
  });
});

describe('address entries', () => {
  it.each([
    ['10.1.16.0/20', { kind: 'ip', family: 4, prefixLength: 20, bytes: Uint8Array.from([10, 1, 16, 0]) }],
    ['0.0.0.0/0', { kind: 'ip', family: 4, prefixLength: 0 }],
    ['192.0.2.7/32', { kind: 'ip', family: 4, prefixLength: 32 }],
    ['[2001:db8::80/121]', { kind: 'ip', family: 6, prefixLength: 121 }],
    ['[::/0]', { kind: 'ip', family: 6, prefixLength: 0 }],
    ['2001:db8::/32', { kind: 'ip', family: 6, prefixLength: 32 }],
    // bare IPv6 with only two colons is still IPv6, not host:port
    ['fd00::1', { kind: 'ip', family: 6, prefixLength: 128, port: 443, bytes: Uint8Array.from([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]) }],
    ['fd00::', { kind: 'ip', family: 6, prefixLength: 128, port: 443 }],
    ['[::ffff:192.0.2.7]', { kind: 'ip', family: 6, prefixLength: 128 }],
    ['10.1.16.0/20', { kind: 'ip', family: 4, prefixLength: 20, port: 443, bytes: Uint8Array.from([10, 1, 16, 0]) }],
    ['10.1.16.0/20:22', { kind: 'ip', family: 4, prefixLength: 20, port: 22, bytes: Uint8Array.from([10, 1, 16, 0]) }],
    ['[2001:db8::/31]', { kind: 'ip', family: 6, prefixLength: 31 }],
    ['[::/128]', { kind: 'ip', family: 6, prefixLength: 128 }],
    ['255.255.255.255/32', { kind: 'ip', family: 4, prefixLength: 32, bytes: Uint8Array.from([255, 255, 255, 255]) }],
  ])('%s', (entry, expected) => {
    expect(parseEndpoint(entry)).toMatchObject(expected);
  });

  it.each([
    ['10.1.17.0/20', "'10.1.17.0/20' has host bits set past /20"],
    ['10.1.16.1/20', "'10.1.16.1/20' has host bits set past /20"],
    ['10.9.0.0/13', "'10.9.0.0/13' has host bits set past /13"],
    ['1.0.0.0/0', "'1.0.0.0/0' has host bits set past /0"],
    ['192.0.2.7/31', "'192.0.2.7/31' has host bits set past /31"],
    ['[2001:db8::81/121]', "'[2001:db8::81/121]' has host bits set past /121"],
    ['[2001:db8::c0/121]', "'[2001:db8::c0/121]' has host bits set past /121"],
    ['10.0.0.0/33', "bad prefix length '/33' in '10.0.0.0/33' (0-32)"],
    ['10.0.0.0/', "bad prefix length '/' in '10.0.0.0/' (0-32)"],
    ['10.0.0.0/x', "bad prefix length '/x' in '10.0.0.0/x' (0-32)"],
    ['[2001:db8::/129]', "bad prefix length '/129' in '[2001:db8::/129]' (0-128)"],
    // what Number() would read as a length (NaN would match every address), but is none
    ['10.0.0.0/8x', "bad prefix length '/8x' in '10.0.0.0/8x' (0-32)"],
    ['10.0.0.0/+8', "bad prefix length '/+8' in '10.0.0.0/+8' (0-32)"],
    ['10.0.0.0/8/', "bad prefix length '/8/' in '10.0.0.0/8/' (0-32)"],
    ['10.0.0.0/8/16', "bad prefix length '/8/16' in '10.0.0.0/8/16' (0-32)"],
    // the first bit past the prefix, and the last one
    ['10.1.24.0/20', "'10.1.24.0/20' has host bits set past /20"],
    ['10.1.16.1/20', "'10.1.16.1/20' has host bits set past /20"],
    ['10.1.16.0/19', "'10.1.16.0/19' has host bits set past /19"],
    ['[2001:db9::/31]', "'[2001:db9::/31]' has host bits set past /31"],
    ['[::1/127]', "'[::1/127]' has host bits set past /127"],
    ['1.2.3.4.5', "bad IPv4 address '1.2.3.4.5' in '1.2.3.4.5'"],
    ['1.2.3.4.5/8', "bad IPv4 address '1.2.3.4.5/8' in '1.2.3.4.5/8'"],
    ['[192.0.2.7]', "bad IPv6 address '192.0.2.7' in '[192.0.2.7]'"],
    ['[2001:db8::1', "missing ']' in '[2001:db8::1'"],
    ['300.1.2.3', "bad IPv4 address '300.1.2.3' in '300.1.2.3'"],
    ['10.1.2/8', "bad IPv4 address '10.1.2/8' in '10.1.2/8'"],
    ['1.2.3', "bad IPv4 address '1.2.3' in '1.2.3'"],
    ['2001:db8:1:2:3:4:5:6:7', "bad IPv6 address '2001:db8:1:2:3:4:5:6:7' (write [address]:port for a port)"],
    ['::1:80', undefined],
  ])('refuses %s', (entry, message) => {
    if (message === undefined) {
      // '::1:80' is the address ::1:80, not ::1 on port 80
      expect(parseEndpoint(entry)).toMatchObject({ kind: 'ip', family: 6, prefixLength: 128, port: 443 });
      return;
    }
    expect(() => parseEndpoint(entry)).toThrow(new EndpointError(message));
  });
});

describe('name entries', () => {
  it.each([
    ['*.*.example.com', "more than one '*' in '*.*.example.com'"],
    ['a..example.com', "empty label in 'a..example.com'"],
    ['.example.com', "empty label in '.example.com'"],
    ['example.com..', "empty label in 'example.com..'"],
    ['-a.example.com', "bad label '-a' in '-a.example.com'"],
    ['a-.example.com', "bad label 'a-' in 'a-.example.com'"],
    [`${'a'.repeat(64)}.com`, `bad label '${'a'.repeat(64)}' in '${'a'.repeat(64)}.com'`],
    [`${'a.'.repeat(126)}ab`, `name longer than 253 characters in '${'a.'.repeat(126)}ab'`],
    [':443', "missing host in ':443'"],
    ['   ', 'empty endpoint'],
    ['.', "empty label in '.'"],
    ['.:80', "empty label in '.:80'"],
    // a '/' after a name is no prefix length
    ['a.1/8', "bad label '1/8' in 'a.1/8'"],
  ])('refuses %j', (entry, message) => {
    expect(() => parseEndpoint(entry)).toThrow(new EndpointError(message));
  });

  // digits and dots only are an address; a name may still start or end with digits
  it.each(['1e100.net', '3com.com', '1password.com:8443', 'cache-01', 'runner-42:22', '10x.example.com'])('takes %s as a name', (entry) => {
    expect(parseEndpoint(entry)).toMatchObject({ kind: 'name', pattern: entry.split(':')[0] });
  });

  it('takes the longest labels and names there may be', () => {
    expect(parseEndpoint(`${'a'.repeat(63)}.com`)).toMatchObject({ kind: 'name', port: 443 });
    expect(parseEndpoint(`${'a.'.repeat(126)}a`)).toMatchObject({ kind: 'name', pattern: `${'a.'.repeat(126)}a` });
  });
});

// Once a crash (src/net/address.ts parseIPv6): more than 8 groups around a
// '::' made Array() a negative length, so a policy entry such as
// 1:2::3:4:5:6:7:8:9 crashed the parser instead of being one problem line.
describe('IPv6 with too many groups around ::', () => {
  it('is a bad bare IPv6 entry, not a crash', () => {
    expect(() => parseEndpoint('1:2::3:4:5:6:7:8:9')).toThrow(new EndpointError("bad IPv6 address '1:2::3:4:5:6:7:8:9' (write [address]:port for a port)"));
  });

  it('is a bad [IPv6] entry, not a crash', () => {
    expect(() => parseEndpoint('[1:2::3:4:5:6:7:8:9]:443')).toThrow(new EndpointError("bad IPv6 address '1:2::3:4:5:6:7:8:9' in '[1:2::3:4:5:6:7:8:9]:443'"));
  });

  it('is one problem line of the policy', () => {
    expect(parsed('egress-policy: block\nallowed-endpoints: >\n  1:2::3:4:5:6:7:8:9\n')).toEqual(["p.yml:3: endpoint '1:2::3:4:5:6:7:8:9': bad IPv6 address '1:2::3:4:5:6:7:8:9' (write [address]:port for a port)"]);
  });
});

describe('endpoint lists', () => {
  it('names the file and line of every bad entry and keeps the good ones', () => {
    const { endpoints, problems } = parseEndpointList('a.test, b.test:80 # c.test\n\nbad..test\n10.0.0.1/8 [::1]:22\n', 'e.txt');
    expect(endpoints.map((e) => e.text)).toEqual(['a.test', 'b.test:80', '[::1]:22']);
    expect(problems).toEqual(["e.txt:3: endpoint 'bad..test': empty label in 'bad..test'", "e.txt:4: endpoint '10.0.0.1/8': '10.0.0.1/8' has host bits set past /8"]);
  });
});

describe('lockdown-mode', () => {
  // [lockdown-mode block, problem lines]
  it.each([
    ['lockdown-mode:\n  enable: true\n', ["p.yml:3: unknown key 'lockdown-mode.enable' (did you mean 'enabled'? known: enabled, detections)"]],
    ['lockdown-mode: {enable: true}\n', ["p.yml:2: unknown key 'lockdown-mode.enable' (did you mean 'enabled'? known: enabled, detections)"]],
    ['lockdown-mode:\n  Enabled: true\n', ["p.yml:3: unknown key 'lockdown-mode.Enabled' (did you mean 'enabled'? known: enabled, detections)"]],
    ['lockdown-mode:\n  enabled: true\n  detection: [Reverse-Shell]\n', ["p.yml:4: unknown key 'lockdown-mode.detection' (did you mean 'detections'? known: enabled, detections)"]],
    ['lockdown-mode:\n  enabled: "true"\n', ['p.yml:3: lockdown-mode.enabled must be true or false']],
    ['lockdown-mode:\n  enabled: yes\n', ['p.yml:3: lockdown-mode.enabled must be true or false']],
    ['lockdown-mode:\n  enabled:\n', ['p.yml:3: lockdown-mode.enabled must be true or false']],
    ['lockdown-mode: true\n', ['p.yml:2: lockdown-mode is a mapping with enabled and detections']],
    ['lockdown-mode:\n  enabled: true\n  detections: Reverse-Shell\n', ['p.yml:4: lockdown-mode.detections is a list of Privileged-Container, Runner-Worker-Memory-Read, Reverse-Shell']],
    ['lockdown-mode:\n  enabled: true\n  detections: [Reverse-Shell, reverse-shell]\n', ["p.yml:4: unknown detection 'reverse-shell' (known: Privileged-Container, Runner-Worker-Memory-Read, Reverse-Shell)"]],
    ['lockdown_mode:\n  enabled: true\n', ["p.yml:2: unknown key 'lockdown_mode' (did you mean 'lockdown-mode'? known: name, egress-policy, allowed-endpoints, lockdown-mode, disable-telemetry, disable-file-monitoring, disable-sudo, disable-sudo-and-containers)"]],
  ])('refuses %j', (block, problems) => {
    expect(parsed(`egress-policy: block\n${block}`)).toEqual(problems);
  });

  it.each([
    ['lockdown-mode:\n  enabled: true\n  detections: [Reverse-Shell, Reverse-Shell, Privileged-Container]\n', { enabled: true, detections: ['Reverse-Shell', 'Privileged-Container'] }],
    ['lockdown-mode:\n  enabled: false\n  detections: [Reverse-Shell]\n', { enabled: false, detections: ['Reverse-Shell'] }],
    ['lockdown-mode:\n  detections: [Runner-Worker-Memory-Read]\n', { enabled: false, detections: ['Runner-Worker-Memory-Read'] }],
    ['lockdown-mode: {}\n', { enabled: false, detections: [] }],
    ['', { enabled: false, detections: [] }],
  ])('reads %j', (block, lockdown) => {
    expect(parsed(`egress-policy: block\n${block}`)).toEqual({ egressPolicy: 'block', allowedEndpoints: [], lockdown });
  });
});

describe('policy documents', () => {
  it('lists every problem, by line, and returns nothing', () => {
    expect(parsed('lockdown-mode:\n  enable: true\negress-policy: Block\nallowed-endpoints: >\n  good.test\n  bad..test\n  10.0.0.1/8\n')).toEqual([
      "p.yml:2: unknown key 'lockdown-mode.enable' (did you mean 'enabled'? known: enabled, detections)",
      "p.yml:3: egress-policy must be 'audit' or 'block', not 'Block'",
      "p.yml:6: endpoint 'bad..test': empty label in 'bad..test'",
      "p.yml:7: endpoint '10.0.0.1/8': '10.0.0.1/8' has host bits set past /8",
    ]);
  });

  it('defaults to audit with nothing allowed', () => {
    expect(parsed('name: x\n')).toEqual({ name: 'x', egressPolicy: 'audit', allowedEndpoints: [], lockdown: { enabled: false, detections: [] } });
  });

  it('keeps one of entries that are the same endpoint, in order', () => {
    const policy = parsed('egress-policy: block\nallowed-endpoints: >\n  a.test\n  A.TEST.:443\n  a.test:80\n  10.0.0.0/8\n  10.0.0.0/8\n') as Policy;
    expect(policy.allowedEndpoints.map((e) => e.text)).toEqual(['a.test', 'a.test:80', '10.0.0.0/8']);
  });

  it('reads a list of endpoints with several on an item', () => {
    const policy = parsed('egress-policy: block\nallowed-endpoints:\n  - a.test b.test:80\n  - "[2001:db8::1]:22"\n') as Policy;
    expect(policy.allowedEndpoints.map((e) => [e.text, e.port])).toEqual([
      ['a.test', 443],
      ['b.test:80', 80],
      ['[2001:db8::1]:22', 22],
    ]);
  });
});
