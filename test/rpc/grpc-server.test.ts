/**
 * Our gRPC transport (src/rpc/): a unary gRPC server on our own HTTP/2 server
 * connection. What clients see is checked with a real @grpc/grpc-js client;
 * protocol behaviour a well-behaved client never exercises (bad frames,
 * limits, resets) with a raw HTTP/2 client (test/helpers/h2-raw.ts). Every
 * socket is on 127.0.0.1.
 */
import * as grpc from '@grpc/grpc-js';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, Flag, frame, FrameType, PREFACE, Setting, uint32 } from '../../src/rpc/frames';
import { encodeHeaderBlock } from '../../src/rpc/hpack';
import { GrpcServer, RpcError, Status, type GrpcServerOptions, type UnaryHandler } from '../../src/rpc/grpc-server';
import { grpcBody, grpcMessage, grpcRequestFields, hpackIncrementalLiteral, hpackIndexed, parseSettings, RawH2Client, trailer } from '../helpers/h2-raw';

const HOST = '127.0.0.1';
const ECHO = '/test.Test/Echo';
const SLOW = '/test.Test/Slow';

// --- what a test opens is closed after it, last opened first ---------------

const cleanups: (() => unknown)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Identity (de)serializers: messages are bytes end to end, so a test compares exactly what was sent. */
function identityMethod(methodPath: string) {
  return { path: methodPath, requestDeserialize: (bytes: Buffer) => bytes, responseSerialize: (bytes: Buffer) => bytes };
}

const echo: UnaryHandler<Buffer, Buffer> = async (call) => call.request;

/** A GrpcServer on 127.0.0.1 with identity methods; shut down after the test. */
async function startServer(
  methods: Record<string, UnaryHandler<Buffer, Buffer>>,
  options: GrpcServerOptions = {},
  credentials?: { cert: Buffer; key: Buffer },
): Promise<{ server: GrpcServer; port: number; address: string }> {
  const server = new GrpcServer(options);
  for (const [methodPath, handler] of Object.entries(methods)) server.addUnary(identityMethod(methodPath), handler);
  const port = await server.listen(`${HOST}:0`, credentials);
  cleanups.push(() => server.shutdown(1_000));
  return { server, port, address: `${HOST}:${port}` };
}

function grpcClient(address: string, credentials = grpc.credentials.createInsecure(), options: grpc.ChannelOptions = {}): grpc.Client {
  const client = new grpc.Client(address, credentials, options);
  cleanups.push(() => client.close());
  return client;
}

async function rawClient(port: number, options?: Parameters<typeof RawH2Client.connect>[1]): Promise<RawH2Client> {
  const client = await RawH2Client.connect(port, options);
  cleanups.push(() => client.destroy());
  return client;
}

/** One unary call through grpc-js; rejects with its grpc.ServiceError. `deadline: Infinity` sends none. */
function unary(client: grpc.Client, methodPath: string, message: Buffer, { metadata = {} as Record<string, string>, deadline = Date.now() + 10_000 } = {}): Promise<Buffer> {
  const md = new grpc.Metadata();
  for (const [key, value] of Object.entries(metadata)) md.set(key, value);
  return new Promise((resolve, reject) => {
    const identity = (bytes: Buffer) => bytes;
    client.makeUnaryRequest(methodPath, identity, identity, message, md, { deadline }, (error, response) => (error ? reject(error) : resolve(response!)));
  });
}

/** The error a call fails with; a call that succeeds fails the test. */
async function failure(call: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await call;
  } catch (error) {
    return error as grpc.ServiceError;
  }
  throw new Error('the call succeeded; it should have failed');
}

/** A timer a handler waits on; cleared after the test so that no handler outlives it. */
function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    cleanups.push(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** Polls until `condition` holds; fails the test with `what` after 5 s. */
async function waitUntil(condition: () => boolean, what: string): Promise<void> {
  const until = Date.now() + 5_000;
  while (!condition()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A body in DATA frames of at most 16 KiB, without END_STREAM. */
function sendUnfinishedBody(client: RawH2Client, stream: number, body: Buffer): void {
  for (let at = 0; at < body.length; at += 16_384) client.sendFrame(FrameType.DATA, 0, stream, body.subarray(at, at + 16_384));
}

/** Header fields (flat [name, value, …]) with the value of `name` replaced. */
function withField(fields: string[], name: string, value: string): string[] {
  return fields.map((entry, i) => (i % 2 === 1 && fields[i - 1] === name ? value : entry));
}

/** What a new TCP connection to 127.0.0.1:port gets: 'connected' or the error code. */
function connectOutcome(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: HOST, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}

/** The protocol a TLS server on 127.0.0.1:port picks from a client offering h2 and http/1.1. */
function alpnProtocol(port: number, ca: Buffer): Promise<string | false> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: HOST, port, ca, servername: 'localhost', ALPNProtocols: ['h2', 'http/1.1'] });
    socket.once('secureConnect', () => {
      resolve(socket.alpnProtocol ?? false);
      socket.destroy();
    });
    socket.once('error', reject);
  });
}

