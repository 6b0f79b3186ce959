/**
 * The DNS proxy's sockets themselves, on loopback: the port it picks and
 * what it does when that port is taken elsewhere, what close() lets go of,
 * the life of a job's TCP connections, DNS-over-TCP framing, and socket
 * errors that must not take the agent down. Every case starts its own
 * upstream and proxy, collects into its own arrays, and restores any spy.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import * as dnsPacket from 'dns-packet';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DnsProxy, takeFrames, type DnsProxyOptions, type DnsQueryRecord } from '../../src/dns/proxy';
import { formatIp } from '../../src/net/address';
import { EgressMatcher } from '../../src/policy/matcher';
import { parsePolicy } from '../../src/policy/policy';
import { startDnsServer, type Zone } from '../helpers/dns-server';

const POLICY = 'egress-policy: block\nallowed-endpoints: >\n  allowed.test:443\n  twice.test:443\n';

const ZONE: () => Zone = () => ({
  'allowed.test': { A: ['198.18.2.10'] },
  'twice.test': { A: ['198.18.2.20', '198.18.2.21'] },
});

/** The test's own sockets come from here, past the spies below that watch the proxy's. */
const createSocket: typeof dgram.createSocket = dgram.createSocket.bind(dgram);

afterEach(() => {
  vi.restoreAllMocks();
});

function options(upstream: { host: string; port: number }, learned: string[], records: DnsQueryRecord[], extra: Partial<DnsProxyOptions> = {}): DnsProxyOptions {
  const policy = parsePolicy(POLICY);
  return {
    matcher: new EgressMatcher(policy),
    mode: policy.egressPolicy,
    upstream,
    learn: (addresses, ports) => learned.push(`${addresses.map(formatIp).join(',')} ${ports.join(',')}`),
    record: (r) => records.push(r),
    ...extra,
  };
}

/**
 * A proxy in front of a fresh test DNS server with ZONE, collecting into
 * fresh arrays; both closed after `body`. `beforeStart` runs once the DNS
 * server is up, just before the proxy starts (where spies go).
 */
async function withZone<T>(body: (proxy: DnsProxy, records: DnsQueryRecord[], learned: string[]) => Promise<T>, extra: Partial<DnsProxyOptions> = {}, beforeStart = () => {}): Promise<T> {
  const upstream = await startDnsServer(ZONE());
  const learned: string[] = [];
  const records: DnsQueryRecord[] = [];
  try {
    beforeStart();
    const proxy = await DnsProxy.start(options(upstream, learned, records, extra));
    try {
      return await body(proxy, records, learned);
    } finally {
      await proxy.close();
    }
  } finally {
    await upstream.close();
  }
}

const queryMessage = (name: string, id = 7) => dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] });
const dataOf = (response: dnsPacket.Packet) => (response.answers ?? []).map((a) => (a as { data?: unknown }).data);
const rcodeOf = (p: dnsPacket.Packet) => (p as { rcode?: string }).rcode;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Asks `name` over UDP; the decoded reply, or undefined after `waitMs`. */
async function queryUdp(port: number, name: string, host = '127.0.0.1', waitMs = 2000): Promise<dnsPacket.Packet | undefined> {
  const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  try {
    return await new Promise<dnsPacket.Packet | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), waitMs);
      socket.on('message', (response) => {
        clearTimeout(timer);
        resolve(dnsPacket.decode(response));
      });
      socket.send(queryMessage(name), port, host);
    });
  } finally {
    socket.close();
  }
}

/** Asks `name` over a TCP connection of its own; the decoded reply. */
async function queryTcp(port: number, name: string, host = '127.0.0.1'): Promise<dnsPacket.Packet> {
  const socket = net.connect(port, host);
  try {
    return await new Promise<dnsPacket.Packet>((resolve, reject) => {
      let received = Buffer.alloc(0);
      socket.on('error', reject);
      socket.on('connect', () => socket.write(dnsPacket.streamEncode({ type: 'query', id: 8, questions: [{ type: 'A', name }] })));
      socket.on('data', (data) => {
        received = Buffer.concat([received, data]);
        const [message] = takeFrames(received).messages;
        if (message) resolve(dnsPacket.decode(message));
      });
    });
  } finally {
    socket.destroy();
  }
}

