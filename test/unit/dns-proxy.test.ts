/**
 * The DNS proxy's sockets on loopback against a test-owned upstream: UDP and
 * TCP, IPv4 and IPv6, what reaches upstream, what is learned and recorded,
 * garbage, upstream failures and forged answers. Every case starts its own
 * upstream and proxy and collects into its own arrays.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import * as dnsPacket from 'dns-packet';
import { describe, expect, it } from 'vitest';
import { DnsProxy, freeUpstreamId, type DnsProxyOptions, type DnsQueryRecord } from '../../src/dns/proxy';
import { formatIp } from '../../src/net/address';
import { EgressMatcher } from '../../src/policy/matcher';
import { parsePolicy } from '../../src/policy/policy';
import { startDnsServer, type Zone } from '../helpers/dns-server';

const POLICY = 'egress-policy: block\nallowed-endpoints: >\n  allowed.test:443 allowed.test:80\n  *.wild.test\n  alias.test:8443\n';

const ZONE: () => Zone = () => ({
  'allowed.test': { A: ['198.18.1.10'], AAAA: ['fd00:18:1::10'] },
  'a.wild.test': { A: ['198.18.1.11'] },
  'alias.test': { CNAME: 'hop.elsewhere.test' },
  'hop.elsewhere.test': { CNAME: 'final.elsewhere.test' },
  'final.elsewhere.test': { A: ['198.18.1.12'] },
  'denied.test': { A: ['198.18.1.13'] },
});

interface Setup {
  proxy: DnsProxy;
  learned: string[];
  records: DnsQueryRecord[];
}

/** A proxy for `policyText` in front of `upstream`, collecting into fresh arrays; closed after `body`. */
async function withProxy<T>(upstream: { host: string; port: number }, body: (setup: Setup) => Promise<T>, extra: Partial<DnsProxyOptions> = {}, policyText = POLICY): Promise<T> {
  const learned: string[] = [];
  const records: DnsQueryRecord[] = [];
  const policy = parsePolicy(policyText);
  const proxy = await DnsProxy.start({
    matcher: new EgressMatcher(policy),
    mode: policy.egressPolicy,
    upstream,
    learn: (addresses, ports) => learned.push(`${addresses.map(formatIp).join(',')} ${ports.join(',')}`),
    record: (r) => records.push(r),
    ...extra,
  });
  try {
    return await body({ proxy, learned, records });
  } finally {
    await proxy.close();
  }
}

/** A proxy in front of a fresh test DNS server with ZONE. */
async function withZone<T>(body: (setup: Setup, queries: string[]) => Promise<T>): Promise<T> {
  const upstream = await startDnsServer(ZONE());
  try {
    return await withProxy(upstream, (setup) => body(setup, upstream.queries));
  } finally {
    await upstream.close();
  }
}

const dataOf = (response: dnsPacket.Packet) => (response.answers ?? []).map((a) => (a as { data?: unknown }).data);
const rcodeOf = (p: dnsPacket.Packet) => (p as { rcode?: string }).rcode;

function queryMessage(name: string, type: 'A' | 'AAAA' = 'A', id = 7): Buffer {
  return dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] });
}

/** Sends one datagram to the proxy and resolves with the first reply (or undefined after `waitMs`). */
async function udpExchange(port: number, message: Buffer, host = '127.0.0.1', waitMs = 2000): Promise<Buffer | undefined> {
  const socket = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  try {
    return await new Promise<Buffer | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), waitMs);
      socket.on('message', (response) => {
        clearTimeout(timer);
        resolve(response);
      });
      socket.send(message, port, host);
    });
  } finally {
    socket.close();
  }
}

async function queryUdp(port: number, name: string, type: 'A' | 'AAAA' = 'A', host = '127.0.0.1'): Promise<dnsPacket.Packet> {
  const response = await udpExchange(port, queryMessage(name, type), host);
  return dnsPacket.decode(response!);
}

