/** Policy files and endpoint grammar (DESIGN.md §4, docs/policy.md). */
import { describe, expect, it } from 'vitest';
import { EndpointError, parseEndpoint } from '../../src/policy/endpoint';
import { EgressMatcher } from '../../src/policy/matcher';
import { parsePolicy, PolicyError } from '../../src/policy/policy';

function problemsOf(text: string): string[] {
  try {
    parsePolicy(text, 'p.yml');
  } catch (error) {
    if (error instanceof PolicyError) return error.message.split('\n');
    throw error;
  }
  throw new Error('expected a PolicyError');
}

describe('policy file', () => {
  it('reads the Harden-Runner shape with a folded block', () => {
    const policy = parsePolicy(`name: npm-build
egress-policy: block
allowed-endpoints: >
  registry.npmjs.org:443
  *.githubusercontent.com:443
  github.com
lockdown-mode:
  enabled: true
  detections:
    - Privileged-Container
    - Runner-Worker-Memory-Read
    - Reverse-Shell
`);
    expect(policy.name).toBe('npm-build');
    expect(policy.egressPolicy).toBe('block');
    expect(policy.allowedEndpoints.map((e) => e.text)).toEqual(['registry.npmjs.org:443', '*.githubusercontent.com:443', 'github.com']);
    expect(policy.allowedEndpoints.map((e) => e.port)).toEqual([443, 443, 443]);
    expect(policy.lockdown).toEqual({ enabled: true, detections: ['Privileged-Container', 'Runner-Worker-Memory-Read', 'Reverse-Shell'] });
  });

  it('reads a literal block with commas and comments, and a list', () => {
    const literal = parsePolicy('egress-policy: audit\nallowed-endpoints: |\n  a.example.com:80, b.example.com:8080\n  # tooling\n  [::1]:53\n');
    expect(literal.allowedEndpoints.map((e) => e.text)).toEqual(['a.example.com:80', 'b.example.com:8080', '[::1]:53']);
    const list = parsePolicy('allowed-endpoints:\n  - a.example.com:80\n  - 10.0.0.0/8:22\n');
    expect(list.egressPolicy).toBe('audit');
    expect(list.allowedEndpoints.map((e) => e.kind)).toEqual(['name', 'ip']);
  });

  it('names every bad entry with its line, and applies nothing', () => {
    expect(
      problemsOf(`egress-policy: block
allowed-endpoints: >
  good.example.com
  bad.example.com:99999
  *.two.*.example.com
  ok.example.com:80 empty..label.com
lockdown-mode:
  enabled: yes-please
  detections: [Reverse-Shell, Crypto-Miner]
`),
    ).toEqual([
      "p.yml:4: endpoint 'bad.example.com:99999': bad port '99999' in 'bad.example.com:99999' (1-65535)",
      "p.yml:5: endpoint '*.two.*.example.com': more than one '*' in '*.two.*.example.com'",
      "p.yml:6: endpoint 'empty..label.com': empty label in 'empty..label.com'",
      'p.yml:8: lockdown-mode.enabled must be true or false',
      "p.yml:9: unknown detection 'Crypto-Miner' (known: Privileged-Container, Runner-Worker-Memory-Read, Reverse-Shell)",
    ]);
  });

  it('refuses unknown keys, bad modes and broken YAML', () => {
    expect(problemsOf('egress-policy: deny\n')).toEqual(["p.yml:1: egress-policy must be 'audit' or 'block', not 'deny'"]);
    expect(problemsOf('egress-policy: block\nallowed-endpoint: x.com\n')).toEqual(["p.yml:2: unknown key 'allowed-endpoint' (known: name, egress-policy, allowed-endpoints, lockdown-mode)"]);
    expect(problemsOf('egress-policy: [block\n')[0]).toMatch(/^p\.yml:\d+: YAML: /);
  });
});

