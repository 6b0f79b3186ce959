/** ringfenced's config file (docs/ringfenced.md, "Configuration"): every key, its default, every refusal. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DaemonConfigError, defaultSocketPath, loadDaemonConfig, parseDaemonConfig, readStoreCredentials, type DaemonConfig } from '../../src/agent/daemon-config';
import { LOG_LEVELS } from '../../src/agent/log';
import { RingfenceError } from '../../src/util/errors';

const FILE = '/etc/ringfence/ringfenced.yaml';
const NO_INSTANCE: NodeJS.ProcessEnv = {};

function parsed(text: string, env: NodeJS.ProcessEnv = NO_INSTANCE): DaemonConfig {
  return parseDaemonConfig(text, FILE, env);
}

/** The problem lines of a config that must be refused. */
function problemsOf(text: string, env: NodeJS.ProcessEnv = NO_INSTANCE): string[] {
  try {
    parseDaemonConfig(text, FILE, env);
  } catch (error) {
    if (error instanceof DaemonConfigError) return error.problems;
    throw error;
  }
  throw new Error('expected a DaemonConfigError');
}

const DEFAULTS: DaemonConfig = { source: FILE, socket: '/run/ringfence/agent.sock', logLevel: 'info' };

describe('daemon config: defaults', () => {
  it('an empty file, white space or comments only is every default', () => {
    expect(parsed('')).toEqual(DEFAULTS);
    expect(parsed('\n  \n')).toEqual(DEFAULTS);
    expect(parsed('# nothing set yet\n---\n')).toEqual(DEFAULTS);
  });

  it('the default socket follows RINGFENCE_INSTANCE', () => {
    expect(defaultSocketPath({})).toBe('/run/ringfence/agent.sock');
    expect(defaultSocketPath({ RINGFENCE_INSTANCE: '' })).toBe('/run/ringfence/agent.sock');
    expect(defaultSocketPath({ RINGFENCE_INSTANCE: 'ci-7' })).toBe('/run/ringfence-ci-7/agent.sock');
    expect(parsed('', { RINGFENCE_INSTANCE: 'ci-7' }).socket).toBe('/run/ringfence-ci-7/agent.sock');
    // a socket that is set wins over the instance's default
    expect(parsed('socket: /run/x/agent.sock\n', { RINGFENCE_INSTANCE: 'ci-7' }).socket).toBe('/run/x/agent.sock');
  });

  it('a bad RINGFENCE_INSTANCE is refused, whatever the file says', () => {
    expect.assertions(2);
    try {
      parsed('', { RINGFENCE_INSTANCE: 'Bad_Name' });
    } catch (error) {
      expect(error).toBeInstanceOf(RingfenceError);
      expect((error as Error).message).toBe("RINGFENCE_INSTANCE 'Bad_Name': expected lower-case letters, digits and '-' (at most 63)");
    }
  });
});