/** Writes `chunks` to the proxy over TCP, one write each, and collects `count` framed replies. */
async function tcpExchange(port: number, chunks: Buffer[], count: number, host = '127.0.0.1'): Promise<dnsPacket.Packet[]> {
  const socket = net.connect(port, host).setNoDelay(true); // each write its own segment, as a split query arrives
  try {
    return await new Promise<dnsPacket.Packet[]>((resolve, reject) => {
      let received = Buffer.alloc(0);
      const replies: dnsPacket.Packet[] = [];
      socket.on('error', reject);
      socket.on('connect', async () => {
        for (const chunk of chunks) {
          socket.write(chunk);
          await new Promise((r) => setTimeout(r, 20));
        }
      });
      socket.on('data', (data) => {
        received = Buffer.concat([received, data]);
        while (received.length >= 2 && received.length >= 2 + received.readUInt16BE(0)) {
          replies.push(dnsPacket.decode(received.subarray(2, 2 + received.readUInt16BE(0))));
          received = received.subarray(2 + received.readUInt16BE(0));
        }
        if (replies.length >= count) resolve(replies);
      });
    });
  } finally {
    socket.destroy();
  }
}

describe('DnsProxy over UDP', () => {
  it('forwards an allowed name and learns its address, on its ports, before answering', async () => {
    await withZone(async ({ proxy, learned, records }, queries) => {
      let learnedAtReply: string[] | undefined;
      const response = await udpExchange(proxy.port, queryMessage('allowed.test')).then((bytes) => {
        learnedAtReply = [...learned];
        return dnsPacket.decode(bytes!);
      });
      expect(dataOf(response)).toEqual(['198.18.1.10']);
      expect(learnedAtReply).toEqual(['198.18.1.10 443,80']);
      expect(queries).toEqual(['allowed.test A udp']);
      expect(records).toHaveLength(1);
      expect(records[0]).toMatchObject({ name: 'allowed.test', type: 'A', verdict: 'allowed', answers: ['198.18.1.10'], rcode: 'NOERROR', ttl: 60, transport: 'udp' });
      expect(records[0].client).toEqual({ transport: 'udp', address: '127.0.0.1', port: expect.any(Number) });
      expect(proxy.stats).toEqual({ queries: 1, malformed: 0, upstreamErrors: 0 });
    });
  });

  it('answers AAAA over IPv6 loopback and learns the IPv6 address', async () => {
    await withZone(async ({ proxy, learned, records }) => {
      const response = await queryUdp(proxy.port, 'allowed.test', 'AAAA', '::1');
      expect(dataOf(response)).toEqual(['fd00:18:1::10']);
      expect(learned).toEqual(['fd00:18:1::10 443,80']);
      expect(records.map((r) => [r.type, r.client?.address])).toEqual([['AAAA', '::1']]);
    });
  });

  it('follows a CNAME chain to addresses outside the allowed names, learning them on the alias’s port', async () => {
    await withZone(async ({ proxy, learned, records }) => {
      await queryUdp(proxy.port, 'alias.test');
      expect(learned).toEqual(['198.18.1.12 8443']);
      expect(records.map((r) => r.answers)).toEqual([['hop.elsewhere.test', 'final.elsewhere.test', '198.18.1.12']]);
    });
  });

  it('matches wildcards whatever the case and trailing dot, on the wildcard’s port', async () => {
    await withZone(async ({ proxy, learned, records }) => {
      const response = await queryUdp(proxy.port, 'A.Wild.Test.');
      expect(dataOf(response)).toEqual(['198.18.1.11']);
      expect(learned).toEqual(['198.18.1.11 443']);
      expect(records.map((r) => [r.name, r.verdict])).toEqual([['a.wild.test', 'allowed']]);
    });
  });

  it('answers NXDOMAIN for a name not allowed, without asking upstream or learning', async () => {
    await withZone(async ({ proxy, learned, records }, queries) => {
      const response = await queryUdp(proxy.port, 'denied.test');
      expect(rcodeOf(response)).toBe('NXDOMAIN');
      expect(response.id).toBe(7);
      expect(response.answers).toEqual([]);
      expect(queries).toEqual([]);
      expect(learned).toEqual([]);
      expect(records.map((r) => [r.name, r.verdict, r.rcode, r.answers])).toEqual([['denied.test', 'blocked', 'NXDOMAIN', []]]);
    });
  });

  it('drops garbage, answers FORMERR where the header is readable, records neither, and keeps answering', async () => {
    await withZone(async ({ proxy, records }, queries) => {
      expect(await udpExchange(proxy.port, Buffer.from('x'), '127.0.0.1', 200)).toBeUndefined();
      const self = Buffer.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c]); // a name pointing at itself
      expect(await udpExchange(proxy.port, self, '127.0.0.1', 200)).toBeUndefined();
      const asResponse = dnsPacket.encode({ type: 'response', id: 3, questions: [{ type: 'A', name: 'allowed.test' }] });
      expect(rcodeOf(dnsPacket.decode((await udpExchange(proxy.port, asResponse))!))).toBe('FORMERR');
      expect(proxy.stats).toEqual({ queries: 3, malformed: 3, upstreamErrors: 0 });
      expect(records).toEqual([]);
      expect(queries).toEqual([]);
      expect(dataOf(await queryUdp(proxy.port, 'allowed.test'))).toEqual(['198.18.1.10']);
    });
  });

  it('gives each client its own answer when their ids collide, with the client’s id restored', async () => {
    await withZone(async ({ proxy }) => {
      const [first, second] = await Promise.all([
        udpExchange(proxy.port, queryMessage('allowed.test', 'A', 500)),
        udpExchange(proxy.port, queryMessage('a.wild.test', 'A', 500)),
      ]);
      const [one, two] = [dnsPacket.decode(first!), dnsPacket.decode(second!)];
      expect([one.id, one.questions?.[0].name, dataOf(one)]).toEqual([500, 'allowed.test', ['198.18.1.10']]);
      expect([two.id, two.questions?.[0].name, dataOf(two)]).toEqual([500, 'a.wild.test', ['198.18.1.11']]);
    });
  });
});

