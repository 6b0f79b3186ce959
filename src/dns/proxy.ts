/**
 * The per-job DNS proxy. The egress hooks redirect every DNS query of the job
 * (port 53, UDP and TCP, to any address) here. Names the policy allows are
 * forwarded upstream, and the addresses of the answer (A and AAAA, through
 * CNAME chains) are allowed in the kernel before the answer reaches the job.
 * Names it does not allow are answered NXDOMAIN in block mode.
 *
 * NXDOMAIN rather than REFUSED: glibc answers REFUSED by trying every other
 * nameserver and reporting a temporary failure, which package managers retry
 * for minutes; NXDOMAIN fails at once, and the job's summary says why.
 */
import { randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import { formatIp, type IpAddress } from '../net/address';
import type { EgressMatcher } from '../policy/matcher';
import type { EgressMode } from '../policy/policy';
import { decideAnswer, decideQuery, errorReply, isFromUpstream, type DnsOutcome, type DnsVerdict } from './decision';
import { SocketOwners, type DnsClient } from './socket-owner';

export interface Upstream {
  host: string;
  port: number;
}

export type { DnsClient } from './socket-owner';

export interface DnsQueryRecord {
  name: string;
  type: string;
  verdict: DnsVerdict;
  /** Addresses (and CNAME targets) of the answer the job got. */
  answers: string[];
  rcode: string;
  transport: 'udp' | 'tcp';
  /** Smallest TTL of the answer's chain, in seconds. */
  ttl?: number;
  /** Set when upstream could not be reached or answered garbage. */
  error?: string;
  /** When the answer was decided. */
  time: Date;
  /** The socket that asked (absent for answer() called directly). */
  client?: DnsClient;
  /**
   * With clientPids: the job process that owns that socket, when it can be
   * told; found while the answer is on its way (never rejects).
   */
  asker?: Promise<number | undefined>;
}

export interface DnsProxyOptions {
  matcher: EgressMatcher;
  mode: EgressMode;
  upstream: Upstream;
  /** Called with an allowed name's addresses and ports before the answer is sent; when it throws, the job gets SERVFAIL. */
  learn: (addresses: IpAddress[], ports: number[]) => void;
  record: (query: DnsQueryRecord) => void;
  /** The job's processes: with it, each record says which of them asked (src/dns/socket-owner.ts). */
  clientPids?: () => number[];
  timeoutMs?: number;
  /** How long a job's TCP connection may sit idle before the proxy ends it (default 30 s). */
  tcpIdleMs?: number;
}

/** Where the proxy listens: loopback only (the egress hooks redirect there), the same port on both. */
const LISTEN = { ip4: '127.0.0.1', ip6: '::1' };

export interface DnsProxyStats {
  queries: number;
  malformed: number;
  upstreamErrors: number;
}

export class DnsProxy {
  readonly stats: DnsProxyStats = { queries: 0, malformed: 0, upstreamErrors: 0 };
  private readonly sockets: dgram.Socket[] = [];
  private readonly servers: net.Server[] = [];
  private readonly connections = new Set<net.Socket>();
  private upstreamUdp: dgram.Socket | undefined;
  private readonly pendingUdp = new Map<number, (response: Buffer) => void>();
  private nextUpstreamId = randomInt(0x10000);
  private readonly owners: SocketOwners | undefined;
  /** Askers of recorded queries still being looked for. */
  private readonly pendingAskers = new Set<Promise<number | undefined>>();
  private constructor(
    private readonly options: DnsProxyOptions,
    readonly port: number,
  ) {
    this.owners = options.clientPids ? new SocketOwners(options.clientPids) : undefined;
  }

  /** The job's TCP connections still open (each ends when the job hangs up, goes idle, or the proxy closes). */
  get openConnections(): number {
    return this.connections.size;
  }

  /** Resolves once the asker of every query recorded so far is known (or known to be unknown). */
  async settled(): Promise<void> {
    while (this.pendingAskers.size > 0) await Promise.all([...this.pendingAskers]);
  }

  /** Listens on UDP and TCP, IPv4 and IPv6 loopback, on one free port. */
  static async start(options: DnsProxyOptions): Promise<DnsProxy> {
    for (let attempt = 0; ; attempt++) {
      const udp4 = dgram.createSocket('udp4');
      await new Promise<void>((resolve, reject) => udp4.once('error', reject).bind(0, LISTEN.ip4, () => resolve()));
      const port = udp4.address().port;
      const proxy = new DnsProxy(options, port);
      proxy.sockets.push(udp4);
      try {
        await proxy.listenAll(udp4);
        return proxy;
      } catch (error) {
        await proxy.close();
        if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 20) throw error;
      }
    }
  }

  private async listenAll(udp4: dgram.Socket): Promise<void> {
    udp4.on('message', (message, from) => this.onDatagram(udp4, message, from));
    udp4.on('error', () => undefined);
    const udp6 = dgram.createSocket('udp6');
    this.sockets.push(udp6);
    await new Promise<void>((resolve, reject) => udp6.once('error', reject).bind(this.port, LISTEN.ip6, () => resolve()));
    udp6.on('message', (message, from) => this.onDatagram(udp6, message, from));
    udp6.on('error', () => undefined);
    for (const host of [LISTEN.ip4, LISTEN.ip6]) {
      const server = net.createServer((socket) => this.onTcpConnection(socket));
      this.servers.push(server);
      await new Promise<void>((resolve, reject) => server.once('error', reject).listen({ port: this.port, host }, () => resolve()));
    }
  }

  private onDatagram(socket: dgram.Socket, message: Buffer, from: dgram.RemoteInfo): void {
    void this.answer(message, 'udp', { transport: 'udp', address: from.address, port: from.port }).then(
      (response) => response && socket.send(response, from.port, from.address),
      () => undefined,
    );
  }

  private onTcpConnection(socket: net.Socket): void {
    this.connections.add(socket);
    socket.on('close', () => this.connections.delete(socket));
    socket.on('error', () => undefined);
    socket.setTimeout(this.options.tcpIdleMs ?? 30_000, () => socket.destroy());
    let pending: Buffer = Buffer.alloc(0);
    // set while the connection is open, as it is in its handler
    const client: DnsClient = { transport: 'tcp', address: socket.remoteAddress!, port: socket.remotePort! };
    socket.on('data', (chunk) => {
      const { messages, rest } = takeFrames(Buffer.concat([pending, chunk]));
      pending = rest;
      for (const message of messages) {
        void this.answer(message, 'tcp', client).then((response) => {
          if (!response || socket.destroyed) return;
          socket.write(tcpFramed(response));
        });
      }
    });
  }

  /** The response bytes for one query, or undefined to stay silent (garbage). */
  async answer(message: Buffer, transport: 'udp' | 'tcp', client?: DnsClient): Promise<Buffer | undefined> {
    this.stats.queries++;
    // looked for now, while the asking socket is surely open; the answer does not wait for it
    const owner = client && this.owners ? this.owners.owner(client) : undefined;
    const decision = decideQuery(message, this.options.matcher, this.options.mode);
    if (decision.action === 'drop' || decision.action === 'refuse') {
      this.stats.malformed++;
      return decision.action === 'refuse' ? decision.reply : undefined;
    }
    const { question } = decision;
    const record = (outcome: DnsOutcome) => {
      if (owner) {
        this.pendingAskers.add(owner);
        void owner.then(() => this.pendingAskers.delete(owner));
      }
      this.options.record({ name: question.name, type: question.type, verdict: question.verdict, ...outcome, transport, time: new Date(), client, asker: owner });
    };
    if (decision.action === 'answer') {
      record(decision.outcome);
      return decision.reply;
    }
    let upstream: { response: Buffer } | { error: Error };
    try {
      upstream = { response: transport === 'udp' ? await this.forwardUdp(message) : await this.forwardTcp(message) };
    } catch (error) {
      upstream = { error: error as Error };
    }
    const result = decideAnswer(decision.query, question, upstream);
    if (result.upstreamFailed) this.stats.upstreamErrors++;
    if (result.learn) {
      try {
        this.options.learn(result.learn.addresses, result.learn.ports);
      } catch (error) {
        // not allowed in the kernel (its map full, say): the job is not told an address it could not reach, and the event says why
        record({ rcode: 'SERVFAIL', answers: [], error: `could not allow ${result.learn.addresses.map(formatIp).join(', ')}: ${(error as Error).message}` });
        return errorReply(decision.query, 'SERVFAIL');
      }
    }
    record(result.outcome);
    return result.reply;
  }

  /**
   * Forwards over one long-lived UDP socket. Each query gets an upstream id
   * of its own (clients' ids may collide), restored in the answer; a socket
   * per query cost more than everything else the proxy does.
   */
  private forwardUdp(message: Buffer): Promise<Buffer> {
    const { host, port } = this.options.upstream;
    const upstream = this.upstreamSocket();
    const id = freeUpstreamId(this.nextUpstreamId, this.pendingUdp);
    if (id === undefined) return Promise.reject(new Error(`too many queries in flight to upstream ${host}:${port}`));
    // Stryker disable next-line ArithmeticOperator: walking down (id - 1) gives the same guarantees, ids unique in flight and not reused until the 16 bits wrap
    this.nextUpstreamId = id + 1;
    const clientId = message.readUInt16BE(0);
    const outgoing = Buffer.from(message);
    outgoing.writeUInt16BE(id, 0);
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pendingUdp.delete(id);
        reject(new Error(`upstream ${host}:${port} did not answer`));
      }, this.options.timeoutMs ?? 3000);
      this.pendingUdp.set(id, (response) => {
        clearTimeout(timer);
        response.writeUInt16BE(clientId, 0);
        resolve(response);
      });
      upstream.send(outgoing, port, host, (error) => {
        if (!error) return;
        clearTimeout(timer);
        this.pendingUdp.delete(id);
        reject(error);
      });
    });
  }

  private upstreamSocket(): dgram.Socket {
    if (!this.upstreamUdp) {
      const socket = dgram.createSocket(this.options.upstream.host.includes(':') ? 'udp6' : 'udp4');
      socket.on('error', () => undefined);
      socket.on('message', (response, from) => {
        if (response.length < 12 || !isFromUpstream(this.options.upstream, from)) return;
        const waiter = this.pendingUdp.get(response.readUInt16BE(0));
        if (!waiter) return;
        this.pendingUdp.delete(response.readUInt16BE(0));
        waiter(response);
      });
      this.upstreamUdp = socket;
    }
    return this.upstreamUdp;
  }

  private forwardTcp(message: Buffer): Promise<Buffer> {
    const { host, port } = this.options.upstream;
    return new Promise<Buffer>((resolve, reject) => {
      const socket = net.connect({ host, port });
      let received = Buffer.alloc(0);
      const timer = setTimeout(() => done(new Error(`upstream ${host}:${port} did not answer over TCP`)), this.options.timeoutMs ?? 3000);
      const done = (error: Error | null, response?: Buffer) => {
        clearTimeout(timer);
        socket.destroy();
        if (error) reject(error);
        else resolve(response!);
      };
      socket.on('error', (error) => done(error));
      socket.on('connect', () => {
        socket.write(tcpFramed(message));
      });
      socket.on('data', (chunk) => {
        received = Buffer.concat([received, chunk]);
        // the length prefix caps a message at 64 KiB: nothing else bounds it
        const [response] = takeFrames(received).messages;
        if (response) done(null, response);
      });
    });
  }

  async close(): Promise<void> {
    for (const socket of this.connections) socket.destroy();
    this.upstreamUdp?.close();
    this.upstreamUdp = undefined;
    await Promise.all([
      ...this.sockets.map((socket) => new Promise<void>((resolve) => { try { socket.close(() => resolve()); } catch { resolve(); } })),
      ...this.servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))),
    ]);
  }
}

