/**
 * A job session's decisions, with doubles for everything it is given
 * (SessionDeps): what reaches the kernel, what each event becomes, how the
 * job ends and what it exits with. The privileged end-to-end tests are the
 * contract tests of the real parts (test/e2e).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { OutputFile } from '../../src/jobs/output';
import { EXIT } from '../../src/jobs/exit-status';
import type { DnsProxyAddress } from '../../src/enforce/egress';
import type { DnsProxyOptions } from '../../src/dns/proxy';
import type { Relay } from '../../src/jobs/relay';
import { parsePolicy, type Policy } from '../../src/policy/policy';
import type { DetectionEvent, EgressEvent, EventBase, ExecEvent, SensorEvent, ShellOnIpcEvent } from '../../src/sensor/events';
import { ProcessTree } from '../../src/sensor/process-tree';
import type { DetectionName } from '../../src/sensor/events';
import { JobSession, RELAY_WAIT_MS, type JobCgroup, type JobSpec, type SessionDeps } from '../../src/jobs/session';

const JOB_CGROUP = 4242;
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

/** Everything a session did to the world, in order. */
type Call = string;

class World {
  readonly calls: Call[] = [];
  kills = 0;
  droppedNow = 0;
  tamperedNow = false;
  relay: (event: ShellOnIpcEvent, attempt: number) => { relay?: Relay; holders: number } = () => ({ holders: 0 });
  relayLooks = 0;
  resumeAnswer: () => ReturnType<SessionDeps['resumeAfterPtraceKill']> = () => 'resumed';
  egressFails = false;
  unrecorded: EgressEvent[] = [];
  learned: string[] = [];
  proxyOptions: DnsProxyOptions | undefined;
  dnsAddress: DnsProxyAddress | undefined;
  /** cgroup.kill calls still to fail (EBUSY) */
  killFailures = 0;
  /** egress.remove, lockdown.remove and the proxy's close fail (release must go on regardless) */
  removalFails = false;
  readonly tree = new ProcessTree(() => undefined);

  readonly cgroup: JobCgroup = {
    id: JOB_CGROUP,
    path: '/sys/fs/cgroup/ringfence/jobs/run-test',
    allProcs: () => [100, 101],
    kill: async () => {
      this.calls.push('cgroup.kill');
      if (this.killFailures > 0) {
        this.killFailures--;
        throw new Error('EBUSY');
      }
    },
  };

  deps(): SessionDeps {
    return {
      startEgress: (cgroup, policy: Policy, dns: DnsProxyAddress) => {
        this.calls.push(`egress.start ${cgroup.id} ${policy.egressPolicy} ${policy.allowedEndpoints.map((e) => e.text).join(',')} dns:${dns.port}`);
        this.dnsAddress = dns;
        if (this.egressFails) throw new Error('map full');
        return {
          policyId: 7,
          learn: (address, ports) => void this.learned.push(`${address.bytes.join('.')}:${ports.join('/')}`),
          unrecordedRepeats: () => {
            this.calls.push('egress.unrecordedRepeats');
            return this.unrecorded;
          },
          remove: () => {
            this.calls.push('egress.remove');
            if (this.removalFails) throw new Error('bpf map busy');
          },
        };
      },
      startLockdown: (cgroupId, detections: DetectionName[]) => {
        this.calls.push(`lockdown.start ${cgroupId} ${detections.join(',')}`);
        return {
          kills: () => {
            this.calls.push('lockdown.kills');
            return this.kills;
          },
          remove: () => {
            this.calls.push('lockdown.remove');
            if (this.removalFails) throw new Error('lockdown map busy');
          },
        };
      },
      startDnsProxy: async (options) => {
        this.proxyOptions = options;
        this.calls.push('dns.start');
        return {
          port: 5353,
          settled: async () => void this.calls.push('dns.settled'),
          close: async () => {
            this.calls.push('dns.close');
            if (this.removalFails) throw new Error('socket already closed');
          },
        };
      },
      tree: this.tree,
      clockOffsetMs: 0,
      tampered: () => this.tamperedNow,
      droppedRecords: () => this.droppedNow,
      lookForRelay: (event) => this.relay(event, ++this.relayLooks),
      resumeAfterPtraceKill: (offender, target, seized) => {
        this.calls.push(`resume ${offender} ${target} ${seized}`);
        return this.resumeAnswer();
      },
      signal: (pid, signal) => void this.calls.push(`signal ${pid} ${signal}`),
      sleep: async () => undefined,
      now: () => new Date('2026-12-03T12:00:00.000Z'),
    };
  }
}

function spec(policyText: string, extra: Partial<JobSpec> = {}): { spec: JobSpec; eventsFile: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringfence-session-'));
  dirs.push(dir);
  const eventsFile = path.join(dir, 'events.jsonl');
  return {
    eventsFile,
    spec: {
      id: 'run-test',
      command: ['/bin/true'],
      policy: parsePolicy(policyText),
      policyName: 'p',
      events: OutputFile.open(eventsFile, '--events'),
      dnsUpstream: { host: '127.0.0.1', port: 53 },
      ...extra,
    },
  };
}

const readEvents = (file: string) =>
  fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record<string, unknown>);