describe('DnsProxy listening', () => {
  it('listens on loopback only: another local address gets no answer over UDP and no connection over TCP', async () => {
    await withZone(async ({ proxy, records }) => {
      expect(await udpExchange(proxy.port, queryMessage('allowed.test'), '127.0.0.2', 300)).toBeUndefined();
      const refused = await new Promise<string | undefined>((resolve) => {
        const socket = net.connect(proxy.port, '127.0.0.2');
        socket.on('connect', () => {
          socket.destroy();
          resolve(undefined);
        });
        socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code));
      });
      expect(refused).toBe('ECONNREFUSED');
      expect(records).toEqual([]);
    });
  });
});

describe('DnsProxy when learning fails', () => {
  const failing = { learn: () => { throw new Error('allow map full'); } };
  it.each(['udp', 'tcp'] as const)('answers SERVFAIL over %s, not the address the job could not reach, and records why', async (transport) => {
    const upstream = await startDnsServer(ZONE());
    try {
      await withProxy(upstream, async ({ proxy, records }) => {
        const response = transport === 'udp'
          ? await queryUdp(proxy.port, 'allowed.test')
          : (await tcpExchange(proxy.port, [dnsPacket.streamEncode({ type: 'query', id: 7, questions: [{ type: 'A', name: 'allowed.test' }] })], 1))[0];
        expect([response.id, rcodeOf(response), response.answers]).toEqual([7, 'SERVFAIL', []]);
        expect(records.map((r) => [r.verdict, r.rcode, r.answers, r.error])).toEqual([['allowed', 'SERVFAIL', [], 'could not allow 198.18.1.10: allow map full']]);
        expect(dataOf(await queryUdp(proxy.port, 'a.wild.test'))).toEqual([]); // still serving
      }, failing);
    } finally {
      await upstream.close();
    }
  });
});