type Kind = 'udp4' | 'udp6' | 'tcp4' | 'tcp6';
const KINDS: Kind[] = ['udp4', 'udp6', 'tcp4', 'tcp6'];
const hostOf = (kind: Kind) => (kind.endsWith('4') ? '127.0.0.1' : '::1');

/** Binds `port` on loopback as `kind`; resolves with a function that lets go of it. */
async function occupy(kind: Kind, port: number): Promise<() => Promise<void>> {
  if (kind.startsWith('udp')) {
    const socket = createSocket(kind as 'udp4' | 'udp6');
    await new Promise<void>((resolve, reject) => socket.once('error', reject).bind(port, hostOf(kind), () => resolve()));
    return () => new Promise<void>((resolve) => socket.close(() => resolve()));
  }
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen({ port, host: hostOf(kind) }, () => resolve()));
  return () => new Promise<void>((resolve) => server.close(() => resolve()));
}

/** 'free' when `port` can be bound on loopback as `kind` right now, else the error code. */
async function freedom(kind: Kind, port: number): Promise<string> {
  try {
    const release = await occupy(kind, port);
    await release();
    return 'free';
  } catch (error) {
    return (error as NodeJS.ErrnoException).code ?? String(error);
  }
}

async function freedoms(port: number, kinds: Kind[] = KINDS): Promise<Partial<Record<Kind, string>>> {
  const result: Partial<Record<Kind, string>> = {};
  for (const kind of kinds) result[kind] = await freedom(kind, port);
  return result;
}

/**
 * Has every IPv4 UDP socket the proxy creates (as start() does first, for
 * the port) pass through `patch`; counts them. The upstream socket, created
 * with the first forwarded query, is one too.
 */
function patchUdp4(patch: (socket: dgram.Socket, index: number) => void): { created: () => number } {
  const realCreate = dgram.createSocket;
  let created = 0;
  vi.spyOn(dgram, 'createSocket').mockImplementation(((...args: [type: unknown, ...rest: unknown[]]) => {
    const socket = (realCreate as (...a: unknown[]) => dgram.Socket).apply(dgram, args);
    if (args[0] === 'udp4') patch(socket, created++);
    return socket;
  }) as typeof dgram.createSocket);
  return { created: () => created };
}

/** Takes the port of the first `times` IPv4 sockets as `kind` the moment they have it, before start() goes on. */
function takePickedPorts(kind: Kind, times: number) {
  const taken: number[] = [];
  const releases: (() => Promise<void>)[] = [];
  const counter = patchUdp4((socket, index) => {
    if (index >= times) return;
    const bind = socket.bind.bind(socket) as (port: number, host: string, callback: () => void) => dgram.Socket;
    socket.bind = ((port: number, host: string, callback: () => void) => bind(port, host, () => {
      const picked = socket.address().port;
      taken.push(picked);
      void occupy(kind, picked).then((release) => {
        releases.push(release);
        callback();
      });
    })) as typeof socket.bind;
  });
  return { taken, created: counter.created, releaseAll: () => Promise.all(releases.map((release) => release())) };
}

