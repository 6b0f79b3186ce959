/**
 * Which process of a job sent a DNS query: the kernel's socket tables
 * (/proc/net/udp, udp6, tcp, tcp6, of the proxy's network namespace, which
 * the redirected query's socket shares) name the inode of the socket bound
 * to the query's source address and port, and the job's processes'
 * /proc/PID/fd links name who holds `socket:[INODE]`. Only the job's own
 * processes are looked at: a process outside it is never named.
 *
 * Everything is read asynchronously, started when the query arrives (its
 * socket is surely open then): the answer never waits for it. A client that
 * closes its socket the moment the answer arrives can be gone before it is
 * found; then the DNS event has no process.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { formatIp, parseIp, parseProcNetAddress, unmapIPv4, type IpAddress } from '../net/address';

/** Where a query came from: the job's socket, as the proxy sees it (its local address and port). */
export interface DnsClient {
  transport: 'udp' | 'tcp';
  address: string;
  port: number;
}

/** How long a lookup is reused for queries from the same socket (A and AAAA come together). */
const REUSE_MS = 2_000;
const MAX_REMEMBERED = 1_024;

/**
 * Inodes of the sockets in one /proc/net table bound to `port` and to
 * `address` (an IPv4-mapped entry, from a dual-stack socket, as its IPv4
 * address) or to the wildcard.
 */
export function inodesInTable(table: string, address: IpAddress, port: number): number[] {
  const wanted = formatIp(unmapIPv4(address));
  const inodes: number[] = [];
  // the column header has no port in its address column, so it matches none
  for (const line of table.split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (fields[9] === undefined) continue; // blank or cut short
    const local = parseProcNetAddress(fields[1]);
    if (local.port !== port) continue;
    const bound = unmapIPv4(local.address);
    const wildcard = bound.bytes.every((b) => b === 0);
    if (wildcard || formatIp(bound) === wanted) {
      const inode = Number(fields[9]);
      if (inode > 0) inodes.push(inode); // 0: a socket no process holds (TIME_WAIT)
    }
  }
  return inodes;
}

/** Inodes of the sockets bound to the client's address (or the wildcard) and port, from the kernel's tables. */
export async function socketInodes(client: DnsClient, procRoot = '/proc'): Promise<number[]> {
  const address = parseIp(client.address);
  if (!address) return [];
  const tables = client.transport === 'udp' ? ['udp', 'udp6'] : ['tcp', 'tcp6'];
  const found = await Promise.all(
    tables.map(async (table) => {
      try {
        return inodesInTable(await fs.readFile(path.join(procRoot, 'net', table), 'utf8'), address, client.port);
      } catch {
        return []; // no IPv6, or no such table
      }
    }),
  );
  return found.flat();
}

/** The first of `pids` holding one of the socket inodes, by its /proc/PID/fd links. */
export async function holderOf(inodes: number[], pids: number[], procRoot = '/proc'): Promise<number | undefined> {
  // Stryker disable next-line ConditionalExpression: a shortcut (no descriptor is read); without it no link matches and the answer is the same
  if (inodes.length === 0) return undefined;
  const links = new Set(inodes.map((inode) => `socket:[${inode}]`));
  const holders = await Promise.all(
    pids.map(async (pid) => {
      const dir = path.join(procRoot, String(pid), 'fd');
      let fds: string[];
      try {
        fds = await fs.readdir(dir);
      } catch {
        return false; // gone
      }
      // Stryker disable next-line StringLiteral: a descriptor closed meanwhile names no socket; any text but socket:[N] is the same
      const targets = await Promise.all(fds.map((fd) => fs.readlink(path.join(dir, fd)).catch(() => '')));
      return targets.some((target) => links.has(target));
    }),
  );
  return pids.find((_, index) => holders[index]);
}

/** Finds (and for a moment remembers) the owner of a query's socket among the job's processes. */
export class SocketOwners {
  private readonly recent = new Map<string, { at: number; owner: Promise<number | undefined> }>();

  constructor(
    /** The job's processes now (its cgroup and below). */
    private readonly jobPids: () => number[],
    private readonly procRoot = '/proc',
  ) {}

  /** The pid, or undefined when it cannot be told (gone already, or not a job process). Never rejects. */
  owner(client: DnsClient): Promise<number | undefined> {
    const key = `${client.transport} ${client.address} ${client.port}`;
    const now = Date.now();
    for (const [k, v] of this.recent) if (now - v.at >= REUSE_MS) this.recent.delete(k);
    const known = this.recent.get(key);
    if (known) return known.owner;
    if (this.recent.size >= MAX_REMEMBERED) this.recent.clear(); // a flood of fresh sockets: forget them rather than grow
    const owner = this.lookUp(client).catch(() => undefined);
    this.recent.set(key, { at: now, owner });
    return owner;
  }

  private async lookUp(client: DnsClient): Promise<number | undefined> {
    return holderOf(await socketInodes(client, this.procRoot), this.jobPids(), this.procRoot);
  }
}