describe('endpoint grammar', () => {
  it.each([
    ['github.com', { kind: 'name', pattern: 'github.com', port: 443 }],
    ['GitHub.COM.:80', { kind: 'name', pattern: 'github.com', port: 80 }],
    ['_acme.example.com', { kind: 'name', pattern: '_acme.example.com' }],
    ['*.example.com', { kind: 'name', wildcard: { prefix: '', suffix: '.example.com' } }],
    ['prefix*.blob.core.windows.net', { kind: 'name', wildcard: { prefix: 'prefix', suffix: '.blob.core.windows.net' } }],
    ['cdn.*.example.net:8443', { kind: 'name', wildcard: { prefix: 'cdn.', suffix: '.example.net' }, port: 8443 }],
    ['140.82.112.3', { kind: 'ip', family: 4, prefixLength: 32, port: 443 }],
    ['140.82.112.0/20:22', { kind: 'ip', family: 4, prefixLength: 20, port: 22 }],
    ['[2606:50c0::1]:80', { kind: 'ip', family: 6, prefixLength: 128, port: 80 }],
    ['[2606:50c0::/32]', { kind: 'ip', family: 6, prefixLength: 32, port: 443 }],
    ['2606:50c0::1', { kind: 'ip', family: 6, prefixLength: 128, port: 443 }],
  ])('%s', (text, expected) => {
    expect(parseEndpoint(text)).toMatchObject(expected);
  });

  it.each([
    ['a.com:0', /bad port/],
    ['a.com:http', /bad port/],
    ['a.com:', /bad port/],
    ['*.*.com', /more than one/],
    ['.a.com', /empty label/],
    ['a..com', /empty label/],
    ['-a.com', /bad label/],
    ['a b', /bad label/],
    ['300.1.1.1', /bad IPv4/],
    ['10.1.2.3/8', /host bits/],
    ['10.0.0.0/33', /prefix length/],
    ['[::1', /missing/],
    ['[1.2.3.4]:80', /bad IPv6/],
    [':443', /missing host/],
  ])('refuses %s', (text, message) => {
    expect(() => parseEndpoint(text)).toThrow(EndpointError);
    expect(() => parseEndpoint(text)).toThrow(message);
  });
});

describe('EgressMatcher', () => {
  const matcher = new EgressMatcher(
    parsePolicy(`egress-policy: block
allowed-endpoints: >
  registry.npmjs.org
  *.wild.test:443
  prefix*.blob.core.windows.net
  cdn.*.example.net:80
  10.1.0.0/16:5432
  [2001:db8::/32]:443
  192.0.2.7:53
`),
  );

  it.each([
    ['registry.npmjs.org', 443, 'registry.npmjs.org'],
    ['REGISTRY.npmjs.org.', 443, 'registry.npmjs.org'],
    ['registry.npmjs.org', 80, undefined],
    ['a.wild.test', 443, '*.wild.test:443'],
    ['a.b.c.wild.test', 443, '*.wild.test:443'],
    ['wild.test', 443, undefined],
    ['notwild.test', 443, undefined],
    ['prefixabc.blob.core.windows.net', 443, 'prefix*.blob.core.windows.net'],
    ['other.blob.core.windows.net', 443, undefined],
    ['cdn.eu.example.net', 80, 'cdn.*.example.net:80'],
    ['cdn.eu.example.net', 443, undefined],
  ])('name %s:%d → %s', (name, port, entry) => {
    expect(matcher.matchName(name, port)?.text).toBe(entry);
  });

  it.each([
    ['10.1.255.3', 5432, '10.1.0.0/16:5432'],
    ['10.2.0.1', 5432, undefined],
    ['::ffff:10.1.0.9', 5432, '10.1.0.0/16:5432'],
    ['2001:db8:1::5', 443, '[2001:db8::/32]:443'],
    ['2001:db9::5', 443, undefined],
    ['192.0.2.7', 53, '192.0.2.7:53'],
    ['192.0.2.7', 443, undefined],
    ['not-an-ip', 443, undefined],
  ])('address %s:%d → %s', (address, port, entry) => {
    expect(matcher.matchAddress(address, port)?.text).toBe(entry);
  });

  it('judges DNS by any port of the name', () => {
    expect(matcher.nameEntries('x.wild.test').map((e) => e.text)).toEqual(['*.wild.test:443']);
    expect(matcher.nameEntries('cdn.x.example.net').map((e) => e.port)).toEqual([80]);
    expect(matcher.nameEntries('evil.test')).toEqual([]);
  });
});
