/** Relay detection's /proc reading (procFiles, lookForRelay), on a /proc the test lays out itself. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { lookForRelay, parseProcNetAddress, procFiles } from '../../src/jobs/relay';
import type { ShellOnIpcEvent } from '../../src/sensor/events';

const TCP_HEADER = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n';
const tcpLine = (remote: string, state: string, inode: number) => `   0: 0100007F:9C40 ${remote} ${state} 00000000:00000000 00:00000000 00000000     0        0 ${inode} 1 0000000000000000 20 4 30 10 -1\n`;

/** fds: link targets by descriptor; a pipe written (not read) is given as 'w:pipe:[N]'. */
const roots: string[] = [];
afterEach(() => {
  for (const root of roots.splice(0)) fs.rmSync(root, { recursive: true, force: true });
});

function fakeProc(processes: Record<number, { fds: string[]; exe: string; tcp?: string }>): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-proc-'));
  roots.push(root);
  for (const [pid, p] of Object.entries(processes)) {
    fs.mkdirSync(path.join(root, pid, 'fd'), { recursive: true });
    fs.mkdirSync(path.join(root, pid, 'fdinfo'));
    fs.mkdirSync(path.join(root, pid, 'net'));
    p.fds.forEach((spec, fd) => {
      const writeOnly = spec.startsWith('w:');
      fs.symlinkSync(writeOnly ? spec.slice(2) : spec, path.join(root, pid, 'fd', String(fd)));
      fs.writeFileSync(path.join(root, pid, 'fdinfo', String(fd)), `pos:\t0\nflags:\t0${writeOnly ? '2000001' : '2000000'}\nmnt_id:\t15\n`);
    });
    fs.symlinkSync(p.exe, path.join(root, pid, 'exe'));
    fs.writeFileSync(path.join(root, pid, 'net', 'tcp'), TCP_HEADER + (p.tcp ?? ''));
    fs.writeFileSync(path.join(root, pid, 'net', 'tcp6'), TCP_HEADER);
  }
  return root;
}

const shell = (stdio: ShellOnIpcEvent['stdio']): ShellOnIpcEvent => ({
  type: 'shell_on_ipc', action: 'held', stdio, ktimeNs: 0, timeMs: 0, cgroupId: 1, jobCgroupId: 1, pid: 10, tgid: 10, ppid: 1, uid: 0, comm: 'sh',
});

describe('parseProcNetAddress', () => {
  it('reads IPv4 and IPv6 in /proc/net/tcp byte order', () => {
    expect(parseProcNetAddress('0265A8C6:115C')).toEqual({ ip: '198.168.101.2', port: 4444 });
    expect(parseProcNetAddress('00000000000000000000000001000000:0035')).toEqual({ ip: '::1', port: 53 });
    expect(parseProcNetAddress('B80D0120000000000000000001000000:01BB')).toEqual({ ip: '2001:db8::1', port: 443 });
    expect(parseProcNetAddress('0000000000000000FFFF00000100007F:0050')).toEqual({ ip: '::ffff:127.0.0.1', port: 80 });
  });
});