/**
 * The first id from `next` on (wrapping at 16 bits) that no query in flight
 * upstream uses; none when all 65,536 are (a job flooding a silent upstream
 * would otherwise make the search loop for ever).
 */
export function freeUpstreamId(next: number, inFlight: { has(id: number): boolean; size: number }): number | undefined {
  if (inFlight.size > 0xffff) return undefined;
  let id = next & 0xffff;
  while (inFlight.has(id)) id = (id + 1) & 0xffff;
  return id;
}

/**
 * The whole DNS-over-TCP frames at the start of `stream` (RFC 1035 §4.2.2:
 * each message after its length in two bytes), and the bytes after them, a
 * frame still arriving.
 */
export function takeFrames(stream: Buffer): { messages: Buffer[]; rest: Buffer } {
  const messages: Buffer[] = [];
  let rest = stream;
  while (rest.length >= 2 && rest.length >= 2 + rest.readUInt16BE(0)) {
    const end = 2 + rest.readUInt16BE(0);
    messages.push(rest.subarray(2, end));
    rest = rest.subarray(end);
  }
  return { messages, rest };
}

/** A DNS message as DNS over TCP sends it: its length in two bytes first (RFC 1035 §4.2.2). */
function tcpFramed(message: Buffer): Buffer {
  const framed = Buffer.alloc(2 + message.length);
  framed.writeUInt16BE(message.length);
  message.copy(framed, 2);
  return framed;
}