const base = (tgid: number, extra: Partial<EventBase> = {}): EventBase => ({ ktimeNs: 1, timeMs: 1, cgroupId: JOB_CGROUP, jobCgroupId: JOB_CGROUP, pid: tgid, tgid, ppid: 1, uid: 0, comm: 'bash', ...extra });

const exec = (tgid: number): ExecEvent => ({
  ...base(tgid),
  type: 'exec',
  filename: '/bin/bash',
  filenameTruncated: false,
  argv: ['bash'],
  argc: 1,
  argsTruncated: false,
  container: { pidnsLevel: 0, mntnsInum: 1, mntnsNotInit: false, usernsInum: 1, usernsInit: true, seccompMode: 0, capEffective: 0n, capPermitted: 0n },
  stdio: [{ kind: 'none' }, { kind: 'none' }, { kind: 'none' }],
});

const detection = (tgid: number, extra: Partial<DetectionEvent>): DetectionEvent => ({
  ...base(tgid),
  type: 'detection',
  detection: 'Runner-Worker-Memory-Read',
  action: 'killed',
  refused: false,
  hook: 'proc_mem_open',
  targetCgroupId: 0,
  targetTgid: 77,
  ptraceRequest: 0,
  fd: -1,
  peer: { family: 'inet', address: '', port: 0 },
  capEffective: 0n,
  pidnsLevel: 0,
  ...extra,
});

const egressEvent = (address: string, verdict: EgressEvent['verdict'], count = 1): EgressEvent => ({
  ...base(100),
  type: 'egress',
  hook: 'connect',
  verdict,
  socketType: 1,
  protocol: 6,
  policyId: 7,
  count,
  family: 'inet',
  address,
  port: 443,
});

const heldShell = (tgid: number, action: ShellOnIpcEvent['action'] = 'held'): ShellOnIpcEvent => ({
  ...base(tgid),
  type: 'shell_on_ipc',
  action,
  stdio: [
    { ipc: 'pipe', peerInode: 11 },
    { ipc: 'pipe', peerInode: 12 },
    { ipc: 'pipe', peerInode: 12 },
  ],
});

const END = { exitCode: 0, signal: null };
const drained = (world: World) => async () => void world.calls.push('drain');

describe('a job session starts', () => {
  it('with the DNS proxy first, then the egress policy (redirecting DNS to the proxy, service endpoints added) and lockdown, then the started event', async () => {
    const world = new World();
    const { spec: s, eventsFile } = spec('egress-policy: block\nallowed-endpoints: a.example.com:443\nlockdown-mode:\n  enabled: true\n  detections:\n    - Reverse-Shell\n    - Privileged-Container\n', {
      serviceEndpoints: parsePolicy('egress-policy: block\nallowed-endpoints: store.example.net:8443\n').allowedEndpoints,
    });
    const session = await JobSession.start(s, world.cgroup, world.deps());
    expect(world.calls).toEqual([
      'dns.start',
      `egress.start ${JOB_CGROUP} block a.example.com:443,store.example.net:8443 dns:5353`,
      `lockdown.start ${JOB_CGROUP} Reverse-Shell,Privileged-Container,Cgroup-Escape`,
    ]);
    expect(world.proxyOptions!.mode).toBe('block');
    expect(world.proxyOptions!.clientPids!()).toEqual([100, 101]);
    await session.release();
    expect(readEvents(eventsFile).map((e) => [e.kind, e.phase, e.command])).toEqual([['job', 'started', ['/bin/true']]]);
  });

  it('undoes what it did when the egress policy cannot be set, and says why', async () => {
    const world = new World();
    world.egressFails = true;
    const { spec: s } = spec('egress-policy: block\n');
    await expect(JobSession.start(s, world.cgroup, world.deps())).rejects.toThrow('map full');
    expect(world.calls).toEqual(['dns.start', `egress.start ${JOB_CGROUP} block  dns:5353`, 'cgroup.kill', 'dns.close']);
  });
});

