/**
 * A seeded fuzzer for src/rpc/'s HTTP/2 server connection: a real GrpcServer
 * on 127.0.0.1 gets, on a few hundred connections (each after a valid preface
 * and SETTINGS),
 *  (a) random bytes, and
 *  (b) sequences of well-framed frames of every type (and unknown ones) with
 *      random flags, stream ids from a small range and payloads that are
 *      random, plausible (valid header blocks, settings, increments), or
 *      valid-then-mutated.
 * After each sequence the connection must either have got a GOAWAY whose code
 * is not INTERNAL_ERROR (that code means an exception in our code) or still be
 * usable: it answers a PING and a new request, and once the peer reset every
 * stream it opened and the handlers settled, the server holds none of them
 * (no stream leaks its concurrency slot). Throughout: no uncaught exception or
 * unhandled rejection in this process (the server's), and no stack in the
 * server's log. At the end a @grpc/grpc-js call on a fresh connection works
 * and every server-side connection is gone once the clients are, with every
 * request byte the server counted given back.
 *
 * The seed is FUZZ_SEED (default below); every failure names the seed and the
 * case, and FUZZ_CASE=n runs only case n, so a failure reproduces exactly.
 */
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_MAX_FRAME_SIZE, ErrorCode, Flag, frame, FRAME_HEADER_LENGTH, FrameType, Setting, settingsPayload, uint32 } from '../../src/rpc/frames';
import { encodeHeaderBlock } from '../../src/rpc/hpack';
import { GrpcServer } from '../../src/rpc/grpc-server';
import { grpcBody, grpcRequestFields, hpackIncrementalLiteral, hpackIndexed, RawH2Client } from '../helpers/h2-raw';

const HOST = '127.0.0.1';
const ECHO = '/fuzz.Fuzz/Echo';
const SLOW = '/fuzz.Fuzz/Slow';
const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed2024);
const ONLY_CASE = process.env.FUZZ_CASE === undefined ? undefined : Number(process.env.FUZZ_CASE);
const RANDOM_BYTE_CASES = 150;
const FRAME_SEQUENCE_CASES = 300;
/** Connections in flight at once. */
const PARALLEL = 12;
/** A usable connection answers within this; a bug that hangs one fails the case. */
const CASE_WAIT_MS = 3_000;

// --- a small seeded generator (mulberry32) ---------------------------------