describe('DnsProxy over TCP', () => {
  it('drops a garbage frame and answers the query after it on the same connection', async () => {
    await withZone(async ({ proxy, records }) => {
      const garbage = Buffer.from([0, 1, 0x78]); // a one-byte message
      const replies = await tcpExchange(proxy.port, [Buffer.concat([garbage, dnsPacket.streamEncode({ type: 'query', id: 15, questions: [{ type: 'A', name: 'allowed.test' }] })])], 1);
      expect(replies.map((r) => [r.id, dataOf(r)])).toEqual([[15, ['198.18.1.10']]]);
      expect(proxy.stats).toEqual({ queries: 2, malformed: 1, upstreamErrors: 0 });
      expect(records.map((r) => r.name)).toEqual(['allowed.test']);
    });
  });

  it('close() ends connections still open, and returns', async () => {
    const upstream = await startDnsServer(ZONE());
    const policy = parsePolicy(POLICY);
    const proxy = await DnsProxy.start({ matcher: new EgressMatcher(policy), mode: 'block', upstream, learn: () => undefined, record: () => undefined });
    const socket = net.connect(proxy.port, '127.0.0.1');
    try {
      await new Promise((resolve) => socket.once('connect', resolve));
      const ended = new Promise((resolve) => socket.once('close', resolve));
      await proxy.close();
      await ended;
      expect(socket.destroyed).toBe(true);
    } finally {
      socket.destroy();
      await upstream.close();
    }
  });

  it('forwards over TCP, learns, and records the transport', async () => {
    await withZone(async ({ proxy, learned, records }, queries) => {
      const [response] = await tcpExchange(proxy.port, [dnsPacket.streamEncode({ type: 'query', id: 9, questions: [{ type: 'A', name: 'allowed.test' }] })], 1);
      expect([response.id, dataOf(response)]).toEqual([9, ['198.18.1.10']]);
      expect(queries).toEqual(['allowed.test A tcp']);
      expect(learned).toEqual(['198.18.1.10 443,80']);
      expect(records.map((r) => [r.transport, r.client?.transport])).toEqual([['tcp', 'tcp']]);
    });
  });

  it('records the asking TCP socket’s address and port', async () => {
    await withZone(async ({ proxy, records }) => {
      const socket = net.connect(proxy.port, '127.0.0.1');
      try {
        await new Promise((resolve) => socket.once('connect', resolve));
        socket.write(dnsPacket.streamEncode({ type: 'query', id: 14, questions: [{ type: 'A', name: 'denied.test' }] }));
        await new Promise((resolve) => socket.once('data', resolve));
        expect(records.map((r) => r.client)).toEqual([{ transport: 'tcp', address: '127.0.0.1', port: socket.localPort }]);
      } finally {
        socket.destroy();
      }
    });
  });

  it('serves IPv6 loopback too', async () => {
    await withZone(async ({ proxy }) => {
      const [response] = await tcpExchange(proxy.port, [dnsPacket.streamEncode({ type: 'query', id: 10, questions: [{ type: 'AAAA', name: 'allowed.test' }] })], 1, '::1');
      expect(dataOf(response)).toEqual(['fd00:18:1::10']);
    });
  });

  it('answers two queries in one write, and one split across writes', async () => {
    await withZone(async ({ proxy }) => {
      const q = (id: number, name: string) => dnsPacket.streamEncode({ type: 'query', id, questions: [{ type: 'A', name }] });
      const split = q(13, 'a.wild.test');
      const replies = await tcpExchange(proxy.port, [Buffer.concat([q(11, 'allowed.test'), q(12, 'denied.test')]), split.subarray(0, 1), split.subarray(1, 9), split.subarray(9)], 3);
      const byId = Object.fromEntries(replies.map((r) => [r.id, [rcodeOf(r), dataOf(r)]]));
      expect(byId).toEqual({ 11: ['NOERROR', ['198.18.1.10']], 12: ['NXDOMAIN', []], 13: ['NOERROR', ['198.18.1.11']] });
    });
  });
});

/** A UDP socket on loopback that does what `onQuery` says with each query it gets. */
async function udpServer(onQuery: (query: dnsPacket.Packet, from: dgram.RemoteInfo, socket: dgram.Socket) => void, host = '127.0.0.1', port = 0) {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(port, host, () => resolve()));
  socket.on('message', (message, from) => onQuery(dnsPacket.decode(message), from, socket));
  return { host, port: socket.address().port, socket, close: () => new Promise<void>((resolve) => socket.close(() => resolve())) };
}

const answerTo = (query: dnsPacket.Packet, answers: dnsPacket.Answer[]) =>
  dnsPacket.encode({ type: 'response', id: query.id, flags: dnsPacket.RECURSION_AVAILABLE, questions: query.questions, answers });