describe('a job session judges its events', () => {
  it('learns an allowed answer into the kernel and names its address in the network event', async () => {
    const world = new World();
    const { spec: s, eventsFile } = spec('egress-policy: block\nallowed-endpoints: a.example.com:443\n');
    const session = await JobSession.start(s, world.cgroup, world.deps());
    world.proxyOptions!.learn([{ family: 4, bytes: Uint8Array.from([192, 0, 2, 1]) }], [443]);
    world.proxyOptions!.record({ name: 'a.example.com', type: 'A', verdict: 'allowed', answers: ['192.0.2.1'], time: new Date(0), rcode: 'NOERROR' } as never);
    session.handle([egressEvent('192.0.2.1', 'allowed'), egressEvent('192.0.2.9', 'blocked')]);
    const result = await session.finish(END, drained(world));
    expect(world.learned).toEqual(['192.0.2.1:443']);
    const network = readEvents(eventsFile).filter((e) => e.kind === 'network');
    expect(network.map((e) => [e.ip, e.domain, e.verdict])).toEqual([
      ['192.0.2.1', 'a.example.com', 'allowed'],
      ['192.0.2.9', undefined, 'blocked'],
    ]);
    expect([result.blocked, result.exitStatus, result.reason]).toEqual([1, EXIT.BLOCKED, 'blocked']);
  });

  it('does not name addresses of a refused name (nothing to build an allow-list from)', async () => {
    const world = new World();
    const { spec: s, eventsFile } = spec('egress-policy: block\n');
    const session = await JobSession.start(s, world.cgroup, world.deps());
    world.proxyOptions!.record({ name: 'evil.example.org', type: 'A', verdict: 'blocked', answers: ['192.0.2.66'], time: new Date(0), rcode: 'NXDOMAIN' } as never);
    session.handle([egressEvent('192.0.2.66', 'blocked')]);
    await session.finish(END, drained(world));
    expect(readEvents(eventsFile).find((e) => e.kind === 'network')!.domain).toBeUndefined();
  });

  it('counts exec events as the job processes', async () => {
    const world = new World();
    const { spec: s, eventsFile } = spec('egress-policy: audit\n');
    const session = await JobSession.start(s, world.cgroup, world.deps());
    session.handle([exec(100), exec(101), exec(102)]);
    const result = await session.finish(END, drained(world));
    expect(readEvents(eventsFile).filter((e) => e.kind === 'process')).toHaveLength(3);
    expect(result.summaryText).toContain('3 processes');
    expect(result.exitStatus).toBe(0);
  });

  it('a kernel kill ends the whole job at once and the run with the lockdown status', async () => {
    const world = new World();
    const { spec: s } = spec('egress-policy: audit\n');
    const session = await JobSession.start(s, world.cgroup, world.deps());
    session.handle([detection(100, {})]);
    expect(world.calls.at(-1)).toBe('cgroup.kill');
    world.kills = 1;
    const result = await session.finish(END, drained(world));
    expect(result.killedBy).toEqual(['Runner-Worker-Memory-Read by bash (pid 100)']);
    expect([result.exitStatus, result.reason]).toEqual([EXIT.LOCKDOWN, 'lockdown']);
  });

  it('an audited detection is recorded and ends nothing', async () => {
    const world = new World();
    const { spec: s, eventsFile } = spec('egress-policy: audit\n');
    const session = await JobSession.start(s, world.cgroup, world.deps());
    const before = world.calls.length;
    session.handle([detection(100, { action: 'audited' })]);
    expect(world.calls.length).toBe(before);
    const result = await session.finish(END, drained(world));
    expect(readEvents(eventsFile).filter((e) => e.kind === 'detection').map((e) => e.action)).toEqual(['audited']);
    expect([result.killedBy, result.exitStatus]).toEqual([[], 0]);
  });

  it('resumes the target a killed tracer left stopped, and a target still stopped is a failure of ringfence', async () => {
    const world = new World();
    world.resumeAnswer = () => 'stopped';
    const { spec: s } = spec('egress-policy: audit\n');
    const session = await JobSession.start(s, world.cgroup, world.deps());
    world.tree.observe({ ...exec(77), filename: '/opt/runner/bin/Runner.Worker' }); // the protected process, as the sensor saw it start
    session.handle([detection(100, { hook: 'ptrace', ptraceRequest: 0x4206, targetTgid: 77 })]);
    expect(world.calls).toContain('resume 100 77 true');
    world.kills = 1;
    const result = await session.finish(END, drained(world));
    expect(result.agentFailures).toEqual(['/opt/runner/bin/Runner.Worker (pid 77) is still stopped after its tracer was killed']);
    // lockdown's word wins over ringfence's failure
    expect(result.reason).toBe('lockdown');
  });
});

