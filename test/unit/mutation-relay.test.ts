/**
 * The relay decision (src/jobs/relay.ts): which job process, if any, holds
 * the other end of a held shell's output and a remote TCP connection. Each
 * case is judged twice: by judgeRelay on the processes as plain data, and by
 * lookForRelay on a /proc laid out for it (fresh directory), so the table
 * rows share nothing and the reader and the judge are seen to agree.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { judgeRelay, lookForRelay, opensForReading, outputEnds, parseProcNetAddress, remotePeer, type ProcessFiles } from '../../src/jobs/relay';
import type { ShellOnIpcEvent } from '../../src/sensor/events';

describe('parseProcNetAddress', () => {
  it.each([
    ['0100007F:0050', '127.0.0.1', 80],
    ['076433C6:115C', '198.51.100.7', 4444],
    ['00000000:0000', '0.0.0.0', 0],
    ['FFFFFFFF:FFFF', '255.255.255.255', 65535],
    ['B80D0120000000000000000005000000:01BB', '2001:db8::5', 443],
    ['00000000000000000000000001000000:0035', '::1', 53],
    ['0000000000000000FFFF0000076433C6:1F90', '::ffff:198.51.100.7', 8080],
    ['000080FE000000000000000001000000:0016', 'fe80::1', 22],
  ])('%s is %s port %i', (text, ip, port) => {
    expect(parseProcNetAddress(text)).toEqual({ ip, port });
  });
});

const TCP_HEADER = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n';
/** One /proc/net/tcp{,6} line: fields[2] the remote end, [3] the state, [9] the inode. */
const tcpLine = (local: string, remote: string, state: string, inode: number) =>
  `   0: ${local} ${remote} ${state} 00000000:00000000 00:00000000 00000000  1001        0 ${inode} 1 0000000000000000 20 4 30 10 -1\n`;
const tcp4 = (remote: string, state: string, inode: number) => tcpLine('0200000A:9C40', remote, state, inode);
const tcp6 = (remote: string, state: string, inode: number) => tcpLine('00000000000000000000000001000000:9C40', remote, state, inode);

/** Remote ends in /proc/net/tcp notation. */
const REMOTE = '076433C6:115C'; // 198.51.100.7:4444
const LOOPBACK = '0100007F:115C'; // 127.0.0.1:4444

interface FakeProcess {
  /** Link target by descriptor; 'w:pipe:[N]' is a pipe opened write-only. */
  fds: string[];
  exe: string;
  tcp?: string;
  tcp6?: string;
}

const roots: string[] = [];
afterEach(() => {
  for (const root of roots.splice(0)) fs.rmSync(root, { recursive: true, force: true });
});

function fakeProc(processes: Record<number, FakeProcess>): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-relay-'));
  roots.push(root);
  for (const [pid, p] of Object.entries(processes)) {
    const dir = path.join(root, pid);
    fs.mkdirSync(path.join(dir, 'fd'), { recursive: true });
    fs.mkdirSync(path.join(dir, 'fdinfo'));
    fs.mkdirSync(path.join(dir, 'net'));
    p.fds.forEach((spec, fd) => {
      const writeOnly = spec.startsWith('w:');
      fs.symlinkSync(writeOnly ? spec.slice(2) : spec, path.join(dir, 'fd', String(fd)));
      // O_WRONLY is 01, O_RDWR 02, O_RDONLY 00 (with O_CLOEXEC 02000000)
      fs.writeFileSync(path.join(dir, 'fdinfo', String(fd)), `pos:\t0\nflags:\t0${writeOnly ? '2000001' : '2000002'}\nmnt_id:\t15\n`);
    });
    fs.symlinkSync(p.exe, path.join(dir, 'exe'));
    fs.writeFileSync(path.join(dir, 'net', 'tcp'), TCP_HEADER + (p.tcp ?? ''));
    fs.writeFileSync(path.join(dir, 'net', 'tcp6'), TCP_HEADER + (p.tcp6 ?? ''));
  }
  return root;
}

/** The same processes as ProcessFiles in memory: what judgeRelay sees. */
function memoryFiles(processes: Record<number, FakeProcess>): ProcessFiles {
  return {
    fds: (pid) => processes[pid]?.fds.map((spec, fd) => ({ fd: String(fd), link: spec.replace(/^w:/, '') })) ?? [],
    fdinfo: (pid, fd) => {
      const spec = processes[pid]?.fds[Number(fd)];
      return spec === undefined ? undefined : `pos:\t0\nflags:\t0${spec.startsWith('w:') ? '2000001' : '2000002'}\nmnt_id:\t15\n`;
    },
    netTable: (pid, table) => (processes[pid] ? TCP_HEADER + (processes[pid][table] ?? '') : undefined),
    exe: (pid) => processes[pid]?.exe ?? '',
  };
}

