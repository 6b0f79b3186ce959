/**
 * docs/events.md as data (the fields its tables list, per kind), the field
 * paths of written events, and a unit-built job: one event of every kind and
 * shape the code builds, through the real builders and writer. Shared by
 * test/unit/events-doc.test.ts and test/e2e/events.test.ts.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  detectionEvent,
  dnsEvent,
  EventAgent,
  jobCompletedEvent,
  JobEventWriter,
  jobStartedEvent,
  networkEvent,
  relayDetectionEvent,
  sensorJobEvent,
  type Written,
} from '../../src/jobs/job-events';
import { OutputFile } from '../../src/jobs/output';
import type { JobIdentity } from '../../src/jobs/identity';
import type { ContainerFacts, DetectionEvent, EventBase, SensorEvent } from '../../src/sensor/events';
import { ProcessTree, type ProcessInfo } from '../../src/sensor/process-tree';

export const EVENTS_DOC = path.resolve(__dirname, '../../docs/events.md');

export interface EventsDoc {
  /** Fields every event may have. */
  envelope: Set<string>;
  /** Per kind, its own fields. */
  kinds: Map<string, Set<string>>;
}

const fieldOfRow = (line: string) => /^\|\s*`([^`]+)`\s*\|/.exec(line)?.[1];

/** The "## Every event" table and each "### `kind`" table of the page. */
export function parseEventsDoc(text: string): EventsDoc {
  const envelope = new Set<string>();
  const kinds = new Map<string, Set<string>>();
  let into: Set<string> | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('## ')) into = line === '## Every event' ? envelope : undefined;
    const kind = /^### `([a-z_]+)`$/.exec(line)?.[1];
    if (kind) {
      into = new Set();
      kinds.set(kind, into);
    }
    const field = fieldOfRow(line);
    if (into && field) into.add(field);
  }
  return { envelope, kinds };
}

/** Dotted paths of an event's fields; `a[].b` for objects in arrays; arrays of plain values are one field. */
export function fieldPaths(value: unknown, prefix = ''): string[] {
  if (value === null || typeof value !== 'object') return prefix ? [prefix] : [];
  if (Array.isArray(value)) {
    const objects = value.filter((v) => v !== null && typeof v === 'object');
    if (objects.length === 0) return [prefix];
    const inner = objects.flatMap((v) => fieldPaths(v, `${prefix}[]`)).filter((p) => p !== `${prefix}[]`);
    return [prefix, ...new Set(inner)];
  }
  const paths = prefix ? [prefix] : [];
  for (const [key, child] of Object.entries(value)) paths.push(...fieldPaths(child, prefix ? `${prefix}.${key}` : key));
  return paths;
}

/** What an event writes that the doc does not list, as "kind: field". */
export function undocumented(doc: EventsDoc, events: { kind: string }[]): string[] {
  const missing = new Set<string>();
  for (const event of events) {
    const own = doc.kinds.get(event.kind);
    if (!own) {
      missing.add(`${event.kind}: (kind)`);
      continue;
    }
    for (const field of fieldPaths(event)) if (!doc.envelope.has(field) && !own.has(field)) missing.add(`${event.kind}: ${field}`);
  }
  return [...missing].sort();
}

const JOB = 'run-unit-1';
const AGENT_PID = 4242;
const CONTAINER: ContainerFacts = { pidnsLevel: 1, mntnsInum: 2, mntnsNotInit: true, usernsInum: 3, usernsInit: true, seccompMode: 0, capEffective: 1n << 21n, capPermitted: 1n << 21n };

function base(pid: number): EventBase {
  return { ktimeNs: 1, timeMs: Date.UTC(2026, 10, 26, 13, 19, 22), cgroupId: 9, jobCgroupId: 9, pid, tgid: pid, ppid: 100, uid: 0, comm: 'bash' };
}

function detection(name: DetectionEvent['detection'], hook: DetectionEvent['hook'], extra: Partial<DetectionEvent> = {}): DetectionEvent {
  return { ...base(101), type: 'detection', detection: name, action: 'killed', refused: false, hook, targetCgroupId: 0, targetTgid: 0, ptraceRequest: 0, fd: 0, peer: { family: 'inet', address: '', port: 0 }, capEffective: 0n, pidnsLevel: 0, ...extra };
}

/** One sensor record of every type, and of every shape a field can take. */
export function sensorRecords(): SensorEvent[] {
  const socket = { kind: 'socket' as const, socketType: 1, protocol: 6, peer: { family: 'inet' as const, address: '198.18.0.9', port: 4444 } };
  return [
    { ...base(101), type: 'exec', filename: '/usr/bin/curl', filenameTruncated: false, argv: ['curl', 'x'], argc: 2, argsTruncated: false, container: CONTAINER, stdio: [{ kind: 'other' }, { kind: 'other' }, { kind: 'other' }] },
    { ...base(101), type: 'fork', childPid: 102, childTgid: 102 },
    { ...base(101), type: 'exit', status: 0, exitCode: 0, signal: null },
    { ...base(101), type: 'exit', status: 9, exitCode: null, signal: 9 },
    { ...base(101), type: 'connect', fd: 3, errno: 115, family: 'inet', address: '198.18.0.9', port: 443, socketType: 1, protocol: 0 },
    { ...base(101), type: 'connect', fd: 4, errno: 0, family: 'unix', address: '', port: 0, socketType: 1, protocol: 0 },
    { ...base(101), type: 'ptrace', request: 16, requestName: 'PTRACE_ATTACH', targetPid: 100 },
    { ...base(101), type: 'vm_access', write: false, targetPid: 100 },
    { ...base(101), type: 'proc_mem_open', targetTgid: 100, fd: 5, self: false, writable: false },
    { ...base(101), type: 'stdio_dup', fd: 0, socket },
    { ...base(101), type: 'shell_on_ipc', action: 'audited', stdio: [{ ipc: 'pipe', peerInode: 77 }, { ipc: 'unix', peerInode: 78 }, { ipc: 'none', peerInode: 0 }] },
    { ...base(101), type: 'egress', hook: 'connect', verdict: 'blocked', socketType: 1, protocol: 6, policyId: 1, count: 1, family: 'inet', address: '198.18.0.9', port: 443 },
    detection('Runner-Worker-Memory-Read', 'ptrace', { targetTgid: 100 }),
    detection('Reverse-Shell', 'dup', { fd: 0, peer: { family: 'inet', address: '198.18.0.9', port: 4444 } }),
    detection('Privileged-Container', 'exec', { capEffective: 0x1fffffn, pidnsLevel: 1 }),
    detection('Cgroup-Escape', 'cgroup_open', { targetCgroupId: 1 }),
    detection('Agent-Tamper', 'signal', { targetTgid: AGENT_PID, ptraceRequest: 19 }),
    detection('Agent-Tamper', 'ptrace', { targetTgid: AGENT_PID, ptraceRequest: 16 }),
    detection('Agent-Tamper', 'seccomp', { targetTgid: AGENT_PID, ptraceRequest: 62, refused: true }),
  ];
}

/** A process tree that knows pids 100-102 without /proc. */
export function unitTree(): ProcessTree {
  const known: Record<number, ProcessInfo> = {
    100: { pid: 100, ppid: 1, exe: '/usr/bin/bash', argv: ['bash', 'job.sh'], uid: 0, jobCgroupId: 9, exited: false },
    101: { pid: 101, ppid: 100, exe: '/usr/bin/curl', argv: ['curl', 'x'], uid: 0, jobCgroupId: 9, exited: false },
    [AGENT_PID]: { pid: AGENT_PID, ppid: 1, exe: '/usr/bin/node', argv: ['node', 'ringfence', 'run'], uid: 0, jobCgroupId: 0, exited: false },
  };
  return new ProcessTree((pid) => (known[pid] ? { ...known[pid] } : undefined));
}

export const FULL_IDENTITY: JobIdentity = { org: 'acme', repo: 'acme/web', workflow: '.github/workflows/ci.yml', jobName: 'build', runId: '7012345678', runAttempt: 2, runner: 'runner-7', host: 'ci-3', cluster: 'arc-east' };

/**
 * Every kind and field shape the code writes, through the real builders and
 * the real writer into a file, read back as a reader would.
 */
export function unitBuiltJob(): Written[] {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringfence-events-'));
  const file = path.join(dir, 'events.jsonl');
  try {
    const writer = new JobEventWriter(OutputFile.open(file, '--events'), { identity: FULL_IDENTITY, agent: new EventAgent() });
    const tree = unitTree();
    const store = { name: 'curl-test', version: 3 };
    const time = '2026-11-26T13:19:22.474Z';
    writer.write(jobStartedEvent(JOB, time, ['bash', 'job.sh'], store, 'block'));
    for (const record of sensorRecords()) {
      tree.observe(record);
      writer.write(sensorJobEvent(JOB, store, tree, record));
    }
    const refused = sensorRecords().find((r) => r.type === 'egress')!;
    if (refused.type === 'egress') writer.write(networkEvent(JOB, store, tree, refused, 'allowed.test'));
    const answered = new Date(time);
    writer.write(dnsEvent(JOB, store, { name: 'allowed.test', type: 'A', verdict: 'allowed', answers: ['edge.cdn.test', '198.18.0.9'], rcode: 'NOERROR', transport: 'udp', ttl: 60 }, answered, { pid: 101, ppid: 100, exe: '/usr/bin/curl', argv: ['curl'], uid: 0, ancestry: ['/usr/bin/curl'] }));
    writer.write(dnsEvent(JOB, store, { name: 'down.test', type: 'AAAA', verdict: 'audited', answers: [], rcode: 'SERVFAIL', transport: 'tcp', error: 'upstream 127.0.0.1:53 did not answer' }, answered));
    const shell = sensorRecords().find((r) => r.type === 'shell_on_ipc')!;
    if (shell.type === 'shell_on_ipc') writer.write(relayDetectionEvent(JOB, null, tree, { ...shell, action: 'held' }, { pid: 103, exe: '/usr/bin/nc', ip: '198.18.0.9', port: 4444, fd: 1 }));
    const ptraceKill = detectionEvent(JOB, 'curl-test', tree, sensorRecords().find((r) => r.type === 'detection')! as DetectionEvent);
    writer.write({ ...ptraceKill, targetAfterKill: 'resumed' });
    writer.write(
      jobCompletedEvent(JOB, time, {
        status: { exitCode: null, signal: 'SIGKILL' },
        killedBy: 'Runner-Worker-Memory-Read by /usr/bin/curl (pid 101)',
        counts: { processes: 1, dns: 2, network: 2, blocked: 1, audited: 1, detections: 7 },
        dropped: 0,
        exitStatus: 172,
        reason: 'lockdown',
        lost: 0,
      }),
    );
    writer.close();
    return fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Written);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