describe('a held shell', () => {
  const relay: Relay = { pid: 300, exe: '/usr/bin/nc', ip: '192.0.2.5', port: 4444, fd: 3 };

  it('with a relay to a remote host is killed with its job: Reverse-Shell', async () => {
    const world = new World();
    world.relay = () => ({ relay, holders: 1 });
    const { spec: s, eventsFile } = spec('egress-policy: audit\n');
    const session = await JobSession.start(s, world.cgroup, world.deps());
    session.handle([heldShell(200)]);
    const result = await session.finish(END, drained(world));
    expect(world.calls).toContain('signal 200 SIGKILL');
    expect(world.calls).not.toContain('signal 200 SIGCONT');
    expect(result.killedBy).toEqual(['Reverse-Shell by bash (pid 200) through /usr/bin/nc (pid 300)']);
    expect(readEvents(eventsFile).filter((e) => e.kind === 'detection').map((e) => [e.detection, e.action])).toEqual([['Reverse-Shell', 'killed']]);
  });

  it('without any holder of its output is let go at once', async () => {
    const world = new World();
    const { spec: s } = spec('egress-policy: audit\n');
    const session = await JobSession.start(s, world.cgroup, world.deps());
    session.handle([heldShell(200)]);
    const result = await session.finish(END, drained(world));
    expect(world.relayLooks).toBe(1);
    expect(world.calls.filter((c) => c.startsWith('signal'))).toEqual(['signal 200 SIGCONT']);
    expect(result.killedBy).toEqual([]);
  });

  it('whose pipeline is still connecting is looked at again for half a second, then let go', async () => {
    const world = new World();
    world.relay = () => ({ holders: 2 });
    const { spec: s } = spec('egress-policy: audit\n');
    const session = await JobSession.start(s, world.cgroup, world.deps());
    session.handle([heldShell(200)]);
    await session.finish(END, drained(world));
    expect(world.relayLooks).toBe(RELAY_WAIT_MS / 10 + 1);
    expect(world.calls.filter((c) => c.startsWith('signal'))).toEqual(['signal 200 SIGCONT']);
  });

  it('found on a later look is killed', async () => {
    const world = new World();
    world.relay = (_event, attempt) => (attempt < 3 ? { holders: 1 } : { relay, holders: 1 });
    const { spec: s } = spec('egress-policy: audit\n');
    const session = await JobSession.start(s, world.cgroup, world.deps());
    session.handle([heldShell(200)]);
    const result = await session.finish(END, drained(world));
    expect(world.relayLooks).toBe(3);
    expect(result.killedBy).toHaveLength(1);
  });

  it('in audit mode (not held) is reported, not killed', async () => {
    const world = new World();
    world.relay = () => ({ relay, holders: 1 });
    const { spec: s, eventsFile } = spec('egress-policy: audit\n');
    const session = await JobSession.start(s, world.cgroup, world.deps());
    session.handle([heldShell(200, 'audited')]);
    const result = await session.finish(END, drained(world));
    expect(world.calls.filter((c) => c.startsWith('signal'))).toEqual([]);
    expect(result.killedBy).toEqual([]);
    expect(readEvents(eventsFile).filter((e) => e.kind === 'detection').map((e) => e.action)).toEqual(['audited']);
  });

  it('that cannot be judged is let go, and the failure is the job result', async () => {
    const world = new World();
    world.relay = () => {
      throw new Error('EACCES reading /proc');
    };
    const { spec: s } = spec('egress-policy: audit\n');
    const session = await JobSession.start(s, world.cgroup, world.deps());
    session.handle([heldShell(200)]);
    const result = await session.finish(END, drained(world));
    expect(world.calls.filter((c) => c.startsWith('signal'))).toEqual(['signal 200 SIGCONT']);
    expect(result.agentFailures).toEqual(['judging shell 200: EACCES reading /proc']);
    expect([result.exitStatus, result.reason]).toEqual([EXIT.AGENT_FAILURE, 'agent-failure']);
  });
});

describe('a job session ends', () => {
  it('in order: its judgements and DNS records settle, its processes die, the sensor drains, then its policy leaves the kernel', async () => {
    const world = new World();
    const { spec: s } = spec('egress-policy: block\n');
    const session = await JobSession.start(s, world.cgroup, world.deps());
    world.calls.length = 0;
    await session.finish(END, drained(world));
    expect(world.calls).toEqual(['dns.settled', 'cgroup.kill', 'drain', 'egress.unrecordedRepeats', 'egress.remove', 'lockdown.kills', 'lockdown.remove']);
  });

  it('counts the folded repeats the kernel never sent a record for', async () => {
    const world = new World();
    world.unrecorded = [egressEvent('192.0.2.9', 'blocked', 4)];
    const { spec: s } = spec('egress-policy: block\n');
    const session = await JobSession.start(s, world.cgroup, world.deps());
    const result = await session.finish(END, drained(world));
    expect(result.blocked).toBe(4);
  });

  it('says the kills whose records were lost, and a tamper the kernel saw', async () => {
    const world = new World();
    const { spec: s } = spec('egress-policy: audit\n');
    const session = await JobSession.start(s, world.cgroup, world.deps());
    world.kills = 2;
    world.tamperedNow = true;
    const result = await session.finish(END, drained(world));
    expect(result.killedBy).toEqual(['Agent-Tamper by a job process (its record was lost)', '1 offender(s) whose detection record was lost']);
    expect(result.reason).toBe('lockdown');
  });

  it('counts only the records dropped while it ran', async () => {
    const world = new World();
    world.droppedNow = 10;
    const { spec: s } = spec('egress-policy: audit\n');
    const session = await JobSession.start(s, world.cgroup, world.deps());
    world.droppedNow = 13;
    const result = await session.finish(END, drained(world));
    expect(result.agentFailures).toEqual(['3 sensor records dropped (ring buffer full)']);
    expect(result.exitStatus).toBe(EXIT.AGENT_FAILURE);
  });

  it("exits with the command's status when nothing else applies, and interrupted when it was", async () => {
    const world = new World();
    const { spec: s } = spec('egress-policy: audit\n');
    const session = await JobSession.start(s, world.cgroup, world.deps());
    const result = await session.finish({ exitCode: 3, signal: null }, drained(world));
    expect([result.exitStatus, result.reason]).toEqual([3, 'command']);

    const other = new World();
    const second = await JobSession.start(spec('egress-policy: audit\n').spec, other.cgroup, other.deps());
    const interrupted = await second.finish({ exitCode: null, signal: 'SIGINT', interrupted: 'SIGINT' }, drained(other));
    expect([interrupted.reason, interrupted.interrupted]).toEqual(['interrupted', true]);
  });

  it('writes the completed event with its counts and exit status, and finishes once', async () => {
    const world = new World();
    const { spec: s, eventsFile } = spec('egress-policy: block\n');
    const session = await JobSession.start(s, world.cgroup, world.deps());
    session.handle([exec(100), egressEvent('192.0.2.9', 'blocked')]);
    await session.finish({ exitCode: 0, signal: null }, drained(world));
    const completed = readEvents(eventsFile).at(-1)!;
    expect(completed).toMatchObject({ kind: 'job', phase: 'completed', exitStatus: EXIT.BLOCKED, reason: 'blocked', counts: { processes: 1, blocked: 1 } });
    await expect(session.finish(END, drained(world))).rejects.toThrow('job run-test has already finished');
  });
});

