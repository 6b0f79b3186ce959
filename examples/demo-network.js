#!/usr/bin/env node
/*
 * The demo's little internet, run by examples/demo.sh inside the network
 * namespace it creates: an authoritative DNS server (UDP and TCP, port 53)
 * for the demo's names, and a "package registry" on TCP port 443 that
 * greets whoever connects. Nothing here can reach or be reached from
 * outside that namespace's veth.
 *
 *   node examples/demo-network.js --dns ADDRESS --log FILE NAME=ADDRESS…
 *
 * Every query it receives is appended to FILE as a JSON line ({name, type,
 * transport, rcode}), so the demo's test can check that every answer the job
 * got came from here. Prints "ready" once all sockets are bound.
 */
'use strict';
const dgram = require('node:dgram');
const fs = require('node:fs');
const net = require('node:net');
const dnsPacket = require('dns-packet');

function parseArgs(argv) {
  const options = { zone: new Map() };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--dns' || arg === '--log') options[arg.slice(2)] = argv[++i];
    else if (/^[a-z0-9.-]+=[0-9.]+$/i.test(arg)) {
      const [name, address] = arg.split('=');
      options.zone.set(name.toLowerCase(), address);
    } else throw new Error(`demo-network: unexpected argument '${arg}' (expected --dns ADDRESS, --log FILE, NAME=ADDRESS)`);
  }
  if (!options.dns || !options.log) throw new Error('demo-network: --dns ADDRESS and --log FILE are required');
  return options;
}

const options = parseArgs(process.argv.slice(2));

/** The answer to one query: the zone's A record, NXDOMAIN for names it does not hold. */
function answer(query, transport) {
  const question = query.questions[0];
  const name = question.name.toLowerCase();
  const address = options.zone.get(name);
  const answers = address && question.type === 'A' ? [{ type: 'A', name: question.name, ttl: 60, data: address }] : [];
  const rcode = address ? 'NOERROR' : 'NXDOMAIN';
  fs.appendFileSync(options.log, JSON.stringify({ name, type: question.type, transport, rcode }) + '\n');
  return dnsPacket.encode({
    id: query.id,
    type: 'response',
    flags: dnsPacket.AUTHORITATIVE_ANSWER | (address ? 0 : 3 /* NXDOMAIN */),
    questions: query.questions,
    answers,
  });
}

function decode(message) {
  try {
    const query = dnsPacket.decode(message);
    return query.questions && query.questions.length === 1 ? query : undefined;
  } catch {
    return undefined; // not DNS: dropped, as a server would
  }
}

const udp = dgram.createSocket('udp4');
udp.on('message', (message, from) => {
  const query = decode(message);
  if (query) udp.send(answer(query, 'udp'), from.port, from.address);
});

const dnsTcp = net.createServer((socket) => {
  let pending = Buffer.alloc(0);
  socket.on('error', () => undefined);
  socket.on('data', (chunk) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
      const query = decode(pending.subarray(2, 2 + pending.readUInt16BE(0)));
      pending = pending.subarray(2 + pending.readUInt16BE(0));
      if (!query) return socket.destroy();
      const reply = answer(query, 'tcp');
      const length = Buffer.alloc(2);
      length.writeUInt16BE(reply.length);
      socket.write(Buffer.concat([length, reply]));
    }
  });
});

const registry = net.createServer((socket) => {
  socket.on('error', () => undefined);
  socket.end('demo registry: hello from inside the demo network\n');
});

const listen = (server, port, host) => new Promise((resolve, reject) => server.once('error', reject).listen(port, host, resolve));

Promise.all([
  new Promise((resolve, reject) => udp.once('error', reject).bind(53, options.dns, resolve)),
  listen(dnsTcp, 53, options.dns),
  listen(registry, 443, '0.0.0.0'),
]).then(
  () => console.log('ready'),
  (error) => {
    console.error(`demo-network: ${error.message}`);
    process.exit(1);
  },
);
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