describe('lookForRelay', () => {
  const findRelay = (...args: Parameters<typeof lookForRelay>) => lookForRelay(...args).relay;

  it('ignores other writers of the same pipe (every job process writing the job log)', () => {
    const proc = fakeProc({
      10: { fds: ['pipe:[100]', 'w:pipe:[500]', 'w:pipe:[500]'], exe: '/bin/sh' },
      11: { fds: ['pipe:[9]', 'w:pipe:[500]', 'w:pipe:[500]', 'socket:[300]'], exe: '/usr/bin/node', tcp: tcpLine('0265A8C6:01BB', '01', 300) },
    });
    const event = shell([{ ipc: 'pipe', peerInode: 100 }, { ipc: 'pipe', peerInode: 500 }, { ipc: 'pipe', peerInode: 500 }]);
    expect(findRelay(event, [10, 11], { proc })).toBeUndefined();
  });

  it('finds the process holding the shell’s output and a remote connection', () => {
    const proc = fakeProc({
      10: { fds: ['pipe:[100]', 'socket:[201]', 'socket:[201]'], exe: '/bin/sh' },
      11: { fds: ['socket:[200]', 'socket:[300]'], exe: '/usr/bin/ncat', tcp: tcpLine('0265A8C6:115C', '01', 300) },
    });
    const relay = findRelay(shell([{ ipc: 'pipe', peerInode: 100 }, { ipc: 'unix', peerInode: 200 }, { ipc: 'unix', peerInode: 200 }]), [10, 11], { proc });
    expect(relay).toEqual({ pid: 11, exe: '/usr/bin/ncat', ip: '198.168.101.2', port: 4444, fd: 1 });
  });

  it('ignores who feeds the shell’s stdin (curl | sh), loopback peers, and closed connections', () => {
    const proc = fakeProc({
      10: { fds: ['pipe:[100]', 'pipe:[101]', 'pipe:[101]'], exe: '/bin/sh' },
      11: { fds: ['pipe:[100]', 'socket:[300]'], exe: '/usr/bin/curl', tcp: tcpLine('0265A8C6:01BB', '01', 300) },
      12: { fds: ['pipe:[101]', 'socket:[301]', 'socket:[302]'], exe: '/usr/bin/nc', tcp: tcpLine('0100007F:115C', '01', 301) + tcpLine('0265A8C6:115C', '06', 302) },
    });
    const event = shell([{ ipc: 'pipe', peerInode: 100 }, { ipc: 'pipe', peerInode: 101 }, { ipc: 'pipe', peerInode: 101 }]);
    expect(findRelay(event, [10, 11, 12], { proc })).toBeUndefined();
    expect(findRelay(event, [10, 11, 12], { proc, loopbackIsRemote: true })).toMatchObject({ pid: 12, ip: '127.0.0.1', port: 4444 });
  });
});

describe('procFiles', () => {
  it('reads a process’s descriptors, fdinfo, network tables and program', () => {
    const proc = fakeProc({ 11: { fds: ['pipe:[100]', 'w:pipe:[101]', 'socket:[300]'], exe: '/usr/bin/ncat', tcp: tcpLine('0265A8C6:115C', '01', 300) } });
    const files = procFiles(proc);
    expect(files.fds(11)).toEqual([
      { fd: '0', link: 'pipe:[100]' },
      { fd: '1', link: 'pipe:[101]' },
      { fd: '2', link: 'socket:[300]' },
    ]);
    expect(files.fdinfo(11, '1')).toBe('pos:\t0\nflags:\t02000001\nmnt_id:\t15\n');
    expect(files.netTable(11, 'tcp')).toBe(TCP_HEADER + tcpLine('0265A8C6:115C', '01', 300));
    expect(files.netTable(11, 'tcp6')).toBe(TCP_HEADER);
    expect(files.exe(11)).toBe('/usr/bin/ncat');
  });

  it('a descriptor whose link cannot be read (closed meanwhile) is not listed', () => {
    const proc = fakeProc({ 11: { fds: ['socket:[200]'], exe: '/usr/bin/ncat' } });
    fs.writeFileSync(path.join(proc, '11', 'fd', '7'), ''); // readlink fails on it, as on a closed fd
    expect(procFiles(proc).fds(11)).toEqual([{ fd: '0', link: 'socket:[200]' }]);
  });

  it('a process that is gone has nothing', () => {
    const files = procFiles(fakeProc({}));
    expect(files.fds(11)).toEqual([]);
    expect(files.fdinfo(11, '0')).toBeUndefined();
    expect(files.netTable(11, 'tcp')).toBeUndefined();
    expect(files.exe(11)).toBe('');
  });

  it('reads /proc by default', () => {
    const files = procFiles();
    expect(files.exe(process.pid)).toBe(fs.readlinkSync('/proc/self/exe'));
  });
});