// a SensorEvent list type check: the session takes any event and ignores what is not its business
const ignored: SensorEvent[] = [{ ...base(1), type: 'fork', childPid: 2, childTgid: 2 }];
it('ignores events that are not its business (fork, exit…) beyond the tree', async () => {
  const world = new World();
  const { spec: s, eventsFile } = spec('egress-policy: audit\n');
  const session = await JobSession.start(s, world.cgroup, world.deps());
  session.handle(ignored);
  await session.finish(END, drained(world));
  expect(readEvents(eventsFile).map((e) => e.kind)).toEqual(['job', 'job']);
});

/** An output that keeps what it was given; `accept` says whether the n-th write (from 1) got through. */
function captured(label: string, accept: (n: number) => boolean = () => true): { out: OutputFile; texts: string[] } {
  const texts: string[] = [];
  let n = 0;
  const out = OutputFile.stream(label, (text) => {
    n++;
    if (!accept(n)) return false;
    texts.push(text);
    return true;
  });
  return { out, texts };
}

const jsonLines = (texts: string[]) => texts.map((t) => JSON.parse(t) as Record<string, unknown>);
const headerOf = (summaryText: string) => summaryText.split('\n')[0];
/** A pid no process can have (pid_max is at most 2^22): the tree and /proc know nothing of it. */
const NO_SUCH_PID = 4_194_999;

describe('a job session starts with what the job is given', () => {
  it('sends DNS of the job to the proxy on loopback, both families', async () => {
    const world = new World();
    const session = await JobSession.start(spec('egress-policy: block\n').spec, world.cgroup, world.deps());
    expect([...world.dnsAddress!.ip4]).toEqual([127, 0, 0, 1]);
    expect([...world.dnsAddress!.ip6]).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    expect(world.dnsAddress!.port).toBe(5353);
    await session.release();
  });

  it("stamps every event with the job's identity", async () => {
    const world = new World();
    const events = captured('--events (stream)');
    const session = await JobSession.start(spec('egress-policy: audit\n', { events: events.out, identity: { host: 'runner-host-1', repo: 'octo/app' } }).spec, world.cgroup, world.deps());
    await session.finish(END, drained(world));
    const written = jsonLines(events.texts);
    expect(written.map((e) => [e.phase, e.host, e.repo])).toEqual([
      ['started', 'runner-host-1', 'octo/app'],
      ['completed', 'runner-host-1', 'octo/app'],
    ]);
  });
});

describe('a job session records its DNS answers', () => {
  it('once their asker is known, with the asking process, and counts them', async () => {
    const world = new World();
    world.tree.observe({ ...exec(100), filename: '/usr/bin/curl' });
    const events = captured('--events (stream)');
    const session = await JobSession.start(spec('egress-policy: audit\n', { events: events.out }).spec, world.cgroup, world.deps());
    world.proxyOptions!.record({ name: 'a.example.com', type: 'A', verdict: 'audited', answers: ['192.0.2.1'], time: new Date(0), rcode: 'NOERROR', asker: Promise.resolve(100) } as never);
    world.proxyOptions!.record({ name: 'b.example.com', type: 'A', verdict: 'audited', answers: [], time: new Date(0), rcode: 'NOERROR' } as never);
    const result = await session.finish(END, drained(world));
    const dns = jsonLines(events.texts).filter((e) => e.kind === 'dns');
    expect(dns.map((e) => [e.name, (e.process as { exe?: string } | undefined)?.exe])).toEqual([
      ['a.example.com', '/usr/bin/curl'],
      ['b.example.com', undefined],
    ]);
    expect(headerOf(result.summaryText)).toContain('2 DNS queries');
    expect(jsonLines(events.texts).at(-1)!.counts).toMatchObject({ dns: 2 });
  });
});