describe('DnsProxy.start when the port it picked is taken', () => {
  it.each<Kind>(['udp6', 'tcp4', 'tcp6'])('picks another when the port is taken on %s, and lets go of all it held on the first', async (kind) => {
    let ports: ReturnType<typeof takePickedPorts> | undefined;
    try {
      await withZone(async (proxy) => {
        if (!ports) throw new Error('no spy');
        expect(ports.created()).toBe(2);
        expect(ports.taken).toHaveLength(1);
        expect(proxy.port).not.toBe(ports.taken[0]);
        expect(dataOf((await queryUdp(proxy.port, 'allowed.test', '::1'))!)).toEqual(['198.18.2.10']);
        expect(dataOf(await queryTcp(proxy.port, 'allowed.test', hostOf(kind)))).toEqual(['198.18.2.10']);
        expect(await freedoms(ports.taken[0], KINDS.filter((other) => other !== kind))).toEqual(Object.fromEntries(KINDS.filter((other) => other !== kind).map((other) => [other, 'free'])));
      }, {}, () => (ports = takePickedPorts(kind, 1)));
    } finally {
      await ports?.releaseAll();
    }
  });

  it('gives up with EADDRINUSE after 21 ports taken, having let go of each', async () => {
    expect.assertions(3);
    const upstream = await startDnsServer(ZONE());
    const ports = takePickedPorts('udp6', 1000);
    try {
      await DnsProxy.start(options(upstream, [], []));
    } catch (error) {
      expect((error as NodeJS.ErrnoException).code).toBe('EADDRINUSE');
    } finally {
      await ports.releaseAll();
      await upstream.close();
    }
    expect(ports.created()).toBe(21);
    const held = [];
    for (const port of ports.taken) if ((await freedom('udp4', port)) !== 'free') held.push(port);
    expect(held).toEqual([]);
  });

  it('fails at once, with its error, when IPv6 loopback cannot be bound, and lets go of IPv4', async () => {
    expect.assertions(3);
    const upstream = await startDnsServer(ZONE());
    const realCreate = dgram.createSocket;
    let udp4Port: number | undefined;
    let udp4Created = 0;
    vi.spyOn(dgram, 'createSocket').mockImplementation(((...args: [type: unknown, ...rest: unknown[]]) => {
      const socket = (realCreate as (...a: unknown[]) => dgram.Socket).apply(dgram, args);
      if (args[0] === 'udp4') {
        udp4Created++;
        socket.once('listening', () => (udp4Port = socket.address().port));
      }
      // a host with IPv6 turned off
      if (args[0] === 'udp6') socket.bind = (() => {
        process.nextTick(() => socket.emit('error', Object.assign(new Error('bind EADDRNOTAVAIL ::1'), { code: 'EADDRNOTAVAIL' })));
        return socket;
      }) as typeof socket.bind;
      return socket;
    }) as typeof dgram.createSocket);
    try {
      await DnsProxy.start(options(upstream, [], []));
    } catch (error) {
      expect((error as Error).message).toBe('bind EADDRNOTAVAIL ::1');
    } finally {
      await upstream.close();
    }
    expect(udp4Created).toBe(1);
    expect(await freedom('udp4', udp4Port!)).toBe('free');
  });

  it('fails with its error when IPv4 loopback cannot be bound', async () => {
    const upstream = await startDnsServer(ZONE());
    patchUdp4((socket, index) => {
      if (index === 0) socket.bind = (() => {
        process.nextTick(() => socket.emit('error', Object.assign(new Error('bind EADDRNOTAVAIL 127.0.0.1'), { code: 'EADDRNOTAVAIL' })));
        return socket;
      }) as typeof socket.bind;
    });
    try {
      await expect(DnsProxy.start(options(upstream, [], []))).rejects.toThrow('bind EADDRNOTAVAIL 127.0.0.1');
    } finally {
      await upstream.close();
    }
  });
});

describe('DnsProxy.close', () => {
  it('lets go of its port on UDP and TCP, IPv4 and IPv6', async () => {
    let port = 0;
    await withZone(async (proxy) => {
      port = proxy.port;
      expect(await freedoms(port)).toEqual({ udp4: 'EADDRINUSE', udp6: 'EADDRINUSE', tcp4: 'EADDRINUSE', tcp6: 'EADDRINUSE' });
    });
    expect(await freedoms(port)).toEqual({ udp4: 'free', udp6: 'free', tcp4: 'free', tcp6: 'free' });
  });

  it('returns when called a second time', async () => {
    await withZone(async (proxy) => {
      await queryUdp(proxy.port, 'allowed.test');
      await proxy.close();
      await expect(proxy.close()).resolves.toBeUndefined();
    });
  });
});

