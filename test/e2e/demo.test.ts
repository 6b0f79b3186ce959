/**
 * The README's examples as a user runs them (after the build): the demo
 * (examples/demo.sh) and `ringfence trace -- ./examples/demo-job.sh`. Neither
 * may send anything off the machine: every destination is loopback or inside
 * the network namespace the demo creates, every DNS answer comes from the
 * demo's own server, and nothing the demo creates is left behind.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const REPO = path.resolve(__dirname, '../..');
const DEMO = path.join(REPO, 'examples/demo.sh');
const RINGFENCE = path.join(REPO, 'bin/ringfence');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The environment without the demo's variables, as a user's shell has it. */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  for (const name of Object.keys(env)) if (/^RINGFENCE_(DEMO_|SERVER$|TOKEN$)/.test(name) && !(name in extra)) delete env[name];
  return env;
}

/** Runs a command in a process group of its own; `interrupt(stdout)` true sends the group SIGINT, as Ctrl-C does. */
function run(command: string, args: string[], env: NodeJS.ProcessEnv, interrupt?: (stdout: string) => boolean): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    let interrupted = false;
    child.stdout.on('data', (data) => {
      stdout += data;
      if (interrupt && !interrupted && interrupt(stdout)) {
        interrupted = true;
        process.kill(-child.pid!, 'SIGINT');
      }
    });
    child.stderr.on('data', (data) => (stderr += data));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const readJsonLines = (file: string) =>
  fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record<string, unknown>);

/** Every string in an event that is an IP address, wherever it is (fields present and future). */
function addressesIn(value: unknown, found: string[] = []): string[] {
  if (typeof value === 'string' && net.isIP(value)) found.push(value);
  else if (Array.isArray(value)) for (const item of value) addressesIn(item, found);
  else if (value && typeof value === 'object') for (const item of Object.values(value)) addressesIn(item, found);
  return found;
}

const isLoopback = (ip: string) => /^127\./.test(ip) || ip === '::1' || /^::ffff:127\./i.test(ip);

/** A /24 such as 198.19.7.0/24, as network.env names it. */
function inNetwork(ip: string, network: string): boolean {
  const [base, bits] = network.split('/');
  expect(bits).toBe('24');
  return ip.replace(/^::ffff:/i, '').startsWith(base.replace(/\.0$/, '.'));
}