describe('GrpcServer with a @grpc/grpc-js client', () => {
  it('round-trips a message; metadata, the deadline and the peer reach the handler', async () => {
    const seen: { xTest?: string; deadline: number; peer: string }[] = [];
    const { address } = await startServer({
      [ECHO]: async (call) => {
        seen.push({ xTest: call.metadata('x-test'), deadline: call.deadline, peer: call.peer });
        return Buffer.concat([Buffer.from('echo: '), call.request]);
      },
    });
    const client = grpcClient(address);

    const deadline = Date.now() + 7_000;
    expect((await unary(client, ECHO, Buffer.from('hello'), { metadata: { 'x-test': 'from the client' }, deadline })).toString()).toBe('echo: hello');
    expect(seen[0].xTest).toBe('from the client');
    // grpc-timeout carries what is left in whole milliseconds; the server adds it to its own clock
    expect(Math.abs(seen[0].deadline - deadline)).toBeLessThan(500);
    expect(seen[0].peer).toMatch(/^127\.0\.0\.1:\d+$/);

    // no deadline: no grpc-timeout, and the handler sees none
    await unary(client, ECHO, Buffer.from('again'), { deadline: Infinity });
    expect(seen[1].deadline).toBe(Infinity);
    expect(seen[1].xTest).toBeUndefined();
  });

  it('a thrown RpcError arrives with its code, its exact message and its trailing metadata', async () => {
    const message = 'message with ünïcode and %';
    const { address } = await startServer({
      [ECHO]: async () => {
        throw new RpcError(Status.NOT_FOUND, message, [['problem-0', 'a line']]);
      },
    });
    const error = await failure(unary(grpcClient(address), ECHO, Buffer.from('x')));
    expect(error.code).toBe(grpc.status.NOT_FOUND);
    // grpc-message is percent-encoded UTF-8 on the wire; the client decodes it back
    expect(error.details).toBe(message);
    expect(error.metadata.get('problem-0')).toEqual(['a line']);
  });

  it('a thrown plain Error arrives as INTERNAL without its text, and is logged', async () => {
    const log: string[] = [];
    const { address } = await startServer(
      {
        [ECHO]: async () => {
          throw new Error('database password is hunter2');
        },
      },
      { log: (line) => log.push(line) },
    );
    const error = await failure(unary(grpcClient(address), ECHO, Buffer.from('x')));
    expect(error.code).toBe(grpc.status.INTERNAL);
    expect(error.details).toBe('internal error in Echo');
    expect(error.details).not.toContain('hunter2');
    expect(log).toHaveLength(1);
    expect(log[0]).toContain(ECHO);
    expect(log[0]).toContain('database password is hunter2');
  });

  it('a response its serializer cannot encode is INTERNAL and logged, and the connection serves the next call', async () => {
    const log: string[] = [];
    const server = new GrpcServer({ log: (line) => log.push(line) });
    // like a proto-loader serializer given a value it cannot encode
    const picky = {
      ...identityMethod(ECHO),
      responseSerialize: (bytes: Buffer) => {
        if (bytes.toString() === 'unencodable') throw new Error('cannot encode this response');
        return bytes;
      },
    };
    const peers: string[] = [];
    server.addUnary(picky, async (call) => {
      peers.push(call.peer);
      return call.request;
    });
    const port = await server.listen(`${HOST}:0`);
    cleanups.push(() => server.shutdown(1_000));
    const client = grpcClient(`${HOST}:${port}`);

    const error = await failure(unary(client, ECHO, Buffer.from('unencodable'), { deadline: Date.now() + 3_000 }));
    expect(error.code).toBe(grpc.status.INTERNAL);
    expect(log.some((line) => line.includes('cannot encode this response'))).toBe(true);
    expect((await unary(client, ECHO, Buffer.from('fine'))).toString()).toBe('fine');
    expect(peers[1]).toBe(peers[0]);
  });

  it('an unknown method is UNIMPLEMENTED', async () => {
    const { address } = await startServer({ [ECHO]: echo });
    const error = await failure(unary(grpcClient(address), '/test.Test/Missing', Buffer.from('x')));
    expect(error.code).toBe(grpc.status.UNIMPLEMENTED);
    expect(error.details).toContain('/test.Test/Missing');
  });

  it('a 3 MiB request and a 3 MiB response cross every flow-control window intact', async () => {
    // larger than the server's stream window (1 MiB), the HTTP/2 default windows (64 KiB) and one frame
    const request = crypto.randomBytes(3 << 20);
    const response = crypto.randomBytes(3 << 20);
    let received: Buffer | undefined;
    const { address } = await startServer({
      [ECHO]: async (call) => {
        received = call.request;
        return response;
      },
    });
    const got = await unary(grpcClient(address), ECHO, request);
    expect(received?.equals(request)).toBe(true);
    expect(got.equals(response)).toBe(true);
  });

  it('a request over maxMessageBytes is RESOURCE_EXHAUSTED, and the same connection serves the next call', async () => {
    const peers: string[] = [];
    const { address } = await startServer(
      {
        [ECHO]: async (call) => {
          peers.push(call.peer);
          return call.request;
        },
      },
      { maxMessageBytes: 64 << 10 },
    );
    const client = grpcClient(address);
    expect((await unary(client, ECHO, Buffer.from('before'))).toString()).toBe('before');

    const error = await failure(unary(client, ECHO, crypto.randomBytes(200 << 10)));
    expect(error.code).toBe(grpc.status.RESOURCE_EXHAUSTED);

    // exactly at the limit is still fine
    const atLimit = crypto.randomBytes(64 << 10);
    expect((await unary(client, ECHO, atLimit)).equals(atLimit)).toBe(true);
    // the same client port: grpc-js did not have to reconnect
    expect(peers).toHaveLength(2);
    expect(peers[1]).toBe(peers[0]);
  });

  it('200 concurrent calls on one connection all succeed, at most 100 handled at once', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const peers = new Set<string>();
    const { address } = await startServer({
      [ECHO]: async (call) => {
        peers.add(call.peer);
        maxInFlight = Math.max(maxInFlight, ++inFlight);
        await sleep(50); // long enough that the first 100 are all open when the rest are sent
        inFlight--;
        return Buffer.concat([Buffer.from('re: '), call.request]);
      },
    });
    const client = grpcClient(address);
    const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => unary(client, ECHO, Buffer.from(`call ${i}`))));
    expect(answers.map((a) => a.toString())).toEqual(Array.from({ length: 200 }, (_, i) => `re: call ${i}`));
    expect(peers.size).toBe(1);
    // the server's SETTINGS_MAX_CONCURRENT_STREAMS held, and the limit was actually reached
    expect(maxInFlight).toBe(100);
  });

  it('serves TLS (ALPN h2) with a certificate the client trusts, and refuses plaintext on that port', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'grpc-tls-'));
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const keyFile = path.join(dir, 'key.pem');
    const certFile = path.join(dir, 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' });
    const cert = fs.readFileSync(certFile);
    const log: string[] = [];
    const { port } = await startServer({ [ECHO]: echo }, { log: (line) => log.push(line) }, { cert, key: fs.readFileSync(keyFile) });

    // to 127.0.0.1 (never another address), verifying the certificate's name 'localhost'
    const client = grpcClient(`${HOST}:${port}`, grpc.credentials.createSsl(cert), { 'grpc.ssl_target_name_override': 'localhost', 'grpc.default_authority': 'localhost' });
    expect((await unary(client, ECHO, Buffer.from('over TLS'))).toString()).toBe('over TLS');
    expect(await alpnProtocol(port, cert)).toBe('h2');

    const plaintext = await failure(unary(grpcClient(`${HOST}:${port}`), ECHO, Buffer.from('x'), { deadline: Date.now() + 3_000 }));
    // the handshake fails, so the connection does: UNAVAILABLE at once rather than at the deadline
    expect(plaintext.code).toBe(grpc.status.UNAVAILABLE);
    expect(log.some((line) => line.includes('TLS handshake failed'))).toBe(true);
  });

  it('shutdown lets an in-flight call finish, resolves after it, then refuses new connections', async () => {
    const entered = deferred();
    let handlerDone = false;
    const { server, port, address } = await startServer({
      [SLOW]: async (call) => {
        entered.resolve();
        await sleep(300);
        handlerDone = true;
        return call.request;
      },
    });
    const client = grpcClient(address);
    const inFlight = unary(client, SLOW, Buffer.from('in flight'));
    await entered.promise;

    const shutdown = server.shutdown().then(() => handlerDone);
    expect((await inFlight).toString()).toBe('in flight');
    // true only if shutdown waited for the handler rather than resolving at once
    expect(await shutdown).toBe(true);
    expect(await connectOutcome(port)).toBe('ECONNREFUSED');
  });
});