describe('daemon config: every key', () => {
  it('reads a file with every key', () => {
    const config = parsed(`policy-file: /etc/ringfence/default-policy.yml
socket: /run/rf/agent.sock
socket-group: ci
dns-upstream: 127.0.0.53:5353
cluster: linux-x64.large
metrics:
  listen: /run/rf/metrics.sock
  group: prometheus
log-level: debug
`);
    expect(config).toEqual({
      source: FILE,
      policyFile: '/etc/ringfence/default-policy.yml',
      socket: '/run/rf/agent.sock',
      socketGroup: 'ci',
      dnsUpstream: { host: '127.0.0.53', port: 5353 },
      cluster: 'linux-x64.large',
      metrics: { listen: { kind: 'unix', path: '/run/rf/metrics.sock' }, group: 'prometheus' },
      logLevel: 'debug',
    });
  });

  it('reads a store (https with a CA, https without, http on loopback)', () => {
    expect(parsed('store:\n  url: https://127.0.0.1:7070\n  token-file: /etc/ringfence/agent-token\n  ca-file: /etc/ringfence/ca.pem\n').store).toEqual({
      url: 'https://127.0.0.1:7070',
      address: '127.0.0.1:7070',
      tls: true,
      tokenFile: '/etc/ringfence/agent-token',
      caFile: '/etc/ringfence/ca.pem',
    });
    expect(parsed('store: { url: "https://[::1]:7443", token-file: /t }\n').store).toEqual({ url: 'https://[::1]:7443', address: '[::1]:7443', tls: true, tokenFile: '/t' });
    expect(parsed('store: { url: "http://localhost:7070", token-file: /t }\n').store).toEqual({ url: 'http://localhost:7070', address: 'localhost:7070', tls: false, tokenFile: '/t' });
    expect(parsed('store: { url: "http://127.0.0.2:7070", token-file: /t }\n').store?.address).toBe('127.0.0.2:7070');
  });

  it('dns-upstream takes what ringfence run --dns-upstream takes', () => {
    expect(parsed('dns-upstream: 127.0.0.1\n').dnsUpstream).toEqual({ host: '127.0.0.1', port: 53 });
    expect(parsed('dns-upstream: "[::1]:5300"\n').dnsUpstream).toEqual({ host: '::1', port: 5300 });
    expect(parsed('dns-upstream: ::1\n').dnsUpstream).toEqual({ host: '::1', port: 53 });
  });

  it('metrics listen on a loopback port, v4 or v6', () => {
    expect(parsed('metrics:\n  listen: 127.0.0.1:9464\n').metrics).toEqual({ listen: { kind: 'tcp', host: '127.0.0.1', port: 9464 } });
    expect(parsed('metrics:\n  listen: "[::1]:9464"\n').metrics).toEqual({ listen: { kind: 'tcp', host: '::1', port: 9464 } });
  });

  it('takes every pino level', () => {
    expect(LOG_LEVELS).toEqual(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);
    for (const level of LOG_LEVELS) expect(parsed(`log-level: ${level}\n`).logLevel).toBe(level);
  });
});

