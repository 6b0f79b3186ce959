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
import { OutputFile } from '../../src/agent/output';
import { EXIT } from '../../src/agent/exit-status';
import type { DnsProxyAddress } from '../../src/enforce/egress';
import type { DnsProxyOptions } from '../../src/dns/proxy';
import type { Relay } from '../../src/agent/relay';
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
  readonly tree = new ProcessTree(() => undefined);

  readonly cgroup: JobCgroup = {
    id: JOB_CGROUP,
    path: '/sys/fs/cgroup/ringfence/jobs/run-test',
    allProcs: () => [100, 101],
    kill: async () => {
      this.calls.push('cgroup.kill');
    },
  };

  deps(): SessionDeps {
    return {
      startEgress: (cgroup, policy: Policy, dns: DnsProxyAddress) => {
        this.calls.push(`egress.start ${cgroup.id} ${policy.egressPolicy} ${policy.allowedEndpoints.map((e) => e.text).join(',')} dns:${dns.port}`);
        if (this.egressFails) throw new Error('map full');
        return {
          policyId: 7,
          learn: (address, ports) => void this.learned.push(`${address.bytes.join('.')}:${ports.join('/')}`),
          unrecordedRepeats: () => {
            this.calls.push('egress.unrecordedRepeats');
            return this.unrecorded;
          },
          remove: () => void this.calls.push('egress.remove'),
        };
      },
      startLockdown: (cgroupId, detections: DetectionName[]) => {
        this.calls.push(`lockdown.start ${cgroupId} ${detections.join(',')}`);
        return {
          kills: () => {
            this.calls.push('lockdown.kills');
            return this.kills;
          },
          remove: () => void this.calls.push('lockdown.remove'),
        };
      },
      startDnsProxy: async (options) => {
        this.proxyOptions = options;
        this.calls.push('dns.start');
        return {
          port: 5353,
          settled: async () => void this.calls.push('dns.settled'),
          close: async () => void this.calls.push('dns.close'),
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
