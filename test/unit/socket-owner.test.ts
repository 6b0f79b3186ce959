/** Which process asked: the kernel's socket tables and the askers' descriptors. */
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import * as dnsPacket from 'dns-packet';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { DnsProxy, type DnsQueryRecord } from '../../src/dns/proxy';
import { holderOf, inodesInTable, socketInodes, SocketOwners } from '../../src/dns/socket-owner';
import { parseIp } from '../../src/net/address';
import { EgressMatcher } from '../../src/policy/matcher';
import { parsePolicy } from '../../src/policy/policy';
import { startDnsServer, type TestDnsServer } from '../helpers/dns-server';

const HEADER = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops';
/** One /proc/net/udp-style line: `local` as the kernel writes it, and the socket's inode. */
const line = (sl: number, local: string, inode: number) => `  ${sl}: ${local} 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 ${inode} 2 0000000000000000 0`;
const ip = (text: string) => parseIp(text)!;

describe('inodesInTable', () => {
  it.each<[string, string[], string, number, number[]]>([
    ['the socket bound to the address and port', [line(1, '0100007F:C350', 1111), line(2, '0100007F:C351', 9999)], '127.0.0.1', 50000, [1111]],
    ['a socket bound to the IPv4 wildcard', [line(1, '00000000:C351', 2222)], '127.0.0.1', 50001, [2222]],
    ['not one bound to another address', [line(1, '0200007F:C352', 3333)], '127.0.0.1', 50002, []],
    ['not one on another port', [line(1, '0100007F:C353', 3333)], '127.0.0.1', 50002, []],
    ['a dual-stack socket, ::ffff:127.0.0.1, for an IPv4 client', [line(1, '0000000000000000FFFF00000100007F:C353', 4444)], '127.0.0.1', 50003, [4444]],
    ['an IPv4 socket for a client seen as ::ffff:127.0.0.1', [line(1, '0100007F:C353', 4445)], '::ffff:127.0.0.1', 50003, [4445]],
    ['an IPv6 socket bound to ::1', [line(1, '00000000000000000000000001000000:C354', 5555)], '::1', 50004, [5555]],
    ['a socket bound to the IPv6 wildcard', [line(1, '00000000000000000000000000000000:C355', 6666)], '::1', 50005, [6666]],
    ['not ::1 for an IPv4 client (other family, same last byte)', [line(1, '00000000000000000000000001000000:C356', 7777)], '0.0.0.1', 50006, []],
    ['not 127.0.0.1 for an IPv6 client whose first bytes are 127.0.0.1', [line(1, '0100007F:C356', 7779)], '7f00:1::', 50006, []],
    ['not ::2 for a ::1 client', [line(1, '00000000000000000000000002000000:C357', 7778)], '::1', 50007, []],
    ['every socket on the port, in table order', [line(1, '0100007F:C358', 8881), line(2, '00000000:C358', 8882)], '127.0.0.1', 50008, [8881, 8882]],
    ['not a socket no process holds (inode 0, TIME_WAIT)', [line(1, '0100007F:C359', 0)], '127.0.0.1', 50009, []],
  ])('%s', (_label, lines, client, port, inodes) => {
    expect(inodesInTable([HEADER, ...lines, ''].join('\n'), ip(client), port)).toEqual(inodes);
  });

  it('skips a line cut short, and reads a line of exactly ten columns', () => {
    const table = [HEADER, '  1: 0100007F:C350 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0', '  2: 0100007F:C350 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 1234', ''].join('\n');
    expect(inodesInTable(table, ip('127.0.0.1'), 50000)).toEqual([1234]);
  });
});

/** A fake /proc: net tables, and pids holding descriptors that link to `socket:[INODE]` (or other things). */
function fakeProc(tables: Record<string, string[]>, holders: Record<number, string[]>): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ringfence-proc-'));
  fs.mkdirSync(path.join(root, 'net'));
  for (const [table, lines] of Object.entries(tables)) fs.writeFileSync(path.join(root, 'net', table), [HEADER, ...lines, ''].join('\n'));
  for (const [pid, targets] of Object.entries(holders)) {
    fs.mkdirSync(path.join(root, pid, 'fd'), { recursive: true });
    targets.forEach((target, fd) => fs.symlinkSync(target, path.join(root, pid, 'fd', String(fd))));
  }
  return root;
}

