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
import { parseIp, parseProcNetAddress as parseNetTableAddress } from '../net/address';

/** Where a query came from: the job's socket, as the proxy sees it (its local address and port). */
export interface DnsClient {
  transport: 'udp' | 'tcp';
  address: string;
  port: number;
}

/** How long a lookup is reused for queries from the same socket (A and AAAA come together). */
const REUSE_MS = 2_000;
const MAX_REMEMBERED = 1_024;

/** A /proc/net address column, its address as plain bytes. */
export function parseProcNetAddress(text: string): { address: number[]; port: number } {
  const { address, port } = parseNetTableAddress(text);
  return { address: Array.from(address.bytes), port };
}

/** The address's bytes, IPv4 as 4, IPv6 as 16; an IPv4-mapped IPv6 address as its IPv4 bytes. */
function addressBytes(address: string): number[] | undefined {
  const parsed = parseIp(address);
  return parsed ? unmapped(Array.from(parsed.bytes)) : undefined;
}

/** An IPv4-mapped IPv6 table entry (a dual-stack socket) as its IPv4 bytes. */
function unmapped(bytes: number[]): number[] {
  const isMapped = bytes.length === 16 && bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
  return isMapped ? bytes.slice(12) : bytes;
}

/** Inodes of the sockets bound to the client's address (or the wildcard) and port, from the kernel's tables. */
export async function socketInodes(client: DnsClient, procRoot = '/proc'): Promise<number[]> {
  const wanted = addressBytes(client.address);
  if (!wanted) return [];
  const tables = client.transport === 'udp' ? ['udp', 'udp6'] : ['tcp', 'tcp6'];
  const inodes: number[] = [];
  await Promise.all(
    tables.map(async (table) => {
      let text: string;
      try {
        text = await fs.readFile(path.join(procRoot, 'net', table), 'utf8');
      } catch {
        return; // no IPv6, or no such table
      }
      for (const line of text.split('\n').slice(1)) {
        const fields = line.trim().split(/\s+/);
        if (fields.length < 10) continue;
        const local = parseProcNetAddress(fields[1]);
        if (local.port !== client.port) continue;
        const address = unmapped(local.address);
        const wildcard = address.every((b) => b === 0);
        if (wildcard || (address.length === wanted.length && address.every((b, i) => b === wanted[i]))) {
          const inode = Number(fields[9]);
          if (inode > 0) inodes.push(inode);
        }
      }
    }),
  );
  return inodes;
}

/** The first of `pids` holding one of the socket inodes, by its /proc/PID/fd links. */
export async function holderOf(inodes: number[], pids: number[], procRoot = '/proc'): Promise<number | undefined> {
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
      const targets = await Promise.all(fds.map((fd) => fs.readlink(path.join(dir, fd)).catch(() => '')));
      return targets.some((target) => links.has(target));
    }),
  );
  const index = holders.indexOf(true);
  return index >= 0 ? pids[index] : undefined;
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
    const known = this.recent.get(key);
    if (known && now - known.at < REUSE_MS) return known.owner;
    if (this.recent.size >= MAX_REMEMBERED) {
      for (const [k, v] of this.recent) if (now - v.at >= REUSE_MS) this.recent.delete(k);
      if (this.recent.size >= MAX_REMEMBERED) this.recent.clear();
    }
    const owner = this.lookUp(client).catch(() => undefined);
    this.recent.set(key, { at: now, owner });
    return owner;
  }

  private async lookUp(client: DnsClient): Promise<number | undefined> {
    const inodes = await socketInodes(client, this.procRoot);
    if (inodes.length === 0) return undefined;
    return holderOf(inodes, this.jobPids(), this.procRoot);
  }
}
