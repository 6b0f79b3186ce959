/**
 * The sensor against the real kernel: real processes in real cgroups, exact
 * events. Runs as root; a machine that cannot load the probes fails here.
 */
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import type { ConnectEvent, ExecEvent, SensorEvent } from '../../src/sensor/events';
import { fixture, useSensorAndJobs } from '../helpers/job';

const suite = useSensorAndJobs();
const newJob = suite.newJob;

function ofType<T extends SensorEvent['type']>(events: SensorEvent[], type: T): Extract<SensorEvent, { type: T }>[] {
  return events.filter((e): e is Extract<SensorEvent, { type: T }> => e.type === type);
}

/** A TCP server on a loopback address that accepts and holds connections. */
async function listen(host: string): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('exec', () => {
  it('reports the program, its argv and its process facts', async () => {
    const job = newJob();
    const result = await job.run('/bin/echo', ['hello', 'big world']);
    expect(result.stdout).toBe('hello big world\n');

    const execs = ofType(job.events(), 'exec');
    expect(execs).toHaveLength(1);
    const exec = execs[0];
    expect(exec.filename).toBe('/bin/echo');
    expect(exec.argv).toEqual(['/bin/echo', 'hello', 'big world']);
    expect(exec.argc).toBe(3);
    expect(exec.argsTruncated).toBe(false);
    expect(exec.tgid).toBe(result.pid);
    expect(exec.ppid).toBe(process.pid);
    expect(exec.uid).toBe(0);
    expect(exec.comm).toBe('echo');
    expect(exec.cgroupId).toBe(job.cgroup.id);
    expect(exec.container.pidnsLevel).toBe(0);
    expect(exec.container.usernsInit).toBe(true);
    expect(exec.container.mntnsNotInit).toBe(false);
    // root: CAP_SYS_ADMIN (bit 21) is effective
    expect(exec.container.capEffective & (1n << 21n)).toBe(1n << 21n);
    expect(exec.stdio.map((s) => s.kind)).toEqual(['other', 'other', 'other']);

    const exit = ofType(job.events(), 'exit').find((e) => e.tgid === result.pid);
    expect(exit?.exitCode).toBe(0);
  });

  it('bounds argv and says it truncated it', async () => {
    const job = newJob();
    const long = 'x'.repeat(3000);
    await job.run('/bin/true', [long, 'after']);
    const exec = ofType(job.events(), 'exec')[0] as ExecEvent;
    expect(exec.argsTruncated).toBe(true);
    expect(exec.argc).toBe(3);
    expect(exec.argv[0]).toBe('/bin/true');
    expect(exec.argv.join('\0').length).toBe(1024);
  });

  it('follows forks and exits through the process tree', async () => {
    const job = newJob();
    const result = await job.bash('/bin/sh -c "/bin/true; exit 3"; exit 0');
    const events = job.events();
    const execs = ofType(events, 'exec');
    expect(execs.map((e) => e.filename)).toEqual(['/bin/bash', '/bin/sh', '/bin/true']);
    const shExit = ofType(events, 'exit').find((e) => e.comm === 'sh');
    expect(shExit?.exitCode).toBe(3);
    const forks = ofType(events, 'fork');
    expect(forks.length).toBeGreaterThanOrEqual(2);
    const trueExec = execs[2];
    expect(suite.recorder().sensor.tree.ancestry(trueExec.tgid)).toEqual(['/bin/true', '/bin/sh', '/bin/bash']);
    expect(result.code).toBe(0);
  });

  it('reports a process started with a socket on its stdio', async () => {
    const server = await listen('127.0.0.1');
    try {
      const job = newJob();
      await job.bash(`exec 3<>/dev/tcp/127.0.0.1/${server.port}; exec 0<&3 1>&3; exec /bin/true`);
      const exec = ofType(job.events(), 'exec').find((e) => e.filename === '/bin/true');
      expect(exec).toBeDefined();
      expect(exec!.stdio[0]).toMatchObject({ kind: 'socket', socketType: 1, protocol: 6, peer: { family: 'inet', address: '127.0.0.1', port: server.port } });
      expect(exec!.stdio[1]).toMatchObject({ kind: 'socket', peer: { port: server.port } });
      expect(exec!.stdio[2].kind).toBe('other');
    } finally {
      await server.close();
    }
  });
});

describe('connect', () => {
  it('reports a TCP connect to 127.0.0.x with its result', async () => {
    const server = await listen('127.0.0.1');
    try {
      const job = newJob();
      const ok = await job.run(fixture('connect_to'), ['127.0.0.1', String(server.port)]);
      expect(ok.stdout).toBe('ok\n');
      const refused = await job.run(fixture('connect_to'), ['127.0.0.3', '1']);
      expect(refused.stdout).toBe('errno 111\n');

      const connects = ofType(job.events(), 'connect');
      expect(connects).toHaveLength(2);
      expect(connects[0]).toMatchObject({ family: 'inet', address: '127.0.0.1', port: server.port, errno: 0, protocol: 6, socketType: 1 });
      expect(connects[1]).toMatchObject({ family: 'inet', address: '127.0.0.3', port: 1, errno: 111 });
    } finally {
      await server.close();
    }
  });

  it('reports IPv6 (::1) and UDP connects', async () => {
    const server = await listen('::1');
    try {
      const job = newJob();
      await job.run(fixture('connect_to'), ['::1', String(server.port)]);
      await job.run(fixture('connect_to'), ['127.0.0.5', '5353', 'udp']);
      const connects = ofType(job.events(), 'connect') as ConnectEvent[];
      expect(connects[0]).toMatchObject({ family: 'inet6', address: '::1', port: server.port, errno: 0, protocol: 6 });
      expect(connects[1]).toMatchObject({ family: 'inet', address: '127.0.0.5', port: 5353, errno: 0, protocol: 17, socketType: 2 });
    } finally {
      await server.close();
    }
  });
});

