/**
 * Reverse shells through a relay: a shell reading commands from a pipe or
 * socketpair whose output goes to a job process connected to a remote host
 * (ncat -e, socat EXEC, `mkfifo f; sh -i < f | nc host port > f`). The kernel
 * stops such a shell at exec (ShellOnIpcEvent); this looks at who holds the
 * other end of its stdout/stderr and whether that process talks to a remote
 * peer. Only the shell's output side counts: `curl … | sh` feeds a shell
 * from the network, but its output goes to the job's log, not back.
 */
import fs from 'node:fs';
import path from 'node:path';
import { formatIp, isLoopback, parseProcNetAddress as parseNetTableAddress } from '../net/address';
import type { ShellOnIpcEvent } from '../sensor/events';

export interface Relay {
  pid: number;
  exe: string;
  ip: string;
  port: number;
  fd: number;
}

function fdLinks(pid: number, proc: string): { fd: string; link: string }[] {
  try {
    const dir = path.join(proc, String(pid), 'fd');
    return fs.readdirSync(dir).map((fd) => {
      try {
        return { fd, link: fs.readlinkSync(path.join(dir, fd)) };
      } catch {
        return { fd, link: '' };
      }
    });
  } catch {
    return [];
  }
}

/**
 * Whether pid's descriptor reads (O_RDONLY or O_RDWR). Both ends of a pipe
 * share its inode: the shell's output is consumed by whoever holds the read
 * end, while other writers (every job process writing the same job log) are
 * not its other end.
 */
function reads(pid: number, fd: string, proc: string): boolean {
  try {
    const flags = /^flags:\s+([0-7]+)/m.exec(fs.readFileSync(path.join(proc, String(pid), 'fdinfo', fd), 'utf8'))?.[1];
    return flags !== undefined && (parseInt(flags, 8) & 3) !== 1; // O_ACCMODE != O_WRONLY
  } catch {
    return false;
  }
}

/** A /proc/net address column with the address as text, the same text as every other event's (RFC 5952 for IPv6). */
export function parseProcNetAddress(text: string): { ip: string; port: number } {
  const { address, port } = parseNetTableAddress(text);
  return { ip: formatIp(address), port };
}

const ESTABLISHED_OR_CONNECTING = new Set(['01', '02']);

/** Remote TCP peers of the given socket inodes, from pid's network namespace. */
function remotePeers(pid: number, inodes: Set<number>, proc: string, loopbackIsRemote: boolean): Map<number, { ip: string; port: number }> {
  const found = new Map<number, { ip: string; port: number }>();
  for (const table of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = fs.readFileSync(path.join(proc, String(pid), 'net', table), 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 10 || !ESTABLISHED_OR_CONNECTING.has(fields[3])) continue;
      const inode = Number(fields[9]);
      if (!inodes.has(inode)) continue;
      const { address, port } = parseNetTableAddress(fields[2]);
      if (!loopbackIsRemote && isLoopback(address)) continue;
      found.set(inode, { ip: formatIp(address), port });
    }
  }
  return found;
}

/**
 * The job process, if any, that holds the other end of the shell's stdout or
 * stderr and a TCP connection to a remote host.
 */
export function findRelay(event: ShellOnIpcEvent, jobPids: number[], options: { proc?: string; loopbackIsRemote?: boolean } = {}): Relay | undefined {
  return lookForRelay(event, jobPids, options).relay;
}

/**
 * As findRelay, and how many job processes hold the other end of the
 * shell's output at all: with none, no relay can appear later either.
 */
export function lookForRelay(event: ShellOnIpcEvent, jobPids: number[], options: { proc?: string; loopbackIsRemote?: boolean } = {}): { relay?: Relay; holders: number } {
  const proc = options.proc ?? '/proc';
  const wanted = new Map<string, number>(); // link text → the shell's fd
  event.stdio.forEach((s, fd) => {
    if (fd === 0 || s.ipc === 'none') return;
    const link = s.ipc === 'pipe' ? `pipe:[${s.peerInode}]` : `socket:[${s.peerInode}]`;
    if (!wanted.has(link)) wanted.set(link, fd);
  });
  let holders = 0;
  if (wanted.size === 0) return { holders };
  for (const pid of jobPids) {
    if (pid === event.tgid) continue;
    const links = fdLinks(pid, proc);
    const holds = links.find(({ fd, link }) => wanted.has(link) && (!link.startsWith('pipe:') || reads(pid, fd, proc)))?.link;
    if (!holds) continue;
    holders++;
    const sockets = new Set(links.map(({ link }) => /^socket:\[(\d+)\]$/.exec(link)?.[1]).filter(Boolean).map(Number));
    const peers = remotePeers(pid, sockets, proc, options.loopbackIsRemote ?? false);
    const first = peers.values().next();
    if (first.done) continue;
    let exe = '';
    try {
      exe = fs.readlinkSync(path.join(proc, String(pid), 'exe'));
    } catch {
      /* exited meanwhile */
    }
    return { relay: { pid, exe, ...first.value, fd: wanted.get(holds)! }, holders };
  }
  return { holders };
}
