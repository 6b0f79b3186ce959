/**
 * A DNS load client in a process of its own (so that its event loop does not
 * share a thread with the proxy it measures).
 *   node dns-client.js HOST PORT NAME sequential COUNT   → latencies (µs) as JSON
 *   node dns-client.js HOST PORT NAME flood SECONDS CONCURRENCY → answers/s as JSON
 */
import dgram from 'node:dgram';
import * as dnsPacket from 'dns-packet';

const [host, portText, name, mode, a, b] = process.argv.slice(2);
const port = Number(portText);
const socket = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
let nextId = 1;
const waiting = new Map<number, (ok: boolean) => void>();
socket.on('message', (message) => {
  const id = message.readUInt16BE(0);
  waiting.get(id)?.(true);
  waiting.delete(id);
});

function query(): Promise<boolean> {
  const id = nextId++ & 0xffff;
  const message = dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] });
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      waiting.delete(id);
      resolve(false);
    }, 1000);
    waiting.set(id, (ok) => {
      clearTimeout(timer);
      resolve(ok);
    });
    socket.send(message, port, host);
  });
}

async function main(): Promise<void> {
  if (mode === 'sequential') {
    const latencies: number[] = [];
    let lost = 0;
    for (let i = 0; i < Number(a); i++) {
      const started = process.hrtime.bigint();
      if (await query()) latencies.push(Number(process.hrtime.bigint() - started) / 1000);
      else lost++;
    }
    process.stdout.write(JSON.stringify({ latencies, lost }));
  } else {
    const until = Date.now() + Number(a) * 1000;
    let answered = 0;
    let lost = 0;
    const worker = async () => {
      while (Date.now() < until) (await query()) ? answered++ : lost++;
    };
    const started = Date.now();
    await Promise.all(Array.from({ length: Number(b) }, worker));
    process.stdout.write(JSON.stringify({ qps: answered / ((Date.now() - started) / 1000), answered, lost }));
  }
  socket.close();
}

void main();