describe('DnsProxy and a job’s TCP connections', () => {
  /** Resolves with 'closed' when `socket` closes, or 'open' after `ms`. */
  const closedWithin = (socket: net.Socket, ms: number) =>
    new Promise<string>((resolve) => {
      const timer = setTimeout(() => resolve('open'), ms);
      socket.once('close', () => {
        clearTimeout(timer);
        resolve('closed');
      });
    });

  /** Polls until the proxy holds `count` connections, or 1 s; the count last seen. */
  async function connectionsBecome(proxy: DnsProxy, count: number): Promise<number> {
    for (let i = 0; i < 50 && proxy.openConnections !== count; i++) await sleep(20);
    return proxy.openConnections;
  }

  it('ends a connection idle for tcpIdleMs, and forgets it', async () => {
    await withZone(async (proxy) => {
      const socket = net.connect(proxy.port, '127.0.0.1').on('error', () => undefined);
      try {
        await new Promise((resolve) => socket.once('connect', resolve));
        expect(await connectionsBecome(proxy, 1)).toBe(1);
        expect(await closedWithin(socket, 2000)).toBe('closed');
        expect(await connectionsBecome(proxy, 0)).toBe(0);
      } finally {
        socket.destroy();
      }
    }, { tcpIdleMs: 100 });
  });

  it('keeps a connection that is not idle', async () => {
    await withZone(async (proxy) => {
      const socket = net.connect(proxy.port, '127.0.0.1');
      try {
        await new Promise((resolve) => socket.once('connect', resolve));
        expect(await closedWithin(socket, 300)).toBe('open');
        expect(proxy.openConnections).toBe(1);
      } finally {
        socket.destroy();
      }
    }, { tcpIdleMs: 5000 });
  });

  it('forgets a connection once the job hangs up', async () => {
    await withZone(async (proxy) => {
      for (let i = 0; i < 3; i++) expect(dataOf(await queryTcp(proxy.port, 'allowed.test'))).toEqual(['198.18.2.10']);
      expect(await connectionsBecome(proxy, 0)).toBe(0);
    });
  });

  it('keeps answering after a job resets its connection mid-query', async () => {
    await withZone(async (proxy, records) => {
      const socket = net.connect(proxy.port, '127.0.0.1');
      await new Promise((resolve) => socket.once('connect', resolve));
      socket.write(dnsPacket.streamEncode({ type: 'query', id: 30, questions: [{ type: 'A', name: 'allowed.test' }] }).subarray(0, 5));
      await connectionsBecome(proxy, 1);
      await sleep(50); // the partial query read, the proxy waiting for the rest
      socket.resetAndDestroy();
      expect(await connectionsBecome(proxy, 0)).toBe(0);
      expect(dataOf(await queryTcp(proxy.port, 'allowed.test'))).toEqual(['198.18.2.10']);
      expect(records.map((r) => r.transport)).toEqual(['tcp']);
    });
  });
});

describe('takeFrames (DNS over TCP)', () => {
  const frame = (...bytes: number[]) => Buffer.from([bytes.length >> 8, bytes.length & 0xff, ...bytes]);
  const plain = (result: { messages: Buffer[]; rest: Buffer }) => ({ messages: result.messages.map((m) => [...m]), rest: [...result.rest] });

  it.each<[string, Buffer, { messages: number[][]; rest: number[] }]>([
    ['nothing yet', Buffer.alloc(0), { messages: [], rest: [] }],
    ['half a length', Buffer.from([0]), { messages: [], rest: [0] }],
    ['a length and part of its message', Buffer.from([0, 3, 1, 2]), { messages: [], rest: [0, 3, 1, 2] }],
    ['one whole frame', frame(1, 2, 3), { messages: [[1, 2, 3]], rest: [] }],
    ['an empty frame, all there is', frame(), { messages: [[]], rest: [] }],
    ['two frames and the start of a third', Buffer.concat([frame(1), frame(2, 3), Buffer.from([0, 9, 4])]), { messages: [[1], [2, 3]], rest: [0, 9, 4] }],
    ['a frame of 300 bytes (a two-byte length)', frame(...new Array<number>(300).fill(7)), { messages: [new Array<number>(300).fill(7)], rest: [] }],
  ])('%s', (_label, stream, expected) => {
    expect(plain(takeFrames(stream))).toEqual(expected);
  });
});