describe('a job session reports what lockdown did', () => {
  it("names the offender by the exe the tree knows, not only by the record's comm", async () => {
    const world = new World();
    world.tree.observe({ ...exec(100), filename: '/usr/bin/gdb' });
    const session = await JobSession.start(spec('egress-policy: audit\n').spec, world.cgroup, world.deps());
    session.handle([detection(100, { targetTgid: NO_SUCH_PID })]);
    world.kills = 1;
    const result = await session.finish(END, drained(world));
    expect(result.killedBy).toEqual(['Runner-Worker-Memory-Read by /usr/bin/gdb (pid 100)']);
  });

  it('resumes a target left stopped by a PTRACE_ATTACH (not seized), and a resumed target is no failure', async () => {
    const world = new World();
    const events = captured('--events (stream)');
    const session = await JobSession.start(spec('egress-policy: audit\n', { events: events.out }).spec, world.cgroup, world.deps());
    session.handle([detection(100, { hook: 'ptrace', ptraceRequest: 0x10, targetTgid: NO_SUCH_PID })]);
    expect(world.calls).toContain(`resume 100 ${NO_SUCH_PID} false`);
    world.kills = 1;
    const result = await session.finish(END, drained(world));
    expect(result.agentFailures).toEqual([]);
    expect(jsonLines(events.texts).find((e) => e.kind === 'detection')!.targetAfterKill).toBe('resumed');
  });

  it('a target it cannot resume is a failure of ringfence, named even when its exe is unknown', async () => {
    const world = new World();
    world.resumeAnswer = () => {
      throw new Error('ESRCH');
    };
    const session = await JobSession.start(spec('egress-policy: audit\n').spec, world.cgroup, world.deps());
    session.handle([detection(100, { hook: 'ptrace', ptraceRequest: 0x4206, targetTgid: NO_SUCH_PID })]);
    world.kills = 1;
    const result = await session.finish(END, drained(world));
    expect(result.agentFailures).toEqual([`resuming the protected process (pid ${NO_SUCH_PID}) after its tracer was killed: ESRCH`]);
    expect(result.killedBy).toEqual(['Runner-Worker-Memory-Read by bash (pid 100)']);
    expect(result.reason).toBe('lockdown');
  });

  it('a still stopped target without a known exe is named as the protected process', async () => {
    const world = new World();
    world.resumeAnswer = () => 'stopped';
    const session = await JobSession.start(spec('egress-policy: audit\n').spec, world.cgroup, world.deps());
    session.handle([detection(100, { hook: 'ptrace', ptraceRequest: 0x4206, targetTgid: NO_SUCH_PID })]);
    world.kills = 1;
    const result = await session.finish(END, drained(world));
    expect(result.agentFailures).toEqual([`the protected process (pid ${NO_SUCH_PID}) is still stopped after its tracer was killed`]);
  });

  it('a kill of the job that fails is a failure of ringfence', async () => {
    const world = new World();
    world.killFailures = 1;
    const session = await JobSession.start(spec('egress-policy: audit\n').spec, world.cgroup, world.deps());
    session.handle([detection(100, { targetTgid: NO_SUCH_PID })]);
    world.kills = 1;
    const result = await session.finish(END, drained(world));
    expect(result.agentFailures).toEqual(['killing the job: EBUSY']);
    expect(result.reason).toBe('lockdown');
  });

  it('a recorded Agent-Tamper kill is not said twice when the kernel holds the job to have tampered', async () => {
    const world = new World();
    world.tamperedNow = true;
    const session = await JobSession.start(spec('egress-policy: audit\n').spec, world.cgroup, world.deps());
    session.handle([detection(100, { detection: 'Agent-Tamper', hook: 'signal', ptraceRequest: 9, targetTgid: NO_SUCH_PID })]);
    world.kills = 1;
    const result = await session.finish(END, drained(world));
    expect(result.killedBy).toEqual(['Agent-Tamper by bash (pid 100)']);
  });

  it('a tamper whose record was lost is said beside the other kills, in the summary line and the completed event', async () => {
    const world = new World();
    world.tamperedNow = true;
    const events = captured('--events (stream)');
    const session = await JobSession.start(spec('egress-policy: audit\n', { events: events.out }).spec, world.cgroup, world.deps());
    session.handle([detection(100, { targetTgid: NO_SUCH_PID })]);
    world.kills = 2;
    const result = await session.finish(END, drained(world));
    const killedBy = 'Runner-Worker-Memory-Read by bash (pid 100); Agent-Tamper by a job process (its record was lost)';
    expect(result.killedBy.join('; ')).toBe(killedBy);
    expect(jsonLines(events.texts).at(-1)).toMatchObject({ phase: 'completed', killedBy, exitStatus: EXIT.LOCKDOWN, reason: 'lockdown' });
    expect(headerOf(result.summaryText)).toBe(
      `ringfence: job run-test killed by lockdown: ${killedBy}; policy p (audit); 0 processes, 0 connections, 0 DNS queries, 0 blocked (ringfence exits ${EXIT.LOCKDOWN}: lockdown)`,
    );
  });
});

describe('a held shell, further', () => {
  const relay: Relay = { pid: 300, exe: '/usr/bin/nc', ip: '192.0.2.5', port: 4444, fd: 3 };

  it('in audit mode (not held) without a relay is left alone: it was never stopped', async () => {
    const world = new World();
    const session = await JobSession.start(spec('egress-policy: audit\n').spec, world.cgroup, world.deps());
    session.handle([heldShell(200, 'audited')]);
    const result = await session.finish(END, drained(world));
    expect(world.relayLooks).toBe(1);
    expect(world.calls.filter((c) => c.startsWith('signal'))).toEqual([]);
    expect(result.killedBy).toEqual([]);
  });

  it('in audit mode that cannot be judged is not signalled, and the failure is the job result', async () => {
    const world = new World();
    world.relay = () => {
      throw new Error('EACCES reading /proc');
    };
    const session = await JobSession.start(spec('egress-policy: audit\n').spec, world.cgroup, world.deps());
    session.handle([heldShell(200, 'audited')]);
    const result = await session.finish(END, drained(world));
    expect(world.calls.filter((c) => c.startsWith('signal'))).toEqual([]);
    expect(result.agentFailures).toEqual(['judging shell 200: EACCES reading /proc']);
  });

  it('killed through a relay names the relay in the summary line', async () => {
    const world = new World();
    world.relay = () => ({ relay, holders: 1 });
    const session = await JobSession.start(spec('egress-policy: audit\n').spec, world.cgroup, world.deps());
    session.handle([heldShell(200)]);
    const result = await session.finish(END, drained(world));
    expect(headerOf(result.summaryText)).toMatch(/^ringfence: job run-test killed by lockdown: Reverse-Shell by bash \(pid 200\) through \/usr\/bin\/nc \(pid 300\); /);
  });
});