describe('daemon config: refusals, one line each naming file:line and the key', () => {
  it('an unknown key, with the keys there are', () => {
    expect(problemsOf('log-level: info\n\n# the API\nsokcet: /run/x.sock\n')).toEqual([
      `${FILE}:4: unknown key 'sokcet' (expected one of: policy-file, socket, socket-group, dns-upstream, store, cluster, metrics, log-level)`,
    ]);
    expect(problemsOf('store:\n  url: https://127.0.0.1:7070\n  token-file: /t\n  token: abc\n')).toEqual([`${FILE}:4: unknown key 'store.token' (expected one of: url, token-file, ca-file)`]);
    expect(problemsOf('metrics:\n  listen: /run/m.sock\n  mode: 0660\n')).toEqual([`${FILE}:3: unknown key 'metrics.mode' (expected one of: listen, group)`]);
  });

  it('values of the wrong type', () => {
    expect(problemsOf('socket: 5\n')).toEqual([`${FILE}:1: socket must be an absolute path, not number 5`]);
    expect(problemsOf('policy-file:\n  - /a\n')).toEqual([`${FILE}:2: policy-file must be an absolute path, not a list`]);
    expect(problemsOf('log-level: true\n')).toEqual([`${FILE}:1: log-level must be one of fatal, error, warn, info, debug, trace, silent, not boolean true`]);
    expect(problemsOf('store: https://127.0.0.1:7070\n')).toEqual([`${FILE}:1: store must be a mapping of url, token-file, ca-file, not 'https://127.0.0.1:7070'`]);
    expect(problemsOf('metrics: [a]\n')).toEqual([`${FILE}:1: metrics must be a mapping of listen, group, not a list`]);
    expect(problemsOf('cluster: { a: 1 }\n')).toEqual([`${FILE}:1: cluster must be a cluster name, not a mapping`]);
    expect(problemsOf('socket-group: 1001\n')).toEqual([`${FILE}:1: socket-group must be a group name, not number 1001`]);
  });

  it('empty values', () => {
    expect(problemsOf('socket:\n')).toEqual([`${FILE}:1: socket is empty (expected an absolute path)`]);
    expect(problemsOf('policy-file: ""\n')).toEqual([`${FILE}:1: policy-file is empty (expected an absolute path)`]);
    expect(problemsOf('dns-upstream: ~\n')).toEqual([`${FILE}:1: dns-upstream is empty (expected ADDRESS, ADDRESS:PORT or [IPv6]:PORT)`]);
    expect(problemsOf('store:\n')).toEqual([`${FILE}:1: store is empty (expected a mapping of url, token-file, ca-file)`]);
    expect(problemsOf('metrics:\n')).toEqual([`${FILE}:1: metrics is empty (expected a mapping of listen, group)`]);
    expect(problemsOf('cluster: ""\n')).toEqual([`${FILE}:1: cluster is empty (expected a cluster name)`]);
  });

  it('relative paths where absolute ones are required', () => {
    expect(problemsOf('policy-file: policy.yml\n')).toEqual([`${FILE}:1: policy-file must be an absolute path, not 'policy.yml'`]);
    expect(problemsOf('socket: ./agent.sock\n')).toEqual([`${FILE}:1: socket must be an absolute path, not './agent.sock'`]);
    expect(problemsOf('store:\n  url: https://127.0.0.1:7070\n  token-file: token\n  ca-file: ../ca.pem\n')).toEqual([
      `${FILE}:3: store.token-file must be an absolute path, not 'token'`,
      `${FILE}:4: store.ca-file must be an absolute path, not '../ca.pem'`,
    ]);
    expect(problemsOf('metrics:\n  listen: metrics.sock\n')).toEqual([`${FILE}:2: metrics.listen 'metrics.sock': expected a unix socket path, 127.0.0.1:PORT or [::1]:PORT`]);
  });

  it('a socket path longer than a unix socket can be', () => {
    const long = `/run/${'x'.repeat(103)}`; // 108 bytes
    expect(problemsOf(`socket: ${long}\n`)).toEqual([`${FILE}:1: socket '${long}' is too long for a unix socket (108 bytes, at most 107)`]);
    expect(parsed(`socket: ${long.slice(0, -1)}\n`).socket).toBe(long.slice(0, -1));
    expect(problemsOf(`metrics:\n  listen: ${long}\n`)).toEqual([`${FILE}:2: metrics.listen '${long}' is too long for a unix socket (108 bytes, at most 107)`]);
  });

  it('names that are not names', () => {
    expect(problemsOf('socket-group: "ci runners"\n')).toEqual([`${FILE}:1: socket-group 'ci runners' is not a group name`]);
    expect(problemsOf('cluster: linux/x64\n')).toEqual([`${FILE}:1: cluster 'linux/x64' must be 1-100 letters, digits, '.', '_' or '-'`]);
    expect(problemsOf('log-level: verbose\n')).toEqual([`${FILE}:1: log-level must be one of fatal, error, warn, info, debug, trace, silent, not 'verbose'`]);
    expect(problemsOf('dns-upstream: resolver.internal\n')).toEqual([`${FILE}:1: dns-upstream: bad DNS upstream 'resolver.internal': expected ADDRESS, ADDRESS:PORT or [IPv6]:PORT`]);
    expect(problemsOf('dns-upstream: 127.0.0.1:70000\n')).toEqual([`${FILE}:1: dns-upstream: bad DNS upstream '127.0.0.1:70000': expected ADDRESS, ADDRESS:PORT or [IPv6]:PORT`]);
  });

  it('store urls that would leak the token or say more than where', () => {
    const url = (u: string) => problemsOf(`store:\n  url: "${u}"\n  token-file: /t\n`);
    expect(url('http://198.19.0.1:7070')).toEqual([`${FILE}:2: store.url 'http://198.19.0.1:7070': http:// would send the agent token in clear: use https:// (http:// is for a store on loopback only)`]);
    expect(url('https://127.0.0.1')).toEqual([`${FILE}:2: store.url 'https://127.0.0.1' has no port (the policy store listens on 7070 unless told otherwise)`]);
    expect(url('grpc://127.0.0.1:7070')).toEqual([`${FILE}:2: store.url 'grpc://127.0.0.1:7070': expected https://HOST:PORT, not grpc://`]);
    expect(url('127.0.0.1:7070')).toEqual([`${FILE}:2: store.url '127.0.0.1:7070' is not a URL (expected https://HOST:PORT)`]);
    expect(url('https://127.0.0.1:7070/policies')).toEqual([`${FILE}:2: store.url 'https://127.0.0.1:7070/policies': expected https://HOST:PORT and nothing more (the token goes in store.token-file)`]);
    expect(url('https://agent:secret@127.0.0.1:7070')).toEqual([`${FILE}:2: store.url 'https://agent:secret@127.0.0.1:7070': expected https://HOST:PORT and nothing more (the token goes in store.token-file)`]);
    expect(problemsOf('store:\n  url: http://127.0.0.1:7070\n  token-file: /t\n  ca-file: /ca.pem\n')).toEqual([`${FILE}:4: store.ca-file is for an https:// store, and store.url is 'http://127.0.0.1:7070'`]);
  });

  it('a store without its url or token file', () => {
    expect(problemsOf('store:\n  token-file: /t\n')).toEqual([`${FILE}:1: store.url is missing (the policy store, https://HOST:PORT)`]);
    expect(problemsOf('store:\n  url: https://127.0.0.1:7070\n')).toEqual([`${FILE}:1: store.token-file is missing (the file that holds this agent's token)`]);
  });

  it('metrics anywhere but a unix socket or loopback', () => {
    const listen = (l: string) => problemsOf(`metrics:\n  listen: "${l}"\n`);
    expect(listen('0.0.0.0:9464')).toEqual([`${FILE}:2: metrics.listen '0.0.0.0:9464' is not a loopback address: metrics are served on a unix socket or on 127.0.0.1:PORT / [::1]:PORT only`]);
    expect(listen('[::]:9464')).toEqual([`${FILE}:2: metrics.listen '[::]:9464' is not a loopback address: metrics are served on a unix socket or on 127.0.0.1:PORT / [::1]:PORT only`]);
    expect(listen('198.19.0.1:9464')).toEqual([`${FILE}:2: metrics.listen '198.19.0.1:9464' is not a loopback address: metrics are served on a unix socket or on 127.0.0.1:PORT / [::1]:PORT only`]);
    expect(listen('localhost:9464')).toEqual([`${FILE}:2: metrics.listen 'localhost:9464': give an address, not a name (expected a unix socket path, 127.0.0.1:PORT or [::1]:PORT)`]);
    expect(listen('9464')).toEqual([`${FILE}:2: metrics.listen '9464': expected a unix socket path, 127.0.0.1:PORT or [::1]:PORT`]);
    expect(listen('[127.0.0.1]:9464')).toEqual([`${FILE}:2: metrics.listen '[127.0.0.1]:9464': expected a unix socket path, 127.0.0.1:PORT or [::1]:PORT`]);
    expect(listen('127.0.0.1:0')).toEqual([`${FILE}:2: metrics.listen '127.0.0.1:0': port 0 is not 1-65535`]);
    expect(listen('127.0.0.1:65536')).toEqual([`${FILE}:2: metrics.listen '127.0.0.1:65536': port 65536 is not 1-65535`]);
    expect(problemsOf('metrics:\n  group: prometheus\n')).toEqual([`${FILE}:1: metrics.listen is missing (a unix socket path, 127.0.0.1:PORT or [::1]:PORT)`]);
    expect(problemsOf('metrics:\n  listen: 127.0.0.1:9464\n  group: prometheus\n')).toEqual([`${FILE}:3: metrics.group is for a unix socket, and metrics.listen is a TCP port`]);
    expect(problemsOf('socket: /run/rf/a.sock\nmetrics:\n  listen: /run/rf/a.sock\n')).toEqual([`${FILE}:3: metrics.listen is the local API's socket (/run/rf/a.sock): give it a path of its own`]);
  });

  it('policy-file and store together', () => {
    expect(problemsOf('policy-file: /p.yml\nstore:\n  url: https://127.0.0.1:7070\n  token-file: /t\n')).toEqual([
      `${FILE}:2: policy-file and store exclude each other: with a store, each job's policy is the one the store resolves for it`,
    ]);
  });

  it('YAML that does not parse, a key given twice, a file that is no mapping', () => {
    expect(problemsOf('log-level: info\nsocket: /a: b\n')).toEqual([`${FILE}:2: YAML: Nested mappings are not allowed in compact mappings`]);
    expect(problemsOf('log-level: info\n\tsocket: /a\n')).toEqual([`${FILE}:2: YAML: Tabs are not allowed as indentation`]);
    expect(problemsOf('socket: /a\nsocket: /b\n')).toEqual([`${FILE}:2: YAML: Map keys must be unique`]);
    expect(problemsOf('- socket\n- /a\n')).toEqual([`${FILE}:1: a config file is a mapping of keys (policy-file, socket, socket-group, dns-upstream, store, cluster, metrics, log-level), not a list`]);
    expect(problemsOf('socket\n')).toEqual([`${FILE}:1: a config file is a mapping of keys (policy-file, socket, socket-group, dns-upstream, store, cluster, metrics, log-level), not 'socket'`]);
  });

  it('reports every problem at once, by line, and one message of them all', () => {
    expect.assertions(3);
    const text = 'log-level: loud\nsocket: rel.sock\nsokcet: /x\n';
    expect(problemsOf(text)).toEqual([
      `${FILE}:1: log-level must be one of fatal, error, warn, info, debug, trace, silent, not 'loud'`,
      `${FILE}:2: socket must be an absolute path, not 'rel.sock'`,
      `${FILE}:3: unknown key 'sokcet' (expected one of: policy-file, socket, socket-group, dns-upstream, store, cluster, metrics, log-level)`,
    ]);
    try {
      parsed(text);
    } catch (error) {
      expect((error as RingfenceError).code).toBe('RF_USAGE');
      expect((error as Error).message).toBe(problemsOf(text).join('\n'));
    }
  });
});