class Rng {
  constructor(private state: number) {}
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(below: number): number {
    return Math.floor(this.next() * below);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
}

/** A case's own generator: the same seed and case number give the same bytes, whatever ran before. */
function rngFor(kind: number, index: number): Rng {
  return new Rng((SEED ^ Math.imul(kind + 1, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca6b)) | 0);
}

// --- generating frames -----------------------------------------------------

const STREAM_IDS = [0, 1, 1, 1, 2, 3, 3, 3, 4, 5, 5, 7, 9, 11, 13, 15, 0x7fffffff];
const INTERESTING_U32 = [0, 1, 5, 16_383, 16_384, 16_385, 65_535, 65_536, 1 << 20, 0x7ffffffe, 0x7fffffff, 0x80000000, 0xffffffff];
const FLAG_BITS = [Flag.END_STREAM, Flag.END_HEADERS, Flag.PADDED, Flag.PRIORITY, 0x2, 0x10, 0x40, 0x80];

function randomFlags(rng: Rng): number {
  if (rng.chance(0.15)) return rng.int(256);
  let flags = 0;
  for (const bit of FLAG_BITS) if (rng.chance(bit === Flag.END_HEADERS ? 0.7 : 0.25)) flags |= bit;
  return flags;
}

function u32(rng: Rng): number {
  return rng.chance(0.7) ? rng.pick(INTERESTING_U32) : rng.int(0x100000000);
}

function payloadLength(rng: Rng): number {
  const r = rng.next();
  if (r < 0.6) return rng.int(24);
  if (r < 0.9) return rng.int(300);
  if (r < 0.99) return rng.int(DEFAULT_MAX_FRAME_SIZE + 1);
  return DEFAULT_MAX_FRAME_SIZE + 1; // one over our limit: FRAME_SIZE_ERROR
}

/** A request header block: valid, with extra fields, dynamic-table games, or mutated. */
function headerBlock(rng: Rng): Buffer {
  const path = rng.pick([ECHO, ECHO, SLOW, '/fuzz.Fuzz/Missing', '', '/x'.repeat(rng.int(50))]);
  const extra: string[] = [];
  if (rng.chance(0.2)) extra.push('grpc-timeout', rng.pick(['1m', '0m', '10S', '99999999H', 'x', '', '123456789S']));
  if (rng.chance(0.1)) extra.push(rng.pick(['X-Upper', 'connection', 'te', ':late', 'x-meta']), rng.pick(['a', 'trailers', '']));
  let fields = grpcRequestFields(path, extra);
  if (rng.chance(0.1)) fields = fields.filter((_, i) => i >> 1 !== rng.int(fields.length >> 1)); // a field missing
  if (rng.chance(0.05)) fields = [':method', rng.pick(['GET', 'POST', '']), ...fields.slice(2)];
  const parts = [encodeHeaderBlock(fields)];
  if (rng.chance(0.2)) parts.unshift(Buffer.from([0x20 | rng.int(32)])); // a dynamic table size update first
  if (rng.chance(0.2)) parts.push(hpackIncrementalLiteral(`x-k${rng.int(5)}`, 'v'.repeat(rng.chance(0.1) ? 5000 : rng.int(100))));
  if (rng.chance(0.2)) parts.push(hpackIndexed(62 + rng.int(6)));
  if (rng.chance(0.05)) parts.push(Buffer.from([0x20])); // a size update after a field: COMPRESSION_ERROR
  const block = Buffer.concat(parts);
  if (rng.chance(0.15)) for (let i = 0; i < 1 + rng.int(3); i++) block[rng.int(block.length)] = rng.int(256);
  return rng.chance(0.05) ? block.subarray(0, rng.int(block.length)) : block;
}

/** HEADERS payload matching its flags (pad length, priority fields), sometimes not. */
function headersPayload(rng: Rng, flags: number, fragment: Buffer): Buffer {
  const parts: Buffer[] = [];
  const pad = rng.int(20);
  if (flags & Flag.PADDED) parts.push(Buffer.from([rng.chance(0.1) ? rng.int(256) : pad]));
  if (flags & Flag.PRIORITY) parts.push(rng.chance(0.1) ? rng.bytes(rng.int(5)) : Buffer.concat([uint32(rng.int(20)), Buffer.from([rng.int(256)])]));
  parts.push(fragment);
  if (flags & Flag.PADDED) parts.push(Buffer.alloc(pad));
  return Buffer.concat(parts);
}

function settings(rng: Rng): Buffer {
  const n = rng.int(5);
  const out = Buffer.alloc(n * 6);
  for (let i = 0; i < n; i++) {
    out.writeUInt16BE(rng.chance(0.85) ? 1 + rng.int(7) : rng.int(0x10000), i * 6);
    out.writeUInt32BE(u32(rng), i * 6 + 2);
  }
  return rng.chance(0.05) ? out.subarray(0, Math.max(0, out.length - 1 - rng.int(5))) : out;
}

/** A fixed-size field, now and then of the wrong size. */
function sized(rng: Rng, bytes: Buffer): Buffer {
  if (!rng.chance(0.08)) return bytes;
  return rng.chance(0.5) ? bytes.subarray(0, rng.int(bytes.length)) : Buffer.concat([bytes, rng.bytes(1 + rng.int(4))]);
}

interface Sequence {
  frames: Buffer[];
  /** Odd stream ids the sequence sent HEADERS on (the peer resets them afterwards). */
  opened: Set<number>;
  /** The sequence carries a GOAWAY of the peer's own: the server may then close without one of its own. */
  peerGoAway: boolean;
}

/** One well-framed frame of a random type; HEADERS may come with its CONTINUATION frames. */
function randomFrames(rng: Rng, seq: Sequence): void {
  const type = rng.chance(0.06) ? rng.pick([0xa, 0xb, 0x10, 0xff]) : rng.pick([0, 0, 1, 1, 1, 2, 3, 4, 5, 6, 7, 8, 8, 9]);
  let flags = randomFlags(rng);
  const stream = rng.chance(0.05) ? rng.int(0x80000000) : rng.pick(STREAM_IDS);
  const push = (t: number, f: number, s: number, p: Buffer): void => {
    seq.frames.push(frame(t, f, s, p.length > DEFAULT_MAX_FRAME_SIZE + 1 ? p.subarray(0, DEFAULT_MAX_FRAME_SIZE + 1) : p));
  };
  // what the server may do in answer, whatever the payload
  if (type === FrameType.GOAWAY && stream === 0) seq.peerGoAway = true;
  if (type === FrameType.HEADERS && stream % 2 === 1) seq.opened.add(stream);
  if (rng.chance(0.1)) return push(type, flags, stream, rng.bytes(payloadLength(rng)));
  switch (type) {
    case FrameType.DATA: {
      const body = rng.chance(0.5) ? grpcBody(rng.bytes(rng.int(80))) : rng.bytes(payloadLength(rng));
      if (!(flags & Flag.PADDED)) return push(type, flags, stream, body);
      const pad = rng.chance(0.1) ? rng.int(256) : rng.int(10);
      return push(type, flags, stream, Buffer.concat([Buffer.from([pad]), body, Buffer.alloc(Math.min(pad, 300))]));
    }
    case FrameType.HEADERS: {
      const block = rng.chance(0.85) ? headerBlock(rng) : rng.bytes(payloadLength(rng));
      if (!rng.chance(0.25) || block.length < 2) return push(type, flags, stream, headersPayload(rng, flags, block));
      // split into HEADERS + CONTINUATION; now and then something else in between, or an unfinished block
      flags &= ~Flag.END_HEADERS;
      const cut = 1 + rng.int(block.length - 1);
      push(type, flags, stream, headersPayload(rng, flags, block.subarray(0, cut)));
      for (let i = 0; i < rng.int(3); i++) push(FrameType.CONTINUATION, 0, stream, Buffer.alloc(0));
      if (rng.chance(0.05)) push(rng.pick([0, 6, 8]), 0, stream, Buffer.alloc(8));
      if (rng.chance(0.9)) push(FrameType.CONTINUATION, Flag.END_HEADERS | (rng.chance(0.2) ? rng.int(256) : 0), rng.chance(0.9) ? stream : rng.pick(STREAM_IDS), block.subarray(cut));
      return;
    }
    case FrameType.PRIORITY:
      return push(type, flags, stream, sized(rng, Buffer.concat([uint32(rng.chance(0.2) ? stream : rng.int(20)), Buffer.from([rng.int(256)])])));
    case FrameType.RST_STREAM:
      return push(type, flags, stream, sized(rng, uint32(rng.chance(0.7) ? rng.int(14) : u32(rng))));
    case FrameType.SETTINGS:
      if (flags & Flag.ACK && rng.chance(0.8)) return push(type, flags, stream, Buffer.alloc(0));
      return push(type, flags, stream, settings(rng));
    case FrameType.PING:
      return push(type, flags, stream, sized(rng, rng.bytes(8)));
    case FrameType.GOAWAY: {
      return push(type, flags, stream, sized(rng, Buffer.concat([uint32(u32(rng)), uint32(rng.int(14)), rng.bytes(rng.int(10))])));
    }
    case FrameType.WINDOW_UPDATE:
      return push(type, flags, stream, sized(rng, uint32(u32(rng))));
    default:
      return push(type, flags, stream, rng.bytes(payloadLength(rng)));
  }
}

/**
 * A frame a careful but odd client might send: legal on its own, though not
 * necessarily in this state (DATA after END_STREAM, trailers without
 * END_STREAM, windows near 2^31-1, resets of streams still working, bad
 * requests), so that the connection usually goes on and later frames meet
 * streams in every state.
 */
function tameFrames(rng: Rng, seq: Sequence): void {
  const opened = [...seq.opened];
  const someOpened = () => (opened.length ? rng.pick(opened) : 1);
  const type = rng.pick([0, 0, 0, 1, 1, 1, 2, 3, 3, 4, 6, 8, 8, 0xa]);
  if ((type === FrameType.DATA || type === FrameType.RST_STREAM) && !opened.length) return tameFrames(rng, seq);
  switch (type) {
    case FrameType.DATA: {
      const flags = (rng.chance(0.5) ? Flag.END_STREAM : 0) | (rng.chance(0.2) ? Flag.PADDED : 0);
      const body = rng.chance(0.7) ? grpcBody(rng.bytes(rng.chance(0.1) ? 100 : rng.int(40))) : rng.bytes(rng.int(30));
      const pad = rng.int(10);
      seq.frames.push(frame(type, flags, someOpened(), flags & Flag.PADDED ? Buffer.concat([Buffer.from([pad]), body, Buffer.alloc(pad)]) : body));
      return;
    }
    case FrameType.HEADERS: {
      const stream = rng.pick([1, 3, 5, 7, 9, 11, 13, 15, 17, 19]);
      seq.opened.add(stream);
      const path = rng.pick([ECHO, ECHO, SLOW, SLOW, '/fuzz.Fuzz/Missing']);
      const extra = rng.chance(0.2) ? [rng.pick(['X-Upper', 'connection', 'te', 'grpc-timeout', 'x-meta']), rng.pick(['1m', 'trailers', 'x'])] : [];
      const fields = rng.chance(0.05) ? ['x-big', 'v'.repeat(17_000)] : grpcRequestFields(path, extra);
      let block = encodeHeaderBlock(fields);
      if (rng.chance(0.2)) block = Buffer.concat([block, hpackIncrementalLiteral(`x-k${rng.int(3)}`, 'v'.repeat(rng.int(200)))]);
      const flags = (rng.chance(0.5) ? Flag.END_STREAM : 0) | (rng.chance(0.15) ? Flag.PADDED : 0) | (rng.chance(0.15) ? Flag.PRIORITY : 0);
      if (block.length <= 200 && rng.chance(0.8)) {
        seq.frames.push(frame(type, flags | Flag.END_HEADERS, stream, headersPayloadExact(rng, flags, block)));
        return;
      }
      // HEADERS and CONTINUATION frames of random sizes
      const sizes: number[] = [];
      for (let at = 0; at < block.length; ) sizes.push(Math.min(block.length - at, 1 + rng.int(DEFAULT_MAX_FRAME_SIZE - 6))), (at += sizes[sizes.length - 1]);
      let at = 0;
      sizes.forEach((size, i) => {
        const piece = block.subarray(at, (at += size));
        const end = i === sizes.length - 1 ? Flag.END_HEADERS : 0;
        seq.frames.push(i === 0 ? frame(type, flags | end, stream, headersPayloadExact(rng, flags, piece)) : frame(FrameType.CONTINUATION, end, stream, piece));
      });
      return;
    }
    case FrameType.PRIORITY: {
      const stream = rng.pick([1, 3, 5, 7, 9, 21]);
      seq.frames.push(frame(type, 0, stream, Buffer.concat([uint32(rng.chance(0.2) ? stream : rng.int(10)), Buffer.from([rng.int(256)])])));
      return;
    }
    case FrameType.RST_STREAM:
      seq.frames.push(frame(type, 0, someOpened(), uint32(rng.int(14))));
      return;
    case FrameType.SETTINGS: {
      if (rng.chance(0.2)) return void seq.frames.push(frame(type, Flag.ACK, 0));
      const pairs: [number, number][] = [];
      for (let i = 0; i < 1 + rng.int(3); i++) {
        const id = rng.pick([Setting.HEADER_TABLE_SIZE, Setting.ENABLE_PUSH, Setting.MAX_CONCURRENT_STREAMS, Setting.INITIAL_WINDOW_SIZE, Setting.INITIAL_WINDOW_SIZE, Setting.MAX_FRAME_SIZE, Setting.MAX_HEADER_LIST_SIZE, 0x7, 0x99]);
        const value =
          id === Setting.INITIAL_WINDOW_SIZE ? rng.pick([0, 1, 100, 65_535, 1 << 20, 0x7fffffff - rng.int(1 << 20)])
          : id === Setting.MAX_FRAME_SIZE ? rng.pick([16_384, 16_385, 0xffffff])
          : id === Setting.ENABLE_PUSH ? rng.int(2)
          : rng.int(0x80000000);
        pairs.push([id, value]);
      }
      seq.frames.push(frame(type, 0, 0, settingsPayload(pairs)));
      return;
    }
    case FrameType.PING:
      seq.frames.push(frame(type, rng.chance(0.2) ? Flag.ACK : 0, 0, rng.bytes(8)));
      return;
    case FrameType.WINDOW_UPDATE:
      seq.frames.push(frame(type, 0, rng.chance(0.4) ? 0 : someOpened(), uint32(rng.chance(0.1) ? 0x7fffffff : 1 + rng.int(1 << 20))));
      return;
    default:
      seq.frames.push(frame(type, rng.int(256), rng.int(20), rng.bytes(rng.int(50))));
  }
}

/** HEADERS payload with the pad length and priority fields its flags call for, all consistent. */
function headersPayloadExact(rng: Rng, flags: number, fragment: Buffer): Buffer {
  const pad = rng.int(16);
  return Buffer.concat([
    flags & Flag.PADDED ? Buffer.from([pad]) : Buffer.alloc(0),
    flags & Flag.PRIORITY ? Buffer.concat([uint32(rng.int(10)), Buffer.from([rng.int(256)])]) : Buffer.alloc(0),
    fragment,
    flags & Flag.PADDED ? Buffer.alloc(pad) : Buffer.alloc(0),
  ]);
}

/**
 * (b): a sequence of frames; how wild is chosen per sequence, from frames
 * that are each legal (tameFrames) to anything well-framed (randomFrames).
 */
function frameSequence(rng: Rng): Sequence {
  const seq: Sequence = { frames: [], opened: new Set(), peerGoAway: false };
  const wildness = rng.pick([0, 0, 0.03, 0.1, 0.3, 1]);
  if (rng.chance(0.4)) {
    seq.frames.push(frame(FrameType.HEADERS, Flag.END_HEADERS, 1, encodeHeaderBlock(grpcRequestFields(rng.pick([ECHO, SLOW])))));
    seq.opened.add(1);
  }
  const n = 1 + rng.int(40);
  for (let i = 0; i < n; i++) {
    (rng.chance(wildness) ? randomFrames : tameFrames)(rng, seq);
    // many small frames: the last one again, up to a few hundred times
    if (rng.chance(0.04)) seq.frames.push(...Array<Buffer>(1 + rng.int(300)).fill(seq.frames[seq.frames.length - 1]));
  }
  return seq;
}

/**
 * (a): random bytes; half the time built from frame headers with small
 * lengths so that they get past the frame-size check. Then zeros until the
 * bytes end on a frame boundary as the server parses them, so that what
 * follows (the probe) is read as frames of its own.
 */
function randomBytes(rng: Rng): Sequence {
  const seq: Sequence = { frames: [], opened: new Set(), peerGoAway: false };
  if (rng.chance(0.5)) {
    seq.frames.push(rng.bytes(1 + rng.int(2000)));
  } else {
    for (let i = 0, n = 1 + rng.int(20); i < n; i++) {
      const header = rng.bytes(FRAME_HEADER_LENGTH);
      const length = rng.int(rng.chance(0.9) ? 40 : 500);
      header.writeUIntBE(length, 0, 3);
      if (rng.chance(0.5)) header[3] = rng.int(10);
      seq.frames.push(header, rng.bytes(length));
    }
  }
  // follow the server's parse: where the bytes stop mid-frame, complete the frame with zeros
  let bytes = Buffer.concat(seq.frames);
  for (;;) {
    let at = 0;
    let need = 0;
    let tooLarge = false;
    while (at < bytes.length) {
      if (bytes.length - at < FRAME_HEADER_LENGTH) {
        need = FRAME_HEADER_LENGTH - (bytes.length - at);
        break;
      }
      const length = bytes.readUIntBE(at, 3);
      if (length > DEFAULT_MAX_FRAME_SIZE) {
        tooLarge = true; // the server ends the connection here
        break;
      }
      const stream = bytes.readUInt32BE(at + 5) & 0x7fffffff;
      if (bytes[at + 3] === FrameType.GOAWAY && stream === 0) seq.peerGoAway = true;
      if (bytes[at + 3] === FrameType.HEADERS && stream % 2 === 1) seq.opened.add(stream);
      if (bytes.length - at < FRAME_HEADER_LENGTH + length) {
        need = FRAME_HEADER_LENGTH + length - (bytes.length - at);
        break;
      }
      at += FRAME_HEADER_LENGTH + length;
    }
    if (tooLarge || need === 0) break;
    bytes = Buffer.concat([bytes, Buffer.alloc(need)]);
  }
  seq.frames = [bytes];
  return seq;
}

// --- running a case --------------------------------------------------------

interface Outcome {
  kind: 'goaway' | 'usable' | 'closed-after-peer-goaway';
  goAwayCode?: number;
}

const uncaught: unknown[] = [];
const onUncaught = (error: unknown) => uncaught.push(error);
const log: string[] = [];
let server: GrpcServer;
let port: number;

function serverConnections(): Set<{ peer: string }> {
  return (server as unknown as { connections: Set<{ peer: string }> }).connections;
}

/** White box: the streams the server still holds for the connection of `client` (undefined once it is gone). */
function streamsHeldFor(client: RawH2Client): number | undefined {
  const localPort = (client as unknown as { socket: { localPort: number } }).socket.localPort;
  for (const connection of serverConnections()) {
    if (connection.peer === `${HOST}:${localPort}`) return (connection as unknown as { streams: Map<number, unknown> }).streams.size;
  }
  return undefined;
}

async function waitFor(condition: () => boolean, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 2));
  }
  return true;
}