describe('memory access', () => {
  it('reports ptrace attach on a sibling', async () => {
    const job = newJob();
    const result = await job.bash(`sleep 5 & target=$!; echo $target; ${fixture('ptrace_attach')} $target; kill -9 $target`);
    const [target, outcome] = result.stdout.trim().split('\n');
    expect(outcome).toBe('attached');
    const requests = ofType(job.events(), 'ptrace').map((e) => [e.requestName, e.targetPid]);
    expect(requests).toContainEqual(['PTRACE_ATTACH', Number(target)]);
    expect(requests).toContainEqual(['PTRACE_PEEKDATA', Number(target)]);
  });

  it('reports process_vm_readv and process_vm_writev on a sibling', async () => {
    const job = newJob();
    const result = await job.bash(`sleep 5 & target=$!; echo $target; ${fixture('vm_readv')} $target; ${fixture('vm_readv')} $target write; kill -9 $target`);
    const [target, read] = result.stdout.trim().split('\n');
    expect(read).toBe('read 8');
    const accesses = ofType(job.events(), 'vm_access');
    expect(accesses.map((e) => [e.targetPid, e.write])).toEqual([
      [Number(target), false],
      [Number(target), true],
    ]);
  });

  it('recognises /proc/PID/mem by the file, whatever the path', async () => {
    const job = newJob();
    const open = fixture('open_mem');
    const result = await job.bash(
      `sleep 5 & target=$!; echo $target; ${open} /proc/$target/mem; ${open} mem /proc/$target; ${open} /proc/self/mem; ${open} /proc/$target/maps; kill -9 $target`,
    );
    const lines = result.stdout.trim().split('\n');
    const target = Number(lines[0]);
    expect(lines.slice(1)).toEqual(['opened fd=3', 'opened fd=3', 'opened fd=3', 'opened fd=3']);
    const opens = ofType(job.events(), 'proc_mem_open');
    expect(opens.map((e) => [e.targetTgid === target, e.self, e.comm])).toEqual([
      [true, false, 'open_mem'],
      [true, false, 'open_mem'],
      [false, true, 'open_mem'],
    ]);
    // /proc/self/mem names the opener itself
    expect(opens[2].targetTgid).toBe(opens[2].tgid);
  });
});

describe('stdio', () => {
  it('reports a socket duplicated onto stdin and stdout (bash /dev/tcp)', async () => {
    const server = await listen('127.0.0.1');
    try {
      const job = newJob();
      await job.bash(`exec 3<>/dev/tcp/127.0.0.1/${server.port}; exec 0<&3 1>&3`);
      const dups = ofType(job.events(), 'stdio_dup');
      expect(dups.map((d) => d.fd)).toEqual([0, 1]);
      for (const dup of dups) {
        expect(dup.socket).toMatchObject({ kind: 'socket', protocol: 6, peer: { family: 'inet', address: '127.0.0.1', port: server.port } });
        expect(dup.comm).toBe('bash');
      }
    } finally {
      await server.close();
    }
  });

  it('does not report pipes or files duplicated onto stdio', async () => {
    const job = newJob();
    await job.bash('exec 3</dev/null; exec 0<&3; echo x | cat >/dev/null');
    expect(ofType(job.events(), 'stdio_dup')).toHaveLength(0);
  });
});

describe('scope', () => {
  it('reports nothing of processes outside tracked cgroups', async () => {
    const outside = newJob(false);
    const inside = newJob();
    const script = `/bin/echo outside; ${fixture('connect_to')} 127.0.0.1 1; sleep 5 & ${fixture('vm_readv')} $!; kill -9 $!`;
    const before = suite.recorder().events.length;
    const result = await outside.bash(script, false);
    // A tracked job afterwards proves the pipeline was flowing meanwhile.
    await inside.run('/bin/true');
    const pidsOutside = new Set([result.pid]);
    const leaked = suite.recorder().events.slice(before).filter((e) => e.cgroupId === outside.cgroup.id || pidsOutside.has(e.tgid));
    expect(leaked).toEqual([]);
    expect(ofType(inside.events(), 'exec')).toHaveLength(1);
  });

  it('counts per probe and drops nothing at this rate', () => {
    const stats = suite.recorder().sensor.stats();
    expect(stats.probes.exec.emitted).toBeGreaterThan(5);
    expect(stats.probes.exec.hits).toBeGreaterThanOrEqual(stats.probes.exec.seen);
    expect(stats.probes.connect.emitted).toBeGreaterThanOrEqual(4);
    expect(stats.dropped).toBe(0);
    expect(stats.decodeErrors).toBe(0);
  });
});