type Stdio = ShellOnIpcEvent['stdio'];
const SHELL = 10;
const shell = (stdio: Stdio): ShellOnIpcEvent => ({
  type: 'shell_on_ipc', action: 'held', stdio, ktimeNs: 0, timeMs: 0, cgroupId: 1, jobCgroupId: 1, pid: SHELL, tgid: SHELL, ppid: 1, uid: 0, comm: 'sh',
});
const pipe = (inode: number) => ({ ipc: 'pipe' as const, peerInode: inode });
const unix = (inode: number) => ({ ipc: 'unix' as const, peerInode: inode });
const none = { ipc: 'none' as const, peerInode: 0 };

interface Case {
  stdio: () => Stdio;
  processes: () => Record<number, FakeProcess>;
  jobPids: number[];
  loopbackIsRemote?: boolean;
  want: { relay?: { pid: number; exe: string; ip: string; port: number; fd: number }; holders: number };
}

const CASES: Record<string, Case> = {
  'socketpair on stdout, holder connected to a remote host': {
    stdio: () => [pipe(100), unix(200), unix(200)],
    processes: () => ({ 11: { fds: ['socket:[200]', 'socket:[300]'], exe: '/usr/bin/ncat', tcp: tcp4(REMOTE, '01', 300) } }),
    jobPids: [SHELL, 11],
    want: { relay: { pid: 11, exe: '/usr/bin/ncat', ip: '198.51.100.7', port: 4444, fd: 1 }, holders: 1 },
  },
  'only stderr goes to the holder: fd 2': {
    stdio: () => [pipe(100), none, pipe(201)],
    processes: () => ({ 11: { fds: ['pipe:[201]', 'socket:[300]'], exe: '/usr/bin/nc', tcp: tcp4(REMOTE, '01', 300) } }),
    jobPids: [SHELL, 11],
    want: { relay: { pid: 11, exe: '/usr/bin/nc', ip: '198.51.100.7', port: 4444, fd: 2 }, holders: 1 },
  },
  'a connection still being made (SYN_SENT) counts': {
    stdio: () => [none, unix(200), none],
    processes: () => ({ 11: { fds: ['socket:[200]', 'socket:[300]'], exe: '/usr/bin/socat', tcp: tcp4(REMOTE, '02', 300) } }),
    jobPids: [SHELL, 11],
    want: { relay: { pid: 11, exe: '/usr/bin/socat', ip: '198.51.100.7', port: 4444, fd: 1 }, holders: 1 },
  },
  'an IPv6 remote peer (tcp6)': {
    stdio: () => [none, unix(200), unix(200)],
    processes: () => ({ 11: { fds: ['socket:[200]', 'socket:[300]'], exe: '/usr/bin/ncat', tcp6: tcp6('B80D0120000000000000000005000000:01BB', '01', 300) } }),
    jobPids: [SHELL, 11],
    want: { relay: { pid: 11, exe: '/usr/bin/ncat', ip: '2001:db8::5', port: 443, fd: 1 }, holders: 1 },
  },
  'the first holder has no remote peer, the second has': {
    stdio: () => [none, unix(200), unix(200)],
    processes: () => ({
      11: { fds: ['socket:[200]'], exe: '/usr/bin/tee' },
      12: { fds: ['socket:[200]', 'socket:[301]'], exe: '/usr/bin/ncat', tcp: tcp4(REMOTE, '01', 301) },
    }),
    jobPids: [SHELL, 11, 12],
    want: { relay: { pid: 12, exe: '/usr/bin/ncat', ip: '198.51.100.7', port: 4444, fd: 1 }, holders: 2 },
  },
  'who feeds stdin (curl | sh) is not a holder': {
    stdio: () => [pipe(100), none, none],
    processes: () => ({ 11: { fds: ['pipe:[100]', 'socket:[300]'], exe: '/usr/bin/curl', tcp: tcp4(REMOTE, '01', 300) } }),
    jobPids: [SHELL, 11],
    want: { holders: 0 },
  },
  'a process writing the same pipe (the job log) is not a holder': {
    stdio: () => [none, pipe(500), pipe(500)],
    processes: () => ({ 11: { fds: ['w:pipe:[500]', 'socket:[300]'], exe: '/usr/bin/node', tcp: tcp4(REMOTE, '01', 300) } }),
    jobPids: [SHELL, 11],
    want: { holders: 0 },
  },
  'a pipe inode held as a socket is not the same end': {
    stdio: () => [none, pipe(200), none],
    processes: () => ({ 11: { fds: ['socket:[200]', 'socket:[300]'], exe: '/usr/bin/ncat', tcp: tcp4(REMOTE, '01', 300) } }),
    jobPids: [SHELL, 11],
    want: { holders: 0 },
  },
  'the shell itself is not its own relay': {
    stdio: () => [none, unix(200), none],
    processes: () => ({ [SHELL]: { fds: ['socket:[200]', 'socket:[300]'], exe: '/bin/sh', tcp: tcp4(REMOTE, '01', 300) } }),
    jobPids: [SHELL],
    want: { holders: 0 },
  },
  'a holder outside the job is not looked at': {
    stdio: () => [none, unix(200), none],
    processes: () => ({ 11: { fds: ['socket:[200]', 'socket:[300]'], exe: '/usr/bin/ncat', tcp: tcp4(REMOTE, '01', 300) } }),
    jobPids: [SHELL],
    want: { holders: 0 },
  },
  'no stdio on IPC: nothing to look for': {
    stdio: () => [none, none, none],
    processes: () => ({ 11: { fds: ['socket:[0]', 'socket:[300]'], exe: '/usr/bin/ncat', tcp: tcp4(REMOTE, '01', 300) } }),
    jobPids: [SHELL, 11],
    want: { holders: 0 },
  },
  'a listening socket is not a connection': {
    stdio: () => [none, unix(200), none],
    processes: () => ({ 11: { fds: ['socket:[200]', 'socket:[300]'], exe: '/usr/bin/ncat', tcp: tcp4('00000000:0000', '0A', 300) } }),
    jobPids: [SHELL, 11],
    want: { holders: 1 },
  },
  'a closed connection (TIME_WAIT) is not a connection': {
    stdio: () => [none, unix(200), none],
    processes: () => ({ 11: { fds: ['socket:[200]', 'socket:[300]'], exe: '/usr/bin/ncat', tcp: tcp4(REMOTE, '06', 300) } }),
    jobPids: [SHELL, 11],
    want: { holders: 1 },
  },
  'another process’s connection in the same namespace is not the holder’s': {
    stdio: () => [none, unix(200), none],
    processes: () => ({ 11: { fds: ['socket:[200]', 'socket:[300]'], exe: '/usr/bin/ncat', tcp: tcp4(REMOTE, '01', 999) } }),
    jobPids: [SHELL, 11],
    want: { holders: 1 },
  },
  'a loopback peer is not remote by default': {
    stdio: () => [none, unix(200), none],
    processes: () => ({ 11: { fds: ['socket:[200]', 'socket:[300]'], exe: '/usr/bin/ncat', tcp: tcp4(LOOPBACK, '01', 300) } }),
    jobPids: [SHELL, 11],
    want: { holders: 1 },
  },
  'a loopback peer is remote when the policy says so': {
    stdio: () => [none, unix(200), none],
    processes: () => ({ 11: { fds: ['socket:[200]', 'socket:[300]'], exe: '/usr/bin/ncat', tcp: tcp4(LOOPBACK, '01', 300) } }),
    jobPids: [SHELL, 11],
    loopbackIsRemote: true,
    want: { relay: { pid: 11, exe: '/usr/bin/ncat', ip: '127.0.0.1', port: 4444, fd: 1 }, holders: 1 },
  },
};