describe('the end-of-job summary line', () => {
  const totals0 = '0 processes, 0 connections, 0 DNS queries, 0 blocked';

  it("says the command's exit code, and nothing of ringfence when nothing else applies", async () => {
    const world = new World();
    const session = await JobSession.start(spec('egress-policy: audit\n').spec, world.cgroup, world.deps());
    const result = await session.finish({ exitCode: 3, signal: null }, drained(world));
    expect(headerOf(result.summaryText)).toBe(`ringfence: job run-test exited 3; policy p (audit); ${totals0}`);
    expect([result.exitStatus, result.reason, result.interrupted, result.agentFailures]).toEqual([3, 'command', false, []]);
  });

  it('says exit 0 as 0, not as a signal', async () => {
    const world = new World();
    const session = await JobSession.start(spec('egress-policy: audit\n', { policyVersion: 4 }).spec, world.cgroup, world.deps());
    const result = await session.finish(END, drained(world));
    expect(headerOf(result.summaryText)).toBe(`ringfence: job run-test exited 0; policy p v4 (audit); ${totals0}`);
  });

  it('says the signal that ended the command', async () => {
    const world = new World();
    const session = await JobSession.start(spec('egress-policy: audit\n').spec, world.cgroup, world.deps());
    const result = await session.finish({ exitCode: null, signal: 'SIGKILL' }, drained(world));
    expect(headerOf(result.summaryText)).toBe(`ringfence: job run-test exited on SIGKILL; policy p (audit); ${totals0}`);
    expect([result.exitStatus, result.reason, result.interrupted]).toEqual([137, 'command', false]);
  });

  it('says the interrupt that ended the run', async () => {
    const world = new World();
    const session = await JobSession.start(spec('egress-policy: audit\n').spec, world.cgroup, world.deps());
    const result = await session.finish({ exitCode: null, signal: 'SIGTERM', interrupted: 'SIGTERM' }, drained(world));
    expect(headerOf(result.summaryText)).toBe(`ringfence: job run-test interrupted by SIGTERM; policy p (audit); ${totals0}`);
    expect([result.exitStatus, result.reason, result.interrupted]).toEqual([143, 'interrupted', true]);
  });

  it('says why ringfence exits 1 when block mode refused a request of a command that succeeded', async () => {
    const world = new World();
    const session = await JobSession.start(spec('egress-policy: block\n').spec, world.cgroup, world.deps());
    session.handle([egressEvent('192.0.2.9', 'blocked', 2)]);
    const result = await session.finish(END, drained(world));
    expect(headerOf(result.summaryText)).toBe(`ringfence: job run-test exited 0 (ringfence exits ${EXIT.BLOCKED}: 2 request(s) blocked); policy p (block); 0 processes, 2 connections, 0 DNS queries, 2 blocked`);
  });

  it('in audit mode counts what would have been blocked, but exits with the command status', async () => {
    const world = new World();
    const session = await JobSession.start(spec('egress-policy: audit\n').spec, world.cgroup, world.deps());
    session.handle([egressEvent('192.0.2.9', 'blocked')]);
    const result = await session.finish(END, drained(world));
    expect([result.blocked, result.exitStatus, result.reason]).toEqual([1, 0, 'command']);
    expect(headerOf(result.summaryText)).toBe('ringfence: job run-test exited 0; policy p (audit); 0 processes, 1 connections, 0 DNS queries, 1 blocked');
  });

  it("lists ringfence's failures, the dropped records and the status they give", async () => {
    const world = new World();
    const session = await JobSession.start(spec('egress-policy: audit\n').spec, world.cgroup, world.deps());
    session.agentFailure('reading the sensor: EIO');
    world.droppedNow = 3;
    const result = await session.finish(END, drained(world));
    expect(result.agentFailures).toEqual(['reading the sensor: EIO', '3 sensor records dropped (ring buffer full)']);
    expect(headerOf(result.summaryText)).toBe(
      `ringfence: job run-test exited 0; policy p (audit); ${totals0}, 3 events dropped; ringfence failed: reading the sensor: EIO; 3 sensor records dropped (ring buffer full) (ringfence exits ${EXIT.AGENT_FAILURE}: agent-failure)`,
    );
    expect([result.exitStatus, result.reason]).toEqual([EXIT.AGENT_FAILURE, 'agent-failure']);
  });
});