function serverGoAway(client: RawH2Client): number | undefined {
  const f = client.frames.find((x) => x.type === FrameType.GOAWAY);
  return f ? f.payload.readUInt32BE(4) : undefined;
}

const PROBE_STREAM = 0x7ffffff1;

/** The frames in `bytes`, one a line (FUZZ_DUMP=1 prints each case this way). */
function listFrames(bytes: Buffer): string {
  const names = Object.fromEntries(Object.entries(FrameType).map(([n, t]) => [t, n]));
  const lines: string[] = [];
  for (let at = 0; at + FRAME_HEADER_LENGTH <= bytes.length; ) {
    const length = bytes.readUIntBE(at, 3);
    const payload = bytes.subarray(at + FRAME_HEADER_LENGTH, at + FRAME_HEADER_LENGTH + Math.min(length, 48));
    lines.push(`  ${names[bytes[at + 3]] ?? `type 0x${bytes[at + 3].toString(16)}`} flags 0x${bytes[at + 4].toString(16)} stream ${bytes.readUInt32BE(at + 5) & 0x7fffffff} length ${length}: ${payload.toString('hex')}`);
    at += FRAME_HEADER_LENGTH + length;
  }
  return lines.join('\n');
}

async function runCase(name: string, seq: Sequence): Promise<Outcome> {
  const client = await RawH2Client.connect(port);
  if (process.env.FUZZ_DUMP) console.log(`${name}:\n${listFrames(Buffer.concat(seq.frames))}`);
  try {
    for (const bytes of seq.frames) client.send(bytes);
    // the probe: a PING, then a request on a stream id above any the sequence used
    const opaque = Buffer.from('fuzzprob', 'latin1');
    client.sendFrame(FrameType.PING, 0, 0, opaque);
    // (a sequence that opened a stream id at least as high leaves no id for a new request: then the PING is the probe)
    const canOpen = Math.max(0, ...seq.opened) < PROBE_STREAM;
    if (canOpen) client.send(frame(FrameType.HEADERS, Flag.END_HEADERS, PROBE_STREAM, encodeHeaderBlock(grpcRequestFields(ECHO))), frame(FrameType.DATA, Flag.END_STREAM, PROBE_STREAM, grpcBody('probe')));
    const pinged = () => client.frames.some((f) => f.type === FrameType.PING && f.flags & Flag.ACK && f.payload.equals(opaque));
    const probed = () => !canOpen || client.frames.some((f) => f.stream === PROBE_STREAM && (f.type === FrameType.HEADERS || f.type === FrameType.RST_STREAM));
    const settled = await waitFor(() => serverGoAway(client) !== undefined || client.closed || (pinged() && probed()), CASE_WAIT_MS);
    const goAwayCode = serverGoAway(client);
    if (goAwayCode !== undefined) return { kind: 'goaway', goAwayCode };
    if (!settled) throw new Error(`${name}: the connection neither ended with GOAWAY nor answered the probe in ${CASE_WAIT_MS} ms`);
    if (client.closed) {
      if (seq.peerGoAway) return { kind: 'closed-after-peer-goaway' };
      throw new Error(`${name}: the server closed the connection without a GOAWAY`);
    }
    // still usable: reset everything the sequence opened, and the server must let go of every stream
    for (const id of [...seq.opened, PROBE_STREAM]) client.sendFrame(FrameType.RST_STREAM, 0, id, uint32(ErrorCode.CANCEL));
    try {
      await client.sync();
    } catch (error) {
      // after the peer's GOAWAY the server closes once its last stream is gone
      if (client.closed && seq.peerGoAway && serverGoAway(client) === undefined) return { kind: 'closed-after-peer-goaway' };
      throw error;
    }
    // a handler keeps its stream until it settles (at most ~20 ms here); then the stream must go
    const released = await waitFor(() => streamsHeldFor(client) === 0, CASE_WAIT_MS);
    const goAwayLater = serverGoAway(client);
    if (goAwayLater !== undefined) return { kind: 'goaway', goAwayCode: goAwayLater };
    if (!released) throw new Error(`${name}: the server still holds ${streamsHeldFor(client)} stream(s) after the peer reset them all (a leaked concurrency slot)`);
    return { kind: 'usable' };
  } finally {
    client.destroy();
  }
}