describe('loadDaemonConfig: the file and what it names', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-daemon-config-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const write = (name: string, text: string, mode = 0o600) => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, text, { mode });
    fs.chmodSync(file, mode);
    return file;
  };
  function loadProblems(file: string): string[] {
    try {
      loadDaemonConfig(file, NO_INSTANCE);
    } catch (error) {
      if (error instanceof DaemonConfigError) return error.problems;
      throw error;
    }
    throw new Error('expected a DaemonConfigError');
  }

  it('a missing, unreadable or binary config file is one line naming it', () => {
    expect(loadProblems(path.join(dir, 'ringfenced.yaml'))).toEqual([`config file ${dir}/ringfenced.yaml: no such file`]);
    expect(loadProblems(dir)).toEqual([`config file ${dir}: is a directory, not a file`]);
    expect(loadProblems(write('bin.yaml', 'socket: /a\0\n'))).toEqual([`config file ${dir}/bin.yaml: is binary, not a text file (a NUL byte at offset 10)`]);
  });

  it('an empty config file is every default', () => {
    const file = write('ringfenced.yaml', '');
    expect(loadDaemonConfig(file, NO_INSTANCE)).toEqual({ ...DEFAULTS, source: file });
    expect(loadDaemonConfig(write('blank.yaml', ' \n\n'), { RINGFENCE_INSTANCE: 'test' }).socket).toBe('/run/ringfence-test/agent.sock');
  });

  it("reads policy-file with the policy parser; its name is the policy's, else the file's", () => {
    const named = write('named.yml', 'name: fleet-default\negress-policy: block\nallowed-endpoints: 127.0.0.1:8080\n');
    const loaded = loadDaemonConfig(write('a.yaml', `policy-file: ${named}\n`), NO_INSTANCE);
    expect(loaded.policyFile).toBe(named);
    expect(loaded.defaultPolicy?.name).toBe('fleet-default');
    expect(loaded.defaultPolicy?.policy.egressPolicy).toBe('block');
    expect(loaded.defaultPolicy?.policy.allowedEndpoints.map((e) => e.text)).toEqual(['127.0.0.1:8080']);
    expect(loaded.defaultPolicy?.notes).toEqual([]);
    const unnamed = write('build-policy.yaml', 'egress-policy: audit\ndisable-telemetry: true\n');
    const second = loadDaemonConfig(write('b.yaml', `policy-file: ${unnamed}\n`), NO_INSTANCE);
    expect(second.defaultPolicy?.name).toBe('build-policy');
    expect(second.defaultPolicy?.notes).toHaveLength(1);
    expect(second.defaultPolicy?.notes[0]).toMatch(new RegExp(`^${unnamed}:2: disable-telemetry is accepted`));
  });

  it('a policy-file that is missing or wrong inside names the config line and the policy file and line', () => {
    const config = write('c.yaml', `log-level: info\npolicy-file: ${dir}/missing.yml\n`);
    expect(loadProblems(config)).toEqual([`${config}:2: policy-file ${dir}/missing.yml: no such file`]);
    const bad = write('bad.yml', 'name: x\negress-policy: deny\nlockdown-mode: yes\n');
    const config2 = write('d.yaml', `policy-file: ${bad}\n`);
    expect(loadProblems(config2)).toEqual([
      `${config2}:1: policy-file ${bad}:2: egress-policy must be 'audit' or 'block', not 'deny'`,
      `${config2}:1: policy-file ${bad}:3: lockdown-mode is a mapping with enabled and detections`,
    ]);
  });

  it("checks the store's token and CA at start", () => {
    const token = write('token', 'rfa_0123456789\n');
    const ca = write('ca.pem', '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n', 0o644);
    const loaded = loadDaemonConfig(write('s.yaml', `store:\n  url: https://127.0.0.1:7070\n  token-file: ${token}\n  ca-file: ${ca}\n`), NO_INSTANCE);
    expect(loaded.store).toEqual({ url: 'https://127.0.0.1:7070', address: '127.0.0.1:7070', tls: true, tokenFile: token, caFile: ca });
    // the config holds where the token is, never the token
    expect(JSON.stringify(loaded)).not.toContain('rfa_0123456789');
    expect(readStoreCredentials(loaded.store!)).toEqual({ token: 'rfa_0123456789', ca: fs.readFileSync(ca) });
  });

  it('refuses a token file that is missing, empty, more than a token or readable by everyone, and a CA that is no PEM', () => {
    const storeConfig = (tokenFile: string, caFile?: string) =>
      write(`s${Math.random().toString(36).slice(2)}.yaml`, `store:\n  url: https://127.0.0.1:7070\n  token-file: ${tokenFile}\n${caFile ? `  ca-file: ${caFile}\n` : ''}`);
    let config = storeConfig(`${dir}/none`);
    expect(loadProblems(config)).toEqual([`${config}:3: store.token-file ${dir}/none: no such file`]);
    const empty = write('empty-token', '');
    config = storeConfig(empty);
    expect(loadProblems(config)).toEqual([`${config}:3: store.token-file ${empty}: is empty`]);
    const two = write('two-tokens', 'rfa_one rfa_two\n');
    config = storeConfig(two);
    expect(loadProblems(config)).toEqual([`${config}:3: store.token-file ${two}: expected one token on one line`]);
    const open = write('open-token', 'rfa_x\n', 0o644);
    config = storeConfig(open);
    expect(loadProblems(config)).toEqual([`${config}:3: store.token-file ${open}: every user can read it (mode 0644): chmod 600 it`]);
    // group-readable is how a token is shared with a service group: allowed
    expect(loadDaemonConfig(storeConfig(write('group-token', 'rfa_x\n', 0o640)), NO_INSTANCE).store?.tokenFile).toBe(`${dir}/group-token`);
    const notPem = write('ca.txt', 'not a certificate\n', 0o644);
    config = storeConfig(write('good-token', 'rfa_x\n'), notPem);
    expect(loadProblems(config)).toEqual([`${config}:4: store.ca-file ${notPem}: no PEM certificate in it (-----BEGIN CERTIFICATE-----)`]);
  });

  it('resolves the groups, and refuses one the system does not know', () => {
    const loaded = loadDaemonConfig(write('g.yaml', 'socket-group: root\nmetrics:\n  listen: /run/rf-test/metrics.sock\n  group: root\n'), NO_INSTANCE);
    expect(loaded.socketGroup).toBe('root');
    expect(loaded.socketGid).toBe(0);
    expect(loaded.metricsGid).toBe(0);
    const config = write('h.yaml', 'socket-group: rf-no-such-group\n');
    expect(loadProblems(config)).toEqual([`${config}:1: socket-group 'rf-no-such-group': no such group`]);
  });

  it('reports the problems of everything the file names at once', () => {
    const config = write('all.yaml', `policy-file: ${dir}/gone.yml\nsocket-group: rf-no-such-group\n`);
    expect(loadProblems(config)).toEqual([`${config}:1: policy-file ${dir}/gone.yml: no such file`, `${config}:2: socket-group 'rf-no-such-group': no such group`]);
  });

  it('a config that is wrong inside is refused before anything it names is read', () => {
    const config = write('wrong.yaml', `policy-file: ${dir}/gone.yml\nlog-level: loud\n`);
    expect(loadProblems(config)).toEqual([`${config}:2: log-level must be one of fatal, error, warn, info, debug, trace, silent, not 'loud'`]);
  });
});