describe('the end-of-job report that cannot be written', () => {
  it('events lost on the way are a failure of ringfence, decided after the completed event said so', async () => {
    const world = new World();
    // the started event is lost, the completed one gets through
    const events = captured('--events (stream)', (n) => n > 1);
    const session = await JobSession.start(spec('egress-policy: audit\n', { events: events.out }).spec, world.cgroup, world.deps());
    const result = await session.finish(END, drained(world));
    expect(jsonLines(events.texts)).toEqual([expect.objectContaining({ phase: 'completed', lost: 1, exitStatus: 0, reason: 'command' })]);
    expect(result.agentFailures).toEqual(['1 event(s) not written to --events (stream) (the reader went away)']);
    expect([result.exitStatus, result.reason]).toEqual([EXIT.AGENT_FAILURE, 'agent-failure']);
  });

  it('events all written are no failure', async () => {
    const world = new World();
    const events = captured('--events (stream)');
    const session = await JobSession.start(spec('egress-policy: audit\n', { events: events.out }).spec, world.cgroup, world.deps());
    const result = await session.finish(END, drained(world));
    expect(jsonLines(events.texts).map((e) => e.phase)).toEqual(['started', 'completed']);
    expect(result.agentFailures).toEqual([]);
  });
});

describe('the summary file', () => {
  it('is markdown with the command, the outcome, the policy and the totals', async () => {
    const world = new World();
    const summary = captured('--summary (stream)');
    const { spec: s } = spec('egress-policy: block\n', { summary: summary.out, command: ['/bin/echo', 'hi'], policyVersion: 3 });
    const session = await JobSession.start(s, world.cgroup, world.deps());
    session.handle([exec(100), egressEvent('192.0.2.9', 'blocked')]);
    const result = await session.finish(END, drained(world));
    expect(summary.texts).toHaveLength(1);
    expect(summary.texts[0].split('\n').slice(0, 6)).toEqual([
      '# ringfence: /bin/echo hi',
      '',
      `- job \`run-test\` exited 0 (ringfence exits ${EXIT.BLOCKED}: 1 request(s) blocked)`,
      '- policy `p v3`, egress block',
      '- 1 processes, 1 connections, 0 DNS queries, 1 blocked',
      '',
    ]);
    expect([result.exitStatus, result.reason, result.agentFailures]).toEqual([EXIT.BLOCKED, 'blocked', []]);
    // closed with the job: nothing more gets in
    expect(summary.out.write('late\n')).toBe(false);
  });

  it('says the records dropped', async () => {
    const world = new World();
    const summary = captured('--summary (stream)');
    const session = await JobSession.start(spec('egress-policy: audit\n', { summary: summary.out }).spec, world.cgroup, world.deps());
    world.droppedNow = 2;
    await session.finish(END, drained(world));
    expect(summary.texts[0].split('\n').slice(2, 7)).toEqual([
      '- job `run-test` exited 0',
      '- policy `p`, egress audit',
      '- 0 processes, 0 connections, 0 DNS queries, 0 blocked',
      '- 2 sensor events dropped (ring buffer full)',
      '',
    ]);
  });

  it('not written is a failure of ringfence, though the completed event was written before it was known', async () => {
    const world = new World();
    const summary = captured('--summary (stream)', () => false);
    const events = captured('--events (stream)');
    const session = await JobSession.start(spec('egress-policy: audit\n', { summary: summary.out, events: events.out }).spec, world.cgroup, world.deps());
    const result = await session.finish(END, drained(world));
    expect(result.agentFailures).toEqual(['the summary was not written to --summary (stream) (the reader went away)']);
    expect([result.exitStatus, result.reason]).toEqual([EXIT.AGENT_FAILURE, 'agent-failure']);
    expect(jsonLines(events.texts).at(-1)).toMatchObject({ phase: 'completed', exitStatus: 0, reason: 'command' });
  });
});

describe('a job session released', () => {
  it('takes everything out and returns no failure', async () => {
    const world = new World();
    const events = captured('--events (stream)');
    const summary = captured('--summary (stream)');
    const session = await JobSession.start(spec('egress-policy: block\n', { events: events.out, summary: summary.out }).spec, world.cgroup, world.deps());
    world.calls.length = 0;
    expect(await session.release()).toEqual([]);
    expect(world.calls).toEqual(['cgroup.kill', 'egress.remove', 'lockdown.remove', 'dns.close']);
    // the outputs are closed: nothing more gets in
    expect(events.out.write('late\n')).toBe(false);
    expect(summary.out.write('late\n')).toBe(false);
  });

  it('goes through every step when each fails, and says each failure', async () => {
    const world = new World();
    const events = captured('--events (stream)');
    const summary = captured('--summary (stream)');
    events.out.close = () => {
      throw new Error('EIO on events');
    };
    summary.out.close = () => {
      throw new Error('EIO on summary');
    };
    const session = await JobSession.start(spec('egress-policy: block\n', { events: events.out, summary: summary.out }).spec, world.cgroup, world.deps());
    world.killFailures = 1;
    world.removalFails = true;
    expect(await session.release()).toEqual([
      'killing the job: EBUSY',
      'removing the egress policy: bpf map busy',
      'removing the lockdown settings: lockdown map busy',
      'stopping the DNS proxy: socket already closed',
      'writing the events: EIO on events',
      'closing the summary: EIO on summary',
    ]);
  });
});
