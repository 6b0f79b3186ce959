/** Policy files and endpoint grammar (docs/design.md §4, docs/policy.md). */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { EndpointError, parseEndpoint } from '../../src/policy/endpoint';
import { EgressMatcher } from '../../src/policy/matcher';
import { loadPolicyFile, parsePolicy, parsePolicyWithNotes, PolicyError, readPolicyFile } from '../../src/policy/policy';
import { RingfenceError } from '../../src/util/errors';

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
    const known = 'known: name, egress-policy, allowed-endpoints, lockdown-mode, disable-telemetry, disable-file-monitoring, disable-sudo, disable-sudo-and-containers';
    expect(problemsOf('egress-policy: block\nallowed-endpoint: x.com\n')).toEqual([`p.yml:2: unknown key 'allowed-endpoint' (did you mean 'allowed-endpoints'? ${known})`]);
    expect(problemsOf('egress-policy: block\ncolour: red\n')).toEqual([`p.yml:2: unknown key 'colour' (${known})`]);
    expect(problemsOf('egress-policy: [block\n')[0]).toMatch(/^p\.yml:\d+: YAML: /);
  });

  it('refuses a misspelt lockdown key with its line instead of leaving lockdown off', () => {
    expect(problemsOf('egress-policy: block\nlockdown-mode: {enable: true}\n')).toEqual(["p.yml:2: unknown key 'lockdown-mode.enable' (did you mean 'enabled'? known: enabled, detections)"]);
    expect(problemsOf('egress-policy: block\nlockdown-mode:\n  enabled: true\n  detection: [Reverse-Shell]\n')).toEqual([
      "p.yml:4: unknown key 'lockdown-mode.detection' (did you mean 'detections'? known: enabled, detections)",
    ]);
  });

  it('says an empty document is empty, not that it is no mapping', () => {
    expect(problemsOf('# nothing here yet\n')).toEqual(['p.yml:1: the policy is empty: it needs at least egress-policy (docs/policy.md)']);
  });
});

describe('Harden-Runner inputs', () => {
  it('accepts disable-telemetry and disable-file-monitoring with a note each, and prints nothing itself', () => {
    const stderr = vi.spyOn(process.stderr, 'write');
    const { policy, notes } = parsePolicyWithNotes('egress-policy: block\ndisable-telemetry: true\ndisable-file-monitoring: "false"\n', 'p.yml');
    expect(stderr).not.toHaveBeenCalled();
    stderr.mockRestore();
    expect(policy).toEqual({ egressPolicy: 'block', allowedEndpoints: [], lockdown: { enabled: false, detections: [] } });
    expect(notes).toEqual([
      'p.yml:2: disable-telemetry is accepted for Harden-Runner compatibility: ringfence sends no telemetry: events go only to the outputs the job names (--events, --summary) or to the policy store you run',
      'p.yml:3: disable-file-monitoring is accepted for Harden-Runner compatibility: ringfence does not monitor file writes, so there is nothing to disable; lockdown-mode detections are what it watches',
    ]);
    expect(parsePolicyWithNotes('egress-policy: audit\n').notes).toEqual([]);
  });

  it.each(['disable-sudo', 'disable-sudo-and-containers'])('refuses %s: true (not enforced yet), accepts false', (key) => {
    expect(problemsOf(`egress-policy: block\n${key}: true\n`)).toEqual([
      `p.yml:2: ${key}: true is not enforced by ringfence yet; the job would keep sudo, so the policy is refused (remove it or set it to false)`,
    ]);
    expect(problemsOf(`egress-policy: block\n${key}: 'true'\n`)).toHaveLength(1);
    expect(parsePolicyWithNotes(`egress-policy: block\n${key}: false\n`)).toEqual({ policy: { egressPolicy: 'block', allowedEndpoints: [], lockdown: { enabled: false, detections: [] } }, notes: [] });
    expect(problemsOf(`${key}: maybe\n`)).toEqual([`p.yml:1: ${key} must be true or false`]);
  });
});

