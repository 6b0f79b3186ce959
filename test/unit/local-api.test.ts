/** The local API's transport over real unix sockets (src/agent/local-api.ts), and the native peer credentials it rests on. */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CallerRefusedError, parseStatFacts } from '../../src/agent/caller';
import {
  API_CODES,
  DEFAULT_MAX_LINE_BYTES,
  LocalApiClient,
  LocalApiError,
  LocalApiServer,
  socketFd,
  socketPath,
  type LocalApiConnection,
  type LocalApiLog,
  type LocalApiServerOptions,
  type PeerCredentials,
} from '../../src/agent/local-api';
import { loadNative } from '../../src/sensor/native';
import { RingfenceError } from '../../src/util/errors';

type LogLine = [level: string, message: string, fields: Record<string, unknown> | undefined];

let dir: string;
let sock: string;
let logs: LogLine[];
let servers: LocalApiServer<unknown>[];
let clients: LocalApiClient[];
const log: LocalApiLog = (level, message, fields) => void logs.push([level, message, fields]);

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-api-'));
  sock = path.join(dir, 'agent.sock');
  logs = [];
  servers = [];
  clients = [];
});

afterEach(async () => {
  for (const client of clients) client.close();
  for (const server of servers) await server.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function serve<C = PeerCredentials>(options: Partial<LocalApiServerOptions<C>> = {}, at = sock): Promise<LocalApiServer<C>> {
  const server = new LocalApiServer<C>({ log, ...options });
  servers.push(server as LocalApiServer<unknown>);
  server.handle('echo', (params, caller) => ({ params, caller }));
  await server.listen(at);
  return server;
}

async function connect(at = sock): Promise<LocalApiClient> {
  const client = await LocalApiClient.connect(at);
  clients.push(client);
  return client;
}

/** A client that writes raw bytes and reads raw lines. */
class RawClient {
  readonly socket: net.Socket;
  private buffered = '';
  private waiting: (() => void)[] = [];
  ended = false;

  constructor(at: string) {
    this.socket = net.connect(at);
    this.socket.setEncoding('utf8');
    this.socket.on('data', (text: string) => {
      this.buffered += text;
      this.wake();
    });
    this.socket.on('close', () => {
      this.ended = true;
      this.wake();
    });
    this.socket.on('error', () => undefined);
  }

  private wake() {
    for (const waiter of this.waiting.splice(0)) waiter();
  }

  send(text: string): void {
    this.socket.write(text);
  }

  /** The next line, parsed; undefined when the connection ended first. */
  async next(): Promise<unknown> {
    for (;;) {
      const newline = this.buffered.indexOf('\n');
      if (newline >= 0) {
        const line = this.buffered.slice(0, newline);
        this.buffered = this.buffered.slice(newline + 1);
        return JSON.parse(line);
      }
      if (this.ended) return undefined;
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
  }

  async closed(): Promise<void> {
    while (!this.ended) await new Promise<void>((resolve) => this.waiting.push(resolve));
  }
}

const raw = (at = sock) => new RawClient(at);

/** A promise and its resolver. */
function gate<T = void>() {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => (open = resolve));
  return { promise, open };
}

async function rejection(promise: Promise<unknown>): Promise<LocalApiError> {
  try {
    await promise;
  } catch (error) {
    return error as LocalApiError;
  }
  throw new Error('expected a rejection');
}

const ownStartTime = () => parseStatFacts(fs.readFileSync(`/proc/${process.pid}/stat`, 'utf8'))!.startTime;

describe('round trips', () => {
  it('a call gets its handler result, with the caller the kernel names (this process)', async () => {
    await serve();
    const client = await connect();
    const reply = await client.call('echo', { a: [1, 'two'] });
    expect(reply).toEqual({
      params: { a: [1, 'two'] },
      caller: { pid: process.pid, uid: process.getuid!(), gid: process.getgid!(), startTime: ownStartTime(), pidReuseChecked: true },
    });
  });

  it('absent params reach the handler as null, an undefined result comes back as null', async () => {
    const server = await serve();
    const seen: unknown[] = [];
    server.handle('nothing', (params) => void seen.push(params));
    const client = await connect();
    expect(await client.call('nothing')).toBeNull();
    expect(seen).toEqual([null]);
  });

  it('concurrent calls are answered as they finish, each to its own id', async () => {
    const server = await serve();
    const gates = { first: gate<string>(), second: gate<string>() };
    server.handle('wait', (params) => gates[(params as { which: 'first' | 'second' }).which].promise);
    const client = await connect();
    const order: string[] = [];
    const first = client.call('wait', { which: 'first' }).then((r) => order.push(`first:${r}`));
    const second = client.call('wait', { which: 'second' }).then((r) => order.push(`second:${r}`));
    await new Promise((resolve) => setTimeout(resolve, 20));
    gates.second.open('B');
    await second;
    gates.first.open('A');
    await first;
    expect(order).toEqual(['second:B', 'first:A']);
  });

  it('the server pushes notifications in order, before the reply written after them', async () => {
    const server = await serve();
    server.handle('stream', (params, _caller, connection) => {
      for (let i = 0; i < 3; i++) connection.notify('event', { i, of: params });
      return 'done';
    });
    const client = await connect();
    const received: unknown[] = [];
    client.on('notification', (method, params) => received.push([method, params]));
    expect(await client.call('stream', 'x')).toBe('done');
    expect(received).toEqual([
      ['event', { i: 0, of: 'x' }],
      ['event', { i: 1, of: 'x' }],
      ['event', { i: 2, of: 'x' }],
    ]);
  });

  it('a notification after the connection closed is not sent (notify says so)', async () => {
    const server = await serve();
    const held = gate<LocalApiConnection<PeerCredentials>>();
    server.handle('hold', (_p, _c, connection) => held.open(connection));
    const client = await connect();
    void client.call('hold').catch(() => undefined);
    const connection = await held.promise;
    expect(connection.notify('event', 1)).toBe(true);
    const closed = gate<Error | undefined>();
    connection.onClose(closed.open);
    client.close();
    await closed.promise;
    expect(connection.closed).toBe(true);
    expect(connection.notify('event', 2)).toBe(false);
  });
});

describe('what the server refuses, and goes on serving', () => {
  it('a line that is not JSON: an error with id null naming the line; the connection stays usable', async () => {
    await serve();
    const client = raw();
    client.send('{"id": 1, "method": "echo"}\n{nope\n');
    // the error is written at once, the handler's result a tick later: replies need not keep the order of requests
    const replies = [await client.next(), await client.next()] as { id: number | null; error?: { code: string; message: string } }[];
    const error = replies.find((r) => r.id === null)!;
    expect(replies.find((r) => r.id === 1)).toEqual({ id: 1, result: { params: null, caller: expect.objectContaining({ pid: process.pid }) } });
    expect(error.error!.code).toBe(API_CODES.badJson);
    expect(error.error!.message).toMatch(/^request line 2: not JSON \(.+\)$/);
    client.send('{"id": "s", "method": "echo", "params": 3}\n');
    expect(await client.next()).toMatchObject({ id: 's', result: { params: 3 } });
    expect(logs.filter(([level]) => level === 'warn').map(([, , f]) => f?.code)).toEqual([API_CODES.badJson]);
  });

  it('requests without an object, an id or a method', async () => {
    await serve();
    const client = raw();
    client.send('[1]\n{"method": "echo"}\n{"id": true, "method": "echo"}\n{"id": 4}\n{"id": 5, "method": ""}\n\n');
    expect(await client.next()).toEqual({ id: null, error: { code: API_CODES.badRequest, message: 'request line 1: expected an object {id, method, params}' } });
    expect(await client.next()).toEqual({ id: null, error: { code: API_CODES.badRequest, message: "request line 2: 'id' must be a number or a string" } });
    expect(await client.next()).toEqual({ id: null, error: { code: API_CODES.badRequest, message: "request line 3: 'id' must be a number or a string" } });
    expect(await client.next()).toEqual({ id: 4, error: { code: API_CODES.badRequest, message: "request line 4: 'method' must be a non-empty string" } });
    expect(await client.next()).toEqual({ id: 5, error: { code: API_CODES.badRequest, message: "request line 5: 'method' must be a non-empty string" } });
  });

  it('an unknown method', async () => {
    await serve();
    const client = await connect();
    const error = await rejection(client.call('nope'));
    expect(error).toBeInstanceOf(LocalApiError);
    expect(error.code).toBe(API_CODES.unknownMethod);
    expect(error.message).toBe("unknown method 'nope'");
    expect(error.fromDaemon).toBe(true);
  });

  it("a handler's RingfenceError goes out with its own code and message", async () => {
    const server = await serve();
    server.handle('refuse', () => {
      throw new RingfenceError('a job may not start a fresh session', 'RF_NESTED');
    });
    const client = await connect();
    const error = await rejection(client.call('refuse'));
    expect([error.code, error.message, error.fromDaemon]).toEqual(['RF_NESTED', 'a job may not start a fresh session', true]);
    expect(logs).toContainEqual(['warn', 'local API request refused', expect.objectContaining({ method: 'refuse', code: 'RF_NESTED' })]);
  });

  it('a handler that throws or rejects otherwise: RF_API_INTERNAL naming the method, logged as an error', async () => {
    const server = await serve();
    server.handle('boom', () => {
      throw new Error('kaput');
    });
    server.handle('later', async () => {
      await Promise.resolve();
      throw new TypeError('no such thing');
    });
    const client = await connect();
    const thrown = await rejection(client.call('boom'));
    expect([thrown.code, thrown.message]).toEqual([API_CODES.internal, 'boom failed: kaput']);
    const rejected = await rejection(client.call('later'));
    expect([rejected.code, rejected.message]).toEqual([API_CODES.internal, 'later failed: no such thing']);
    const errors = logs.filter(([level]) => level === 'error');
    expect(errors.map(([, message, fields]) => [message, (fields?.err as Error).message])).toEqual([
      ['local API method boom failed', 'kaput'],
      ['local API method later failed', 'no such thing'],
    ]);
    expect(await client.call('echo', 1)).toMatchObject({ params: 1 });
  });

  it('a result JSON cannot hold is an error reply, not a crash', async () => {
    const server = await serve();
    server.handle('big', () => ({ id: 5n }));
    const client = await connect();
    const error = await rejection(client.call('big'));
    expect(error.code).toBe(API_CODES.internal);
    expect(error.message).toMatch(/^big failed: its result cannot be sent \(.*BigInt.*\)$/);
  });

  it('a line longer than the limit: one error with id null, then the connection is closed', async () => {
    await serve({ maxLineBytes: 1024 });
    const exact = raw();
    const head = '{"id":1,"method":"echo","params":"';
    const request = (length: number) => `${head}${'x'.repeat(length - head.length - 2)}"}`;
    expect(Buffer.byteLength(request(1024))).toBe(1024);
    exact.send(`${request(1024)}\n`);
    expect(await exact.next()).toMatchObject({ id: 1, result: { params: 'x'.repeat(1024 - head.length - 2) } });

    const over = raw();
    over.send(request(1025)); // no newline needed: the server stops reading at 1025 bytes
    expect(await over.next()).toEqual({ id: null, error: { code: API_CODES.lineTooLong, message: 'request line 1: a line longer than 1024 bytes' } });
    await over.closed();
    expect(logs).toContainEqual(['warn', 'local API request refused', expect.objectContaining({ code: API_CODES.lineTooLong })]);
  });

  it('requests before the over-long line in the same write are handled like those of earlier writes (their replies go with the connection)', async () => {
    const server = await serve({ maxLineBytes: 64 });
    const handled: unknown[] = [];
    server.handle('record', (params) => void handled.push(params));
    const client = raw();
    client.send(`{"id":1,"method":"record","params":"a"}\n${'z'.repeat(65)}\n{"id":2,"method":"record","params":"b"}\n`);
    expect(await client.next()).toEqual({ id: null, error: { code: API_CODES.lineTooLong, message: 'request line 2: a line longer than 64 bytes' } });
    await client.closed();
    expect(handled).toEqual(['a']);
  });

  it('the default limit is 1 MiB', async () => {
    expect(DEFAULT_MAX_LINE_BYTES).toBe(1048576);
    await serve();
    const client = raw();
    client.send(`${'x'.repeat(DEFAULT_MAX_LINE_BYTES + 1)}`);
    expect(await client.next()).toEqual({ id: null, error: { code: API_CODES.lineTooLong, message: 'request line 1: a line longer than 1048576 bytes' } });
    await client.closed();
  });

  it('a client that stops reading a stream is closed once its queue passes the limit', async () => {
    const server = await serve({ maxQueuedBytes: 64 * 1024 });
    const closed = gate<Error | undefined>();
    let sent = 0;
    server.handle('flood', (_p, _c, connection) => {
      connection.onClose(closed.open);
      while (connection.notify('event', 'y'.repeat(10_000))) sent++;
      return 'unreachable';
    });
    const client = raw();
    client.socket.pause();
    client.send('{"id": 1, "method": "flood"}\n');
    const reason = await closed.promise;
    expect(reason?.message).toMatch(/^the client is not reading: \d+ bytes queued \(at most 65536\)$/);
    expect(sent).toBeGreaterThan(0);
    expect(sent).toBeLessThan(1000);
  });
});

describe('connections', () => {
  it('onClose runs once when the client goes, and at once for a connection already closed', async () => {
    const server = await serve();
    const held = gate<LocalApiConnection<PeerCredentials>>();
    server.handle('hold', (_p, _c, connection) => {
      held.open(connection);
      return new Promise(() => undefined);
    });
    const client = await connect();
    void client.call('hold').catch(() => undefined);
    const connection = await held.promise;
    const calls: string[] = [];
    connection.onClose(() => calls.push('first'));
    client.close();
    await new Promise<void>((resolve) => connection.onClose(() => resolve()));
    connection.onClose(() => calls.push('late'));
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(calls).toEqual(['first', 'late']);
    expect(server.connectionCount).toBe(0);
  });

  it('a close callback that throws is logged, and the others still run', async () => {
    const server = await serve();
    const held = gate<LocalApiConnection<PeerCredentials>>();
    server.handle('hold', (_p, _c, connection) => held.open(connection));
    const client = await connect();
    await client.call('hold');
    const connection = await held.promise;
    const after = gate();
    connection.onClose(() => {
      throw new Error('callback broke');
    });
    connection.onClose(() => after.open());
    connection.close();
    await after.promise;
    expect(logs).toContainEqual(['error', 'local API close callback failed', expect.objectContaining({ err: new Error('callback broke') })]);
  });

  it('identify decides who the caller is, before any message is handled', async () => {
    const ready = gate<{ who: string }>();
    const seenPeers: PeerCredentials[] = [];
    await serve<{ who: string }>({
      identify: (peer) => {
        seenPeers.push(peer);
        return ready.promise;
      },
    });
    const client = await connect();
    const reply = client.call('echo', 1);
    await new Promise((resolve) => setTimeout(resolve, 20));
    ready.open({ who: 'job run-1' });
    expect(await reply).toEqual({ params: 1, caller: { who: 'job run-1' } });
    expect(seenPeers.map((p) => p.pid)).toEqual([process.pid]);
  });

  it('a caller identify refuses gets the refusal (id null) and is disconnected; no handler runs', async () => {
    const server = await serve({
      identify: () => {
        throw new CallerRefusedError('caller pid 7: no cgroup v2 line (0::PATH)');
      },
    });
    let ran = false;
    server.handle('touch', () => (ran = true));
    const client = await connect();
    const closed = gate<Error | undefined>();
    client.on('close', closed.open);
    const error = await rejection(client.call('touch'));
    expect([error.code, error.message, error.fromDaemon]).toEqual([API_CODES.callerUnknown, 'caller pid 7: no cgroup v2 line (0::PATH)', true]);
    expect((await closed.promise)?.message).toBe('caller pid 7: no cgroup v2 line (0::PATH)');
    expect(ran).toBe(false);
    expect(logs).toContainEqual(['warn', 'local API caller refused', expect.objectContaining({ code: API_CODES.callerUnknown, pid: process.pid })]);
  });

  it('an identify that fails unexpectedly refuses too, logged as an error', async () => {
    await serve({
      identify: async () => {
        throw new Error('registry unreadable');
      },
    });
    const client = raw();
    expect(await client.next()).toEqual({ id: null, error: { code: API_CODES.internal, message: 'cannot identify the caller: registry unreadable' } });
    await client.closed();
    expect(logs.filter(([level]) => level === 'error').map(([, message]) => message)).toEqual(['local API caller refused']);
  });

  it('a peer whose credentials cannot be read is told so and disconnected, without being read', async () => {
    const error = Object.assign(new Error('peer credentials of fd 20: peer process 9 has exited (ESRCH: No such process)'), { code: 'ESRCH' });
    await serve({
      readPeer: () => {
        throw error;
      },
    });
    const client = raw();
    client.send('{"id": 1, "method": "echo"}\n');
    expect(await client.next()).toEqual({
      id: null,
      error: { code: API_CODES.callerUnknown, message: `cannot identify the caller: ${error.message}` },
    });
    expect(await client.next()).toBeUndefined();
    expect(logs).toContainEqual(['warn', 'local API connection refused', expect.objectContaining({ reason: `cannot identify the caller: ${error.message}` })]);
  });

  it("a connection's peer is the process that connected: a child's pid, not ours", async () => {
    await serve();
    const script = `
      const c = require('net').connect(${JSON.stringify(sock)});
      c.on('connect', () => c.write('{"id":1,"method":"echo"}\\n'));
      c.setEncoding('utf8');
      let text = '';
      c.on('data', (d) => { text += d; if (text.includes('\\n')) { process.stdout.write(text); c.end(); } });`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    await new Promise((resolve) => child.on('exit', resolve));
    const reply = JSON.parse(output) as { result: { caller: PeerCredentials } };
    expect(reply.result.caller.pid).toBe(child.pid);
    expect(reply.result.caller.pid).not.toBe(process.pid);
    expect(reply.result.caller.uid).toBe(process.getuid!());
  });

  it('a peer that exited before it was accepted is refused (the native read says ESRCH); nothing of it is handled', async () => {
    const server = await serve();
    let ran = false;
    server.handle('touch', () => (ran = true));
    // spawnSync holds our event loop: the child connects, sends, and exits (and is reaped) before we accept
    const script = `const c = require('net').connect(${JSON.stringify(sock)}); c.on('connect', () => c.end('{"id":1,"method":"touch"}\\n', () => process.exit(0)));`;
    const child = spawnSync(process.execPath, ['-e', script], { stdio: 'inherit' });
    expect(child.status).toBe(0);
    const deadline = Date.now() + 5000;
    while (!logs.some(([, message]) => message === 'local API connection refused') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    const refused = logs.find(([, message]) => message === 'local API connection refused');
    expect(refused?.[2]?.reason).toMatch(new RegExp(`^cannot identify the caller: peer credentials of fd \\d+: .*\\(ESRCH: No such process\\)$`));
    expect(ran).toBe(false);
    expect(server.connectionCount).toBe(0);
  });

  it('server close ends every connection: pending calls reject, the socket is removed', async () => {
    const server = await serve();
    server.handle('hang', () => new Promise(() => undefined));
    const client = await connect();
    const closed = gate<Error | undefined>();
    client.on('close', closed.open);
    const pending = client.call('hang', undefined, { timeoutMs: 0 });
    await new Promise((resolve) => setTimeout(resolve, 20));
    await server.close();
    const error = await rejection(pending);
    expect([error.code, error.message, error.fromDaemon]).toEqual([
      API_CODES.disconnected,
      `the connection to ringfenced at ${sock} closed before it answered 'hang'`,
      false,
    ]);
    await closed.promise;
    expect(client.closed).toBe(true);
    const after = await rejection(client.call('echo'));
    expect(after.code).toBe(API_CODES.disconnected);
    expect(fs.existsSync(sock)).toBe(false);
  });
});

describe('listening', () => {
  it("makes the socket's directory 0755; the socket is 0660 by default, or the mode asked for", async () => {
    const nested = path.join(dir, 'run', 'ringfence', 'agent.sock');
    await serve({}, nested);
    expect(fs.statSync(path.dirname(nested)).mode & 0o7777).toBe(0o755);
    expect(fs.statSync(nested).isSocket()).toBe(true);
    expect(fs.statSync(nested).mode & 0o7777).toBe(0o660);
    expect(fs.statSync(nested).uid).toBe(process.geteuid!());
    const other = path.join(dir, 'private.sock');
    await serve({ mode: 0o600 }, other);
    expect(fs.statSync(other).mode & 0o7777).toBe(0o600);
    // nothing is left under the temporary name
    expect(fs.readdirSync(dir).sort()).toEqual(['private.sock', 'run']);
  });

  it('removes a stale socket (nothing answers there) and listens', async () => {
    // a socket file nobody listens at: a second name of a socket whose server has gone
    const old = net.createServer();
    await new Promise<void>((resolve) => old.listen(path.join(dir, 'old.sock'), resolve));
    fs.linkSync(path.join(dir, 'old.sock'), sock);
    await new Promise<void>((resolve) => old.close(() => resolve()));
    expect(fs.statSync(sock).isSocket()).toBe(true);
    await serve();
    expect(await (await connect()).call('echo', 'fresh')).toMatchObject({ params: 'fresh' });
    expect(logs).toContainEqual(['info', 'removed a stale local API socket', { socket: sock }]);
  });

  it('refuses to start where a daemon already answers, and leaves that one serving', async () => {
    await serve();
    const second = new LocalApiServer({ log });
    const error = (await rejection(second.listen(sock))) as unknown as RingfenceError;
    expect([error.code, error.message]).toEqual([API_CODES.inUse, `a ringfenced already answers at ${sock}: stop it first, or configure another socket`]);
    expect(await (await connect()).call('echo', 'still')).toMatchObject({ params: 'still' });
  });

  it('refuses a path that is not a socket, and leaves it alone', async () => {
    fs.writeFileSync(sock, 'keep me');
    const error = (await rejection(new LocalApiServer({ log }).listen(sock))) as unknown as RingfenceError;
    expect([error.code, error.message]).toEqual([API_CODES.socketPath, `socket ${sock}: exists and is not a socket (remove it, or configure another socket)`]);
    expect(fs.readFileSync(sock, 'utf8')).toBe('keep me');
  });

  it('refuses a directory others can write (they could replace the socket)', async () => {
    const open = path.join(dir, 'open');
    fs.mkdirSync(open);
    fs.chmodSync(open, 0o777);
    const error = (await rejection(new LocalApiServer({ log }).listen(path.join(open, 'agent.sock')))) as unknown as RingfenceError;
    expect(error.code).toBe(API_CODES.socketPath);
    expect(error.message).toBe(`socket directory ${open}: must be owned by uid ${process.geteuid!()} and writable by nobody else (it is uid ${process.geteuid!()}, mode 777)`);
    expect(fs.readdirSync(open)).toEqual([]);
  });

  it('refuses a path too long for a unix socket; one that just fits is fine', async () => {
    const name = (bytes: number) => path.join(dir, 's'.repeat(bytes - dir.length - 1));
    const long = name(108);
    const error = (await rejection(new LocalApiServer({ log }).listen(long))) as unknown as RingfenceError;
    expect([error.code, error.message]).toEqual([API_CODES.socketPath, `socket ${long}: too long for a unix socket (at most 107 bytes)`]);
    const longest = name(107);
    await serve({}, longest);
    expect(await (await connect(longest)).call('echo', 'fits')).toMatchObject({ params: 'fits' });
    expect(fs.readdirSync(dir)).toEqual([path.basename(longest)]);
  });

  it('registers one handler per method', async () => {
    const server = await serve();
    expect(() => server.handle('echo', () => 1)).toThrow("local API method 'echo' already has a handler");
  });
});

describe('the client', () => {
  it('nothing listening (no socket, or a stale one): RF_NO_DAEMON, so ringfence run can fall back', async () => {
    const missing = await rejection(LocalApiClient.connect(sock));
    expect([missing.code, missing.message]).toEqual([API_CODES.noDaemon, `no ringfenced at ${sock}`]);
    const missingDir = await rejection(LocalApiClient.connect(path.join(dir, 'nowhere', 'agent.sock')));
    expect(missingDir.code).toBe(API_CODES.noDaemon);

    const old = net.createServer();
    await new Promise<void>((resolve) => old.listen(path.join(dir, 'old.sock'), resolve));
    fs.linkSync(path.join(dir, 'old.sock'), sock);
    await new Promise<void>((resolve) => old.close(() => resolve()));
    const stale = await rejection(LocalApiClient.connect(sock));
    expect([stale.code, stale.message]).toEqual([API_CODES.noDaemon, `no ringfenced at ${sock}`]);
  });

  it('a call that is not answered in time rejects; a late reply is dropped and the connection goes on', async () => {
    const server = await serve();
    const late = gate<string>();
    server.handle('slow', () => late.promise);
    const client = await connect();
    const error = await rejection(client.call('slow', undefined, { timeoutMs: 30 }));
    expect([error.code, error.message]).toEqual([API_CODES.timeout, `ringfenced at ${sock} did not answer 'slow' within 30 ms`]);
    late.open('too late');
    expect(await client.call('echo', 'next')).toMatchObject({ params: 'next' });
  });

  it('params JSON cannot hold reject before anything is sent', async () => {
    await serve();
    const client = await connect();
    const error = await rejection(client.call('echo', { n: 1n }));
    expect(error.code).toBe(API_CODES.badRequest);
    expect(error.message).toMatch(/^echo: its params cannot be sent \(.*BigInt.*\)$/);
    expect(await client.call('echo', 2)).toMatchObject({ params: 2 });
  });

  /** A fake daemon that answers every line with `reply(line)` (or drops the connection when it returns undefined). */
  async function fakeDaemon(reply: (line: string) => string | undefined): Promise<net.Server> {
    const server = net.createServer((socket) => {
      socket.setEncoding('utf8');
      socket.on('data', (text: string) => {
        for (const line of text.split('\n').filter(Boolean)) {
          const answer = reply(line);
          if (answer === undefined) socket.destroy();
          else socket.write(answer);
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(sock, resolve));
    return server;
  }

  it('the connection dropping mid-call rejects every pending call', async () => {
    const daemon = await fakeDaemon((line) => (line.includes('"drop"') ? undefined : ''));
    const client = await connect();
    const waiting = client.call('wait');
    const dropping = client.call('drop');
    for (const error of [await rejection(waiting), await rejection(dropping)]) expect(error.code).toBe(API_CODES.disconnected);
    expect((await rejection(waiting)).message).toBe(`the connection to ringfenced at ${sock} closed before it answered 'wait'`);
    daemon.close();
  });

  it('a reply that is not JSON ends the connection with RF_API_BAD_REPLY', async () => {
    const daemon = await fakeDaemon(() => 'garbage\n');
    const client = await connect();
    const error = await rejection(client.call('x'));
    expect(error.code).toBe(API_CODES.badReply);
    expect(error.message).toMatch(new RegExp(`^ringfenced at ${sock} sent a line that is not JSON \\(.+\\)$`));
    await new Promise<void>((resolve) => (client.closed ? resolve() : client.on('close', () => resolve())));
    daemon.close();
  });

  it('a reply line longer than the client takes ends the connection with RF_API_BAD_REPLY', async () => {
    const daemon = await fakeDaemon((line) => `${JSON.stringify({ id: (JSON.parse(line) as { id: number }).id, result: 'r'.repeat(200) })}\n`);
    const client = await LocalApiClient.connect(sock, { maxLineBytes: 100 });
    clients.push(client);
    const error = await rejection(client.call('x'));
    expect([error.code, error.message]).toEqual([API_CODES.badReply, `ringfenced at ${sock} sent a line longer than 100 bytes`]);
    daemon.close();
  });

  it('an error reply without a message still rejects, saying so', async () => {
    const daemon = await fakeDaemon((line) => `${JSON.stringify({ id: (JSON.parse(line) as { id: number }).id, error: { code: 'RF_X' } })}\n`);
    const client = await connect();
    const error = await rejection(client.call('x'));
    expect([error.code, error.message]).toEqual(['RF_X', 'ringfenced sent an error without a message ({"code":"RF_X"})']);
    daemon.close();
  });
});

describe('socketPath', () => {
  it('is RINGFENCE_SOCKET, else the instance default', () => {
    expect(socketPath({ RINGFENCE_SOCKET: '/tmp/x/agent.sock' })).toBe('/tmp/x/agent.sock');
    expect(socketPath({})).toBe('/run/ringfence/agent.sock');
    expect(socketPath({ RINGFENCE_SOCKET: '' })).toBe('/run/ringfence/agent.sock');
    expect(socketPath({ RINGFENCE_INSTANCE: 'ci-7' })).toBe('/run/ringfence-ci-7/agent.sock');
    expect(socketPath({ RINGFENCE_INSTANCE: 'ci-7', RINGFENCE_SOCKET: '/srv/a.sock' })).toBe('/srv/a.sock');
  });

  it('refuses a relative RINGFENCE_SOCKET and a bad instance name', () => {
    expect(() => socketPath({ RINGFENCE_SOCKET: 'agent.sock' })).toThrow("RINGFENCE_SOCKET 'agent.sock': expected an absolute path");
    expect(() => socketPath({ RINGFENCE_INSTANCE: 'Bad Name' })).toThrow(/^RINGFENCE_INSTANCE 'Bad Name'/);
  });
});

describe('native peerCredentials', () => {
  const errorOf = (fd: number) => {
    try {
      loadNative().peerCredentials(fd);
    } catch (error) {
      return error as Error & { code: string; errno: number };
    }
    throw new Error('expected an error');
  };

  it('names the errno of a descriptor that is no socket, or no open descriptor', () => {
    const file = fs.openSync(process.execPath, 'r');
    try {
      const error = errorOf(file);
      expect([error.code, error.errno, error.message]).toEqual(['ENOTSOCK', 88, `peer credentials of fd ${file}: not an open socket (ENOTSOCK: Socket operation on non-socket)`]);
    } finally {
      fs.closeSync(file);
    }
    expect(errorOf(1 << 20).code).toBe('EBADF');
  });

  it('refuses a TCP socket (no peer credentials there)', async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    await new Promise((resolve) => client.on('connect', resolve));
    try {
      const error = errorOf(socketFd(client));
      expect(error.code).toBe('EAFNOSUPPORT');
      expect(error.message).toMatch(/: not a unix socket \(EAFNOSUPPORT: .+\)$/);
    } finally {
      client.destroy();
      server.close();
    }
  });

  it('refuses an unconnected unix socket, and a non-integer fd', async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(sock, resolve));
    try {
      const listening = (server as unknown as { _handle: { fd: number } })._handle.fd;
      expect(errorOf(listening).code).toBe('ENOTCONN');
    } finally {
      server.close();
    }
    expect(() => loadNative().peerCredentials(-1)).toThrow(new RangeError('peerCredentials(fd): fd must be a non-negative integer'));
    expect(() => loadNative().peerCredentials(1.5)).toThrow(RangeError);
  });

  it('socketFd says clearly when a socket has no descriptor', () => {
    const unconnected = new net.Socket();
    expect(() => socketFd(unconnected)).toThrow(/^cannot read the descriptor of a local API connection \(net\.Socket\._handle\.fd is undefined in Node v/);
  });
});
