/** The job events both writers share: builders, the envelope, agentId and sequence. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { detectionEvent, dnsEvent, EventAgent, JobEventWriter, jobStartedEvent, networkEvent, processEvent, sensorJobEvent, THIS_AGENT, type JobEvent } from '../../src/jobs/job-events';
import { OutputFile } from '../../src/jobs/output';
import type { DetectionEvent, EgressEvent, ExecEvent, SensorEvent } from '../../src/sensor/events';
import { FULL_IDENTITY, sensorRecords, unitTree } from './events-doc';

function tempOutput(): { out: OutputFile; lines: () => Record<string, unknown>[] } {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ringfence-je-')), 'events.jsonl');
  return {
    out: OutputFile.open(file, '--events'),
    lines: () =>
      fs
        .readFileSync(file, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line)),
  };
}

const started = (job: string): JobEvent => jobStartedEvent(job, '2026-11-26T13:19:22.474Z', ['true'], { name: null });
const record = <T extends SensorEvent['type']>(type: T) => sensorRecords().find((r) => r.type === type) as Extract<SensorEvent, { type: T }>;

describe('JobEventWriter', () => {
  it('writes kind, time and job first, then the identity, agentId and sequence, then the event', () => {
    const { out, lines } = tempOutput();
    const agent = new EventAgent('agent-1');
    const writer = new JobEventWriter(out, { identity: FULL_IDENTITY, agent });
    writer.write(started('run-a'));
    writer.close();
    const [line] = lines();
    expect(Object.keys(line)).toEqual(['kind', 'time', 'job', 'org', 'repo', 'workflow', 'jobName', 'runId', 'runAttempt', 'runner', 'host', 'cluster', 'agentId', 'sequence', 'phase', 'command', 'policy']);
    expect(line).toMatchObject({ kind: 'job', job: 'run-a', agentId: 'agent-1', sequence: 1, runAttempt: 2, policy: null });
  });

  it('numbers events 1, 2, 3… per agent across its jobs, in write order', () => {
    const a = tempOutput();
    const b = tempOutput();
    const agent = new EventAgent();
    const first = new JobEventWriter(a.out, { agent });
    const second = new JobEventWriter(b.out, { agent });
    first.write(started('run-a'));
    second.write(started('run-b'));
    first.write(started('run-a'));
    first.close();
    second.write(started('run-b'));
    second.close();
    expect(a.lines().map((e) => e.sequence)).toEqual([1, 3]);
    expect(b.lines().map((e) => e.sequence)).toEqual([2, 4]);
    expect(new Set([...a.lines(), ...b.lines()].map((e) => e.agentId))).toEqual(new Set([agent.id]));
  });

  it('this process is one agent: writers without one share its id and sequence', () => {
    const a = tempOutput();
    const b = tempOutput();
    new JobEventWriter(a.out).write(started('run-a'));
    new JobEventWriter(b.out).write(started('run-b'));
    const [x] = a.lines();
    const [y] = b.lines();
    expect([x.agentId, y.agentId]).toEqual([THIS_AGENT.id, THIS_AGENT.id]);
    expect(x.agentId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(y.sequence).toBe((x.sequence as number) + 1);
  });

  it('writes nothing after close, and numbers nothing it does not write', () => {
    const { out, lines } = tempOutput();
    const agent = new EventAgent();
    const writer = new JobEventWriter(out, { agent });
    expect(new JobEventWriter(undefined, { agent }).write(started('run-x'))).toBeUndefined();
    writer.write(started('run-a'));
    writer.close();
    expect(writer.closed).toBe(true);
    expect(writer.write(started('run-a'))).toBeUndefined();
    expect(lines().map((e) => e.sequence)).toEqual([1]);
    expect(agent.next()).toBe(2);
  });
});

describe('builders', () => {
  it('policy is the name or null, with the version apart', () => {
    const tree = unitTree();
    const egress = record('egress') as EgressEvent;
    expect(networkEvent('j', { name: 'curl-test', version: 3 }, tree, egress, 'x.test')).toMatchObject({ policy: 'curl-test', policyVersion: 3, domain: 'x.test' });
    const audit = networkEvent('j', { name: null }, tree, egress, undefined);
    expect(audit.policy).toBeNull();
    expect('policyVersion' in JSON.parse(JSON.stringify(audit))).toBe(false);
    const query = { name: 'a.test', type: 'A', verdict: 'audited' as const, answers: ['198.18.0.9'], rcode: 'NOERROR', transport: 'udp' as const };
    expect(dnsEvent('j', { name: 'p', version: 1 }, query, new Date(0), undefined)).toMatchObject({ kind: 'dns', time: '1970-01-01T00:00:00.000Z', policy: 'p', policyVersion: 1, transport: 'udp' });
    expect(jobStartedEvent('j', 't', ['x'], { name: 'p', version: 7 }, 'audit')).toEqual({ kind: 'job', time: 't', job: 'j', phase: 'started', command: ['x'], policy: 'p', policyVersion: 7, mode: 'audit' });
  });

  it('trace and run build an exec the same way: kind process', () => {
    const exec = record('exec') as ExecEvent;
    expect(sensorJobEvent('j', { name: null }, unitTree(), exec)).toEqual(processEvent('j', unitTree(), exec));
    expect(processEvent('j', unitTree(), exec)).toMatchObject({ kind: 'process', container: { inContainer: true, privileged: true } });
  });

  it('the sensor records become documented kinds with the process that did it', () => {
    const tree = unitTree();
    tree.get(100); // the parent, known as a job process
    const process = { pid: 101, ppid: 100, exe: '/usr/bin/curl', argv: ['curl', 'x'], uid: 0, ancestry: ['/usr/bin/curl', '/usr/bin/bash'] };
    const built = sensorRecords()
      .filter((r) => r.type !== 'exec' && r.type !== 'detection' && r.type !== 'egress')
      .map((r) => sensorJobEvent('j', { name: null }, tree, r));
    const time = '2026-11-26T13:19:22.000Z';
    expect(built).toEqual([
      { kind: 'fork', time, job: 'j', process, child: { pid: 102 } },
      { kind: 'exit', time, job: 'j', process, exitCode: 0, signal: null },
      { kind: 'exit', time, job: 'j', process, exitCode: null, signal: 'SIGKILL' },
      { kind: 'connect', time, job: 'j', process, fd: 3, socket: { family: 'inet', socketType: 'stream', ip: '198.18.0.9', port: 443, protocol: 'tcp' }, errno: 115 },
      { kind: 'connect', time, job: 'j', process, fd: 4, socket: { family: 'unix', socketType: 'stream' }, errno: 0 },
      { kind: 'ptrace', time, job: 'j', process, request: 'PTRACE_ATTACH', target: { pid: 100 } },
      { kind: 'process_vm', time, job: 'j', process, operation: 'read', target: { pid: 100 } },
      { kind: 'proc_mem_open', time, job: 'j', process, target: { pid: 100 }, fd: 5, self: false, writable: false },
      { kind: 'stdio_dup', time, job: 'j', process, fd: 0, socket: { family: 'inet', socketType: 'stream', ip: '198.18.0.9', port: 4444, protocol: 'tcp' } },
      { kind: 'shell_on_ipc', time, job: 'j', process, action: 'audited', stdio: [{ ipc: 'pipe', peerInode: 77 }, { ipc: 'unix', peerInode: 78 }, { ipc: 'none', peerInode: 0 }] },
    ]);
  });

  it('Agent-Tamper names ringfence as its target, with the signal or the ptrace request', () => {
    const tamper = sensorRecords().filter((r): r is DetectionEvent => r.type === 'detection' && r.detection === 'Agent-Tamper');
    const [signal, ptrace] = tamper.map((d) => detectionEvent('j', null, unitTree(), d));
    expect(signal).toMatchObject({ detection: 'Agent-Tamper', via: 'signal', action: 'killed', policy: null, target: { pid: 4242, exe: '/usr/bin/node', signal: 19 } });
    expect(ptrace).toMatchObject({ via: 'ptrace', target: { pid: 4242, ptraceRequest: 16 } });
    expect(ptrace.target).not.toHaveProperty('signal');
  });
});