describe('Http2ServerConnection with a raw HTTP/2 client', () => {
  it('answers DEADLINE_EXCEEDED by itself when grpc-timeout passes, not when the handler returns', async () => {
    const { port } = await startServer({
      [SLOW]: async (call) => {
        await sleep(2_000);
        return call.request;
      },
    });
    const client = await rawClient(port);
    const started = Date.now();
    client.request(1, grpcRequestFields(SLOW, ['grpc-timeout', '200m']), grpcBody('x'));
    const result = await client.response(1);
    const elapsed = Date.now() - started;

    expect(trailer(result, 'grpc-status')).toBe(String(Status.DEADLINE_EXCEEDED));
    expect(result.headerBlocks).toHaveLength(1); // trailers-only
    expect(result.headerBlocks[0][':status']).toBe('200');
    expect(elapsed).toBeGreaterThanOrEqual(190);
    expect(elapsed).toBeLessThan(1_500);
  });

  it('a grpc-timeout longer than a timer can hold (99999999S, ~3 years) is not taken as already passed', async () => {
    const { port } = await startServer({
      [SLOW]: async (call) => {
        await sleep(50);
        return call.request;
      },
    });
    const client = await rawClient(port);
    client.request(1, grpcRequestFields(SLOW, ['grpc-timeout', '99999999S']), grpcBody('later'));
    const result = await client.response(1);
    expect(trailer(result, 'grpc-status')).toBe('0');
    expect(grpcMessage(result)?.toString()).toBe('later');
  });

  it('a handler that throws before returning its promise fails its own call only, not the connection', async () => {
    const release = deferred();
    const { port } = await startServer({
      [SLOW]: async (call) => {
        await release.promise;
        return call.request;
      },
      // not async: throws instead of returning a rejected promise (TypeScript accepts it: its type is never)
      [ECHO]: () => {
        throw new Error('thrown synchronously');
      },
    });
    const client = await rawClient(port);
    client.request(1, grpcRequestFields(SLOW), grpcBody('still running'));
    client.request(3, grpcRequestFields(ECHO), grpcBody('x'));
    const failed = await client.response(3);
    expect(trailer(failed, 'grpc-status')).toBe(String(Status.INTERNAL));
    release.resolve();
    const survived = await client.response(1);
    expect(trailer(survived, 'grpc-status')).toBe('0');
    expect(grpcMessage(survived)?.toString()).toBe('still running');
    expect(client.frames.filter((f) => f.type === FrameType.GOAWAY)).toEqual([]);
  });

  it('opens with SETTINGS carrying MAX_CONCURRENT_STREAMS, acknowledges ours, and answers PING with the same bytes', async () => {
    const { port } = await startServer({ [ECHO]: echo });
    const client = await rawClient(port);

    await client.frame(() => true, 'any frame');
    const first = client.frames[0];
    expect(first).toMatchObject({ type: FrameType.SETTINGS, flags: 0, stream: 0 });
    expect(parseSettings(first.payload).get(Setting.MAX_CONCURRENT_STREAMS)).toBe(100);
    await client.frame((f) => f.type === FrameType.SETTINGS && (f.flags & Flag.ACK) !== 0, 'SETTINGS ACK');

    const opaque = crypto.randomBytes(8);
    client.sendFrame(FrameType.PING, 0, 0, opaque);
    const pong = await client.frame((f) => f.type === FrameType.PING, 'PING ACK');
    expect(pong.flags).toBe(Flag.ACK);
    expect(pong.payload.equals(opaque)).toBe(true);
  });

  // shorter and longer than the 24-byte preface: the server decides on a prefix, or on the whole of it
  it.each(['GET / HTTP/1.1\r\n\r\n', 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'])('a bad preface (%j) gets GOAWAY PROTOCOL_ERROR and the connection closes', async (preface) => {
    const { port } = await startServer({ [ECHO]: echo });
    const client = await rawClient(port, { handshake: false });
    client.send(Buffer.from(preface, 'latin1'));
    expect((await client.goAway()).code).toBe(ErrorCode.PROTOCOL_ERROR);
    await client.closedByServer();
  });

  it('a frame larger than 16384 bytes gets GOAWAY FRAME_SIZE_ERROR', async () => {
    const { port } = await startServer({ [ECHO]: echo });
    const client = await rawClient(port);
    client.sendHeaderBlock(1, encodeHeaderBlock(grpcRequestFields(ECHO)));
    client.sendFrame(FrameType.DATA, Flag.END_STREAM, 1, grpcBody(Buffer.alloc(16_385 - 5)));
    expect((await client.goAway()).code).toBe(ErrorCode.FRAME_SIZE_ERROR);
    await client.closedByServer();
  });

  it('a malformed header block (HPACK index 0) gets GOAWAY COMPRESSION_ERROR', async () => {
    const { port } = await startServer({ [ECHO]: echo });
    const client = await rawClient(port);
    client.sendFrame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, Buffer.from([0x80]));
    expect((await client.goAway()).code).toBe(ErrorCode.COMPRESSION_ERROR);
    await client.closedByServer();
  });

  it('a header block split over HEADERS and CONTINUATION frames is answered', async () => {
    const { port } = await startServer({ [ECHO]: echo });
    const client = await rawClient(port);
    const block = encodeHeaderBlock(grpcRequestFields(ECHO));
    client.sendHeaderBlock(1, block, { fragmentSize: 16 }); // HEADERS and several CONTINUATION frames
    client.sendFrame(FrameType.DATA, Flag.END_STREAM, 1, grpcBody('split'));
    const result = await client.response(1);
    expect(client.frames.filter((f) => f.type === FrameType.GOAWAY)).toEqual([]);
    expect(trailer(result, 'grpc-status')).toBe('0');
    expect(grpcMessage(result)?.toString()).toBe('split');
  });

  it('a DATA frame between HEADERS and its CONTINUATION gets GOAWAY PROTOCOL_ERROR', async () => {
    const { port } = await startServer({ [ECHO]: echo });
    const client = await rawClient(port);
    const block = encodeHeaderBlock(grpcRequestFields(ECHO));
    // stream 1 is open and waiting for its body, so its DATA is wrong only for where it is
    client.sendHeaderBlock(1, block);
    client.sendFrame(FrameType.HEADERS, 0, 3, block.subarray(0, 10)); // no END_HEADERS
    client.sendFrame(FrameType.DATA, Flag.END_STREAM, 1, grpcBody('interleaved'));
    client.sendFrame(FrameType.CONTINUATION, Flag.END_HEADERS, 3, block.subarray(10));
    expect((await client.goAway()).code).toBe(ErrorCode.PROTOCOL_ERROR);
    await client.closedByServer();
  });

  // the connection window stays at the protocol's 65,535 until the client grants more
  it.each([
    { window: 'stream', options: { streamWindow: 1_000 }, size: 10_000, granted: 1_000, updateOn: 1 },
    { window: 'connection', options: { connectionWindow: 65_535 }, size: 100_000, granted: 65_535, updateOn: 0 },
  ])("never sends more DATA than the client's $window window, and resumes on that window's WINDOW_UPDATE", async ({ options, size, granted, updateOn }) => {
    const { port } = await startServer({ [ECHO]: echo });
    const client = await rawClient(port, options);
    const message = crypto.randomBytes(size);
    client.request(1, grpcRequestFields(ECHO), grpcBody(message));
    await client.frame((f) => f.type === FrameType.HEADERS && f.stream === 1, 'the response headers');
    await client.sync();
    expect(client.dataSent(1)).toBe(granted);

    client.sendFrame(FrameType.WINDOW_UPDATE, 0, updateOn, uint32(size));
    const result = await client.response(1);
    expect(grpcMessage(result)?.equals(message)).toBe(true);
    expect(trailer(result, 'grpc-status')).toBe('0');
  });

  it('refuses streams over the limit, and reset streams count until their handler finishes (rapid reset)', async () => {
    const release = deferred();
    let entered = 0;
    const { port } = await startServer({
      [SLOW]: async (call) => {
        entered++;
        await release.promise;
        return call.request;
      },
    });
    const client = await rawClient(port);
    const ask = (stream: number) => client.request(stream, grpcRequestFields(SLOW), grpcBody(`stream ${stream}`));

    const open = Array.from({ length: 100 }, (_, i) => 1 + 2 * i); // streams 1, 3, … 199
    open.forEach(ask);
    await waitUntil(() => entered === 100, '100 handlers to start');
    ask(201);
    expect((await client.response(201)).resetCode).toBe(ErrorCode.REFUSED_STREAM);

    // cancelling streams whose handlers still run must not free their places
    const cancelled = open.slice(0, 50);
    for (const stream of cancelled) client.sendFrame(FrameType.RST_STREAM, 0, stream, uint32(ErrorCode.CANCEL));
    ask(203);
    expect((await client.response(203)).resetCode).toBe(ErrorCode.REFUSED_STREAM);
    expect(entered).toBe(100);

    release.resolve();
    for (const stream of open.slice(50)) {
      const result = await client.response(stream);
      expect(trailer(result, 'grpc-status')).toBe('0');
      expect(grpcMessage(result)?.toString()).toBe(`stream ${stream}`);
    }
    ask(205);
    const after = await client.response(205);
    expect(trailer(after, 'grpc-status')).toBe('0');
    expect(grpcMessage(after)?.toString()).toBe('stream 205');
    // the answers to the cancelled streams were dropped (they would have come before 205's)
    expect(client.frames.filter((f) => cancelled.includes(f.stream))).toEqual([]);
  });

  it('a call answered by its deadline keeps its place until the handler finishes (short grpc-timeout is no way around the limit)', async () => {
    const release = deferred();
    let entered = 0;
    const { port } = await startServer({
      [SLOW]: async (call) => {
        entered++;
        await release.promise;
        return call.request;
      },
    });
    const client = await rawClient(port);
    const open = Array.from({ length: 100 }, (_, i) => 1 + 2 * i);
    for (const stream of open) client.request(stream, grpcRequestFields(SLOW, ['grpc-timeout', '1m']), grpcBody('x'));
    for (const stream of open) expect(trailer(await client.response(stream), 'grpc-status')).toBe(String(Status.DEADLINE_EXCEEDED));
    expect(entered).toBe(100);

    client.request(201, grpcRequestFields(SLOW), grpcBody('late'));
    expect((await client.response(201)).resetCode).toBe(ErrorCode.REFUSED_STREAM);
    expect(entered).toBe(100);

    release.resolve();
    await client.sync(); // a PING round trip: the server has run the settled handlers' callbacks
    client.request(203, grpcRequestFields(SLOW), grpcBody('after'));
    const after = await client.response(203);
    expect(trailer(after, 'grpc-status')).toBe('0');
    expect(grpcMessage(after)?.toString()).toBe('after');
  });

  it('a request still arriving after requestTimeoutMs is reset CANCEL and logged, its slot freed; a slow handler is not a slow request', async () => {
    const log: string[] = [];
    const { port } = await startServer(
      {
        [SLOW]: async (call) => {
          await new Promise((resolve) => setTimeout(resolve, 500));
          return call.request;
        },
        [ECHO]: echo,
      },
      { maxConcurrentStreams: 2, requestTimeoutMs: 200, log: (line) => log.push(line) },
    );
    const client = await rawClient(port);
    // stream 1: complete request, handler takes longer than the request timeout
    client.request(1, grpcRequestFields(SLOW), grpcBody('slow handler'));
    // stream 3: headers and part of the body, never the rest
    client.sendHeaderBlock(3, encodeHeaderBlock(grpcRequestFields(ECHO)));
    client.sendFrame(FrameType.DATA, 0, 3, grpcBody('never finished'));
    const started = Date.now();
    expect((await client.response(3)).resetCode).toBe(ErrorCode.CANCEL);
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(150);
    expect(log.filter((line) => line.includes('stream 3: request not complete after 200 ms, reset'))).toHaveLength(1);
    // its slot is free: with stream 1 still in its handler, one more fits
    client.request(5, grpcRequestFields(ECHO), grpcBody('next'));
    expect(grpcMessage(await client.response(5))?.toString()).toBe('next');
    const slow = await client.response(1);
    expect(trailer(slow, 'grpc-status')).toBe('0');
    expect(grpcMessage(slow)?.toString()).toBe('slow handler');
    expect(log.some((line) => line.includes('stream 1:'))).toBe(false);
  });

  it('a connection without a call for idleTimeoutMs gets GOAWAY NO_ERROR and is closed; one in use, or waiting on a slow handler, is not', async () => {
    const { port } = await startServer(
      {
        [SLOW]: async (call) => {
          await new Promise((resolve) => setTimeout(resolve, 600));
          return call.request;
        },
        [ECHO]: echo,
      },
      { idleTimeoutMs: 250 },
    );
    // never asks for anything: closed after the timeout
    const idle = await rawClient(port);
    const started = Date.now();
    const goAway = await idle.goAway();
    expect(Date.now() - started).toBeGreaterThanOrEqual(200);
    expect(goAway).toMatchObject({ code: ErrorCode.NO_ERROR, lastStream: 0, debug: 'idle for 250 ms' });

    // a call every 100 ms for 1 s: never idle that long
    const busy = await rawClient(port);
    for (let i = 0; i < 10; i++) {
      const id = 1 + 2 * i;
      busy.request(id, grpcRequestFields(ECHO), grpcBody(`call ${i}`));
      expect(grpcMessage(await busy.response(id))?.toString()).toBe(`call ${i}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    // a handler working longer than the timeout: the connection is not idle meanwhile
    busy.request(21, grpcRequestFields(SLOW), grpcBody('slow'));
    expect(grpcMessage(await busy.response(21))?.toString()).toBe('slow');
    expect(busy.frames.filter((f) => f.type === FrameType.GOAWAY)).toEqual([]);
    // and once it is idle, it goes the same way, naming the last stream it served
    expect(await busy.goAway()).toMatchObject({ code: ErrorCode.NO_ERROR, lastStream: 21 });
  });

  it('a header block left unfinished in CONTINUATION frames past requestTimeoutMs ends the connection (GOAWAY ENHANCE_YOUR_CALM)', async () => {
    const { port } = await startServer({ [ECHO]: echo }, { requestTimeoutMs: 200 });
    const client = await rawClient(port);
    await client.sync(); // our SETTINGS ACK is out: nothing of ours may come between HEADERS and CONTINUATION
    const block = encodeHeaderBlock(grpcRequestFields(ECHO));
    client.sendFrame(FrameType.HEADERS, 0, 1, block.subarray(0, 10)); // no END_HEADERS, and no CONTINUATION follows
    const goAway = await client.goAway();
    expect(goAway.code).toBe(ErrorCode.ENHANCE_YOUR_CALM);
    expect(goAway.debug).toContain('header block not complete after 200 ms');
  });

  it('requests over maxHeldRequestBytes, across connections, are RESOURCE_EXHAUSTED and logged; the bytes are counted again once a request is done', async () => {
    const log: string[] = [];
    const { port } = await startServer({ [ECHO]: echo }, { maxHeldRequestBytes: 100_000, log: (line) => log.push(line) });
    const first = await rawClient(port);
    const second = await rawClient(port);
    const big = crypto.randomBytes(60_000);
    // 60 KB held on the first connection: the body is not finished
    first.sendHeaderBlock(1, encodeHeaderBlock(grpcRequestFields(ECHO)));
    sendUnfinishedBody(first, 1, grpcBody(big));
    await first.sync();
    // 60 KB more on the second would be 120 KB held
    second.request(1, grpcRequestFields(ECHO), grpcBody(big));
    const refused = await second.response(1);
    expect(trailer(refused, 'grpc-status')).toBe(String(Status.RESOURCE_EXHAUSTED));
    expect(trailer(refused, 'grpc-message')).toContain('server busy');
    expect(log.filter((line) => line.includes('100000 bytes of requests held, refused 1 so far'))).toHaveLength(1);
    // a small one still fits beside the held 60 KB
    second.request(3, grpcRequestFields(ECHO), grpcBody('small'));
    expect(grpcMessage(await second.response(3))?.toString()).toBe('small');
    // the first request ends and is answered whole; its 60 KB are free again
    first.sendFrame(FrameType.DATA, Flag.END_STREAM, 1, Buffer.alloc(0));
    expect(grpcMessage(await first.response(1))?.equals(big)).toBe(true);
    await first.sync();
    second.request(5, grpcRequestFields(ECHO), grpcBody(big));
    expect(grpcMessage(await second.response(5))?.equals(big)).toBe(true);
    // and a reset request gives its bytes back as well
    first.sendHeaderBlock(3, encodeHeaderBlock(grpcRequestFields(ECHO)));
    sendUnfinishedBody(first, 3, grpcBody(big));
    first.sendFrame(FrameType.RST_STREAM, 0, 3, uint32(ErrorCode.CANCEL));
    await first.sync();
    second.request(7, grpcRequestFields(ECHO), grpcBody(big));
    expect(grpcMessage(await second.response(7))?.equals(big)).toBe(true);
    expect(log.filter((line) => line.includes('bytes of requests held'))).toHaveLength(1);
  });

  it('a header list over 16 KiB gets :status 431, and HPACK stays in sync for the next request', async () => {
    const { port } = await startServer({
      [ECHO]: async (call) => Buffer.from(call.metadata('x-marker') ?? '(no x-marker)'),
    });
    const client = await rawClient(port);
    // 20,000 bytes of metadata, then a field the server must add to its dynamic
    // table even though the list is already too large
    const tooLarge = Buffer.concat([encodeHeaderBlock(grpcRequestFields(ECHO, ['x-big', 'v'.repeat(20_000)])), hpackIncrementalLiteral('x-marker', 'in sync')]);
    client.sendHeaderBlock(1, tooLarge); // HEADERS + CONTINUATION
    client.sendFrame(FrameType.DATA, Flag.END_STREAM, 1, grpcBody('x'));
    const refused = await client.response(1);
    expect(refused.headerBlocks[0][':status']).toBe('431');

    // the next request names x-marker only by its dynamic table index (62)
    client.sendHeaderBlock(3, Buffer.concat([encodeHeaderBlock(grpcRequestFields(ECHO)), hpackIndexed(62)]));
    client.sendFrame(FrameType.DATA, Flag.END_STREAM, 3, grpcBody('y'));
    const next = await client.response(3);
    expect(trailer(next, 'grpc-status')).toBe('0');
    expect(grpcMessage(next)?.toString()).toBe('in sync');
  });

  it.each([
    ['an uppercase name', ['X-Upper', 'a']],
    ['a connection-specific name', ['connection', 'keep-alive']],
    ['a name with a space', ['x name', 'a']],
    ['a name with a colon', ['x:name', 'a']],
    ['a name with a byte over 0x7e', ['x-\u00e9', 'a']],
    ['a value with CR LF', ['x-value', 'a\r\nx-injected: 1']],
    ['a value with NUL', ['x-value', 'a\u0000b']],
    ['a value with a leading space', ['x-value', ' a']],
    ['a value with a trailing tab', ['x-value', 'a\t']],
    ['a :path with LF', null],
    ['a content-length that is not the body length', ['content-length', '3']],
    ['a content-length that is not a number', ['content-length', '6x']],
  ])('%s resets the stream with PROTOCOL_ERROR before any handler runs; the connection goes on', async (_, extra) => {
    let handled = 0;
    const { port } = await startServer({
      [ECHO]: async (call) => {
        handled++;
        return call.request;
      },
    });
    const client = await rawClient(port);
    const fields = extra ? grpcRequestFields(ECHO, extra) : withField(grpcRequestFields(ECHO), ':path', `${ECHO}\n`);
    client.request(1, fields, grpcBody('1'));
    expect((await client.response(1)).resetCode).toBe(ErrorCode.PROTOCOL_ERROR);
    // the same request, well-formed, with a content-length that is right (6 = 5-byte prefix + '3')
    client.request(3, grpcRequestFields(ECHO, ['content-length', '6']), grpcBody('3'));
    const ok = await client.response(3);
    expect(trailer(ok, 'grpc-status')).toBe('0');
    expect(grpcMessage(ok)?.toString()).toBe('3');
    expect(handled).toBe(1);
  });

  it.each([
    ['WINDOW_UPDATE on a stream never opened', frame(FrameType.WINDOW_UPDATE, 0, 99, uint32(1)), ErrorCode.PROTOCOL_ERROR],
    ['GOAWAY shorter than 8 bytes', frame(FrameType.GOAWAY, 0, 0, uint32(0)), ErrorCode.FRAME_SIZE_ERROR],
  ])('%s gets GOAWAY with that error', async (_, bytes, code) => {
    const { port } = await startServer({ [ECHO]: echo });
    const client = await rawClient(port);
    client.send(bytes);
    expect((await client.goAway()).code).toBe(code);
  });

  it('HEADERS on a stream the client already ended (half-closed) resets it with STREAM_CLOSED', async () => {
    const release = deferred();
    const { port } = await startServer({
      [SLOW]: async (call) => {
        await release.promise;
        return call.request;
      },
    });
    const client = await rawClient(port);
    client.request(1, grpcRequestFields(SLOW), grpcBody('x'));
    await client.sync();
    client.sendHeaderBlock(1, encodeHeaderBlock(['grpc-status', '0']), { endStream: true });
    expect((await client.response(1)).resetCode).toBe(ErrorCode.STREAM_CLOSED);
    release.resolve();
  });

  it('a :method other than POST gets :status 405, a content-type other than gRPC gets :status 415', async () => {
    let handled = 0;
    const { port } = await startServer({
      [ECHO]: async (call) => {
        handled++;
        return call.request;
      },
    });
    const client = await rawClient(port);
    client.request(1, withField(grpcRequestFields(ECHO), ':method', 'GET'));
    client.request(3, withField(grpcRequestFields(ECHO), 'content-type', 'application/json'), Buffer.from('{}'));

    const notAllowed = await client.response(1);
    expect(notAllowed.headerBlocks).toHaveLength(1);
    expect(notAllowed.headerBlocks[0][':status']).toBe('405');
    const unsupported = await client.response(3);
    expect(unsupported.headerBlocks[0][':status']).toBe('415');
    expect(handled).toBe(0);
  });

  // --- regressions from the protocol review and test/rpc/fuzz.test.ts -------

  it('a flood of empty CONTINUATION frames gets GOAWAY ENHANCE_YOUR_CALM (frames count against the header block limit)', async () => {
    const { port } = await startServer({ [ECHO]: echo });
    const client = await rawClient(port);
    await client.sync(); // our SETTINGS ACK is out of the way: nothing else may come between HEADERS and CONTINUATION
    // each frame adds nothing to the block; before, the server kept one fragment per frame, without end
    client.sendFrame(FrameType.HEADERS, 0, 1, encodeHeaderBlock(grpcRequestFields(ECHO)).subarray(0, 3));
    const empty = frame(FrameType.CONTINUATION, 0, 1);
    client.send(Buffer.concat(Array.from({ length: 10_000 }, () => empty)));
    expect((await client.goAway()).code).toBe(ErrorCode.ENHANCE_YOUR_CALM);
    await client.closedByServer();
  });

  it('a header block in many small CONTINUATION frames well under the limit is still answered', async () => {
    const { port } = await startServer({ [ECHO]: echo });
    const client = await rawClient(port);
    await client.sync();
    client.sendHeaderBlock(1, encodeHeaderBlock(grpcRequestFields(ECHO, ['x-meta', 'm'.repeat(2_000)])), { fragmentSize: 4 }); // ~530 frames
    client.sendFrame(FrameType.DATA, Flag.END_STREAM, 1, grpcBody('small pieces'));
    const result = await client.response(1);
    expect(grpcMessage(result)?.toString()).toBe('small pieces');
  });

  it('a body in one-byte DATA frames arrives intact and costs the server no object per frame', async () => {
    const { port } = await startServer({ [ECHO]: echo });
    const client = await rawClient(port);
    const message = crypto.randomBytes(1_500_000);
    const body = grpcBody(message);
    client.sendHeaderBlock(1, encodeHeaderBlock(grpcRequestFields(ECHO)));
    // one byte a frame, then the rest in frames of every size
    const frames: Buffer[] = [];
    let at = 0;
    for (; at < 1_400_000; at++) frames.push(frame(FrameType.DATA, 0, 1, body.subarray(at, at + 1)));
    for (let size = 1; at < body.length; size = (size * 7) % 16_384 || 1) {
      frames.push(frame(FrameType.DATA, at + size >= body.length ? Flag.END_STREAM : 0, 1, body.subarray(at, at + size)));
      at += size;
    }
    const heapBefore = process.memoryUsage().heapUsed;
    let heapPeak = 0;
    const sampler = setInterval(() => (heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed - heapBefore)), 5);
    try {
      for (let i = 0; i < frames.length; i += 50_000) client.send(...frames.slice(i, i + 50_000));
      const result = await client.response(1);
      expect(trailer(result, 'grpc-status')).toBe('0');
      expect(grpcMessage(result)?.equals(message)).toBe(true);
    } finally {
      clearInterval(sampler);
    }
    // a Buffer object per frame held until the end was ~120 bytes x 1.4 M = ~170 MB; one growing buffer is a few MB
    // (the margin is for this process's own garbage: the frames above, the client's reads)
    expect(heapPeak).toBeLessThan(100 << 20);
  });

  it('a connection whose bytes arrive a few at a time (preface, frame headers and payloads all split) is answered intact', async () => {
    const { port } = await startServer({ [ECHO]: echo });
    const client = await rawClient(port, { handshake: false });
    const message = crypto.randomBytes(20_000); // two DATA frames, the second split across reads as well
    const body = grpcBody(message);
    const bytes = Buffer.concat([
      PREFACE,
      frame(FrameType.SETTINGS, 0, 0),
      frame(FrameType.HEADERS, Flag.END_HEADERS, 1, encodeHeaderBlock(grpcRequestFields(ECHO))),
      frame(FrameType.DATA, 0, 1, body.subarray(0, 16_384)),
      frame(FrameType.DATA, Flag.END_STREAM, 1, body.subarray(16_384)),
    ]);
    // writes of 1 to 17 bytes, each in its own turn of the event loop, so the server reads them apart
    for (let at = 0, size = 1; at < bytes.length; at += size, size = (size % 17) + 1) {
      client.send(bytes.subarray(at, at + size));
      await new Promise((resolve) => setImmediate(resolve));
    }
    const result = await client.response(1);
    expect(trailer(result, 'grpc-status')).toBe('0');
    expect(grpcMessage(result)?.equals(message)).toBe(true);
  });

  it('connections over maxConnections are closed at once and logged; the open ones go on serving', async () => {
    const log: string[] = [];
    const { port } = await startServer({ [ECHO]: echo }, { maxConnections: 2, log: (line) => log.push(line) });
    const open = [await rawClient(port), await rawClient(port)];
    await Promise.all(open.map((client) => client.sync()));
    const refused = net.connect({ host: HOST, port });
    cleanups.push(() => refused.destroy());
    refused.on('error', () => undefined);
    refused.resume();
    await new Promise((resolve) => refused.once('close', resolve));
    expect(log.filter((line) => line.includes('2 connections open, refused 1 so far'))).toHaveLength(1);
    open[1].request(1, grpcRequestFields(ECHO), grpcBody('still here'));
    expect(grpcMessage(await open[1].response(1))?.toString()).toBe('still here');
  });

  it('a peer that sends PINGs and never reads is cut off after a bounded number of queued writes, not 16 MiB of them', async () => {
    const log: string[] = [];
    const { port } = await startServer({ [ECHO]: echo }, { log: (line) => log.push(line) });
    const socket = net.connect({ host: HOST, port });
    cleanups.push(() => socket.destroy());
    socket.on('error', () => undefined); // ECONNRESET once the server gives up
    socket.pause(); // never reads
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(Buffer.concat([PREFACE, frame(FrameType.SETTINGS, 0, 0)]));
    const pings = Buffer.concat(Array.from({ length: 4096 }, () => frame(FrameType.PING, 0, 0, Buffer.alloc(8))));
    // enough to fill the kernel's buffers both ways and then the server's queue; ~17 MB at most
    for (let sent = 0; sent < 1_000_000 && !socket.destroyed; sent += 4096) {
      if (!socket.write(pings)) await new Promise((resolve) => (socket.once('drain', resolve), socket.once('close', resolve)));
    }
    await waitUntil(() => log.some((line) => line.includes('the peer does not read')), 'the server to give up on the peer');
    // each queued 17-byte PING ACK cost ~150 bytes of heap: 16 MiB of them was ~180 MB
    const queued = /\((\d+) writes, (\d+) bytes queued\)/.exec(log.find((line) => line.includes('the peer does not read'))!);
    expect(queued).not.toBeNull();
    expect(Number(queued![2])).toBeLessThan(1 << 20);
  });

  it('UNIMPLEMENTED names the unknown method in part: a long path from the HPACK table is not a large answer', async () => {
    const { port } = await startServer({ [ECHO]: echo });
    const client = await rawClient(port);
    const longPath = `/${'\u00ff'.repeat(4_000)}`;
    // the path into the dynamic table once, then named by its index in each request
    const first = Buffer.concat([encodeHeaderBlock([':method', 'POST', ':scheme', 'http']), hpackIncrementalLiteral(':path', longPath), encodeHeaderBlock(['content-type', 'application/grpc'])]);
    client.sendHeaderBlock(1, first, { endStream: true });
    client.sendHeaderBlock(3, Buffer.concat([encodeHeaderBlock([':method', 'POST', ':scheme', 'http']), hpackIndexed(62), encodeHeaderBlock(['content-type', 'application/grpc'])]), { endStream: true });
    for (const stream of [1, 3]) {
      const result = await client.response(stream);
      expect(trailer(result, 'grpc-status')).toBe(String(Status.UNIMPLEMENTED));
      // before: the whole path percent-encoded (6 bytes a character), ~24 KB for a 10-byte request
      expect(trailer(result, 'grpc-message')!.length).toBeLessThan(1_000);
    }
    const wire = client.frames.filter((f) => f.stream === 3).reduce((sum, f) => sum + f.payload.length, 0);
    expect(wire).toBeLessThan(1_000);
  });

  it.each([
    ['a serializer that returns no Buffer', { responseSerialize: (bytes: Buffer) => new Uint8Array(bytes) as unknown as Buffer }, echo],
    ['trailing metadata that is not a string', {}, (async () => {
      throw new RpcError(Status.NOT_FOUND, 'no', [['x-count', 42 as unknown as string]]);
    }) as UnaryHandler<Buffer, Buffer>],
  ])('an answer that cannot be written (%s) resets the stream INTERNAL_ERROR, is logged, and frees its slot; nothing escapes', async (_, override, handler) => {
    const escaped: unknown[] = [];
    const collect = (error: unknown) => escaped.push(error);
    process.on('unhandledRejection', collect);
    process.on('uncaughtException', collect);
    cleanups.push(() => {
      process.off('unhandledRejection', collect);
      process.off('uncaughtException', collect);
    });
    const log: string[] = [];
    const server = new GrpcServer({ maxConcurrentStreams: 1, log: (line) => log.push(line) });
    server.addUnary({ ...identityMethod(SLOW), ...override }, handler);
    server.addUnary(identityMethod(ECHO), echo);
    const port = await server.listen(`${HOST}:0`);
    cleanups.push(() => server.shutdown(1_000));
    const client = await rawClient(port);

    client.request(1, grpcRequestFields(SLOW), grpcBody('x'));
    expect((await client.response(1)).resetCode).toBe(ErrorCode.INTERNAL_ERROR);
    await client.sync(); // the handler's promise chain has finished
    expect(escaped).toEqual([]);
    expect(log.some((line) => line.includes('cannot answer'))).toBe(true);
    // the only slot is free again: before, the stream stayed in the map and every later call was REFUSED_STREAM
    client.request(3, grpcRequestFields(ECHO), grpcBody('next'));
    const next = await client.response(3);
    expect(trailer(next, 'grpc-status')).toBe('0');
    expect(grpcMessage(next)?.toString()).toBe('next');
  });
});
