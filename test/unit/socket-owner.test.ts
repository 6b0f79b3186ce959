/** Which process asked: the kernel's socket tables and the askers' descriptors. */
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import * as dnsPacket from 'dns-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DnsProxy, type DnsQueryRecord } from '../../src/dns/proxy';
import { holderOf, parseProcNetAddress, socketInodes, SocketOwners } from '../../src/dns/socket-owner';
import { EgressMatcher } from '../../src/policy/matcher';
import { parsePolicy } from '../../src/policy/policy';
import { startDnsServer, type TestDnsServer } from '../helpers/dns-server';

describe('/proc/net tables', () => {
  it('reads addresses as the kernel writes them (32-bit words in host order)', () => {
    expect(parseProcNetAddress('0100007F:1F90')).toEqual({ address: [127, 0, 0, 1], port: 8080 });
    expect(parseProcNetAddress('00000000000000000000000001000000:0035')).toEqual({ address: [...Array(15).fill(0), 1], port: 53 });
  });

  it('finds the inode of the socket bound to an address and port, or to the wildcard', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ringfence-proc-'));
    fs.mkdirSync(path.join(root, 'net'));
    const header = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n';
    fs.writeFileSync(
      path.join(root, 'net', 'udp'),
      header +
        '  1: 0100007F:C350 0100007F:0035 01 00000000:00000000 00:00000000 00000000     0        0 1111 2 0 0\n' +
        '  2: 00000000:C351 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 2222 2 0 0\n' +
        '  3: 0200007F:C352 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3333 2 0 0\n',
    );
    fs.writeFileSync(path.join(root, 'net', 'udp6'), header + '  1: 0000000000000000FFFF00000100007F:C353 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 4444 2 0 0\n');
    const udp = (port: number) => ({ transport: 'udp' as const, address: '127.0.0.1', port });
    expect(await socketInodes(udp(50000), root)).toEqual([1111]);
    expect(await socketInodes(udp(50001), root)).toEqual([2222]); // bound to 0.0.0.0
    expect(await socketInodes(udp(50002), root)).toEqual([]); // 127.0.0.2: another address
    expect(await socketInodes(udp(50003), root)).toEqual([4444]); // a dual-stack socket, ::ffff:127.0.0.1
    expect(await socketInodes({ ...udp(50000), transport: 'tcp' }, root)).toEqual([]); // no tcp table here
    fs.rmSync(root, { recursive: true, force: true });
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
