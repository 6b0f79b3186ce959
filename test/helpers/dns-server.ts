/**
 * A tiny authoritative DNS server for tests (UDP and TCP on loopback), so
 * that test answers come from a server the test itself started.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import * as dnsPacket from 'dns-packet';

export interface Zone {
  [name: string]: { A?: string[]; AAAA?: string[]; CNAME?: string; ttl?: number };
}

export interface TestDnsServer {
  host: string;
  port: number;
  /** Queries received, as "name TYPE transport". */
  queries: string[];
  close(): Promise<void>;
}

function answer(zone: Zone, query: dnsPacket.Packet): Buffer {
  const question = query.questions![0];
  const answers: dnsPacket.Answer[] = [];
  let name = question.name.toLowerCase();
  for (let hops = 0; hops < 8; hops++) {
    const record = zone[name];
    if (!record) break;
    if (record.CNAME) {
      answers.push({ type: 'CNAME', name, ttl: record.ttl ?? 60, data: record.CNAME });
      name = record.CNAME;
      continue;
    }
    if (question.type === 'A') for (const data of record.A ?? []) answers.push({ type: 'A', name, ttl: record.ttl ?? 60, data });
    if (question.type === 'AAAA') for (const data of record.AAAA ?? []) answers.push({ type: 'AAAA', name, ttl: record.ttl ?? 60, data });
    break;
  }
  const known = zone[question.name.toLowerCase()] !== undefined;
  return dnsPacket.encode({
    id: query.id,
    type: 'response',
    flags: dnsPacket.AUTHORITATIVE_ANSWER | (known ? 0 : 3),
    questions: query.questions,
    answers,
  });
}

/**
 * UDP takes an ephemeral port first, then TCP asks for the same one. That
 * port may already be held on TCP (a client's ephemeral port, another test's
 * server), so on EADDRINUSE both are let go and another port is tried.
 */
export async function startDnsServer(zone: Zone, host = '127.0.0.1'): Promise<TestDnsServer> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(zone, host);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 20) throw error;
    }
  }
}

async function startOnce(zone: Zone, host: string): Promise<TestDnsServer> {
  const queries: string[] = [];
  const udp = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  await new Promise<void>((resolve, reject) => udp.once('error', reject).bind(0, host, () => resolve()));
  const port = udp.address().port;
  udp.on('message', (message, from) => {
    const query = dnsPacket.decode(message);
    queries.push(`${query.questions![0].name} ${query.questions![0].type} udp`);
    udp.send(answer(zone, query), from.port, from.address);
  });
  const tcp = net.createServer((socket) => {
    let pending = Buffer.alloc(0);
    socket.on('error', () => undefined);
    socket.on('data', (chunk) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
        const query = dnsPacket.decode(pending.subarray(2, 2 + pending.readUInt16BE(0)));
        pending = pending.subarray(2 + pending.readUInt16BE(0));
        queries.push(`${query.questions![0].name} ${query.questions![0].type} tcp`);
        socket.write(dnsPacket.streamEncode(dnsPacket.decode(answer(zone, query))));
      }
    });
  });
  try {
    await new Promise<void>((resolve, reject) => tcp.once('error', reject).listen(port, host, () => resolve()));
  } catch (error) {
    udp.close();
    throw error;
  }
  return {
    host,
    port,
    queries,
    close: () => new Promise((resolve) => { udp.close(); tcp.close(() => resolve()); }),
  };
}