describe('socketInodes', () => {
  const client = (transport: 'udp' | 'tcp', address: string, port: number) => ({ transport, address, port });
  it('reads both tables of the client’s transport, IPv4 and IPv6, and no other', async () => {
    const root = fakeProc({ udp: [line(1, '0100007F:C350', 11)], udp6: [line(1, '0000000000000000FFFF00000100007F:C350', 12)], tcp: [line(1, '0100007F:C350', 21)], tcp6: [line(1, '00000000000000000000000000000000:C350', 22)] }, {});
    try {
      expect(await socketInodes(client('udp', '127.0.0.1', 50000), root)).toEqual([11, 12]);
      expect(await socketInodes(client('tcp', '127.0.0.1', 50000), root)).toEqual([21, 22]);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  it('reads what tables there are (no IPv6), and nothing for a client address that is no address', async () => {
    const root = fakeProc({ tcp: [line(1, '0100007F:C350', 21)] }, {});
    try {
      expect(await socketInodes(client('tcp', '127.0.0.1', 50000), root)).toEqual([21]);
      expect(await socketInodes(client('udp', '127.0.0.1', 50000), root)).toEqual([]);
      expect(await socketInodes(client('tcp', 'localhost', 50000), root)).toEqual([]);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('holderOf', () => {
  it.each<[string, number[], number[], number | undefined]>([
    ['the pid holding the socket', [100, 200], [1111], 200],
    ['the first of several holders, in the order given', [300, 200], [1111], 300],
    ['a holder of any of the inodes', [100, 400], [1111, 4444], 400],
    ['not a pid that is gone, even listed first', [999, 200], [1111], 200],
    ['none when no given pid holds it', [100], [1111], undefined],
    ['none for no inodes', [100, 200], [], undefined],
  ])('%s', async (_label, pids, inodes, holder) => {
    const root = fakeProc({}, { 100: ['pipe:[1111]', '/dev/null'], 200: ['/dev/null', 'socket:[1111]'], 300: ['socket:[1111]'], 400: ['socket:[4444]'] });
    try {
      expect(await holderOf(inodes, pids, root)).toBe(holder);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('SocketOwners', () => {
  const udp = (port: number) => ({ transport: 'udp' as const, address: '127.0.0.1', port });
  let root: string;
  beforeEach(() => {
    root = fakeProc({ udp: [line(1, '0100007F:C350', 1111), line(2, '0100007F:C351', 2222)] }, { 100: ['socket:[1111]'], 200: ['socket:[2222]'] });
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2026-01-01T00:00:00Z'));
  });
  afterEach(() => {
    vi.useRealTimers();
    fs.rmSync(root, { recursive: true, force: true });
  });
  /** The socket of pid 100 closes: a new lookup no longer finds it. */
  const close100 = () => fs.rmSync(path.join(root, '100', 'fd', '0'));
  const later = (ms: number) => vi.setSystemTime(Date.now() + ms);

  it('tells sockets apart: each client its own owner', async () => {
    const owners = new SocketOwners(() => [100, 200], root);
    expect(await owners.owner(udp(50000))).toBe(100);
    expect(await owners.owner(udp(50001))).toBe(200);
    expect(await owners.owner({ ...udp(50000), transport: 'tcp' })).toBeUndefined();
  });

  it('looks only among the job’s processes, as they are at lookup', async () => {
    let pids = [200];
    const owners = new SocketOwners(() => pids, root);
    expect(await owners.owner(udp(50000))).toBeUndefined();
    pids = [100, 200];
    later(2000);
    expect(await owners.owner(udp(50000))).toBe(100);
  });

  it('reuses a lookup for the same socket for just under two seconds (the AAAA after the A), then looks again', async () => {
    const owners = new SocketOwners(() => [100, 200], root);
    expect(await owners.owner(udp(50000))).toBe(100);
    close100();
    later(1999);
    expect(await owners.owner(udp(50000))).toBe(100);
    later(1);
    expect(await owners.owner(udp(50000))).toBeUndefined();
  });

  it('measures the two seconds from the first lookup, not the last reuse', async () => {
    const owners = new SocketOwners(() => [100, 200], root);
    expect(await owners.owner(udp(50000))).toBe(100);
    close100();
    later(1500);
    expect(await owners.owner(udp(50000))).toBe(100);
    later(1000);
    expect(await owners.owner(udp(50000))).toBeUndefined();
  });

  it('keeps fresh lookups while stale ones make room', async () => {
    const owners = new SocketOwners(() => [100, 200], root);
    for (let port = 1; port <= 1023; port++) await owners.owner(udp(port));
    later(2000);
    expect(await owners.owner(udp(50000))).toBe(100); // 1023 stale + this one
    close100();
    await owners.owner(udp(60000)); // the stale go: no need to forget the fresh one
    expect(await owners.owner(udp(50000))).toBe(100);
  });

  it('forgets everything rather than grow past 1,024 fresh lookups', async () => {
    const owners = new SocketOwners(() => [100, 200], root);
    expect(await owners.owner(udp(50000))).toBe(100);
    close100();
    for (let port = 1; port <= 1023; port++) await owners.owner(udp(port)); // 1,024 fresh now
    expect(await owners.owner(udp(50000))).toBe(100);
    await owners.owner(udp(60000)); // the 1,025th: all forgotten
    expect(await owners.owner(udp(50000))).toBeUndefined();
  });

  it('never rejects: a failing list of job processes is an unknown owner', async () => {
    const owners = new SocketOwners(() => {
      throw new Error('cgroup gone');
    }, root);
    await expect(owners.owner(udp(50000))).resolves.toBeUndefined();
  });
});

describe('the owner of a socket of this process', () => {
  let server: net.Server;
  let client: net.Socket;
  beforeAll(async () => {
    server = net.createServer(() => undefined);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    await new Promise((resolve) => client.once('connect', resolve));
  });
  afterAll(() => {
    client.destroy();
    server.close();
  });

  it('is found among the given pids, and never outside them', async () => {
    const source = { transport: 'tcp' as const, address: '127.0.0.1', port: client.localPort! };
    const inodes = await socketInodes(source);
    expect(inodes).toHaveLength(1);
    expect(await holderOf(inodes, [1, process.pid])).toBe(process.pid);
    expect(await holderOf(inodes, [1])).toBeUndefined();
    expect(await new SocketOwners(() => [process.pid]).owner(source)).toBe(process.pid);
    expect(await new SocketOwners(() => []).owner(source)).toBeUndefined();
    expect(await new SocketOwners(() => [process.pid]).owner({ ...source, port: 1 })).toBeUndefined();
  });
});

describe('DnsProxy with clientPids', () => {
  let upstream: TestDnsServer;
  beforeAll(async () => {
    upstream = await startDnsServer({ 'allowed.test': { A: ['198.18.1.10'] } });
  });
  afterAll(async () => upstream?.close());

  it.each(['allowed.test', 'denied.test'])('names the process whose socket asked for %s, and where from', async (name) => {
    const records: DnsQueryRecord[] = [];
    const policy = parsePolicy('egress-policy: block\nallowed-endpoints: allowed.test:443\n');
    const proxy = await DnsProxy.start({
      matcher: new EgressMatcher(policy),
      mode: 'block',
      upstream: { host: upstream.host, port: upstream.port },
      learn: () => undefined,
      record: (r) => records.push(r),
      clientPids: () => [process.pid],
    });
    const socket = dgram.createSocket('udp4');
    try {
      await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
      const answered = new Promise((resolve) => socket.once('message', resolve));
      socket.send(dnsPacket.encode({ type: 'query', id: 7, questions: [{ type: 'A', name }] }), proxy.port, '127.0.0.1');
      await answered;
      await proxy.settled();
      expect(records).toHaveLength(1);
      expect(records[0].client).toEqual({ transport: 'udp', address: '127.0.0.1', port: socket.address().port });
      expect(await records[0].asker).toBe(process.pid);
    } finally {
      socket.close();
      await proxy.close();
    }
  });
});