describe('judgeRelay', () => {
  it.each(Object.entries(CASES))('%s', (_label, c) => {
    expect(judgeRelay(shell(c.stdio()), c.jobPids, memoryFiles(c.processes()), c.loopbackIsRemote ?? false)).toEqual(c.want);
  });

  const ncat = (): FakeProcess => ({ fds: ['socket:[200]', 'socket:[300]'], exe: '/usr/bin/ncat', tcp: tcp4(REMOTE, '01', 300) });

  it('a holder of the pipe whose fdinfo is gone (exited meanwhile) is not a holder', () => {
    const files: ProcessFiles = { ...memoryFiles({ 11: { fds: ['pipe:[201]', 'socket:[300]'], exe: '/usr/bin/nc', tcp: tcp4(REMOTE, '01', 300) } }), fdinfo: () => undefined };
    expect(judgeRelay(shell([none, pipe(201), none]), [SHELL, 11], files, false)).toEqual({ holders: 0 });
  });

  it('a holder whose network tables cannot be read is a holder, not a relay', () => {
    const files: ProcessFiles = { ...memoryFiles({ 11: ncat() }), netTable: () => undefined };
    expect(judgeRelay(shell([none, unix(200), none]), [SHELL, 11], files, false)).toEqual({ holders: 1 });
  });

  it('a relay whose program cannot be read any more is still the relay, exe unknown', () => {
    const files: ProcessFiles = { ...memoryFiles({ 11: ncat() }), exe: () => '' };
    expect(judgeRelay(shell([none, unix(200), none]), [SHELL, 11], files, false)).toEqual({ relay: { pid: 11, exe: '', ip: '198.51.100.7', port: 4444, fd: 1 }, holders: 1 });
  });

  it('a file named like a socket is not the socket (another process’s remote connection)', () => {
    const processes = { 11: { fds: ['socket:[200]', '/tmp/socket:[300]'], exe: '/usr/bin/ncat', tcp: tcp4(REMOTE, '01', 300) } };
    expect(judgeRelay(shell([none, unix(200), none]), [SHELL, 11], memoryFiles(processes), false)).toEqual({ holders: 1 });
  });
});