const netnsList = () => execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
const linkExists = (name: string) => {
  try {
    execFileSync('ip', ['link', 'show', name], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
};
/** Processes whose command line mentions `text` (the demo's servers name its temporary directory). */
const processesMentioning = (text: string) =>
  fs.readdirSync('/proc').filter((pid) => {
    if (!/^\d+$/.test(pid)) return false;
    try {
      return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(text);
    } catch {
      return false;
    }
  });

describe('examples/demo.sh', () => {
  it('exits 1 with the DNS name and the address it blocked, the allowed fetch done, and nothing off the machine', async () => {
    const keep = fs.mkdtempSync(path.join(os.tmpdir(), 'ringfence-demo-keep-'));
    const demo = await run(DEMO, [], userEnv({ RINGFENCE_DEMO_KEEP: keep }));
    expect(demo.code, demo.stderr).toBe(1);

    const network = Object.fromEntries(
      fs
        .readFileSync(path.join(keep, 'network.env'), 'utf8')
        .trim()
        .split('\n')
        .map((line) => line.split('=') as [string, string]),
    );
    expect(network.DEMO_NETWORK).toMatch(/^198\.19\.\d+\.0\/24$/);
    const events = readJsonLines(path.join(keep, 'events.jsonl'));
    const served = readJsonLines(path.join(keep, 'dns-queries.jsonl'));
    const dns = events.filter((event) => event.kind === 'dns');
    const connections = events.filter((event) => event.kind === 'network');

    // what the policy refused
    expect(dns).toContainEqual(expect.objectContaining({ name: 'exfil.attacker.example', verdict: 'blocked', rcode: 'NXDOMAIN', answers: [] }));
    expect(connections).toContainEqual(expect.objectContaining({ protocol: 'tcp', ip: network.DEMO_BLOCKED_ADDR, port: 443, verdict: 'blocked' }));
    // what it allowed: the name resolved by the demo's server, the connection made and answered
    expect(dns).toContainEqual(expect.objectContaining({ name: 'registry.demo.test', verdict: 'allowed', answers: [network.DEMO_DNS] }));
    expect(connections).toContainEqual(expect.objectContaining({ protocol: 'tcp', ip: network.DEMO_DNS, port: 443, domain: 'registry.demo.test', verdict: 'allowed' }));
    expect(demo.stdout).toContain(`${network.DEMO_DNS}:443: demo registry: hello from inside the demo network`);
    expect(demo.stderr).toContain('ringfence exits 1: 2 request(s) blocked');

    // nothing anywhere else: no address in any event outside loopback and the demo network
    const addresses = events.flatMap((event) => addressesIn(event));
    expect(addresses.length).toBeGreaterThan(0);
    expect(addresses.filter((ip) => !isLoopback(ip) && !inNetwork(ip, network.DEMO_NETWORK))).toEqual([]);
    // every name the proxy let through was answered by the demo's server; the refused one never reached it
    for (const query of dns.filter((event) => event.verdict !== 'blocked')) {
      expect(query.error).toBeUndefined();
      expect(served).toContainEqual(expect.objectContaining({ name: query.name, type: query.type }));
    }
    expect(served.map((query) => query.name)).not.toContain('exfil.attacker.example');

    // nothing left
    expect(netnsList()).not.toContain(network.DEMO_NETNS);
    expect(linkExists(network.DEMO_VETH)).toBe(false);
    fs.rmSync(keep, { recursive: true, force: true });
  });

  it('Ctrl-C during the job removes the namespace, the veth, the servers and the temporary directory', async () => {
    const demo = await run(DEMO, [], userEnv(), (stdout) => stdout.includes('demo job: compiling'));
    expect(demo.code).toBe(130);
    const netns = /namespace (ringfence-demo-\d+)/.exec(demo.stdout)![1];
    const veth = /on (rfdemo\d+h) only/.exec(demo.stdout)![1];
    const work = /\(SQLite: (\/tmp\/ringfence-demo\.\w+)\//.exec(demo.stdout)![1];
    expect(netnsList()).not.toContain(netns);
    expect(linkExists(veth)).toBe(false);
    expect(fs.existsSync(work)).toBe(false);
    expect(processesMentioning(work)).toEqual([]);
  });
});

describe('ringfence trace -- ./examples/demo-job.sh (the README example, no demo network)', () => {
  it('connects to loopback only and looks up no name', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringfence-trace-demo-'));
    const out = path.join(dir, 'trace.jsonl');
    const trace = await run(RINGFENCE, ['trace', '--json', '-o', out, '--', './examples/demo-job.sh'], userEnv());
    expect(trace.code, trace.stderr).toBe(0);
    expect(trace.stdout).toContain('demo job: no demo network');
    const events = readJsonLines(out);
    fs.rmSync(dir, { recursive: true, force: true });
    // trace --json is moving to the job events' schema (docs/events.md, issue 13): both shapes are read
    const connects = events.filter((event) => (event.kind ?? event.type) === 'connect');
    const destination = (event: Record<string, any>) => (event.socket ? `${event.socket.ip}:${event.socket.port}` : `${event.address}:${event.port}`);
    const execs = events
      .filter((event) => event.kind === 'process' || event.type === 'exec')
      .map((event: Record<string, any>) => String(event.process?.exe ?? event.filename));
    // the job's loopback step, and nothing but loopback
    expect(connects.map(destination)).toEqual(['127.0.0.1:9']);
    expect(events.flatMap((event) => addressesIn(event)).filter((ip) => !isLoopback(ip))).toEqual([]);
    // no resolver was started: a lookup would ask the host's DNS server
    expect(execs).toContain('/usr/bin/uname');
    expect(execs.filter((exe) => /node|getent/.test(exe))).toEqual([]);
  });
});