async function runAll(kind: number, count: number, make: (rng: Rng) => Sequence): Promise<Map<string, number>> {
  const tally = new Map<string, number>();
  const failures: string[] = [];
  const indexes = Array.from({ length: count }, (_, i) => i).filter((i) => ONLY_CASE === undefined || i === ONLY_CASE);
  let next = 0;
  const worker = async () => {
    while (next < indexes.length) {
      const index = indexes[next++];
      const name = `seed 0x${SEED.toString(16)} ${kind === 0 ? 'random-bytes' : 'frame-sequence'} case ${index}`;
      try {
        const outcome = await runCase(name, make(rngFor(kind, index)));
        if (outcome.goAwayCode === ErrorCode.INTERNAL_ERROR) failures.push(`${name}: GOAWAY INTERNAL_ERROR (an exception in the server)`);
        const key = outcome.kind === 'goaway' ? `goaway ${outcome.goAwayCode}` : outcome.kind;
        tally.set(key, (tally.get(key) ?? 0) + 1);
      } catch (error) {
        failures.push((error as Error).message);
      }
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
  expect(failures).toEqual([]);
  return tally;
}

describe('fuzzing the HTTP/2 server connection', () => {
  beforeAll(async () => {
    process.on('uncaughtException', onUncaught);
    process.on('unhandledRejection', onUncaught);
    // small limits, so that refusals, 431s and too-large bodies come up
    server = new GrpcServer({ maxConcurrentStreams: 4, maxMessageBytes: 64, log: (line) => log.push(line) });
    const identity = (path: string) => ({ path, requestDeserialize: (b: Buffer) => b, responseSerialize: (b: Buffer) => b });
    server.addUnary(identity(ECHO), async (call) => call.request);
    server.addUnary(identity(SLOW), (call) => new Promise((resolve) => setTimeout(() => resolve(call.request), 1 + (call.request.length % 20))));
    port = await server.listen(`${HOST}:0`);
  });

  afterAll(async () => {
    await server.shutdown(500);
    process.off('uncaughtException', onUncaught);
    process.off('unhandledRejection', onUncaught);
  });

  it(`(a) random bytes after the preface and SETTINGS (${RANDOM_BYTE_CASES} connections)`, async () => {
    const tally = await runAll(0, RANDOM_BYTE_CASES, randomBytes);
    console.log(`fuzz (a) outcomes: ${JSON.stringify(Object.fromEntries(tally))}`);
    expect(uncaught).toEqual([]);
    expect(log.filter((line) => /internal error|\n\s+at /.test(line))).toEqual([]);
    // the generator reaches both ends: connections the server ended and connections that went on
    if (ONLY_CASE === undefined) expect([...tally.keys()].some((k) => k.startsWith('goaway'))).toBe(true);
  });

  it(`(b) well-framed frames of every type with random flags, streams and payloads (${FRAME_SEQUENCE_CASES} connections)`, async () => {
    const tally = await runAll(1, FRAME_SEQUENCE_CASES, frameSequence);
    console.log(`fuzz (b) outcomes: ${JSON.stringify(Object.fromEntries(tally))}`);
    expect(uncaught).toEqual([]);
    expect(log.filter((line) => /internal error|\n\s+at /.test(line))).toEqual([]);
    if (ONLY_CASE === undefined) {
      expect(tally.get('usable') ?? 0).toBeGreaterThan(FRAME_SEQUENCE_CASES / 10);
      expect([...tally.keys()].filter((k) => k.startsWith('goaway')).length).toBeGreaterThan(2);
    }
  });

  it('afterwards: no exception escaped, the log has no stack, a grpc-js call on a fresh connection works, and no connection is left', async () => {
    expect(uncaught).toEqual([]);
    expect(log.filter((line) => /internal error|\n\s+at /.test(line))).toEqual([]);
    const client = new grpc.Client(`${HOST}:${port}`, grpc.credentials.createInsecure());
    try {
      const response = await new Promise<Buffer>((resolve, reject) => {
        const identity = (b: Buffer) => b;
        client.makeUnaryRequest(ECHO, identity, identity, Buffer.from('still serving'), new grpc.Metadata(), { deadline: Date.now() + 5_000 }, (error, value) =>
          error ? reject(error) : resolve(value!),
        );
      });
      expect(response.toString()).toBe('still serving');
    } finally {
      client.close();
    }
    // every raw connection was destroyed by its case: the server must have let go of all of them
    expect(await waitFor(() => serverConnections().size === 0, 5_000)).toBe(true);
    // and every request byte it counted was given back (a leak here refuses every request some day)
    expect(await waitFor(() => server.heldRequestBytes === 0, 5_000)).toBe(true);
  });
});