describe('lookForRelay', () => {
  it.each(Object.entries(CASES))('%s', (_label, c) => {
    const proc = fakeProc(c.processes());
    expect(lookForRelay(shell(c.stdio()), c.jobPids, { proc, loopbackIsRemote: c.loopbackIsRemote })).toEqual(c.want);
  });

  it('a job pid that exited meanwhile (no /proc entry) is skipped', () => {
    const proc = fakeProc({ 12: { fds: ['socket:[200]', 'socket:[300]'], exe: '/usr/bin/ncat', tcp: tcp4(REMOTE, '01', 300) } });
    expect(lookForRelay(shell([none, unix(200), none]), [SHELL, 11, 12], { proc })).toEqual({
      relay: { pid: 12, exe: '/usr/bin/ncat', ip: '198.51.100.7', port: 4444, fd: 1 },
      holders: 1,
    });
  });
});

describe('opensForReading', () => {
  it.each<[string, string | undefined, boolean]>([
    ['O_RDONLY', 'pos:\t0\nflags:\t00\nmnt_id:\t15\nino:\t4242\n', true],
    ['O_RDWR|O_CLOEXEC', 'pos:\t0\nflags:\t02000002\nmnt_id:\t15\n', true],
    ['O_WRONLY', 'pos:\t0\nflags:\t01\nmnt_id:\t15\n', false],
    ['O_WRONLY|O_CLOEXEC|O_NONBLOCK', 'pos:\t0\nflags:\t02004001\nmnt_id:\t15\n', false],
    ['no fdinfo (gone)', undefined, false],
    ['no flags line', 'pos:\t0\nmnt_id:\t15\n', false],
  ])('%s: %s', (_label, fdinfo, reads) => {
    expect(opensForReading(fdinfo)).toBe(reads);
  });
});

describe('remotePeer', () => {
  const table = (...lines: string[]) => TCP_HEADER + lines.join('');
  const links = (...inodes: number[]) => new Set(inodes.map((inode) => `socket:[${inode}]`));

  it('the first established or connecting socket held, past the ones that are not', () => {
    const text = table(tcp4(REMOTE, '0A', 300), tcp4('0265A8C6:01BB', '01', 999), tcp4('0265A8C6:0050', '01', 301), tcp4(REMOTE, '02', 302));
    expect(remotePeer(text, links(300, 301, 302), false)).toEqual({ ip: '198.168.101.2', port: 80 });
  });

  it('a loopback peer is passed over for a remote one after it, unless loopback counts', () => {
    const text = table(tcp4(LOOPBACK, '01', 300), tcp4(REMOTE, '01', 301));
    expect(remotePeer(text, links(300, 301), false)).toEqual({ ip: '198.51.100.7', port: 4444 });
    expect(remotePeer(text, links(300, 301), true)).toEqual({ ip: '127.0.0.1', port: 4444 });
  });

  it('an IPv4 loopback peer on a tcp6 socket (::ffff:127.0.0.1) is loopback too', () => {
    const text = table(tcp6('0000000000000000FFFF00000100007F:115C', '01', 300));
    expect(remotePeer(text, links(300), false)).toBeUndefined();
  });

  it('only the header, or nothing held: none', () => {
    expect(remotePeer(TCP_HEADER, links(300), false)).toBeUndefined();
    expect(remotePeer(table(tcp4(REMOTE, '01', 300)), links(), false)).toBeUndefined();
  });
});

describe('outputEnds', () => {
  it('stdout and stderr as fd link text, stdout first; stdin and non-IPC descriptors are not output', () => {
    expect([...outputEnds([pipe(100), unix(200), unix(200)])]).toEqual([['socket:[200]', 1]]);
    expect([...outputEnds([unix(100), none, pipe(201)])]).toEqual([['pipe:[201]', 2]]);
    expect([...outputEnds([pipe(100), pipe(101), unix(201)])]).toEqual([['pipe:[101]', 1], ['socket:[201]', 2]]);
    expect([...outputEnds([pipe(100), none, none])]).toEqual([]);
  });
});