describe('policy files', () => {
  const dir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'rf-policy-file-'));
  const failure = (file: string, label?: string): string => {
    try {
      readPolicyFile(file, label);
    } catch (error) {
      expect(error).toBeInstanceOf(RingfenceError);
      expect((error as RingfenceError).code).toBe('RF_USAGE');
      return (error as Error).message;
    }
    throw new Error(`expected ${file} to be refused`);
  };

  afterEach(() => vi.restoreAllMocks());

  it('names a missing, empty, binary, directory or unreadable file with its own line', () => {
    const d = dir();
    const write = (name: string, content: string | Buffer) => (fs.writeFileSync(path.join(d, name), content), path.join(d, name));
    expect(failure(path.join(d, 'missing.yml'), '--policy')).toBe(`--policy ${d}/missing.yml: no such file`);
    expect(failure(path.join(write('plain', 'x'), 'p.yml'))).toBe(`policy file ${d}/plain/p.yml: no such file (a part of its path is not a directory)`);
    expect(failure(write('empty.yml', ''), '-f')).toBe(`-f ${d}/empty.yml: is empty`);
    expect(failure(write('blank.yml', '\n  \n'))).toBe(`policy file ${d}/blank.yml: is empty (white space only)`);
    expect(failure(write('bin.yml', Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x00, 0x01])))).toBe(`policy file ${d}/bin.yml: is binary, not a text file (a NUL byte at offset 5)`);
    expect(failure(write('latin1.yml', Buffer.from('egress-policy: block # caf\xe9\n', 'latin1')))).toBe(`policy file ${d}/latin1.yml: is binary, not a text file (not UTF-8)`);
    expect(failure(d)).toBe(`policy file ${d}: is a directory, not a file`);
  });

  it('names a file it may not read (root reads everything, so the errno is simulated)', () => {
    const denied = Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' });
    vi.spyOn(fs, 'readFileSync').mockImplementation(() => {
      throw denied;
    });
    expect(failure('/etc/ringfence/p.yml', '--policy')).toBe('--policy /etc/ringfence/p.yml: cannot read it (permission denied)');
  });

  it.each([
    ['EPERM', 'cannot read it (permission denied)'],
    ['EIO', 'cannot read it (EIO)'],
    [undefined, 'cannot read it (read went wrong)'],
  ])('names a file it cannot read (%s, simulated)', (code, problem) => {
    const error = Object.assign(new Error('read went wrong'), code === undefined ? {} : { code });
    vi.spyOn(fs, 'readFileSync').mockImplementation(() => {
      throw error;
    });
    expect(failure('/etc/ringfence/p.yml', '--policy')).toBe(`--policy /etc/ringfence/p.yml: ${problem}`);
  });

  it('names a symlink loop with its errno', () => {
    const d = dir();
    fs.symlinkSync(path.join(d, 'b.yml'), path.join(d, 'a.yml'));
    fs.symlinkSync(path.join(d, 'a.yml'), path.join(d, 'b.yml'));
    expect(failure(path.join(d, 'a.yml'))).toBe(`policy file ${d}/a.yml: cannot read it (ELOOP)`);
  });

  it('calls a file with a NUL as its first byte binary (UTF-16 big-endian text)', () => {
    const d = dir();
    const file = path.join(d, 'utf16.yml');
    fs.writeFileSync(file, Buffer.from('\0e\0g\0r\0e\0s\0s', 'latin1'));
    expect(failure(file)).toBe(`policy file ${file}: is binary, not a text file (a NUL byte at offset 0)`);
  });

  it('loadPolicyFile names the file it could not read as a policy file', () => {
    const d = dir();
    expect(() => loadPolicyFile(path.join(d, 'missing.yml'))).toThrow(`policy file ${d}/missing.yml: no such file`);
  });

  it('reads a good file, and a bad one is a PolicyError naming the file and line', () => {
    const d = dir();
    const file = path.join(d, 'p.yml');
    fs.writeFileSync(file, 'egress-policy: block\ndisable-telemetry: true\n');
    expect(readPolicyFile(file)).toMatchObject({ policy: { egressPolicy: 'block' }, notes: [expect.stringMatching(new RegExp(`^${file}:2: disable-telemetry is accepted`))] });
    expect(loadPolicyFile(file).egressPolicy).toBe('block');
    fs.writeFileSync(file, 'egress-policy: deny\n');
    expect(() => loadPolicyFile(file)).toThrow(PolicyError);
    expect(() => loadPolicyFile(file)).toThrow(`${file}:1: egress-policy must be 'audit' or 'block', not 'deny'`);
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
  // built by each case (not while the tests are collected), from its own parse
  const matcherOf = () =>
    new EgressMatcher(
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
    expect(matcherOf().matchName(name, port)?.text).toBe(entry);
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
    expect(matcherOf().matchAddress(address, port)?.text).toBe(entry);
  });

  it('judges DNS by any port of the name', () => {
    const matcher = matcherOf();
    expect(matcher.nameEntries('x.wild.test').map((e) => e.text)).toEqual(['*.wild.test:443']);
    expect(matcher.nameEntries('cdn.x.example.net').map((e) => e.port)).toEqual([80]);
    expect(matcher.nameEntries('evil.test')).toEqual([]);
  });
});