describe('DnsProxy and its UDP upstream', () => {
  /** A UDP upstream on loopback answering every A query with `address`, noting the source port of each query. */
  async function recordingUpstream(address: string) {
    const sourcePorts: number[] = [];
    const socket = createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
    socket.on('message', (message, from) => {
      sourcePorts.push(from.port);
      const query = dnsPacket.decode(message);
      socket.send(dnsPacket.encode({ type: 'response', id: query.id, questions: query.questions, answers: [{ type: 'A', name: query.questions![0].name, ttl: 30, data: address }] }), from.port, from.address);
    });
    return { host: '127.0.0.1', port: socket.address().port, sourcePorts, close: () => new Promise<void>((resolve) => socket.close(() => resolve())) };
  }

  it('asks upstream from one socket for the job’s life, not one per query', async () => {
    const upstream = await recordingUpstream('198.18.2.40');
    try {
      const proxy = await DnsProxy.start(options(upstream, [], []));
      try {
        for (let i = 0; i < 3; i++) expect(dataOf((await queryUdp(proxy.port, 'allowed.test'))!)).toEqual(['198.18.2.40']);
      } finally {
        await proxy.close();
      }
      expect(upstream.sourcePorts).toHaveLength(3);
      expect(new Set(upstream.sourcePorts).size).toBe(1);
    } finally {
      await upstream.close();
    }
  });

  it('answers SERVFAIL at once, naming why, when a query cannot be sent upstream', async () => {
    const upstream = await recordingUpstream('198.18.2.40');
    const failure = Object.assign(new Error('send ENOBUFS 127.0.0.1:' + upstream.port), { code: 'ENOBUFS' });
    // the proxy's first two IPv4 sockets are its own (the port, then upstream)
    patchUdp4((socket, index) => {
      if (index === 1) socket.send = ((...args: unknown[]) => process.nextTick(args[args.length - 1] as (error: Error) => void, failure)) as typeof socket.send;
    });
    const records: DnsQueryRecord[] = [];
    try {
      const proxy = await DnsProxy.start(options(upstream, [], records, { timeoutMs: 5000 }));
      try {
        const response = await queryUdp(proxy.port, 'allowed.test', '127.0.0.1', 1500);
        expect([response?.id, response && rcodeOf(response)]).toEqual([7, 'SERVFAIL']);
        expect(records.map((r) => [r.rcode, r.error])).toEqual([['SERVFAIL', failure.message]]);
        expect(proxy.stats.upstreamErrors).toBe(1);
        expect(upstream.sourcePorts).toEqual([]);
      } finally {
        await proxy.close();
      }
    } finally {
      await upstream.close();
    }
  });

  it('keeps answering after errors on its UDP sockets (listening and upstream)', async () => {
    const sockets: dgram.Socket[] = [];
    const types: unknown[] = [];
    const watch = () => {
      const realCreate = dgram.createSocket;
      vi.spyOn(dgram, 'createSocket').mockImplementation(((...args: [type: unknown, ...rest: unknown[]]) => {
        const socket = (realCreate as (...a: unknown[]) => dgram.Socket).apply(dgram, args);
        sockets.push(socket);
        types.push(args[0]);
        return socket;
      }) as typeof dgram.createSocket);
    };
    await withZone(async (proxy) => {
      expect(dataOf((await queryUdp(proxy.port, 'allowed.test'))!)).toEqual(['198.18.2.10']);
      expect(types).toEqual(['udp4', 'udp6', 'udp4']); // the port's two, then upstream's
      // what a reply that could not be sent raises, say; a long-lived socket meets more than one
      for (let time = 0; time < 2; time++) for (const socket of sockets) socket.emit('error', Object.assign(new Error('send ENOBUFS'), { code: 'ENOBUFS' }));
      expect(dataOf((await queryUdp(proxy.port, 'allowed.test'))!)).toEqual(['198.18.2.10']);
      expect(dataOf((await queryUdp(proxy.port, 'allowed.test', '::1'))!)).toEqual(['198.18.2.10']);
    }, {}, watch);
  });
});

describe('DnsProxy when learning fails', () => {
  it('names every address it could not allow', async () => {
    await withZone(async (proxy, records, learned) => {
      expect(rcodeOf((await queryUdp(proxy.port, 'twice.test'))!)).toBe('SERVFAIL');
      expect(records.map((r) => r.error)).toEqual(['could not allow 198.18.2.20, 198.18.2.21: allow map full']);
      expect(learned).toEqual([]);
    }, { learn: () => { throw new Error('allow map full'); } });
  });
});