describe('DnsProxy and its upstream', () => {
  it('asks an IPv6 upstream over UDP and TCP', async () => {
    const upstream = await startDnsServer(ZONE(), '::1');
    try {
      await withProxy(upstream, async ({ proxy, learned }) => {
        expect(dataOf(await queryUdp(proxy.port, 'allowed.test'))).toEqual(['198.18.1.10']);
        const [response] = await tcpExchange(proxy.port, [dnsPacket.streamEncode({ type: 'query', id: 16, questions: [{ type: 'A', name: 'a.wild.test' }] })], 1);
        expect(dataOf(response)).toEqual(['198.18.1.11']);
        expect(upstream.queries).toEqual(['allowed.test A udp', 'a.wild.test A tcp']);
        expect(learned).toEqual(['198.18.1.10 443,80', '198.18.1.11 443']);
      });
    } finally {
      await upstream.close();
    }
  });

  it('settled() waits until the asker of every recorded query is known', async () => {
    const upstream = await startDnsServer(ZONE());
    try {
      await withProxy(upstream, async ({ proxy, records }) => {
        await queryUdp(proxy.port, 'denied.test');
        let asker: number | undefined | 'pending' = 'pending';
        void records[0].asker!.then((pid) => (asker = pid));
        await proxy.settled();
        expect(asker).toBeUndefined(); // known: the asking socket is gone, and this process is not a job process
      }, { clientPids: () => [] });
    } finally {
      await upstream.close();
    }
  });

  it('answers SERVFAIL and records why when upstream does not answer over UDP', async () => {
    const silent = await udpServer(() => undefined);
    try {
      await withProxy(silent, async ({ proxy, learned, records }) => {
        const response = await queryUdp(proxy.port, 'allowed.test');
        expect([response.id, rcodeOf(response)]).toEqual([7, 'SERVFAIL']);
        expect(learned).toEqual([]);
        expect(records.map((r) => [r.verdict, r.rcode, r.error])).toEqual([['allowed', 'SERVFAIL', `upstream 127.0.0.1:${silent.port} did not answer`]]);
        expect(proxy.stats).toEqual({ queries: 1, malformed: 0, upstreamErrors: 1 });
      }, { timeoutMs: 100 });
    } finally {
      await silent.close();
    }
  });

  it('answers SERVFAIL when upstream refuses TCP', async () => {
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', () => resolve()));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    await withProxy({ host: '127.0.0.1', port }, async ({ proxy, records }) => {
      const [response] = await tcpExchange(proxy.port, [dnsPacket.streamEncode({ type: 'query', id: 21, questions: [{ type: 'A', name: 'allowed.test' }] })], 1);
      expect([response.id, rcodeOf(response)]).toEqual([21, 'SERVFAIL']);
      expect(records.map((r) => [r.rcode, r.error])).toEqual([['SERVFAIL', expect.stringContaining('ECONNREFUSED')]]);
      expect(proxy.stats.upstreamErrors).toBe(1);
    });
  });

  it('answers SERVFAIL when upstream accepts TCP but never answers', async () => {
    const mute = net.createServer((socket) => socket.on('error', () => undefined).resume()); // reads (and so sees the proxy hang up), never answers
    await new Promise<void>((resolve) => mute.listen(0, '127.0.0.1', () => resolve()));
    const port = (mute.address() as net.AddressInfo).port;
    try {
      await withProxy({ host: '127.0.0.1', port }, async ({ proxy, records }) => {
        const [response] = await tcpExchange(proxy.port, [dnsPacket.streamEncode({ type: 'query', id: 22, questions: [{ type: 'A', name: 'allowed.test' }] })], 1);
        expect(rcodeOf(response)).toBe('SERVFAIL');
        expect(records.map((r) => r.error)).toEqual([`upstream 127.0.0.1:${port} did not answer over TCP`]);
      }, { timeoutMs: 100 });
    } finally {
      await new Promise<void>((resolve) => mute.close(() => resolve()));
    }
  });

  it('takes an upstream TCP answer that arrives in pieces', async () => {
    const slow = net.createServer((socket) => {
      socket.on('data', async (data) => {
        const query = dnsPacket.decode(data.subarray(2));
        const framed = dnsPacket.streamEncode(dnsPacket.decode(answerTo(query, [{ type: 'A', name: 'allowed.test', ttl: 5, data: '198.18.1.30' }])));
        for (const piece of [framed.subarray(0, 1), framed.subarray(1, 6), framed.subarray(6)]) {
          socket.write(piece);
          await new Promise((r) => setTimeout(r, 20));
        }
      });
    });
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', () => resolve()));
    try {
      await withProxy({ host: '127.0.0.1', port: (slow.address() as net.AddressInfo).port }, async ({ proxy, learned }) => {
        const [response] = await tcpExchange(proxy.port, [dnsPacket.streamEncode({ type: 'query', id: 23, questions: [{ type: 'A', name: 'allowed.test' }] })], 1);
        expect([response.id, dataOf(response)]).toEqual([23, ['198.18.1.30']]);
        expect(learned).toEqual(['198.18.1.30 443,80']);
      });
    } finally {
      await new Promise<void>((resolve) => slow.close(() => resolve()));
    }
  });

  it('ignores a forged answer from another local address on the upstream port, and learns the real one', async () => {
    // the forger: 127.0.0.2 on the upstream's port, told the proxy's upstream id as soon as the query arrives
    let forger: Awaited<ReturnType<typeof udpServer>> | undefined;
    const upstream = await udpServer((query, from, socket) => {
      const forged = answerTo(query, [{ type: 'A', name: 'allowed.test', ttl: 60, data: '198.18.66.66' }]);
      forger!.socket.send(forged, from.port, from.address, () => {
        setTimeout(() => socket.send(answerTo(query, [{ type: 'A', name: 'allowed.test', ttl: 60, data: '198.18.1.10' }]), from.port, from.address), 50);
      });
    });
    forger = await udpServer(() => undefined, '127.0.0.2', upstream.port);
    try {
      await withProxy(upstream, async ({ proxy, learned }) => {
        const response = await queryUdp(proxy.port, 'allowed.test');
        expect(dataOf(response)).toEqual(['198.18.1.10']);
        expect(learned).toEqual(['198.18.1.10 443,80']);
      });
    } finally {
      await forger.close();
      await upstream.close();
    }
  });

  it('survives upstream datagrams too short to be DNS, duplicate answers and a header-only answer', async () => {
    const upstream = await udpServer((query, from, socket) => {
      socket.send(Buffer.from([1]), from.port, from.address);
      const header = Buffer.alloc(12);
      header.writeUInt16BE(query.id!, 0);
      header.writeUInt16BE(0x8180, 2); // a response, recursion desired and available, NOERROR, no sections
      socket.send(header, from.port, from.address, () => socket.send(header, from.port, from.address));
    });
    try {
      await withProxy(upstream, async ({ proxy, records }) => {
        const response = await queryUdp(proxy.port, 'allowed.test');
        expect([response.id, rcodeOf(response), response.questions, response.answers]).toEqual([7, 'NOERROR', [], []]);
        const again = await queryUdp(proxy.port, 'allowed.test');
        expect(rcodeOf(again)).toBe('NOERROR');
        expect(records.map((r) => [r.rcode, r.answers, r.error])).toEqual([['NOERROR', [], undefined], ['NOERROR', [], undefined]]);
      }, { timeoutMs: 1000 });
    } finally {
      await upstream.close();
    }
  });
});

describe('freeUpstreamId', () => {
  it.each<[string, number, number[], number]>([
    ['the next id when it is free', 41, [], 41],
    ['the next free one after those in flight', 41, [41, 42], 43],
    ['wrapping at 16 bits', 0xffff, [0xffff, 0], 1],
    ['an id past 16 bits wrapped first', 0x10000 + 5, [], 5],
  ])('%s', (_label, next, inFlight, expected) => {
    expect(freeUpstreamId(next, new Set(inFlight))).toBe(expected);
  });

  it('finds the one id still free among 65,535 in flight', () => {
    expect(freeUpstreamId(0, { size: 0xffff, has: (id) => id !== 0xfffe })).toBe(0xfffe);
  });

  it('gives none when all 65,536 are in flight, instead of looking for ever', () => {
    expect(freeUpstreamId(0, { size: 0x10000, has: () => true })).toBeUndefined();
  });
});
