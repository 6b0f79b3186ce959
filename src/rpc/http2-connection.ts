/**
 * The server side of one HTTP/2 connection (RFC 9113), in JavaScript on a
 * plain (or TLS) socket, for unary gRPC calls.
 *
 * Why not node:http2: every node:http2 stream has a native object behind a
 * weak handle and every request header value becomes an external string that
 * V8 allocates in the old generation; both live until a mark-compact, whose
 * pauses (35-190 ms on our 2-core machines at 1,000 resolves/s) were the
 * policy store's p99 (docs/policy-store.md "Performance"). Here a request is
 * a few small JavaScript objects that die young.
 *
 * What it does: the preface and SETTINGS exchange, HPACK with a dynamic
 * table for requests, flow control both ways, CONTINUATION, padding,
 * PING, RST_STREAM, GOAWAY (graceful and on errors). It answers each request
 * once, whole: response headers, DATA, trailers. It does not push, does not
 * prioritize, and never uses a dynamic table for its own headers.
 *
 * Limits that keep a peer from making it do unbounded work: concurrent
 * streams (a stream counts until its answer is written, even when the peer
 * reset it, so resetting does not get around the limit), the header list
 * size and the header block it takes to carry it, the request body, and what
 * it buffers for a peer that does not read.
 */
import type { Socket } from 'node:net';
import { encodeHeaderBlock, HeaderListTooLargeError, HpackDecoder, HpackError } from './hpack';
import {
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_WINDOW,
  ErrorCode,
  Flag,
  frame,
  FRAME_HEADER_LENGTH,
  FrameType,
  goAwayPayload,
  MAX_ALLOWED_FRAME_SIZE,
  MAX_WINDOW,
  PREFACE,
  Setting,
  settingsPayload,
  uint32,
  writeFrameHeader,
} from './frames';

export interface ConnectionLimits {
  /** Streams open at once per connection. */
  maxConcurrentStreams: number;
  /** Largest decoded header list (RFC 9113 §6.5.2 size). */
  maxHeaderListBytes: number;
  /** Largest request body; a larger one is answered early (the stream is marked bodyTooLarge). */
  maxBodyBytes: number;
  /**
   * Time from a request's first HEADERS frame to its last byte. A request
   * still incomplete then is reset (CANCEL), and a header block still in
   * CONTINUATION frames ends the connection: a peer sending slowly must not
   * hold bodies and stream slots for as long as it likes.
   */
  requestTimeoutMs: number;
  /**
   * Time a connection may stay open without a stream (after its handshake,
   * or since its last stream ended); then it gets GOAWAY NO_ERROR and is
   * closed. Connections count against the server's maxConnections, so one
   * that never asks for anything must not hold its place for ever; a gRPC
   * client reconnects for its next call.
   */
  idleTimeoutMs: number;
  /** Request bytes held at once by all connections of a server; shared between them. */
  requestBytes: RequestBytes;
}

/**
 * The server-wide count of request bytes held (bodies still arriving, or
 * whose handler has not settled). Per connection a body is bounded by
 * maxBodyBytes and streams by maxConcurrentStreams, but that is 400 MiB a
 * connection; this bound is what keeps many connections from adding up to
 * more memory than the machine has.
 */
export class RequestBytes {
  held = 0;
  /** Requests refused because the bound was reached, for rate-limiting the log. */
  refused = 0;
  constructor(readonly max: number) {}
}

/** What each stream may send before we grant more; the body limit bounds a request anyway. */
const STREAM_WINDOW = 1 << 20;
/** The same for the whole connection. */
const CONNECTION_WINDOW = 1 << 24;
/** Time from accept to the client's preface and SETTINGS. */
const PREFACE_TIMEOUT_MS = 10_000;
/** Bytes queued for a peer that does not read before we give up on it. */
const MAX_UNREAD_BYTES = 16 << 20;
/** A header block arriving in CONTINUATION frames may be this many times the list limit (HPACK rarely expands). */
const BLOCK_TO_LIST_RATIO = 2;
/** Fields a request must not carry (RFC 9113 §8.2.2). */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);
/** A dynamic table size update to 0: the first thing in our first header block, so we never track the peer's table size. */
const TABLE_SIZE_ZERO = Buffer.from([0x20]);
/**
 * Writes queued for a peer that does not read before we give up on it. Each
 * costs ~150 bytes of heap besides its bytes: a peer that sent PINGs (or
 * SETTINGS, or anything else we answer with a small frame) and never read
 * made 16 MiB of 17-byte PING ACKs, ~180 MB of heap, before MAX_UNREAD_BYTES.
 */
const MAX_UNREAD_WRITES = 10_000;
const EMPTY = Buffer.alloc(0);

/** One request, delivered once its body is complete (or too large), answered once. */
export class ServerStream {
  method = '';
  path = '';
  authority = '';
  /** Decoded header fields, flat [name, value, …]; the regular (non-pseudo) ones start at `regularFrom`. */
  fields: string[] = [];
  regularFrom = 0;
  /** The peer reset the stream or the connection ended: an answer is dropped. */
  reset = false;
  /** Called once when `reset` becomes true while the request is being handled. */
  onReset: (() => void) | undefined;
  bodyTooLarge = false;
  /** Refused because the server holds RequestBytes.max already (the body is dropped). */
  overBudget = false;
  /** The peer sent END_STREAM. */
  ended = false;
  delivered = false;
  answered = false;
  /** Everything we answer is written. */
  sent = false;
  /** When its first HEADERS frame arrived (see ConnectionLimits.requestTimeoutMs). */
  readonly openedAt = Date.now();
  /** The handler of the request has not settled yet (see Http2ServerConnection.settle). */
  working = false;
  sendWindow: number;
  recvWindow = STREAM_WINDOW;
  /** DATA and trailers waiting for flow-control window. */
  pendingData: Buffer | undefined;
  pendingTrailers: Buffer | undefined;
  /**
   * The body so far: the first DATA payload as it came (the common case of a
   * one-frame request costs no copy), then a buffer of our own that doubles
   * as it fills. Not a list of the payloads: a peer sending one byte per DATA
   * frame made that list hold a Buffer object (~120 bytes of heap) per byte
   * of body, ~450 MB for one 4 MiB request.
   */
  private bodyBuffer: Buffer | undefined;
  private bodyOwned = false;
  /** Bytes of body held (0 once dropped). */
  bodyLength = 0;

  constructor(
    readonly id: number,
    private readonly connection: Http2ServerConnection,
    initialWindow: number,
  ) {
    this.sendWindow = initialWindow;
  }

  /** The first value of a regular header field, by lowercase name. */
  header(name: string): string | undefined {
    for (let i = this.regularFrom; i < this.fields.length; i += 2) if (this.fields[i] === name) return this.fields[i + 1];
    return undefined;
  }

  get body(): Buffer {
    return this.bodyBuffer ? this.bodyBuffer.subarray(0, this.bodyLength) : EMPTY;
  }

  get peer(): string {
    return this.connection.peer;
  }

  /**
   * Answers: a header block, then optionally DATA and a trailer block (each
   * block encoded by hpack.encodeHeaderBlock). Without DATA and trailers,
   * the header block ends the stream (a trailers-only gRPC answer).
   */
  respond(headerBlock: Buffer, data?: Buffer, trailerBlock?: Buffer): void {
    this.connection.respond(this, headerBlock, data, trailerBlock);
  }

  /** The handler is done: the stream may stop counting against the concurrency limit. */
  release(): void {
    this.working = false;
    this.connection.settle(this);
  }

  /** Appends DATA; false when the body went over the limit (the chunk is dropped). */
  addData(chunk: Buffer, limit: number): boolean {
    if (this.bodyTooLarge || this.overBudget) return false;
    const length = this.bodyLength + chunk.length;
    if (length > limit) {
      this.bodyTooLarge = true;
      this.dropBody();
      return false;
    }
    if (!chunk.length) return true;
    if (!this.bodyBuffer) {
      this.bodyBuffer = chunk;
    } else {
      if (!this.bodyOwned || this.bodyBuffer.length < length) {
        const grown = Buffer.allocUnsafe(Math.min(limit, Math.max(length, 2 * this.bodyBuffer.length, 1024)));
        this.bodyBuffer.copy(grown, 0, 0, this.bodyLength);
        this.bodyBuffer = grown;
        this.bodyOwned = true;
      }
      chunk.copy(this.bodyBuffer, this.bodyLength);
    }
    this.bodyLength = length;
    return true;
  }

  /** Forgets the body; returns how many bytes it held. */
  dropBody(): number {
    const held = this.bodyLength;
    this.bodyBuffer = undefined;
    this.bodyLength = 0;
    return held;
  }

  /** Ends the stream with RST_STREAM INTERNAL_ERROR: its answer could not be written. */
  abort(): void {
    this.connection.abort(this);
  }
}

/** An error that ends the connection: GOAWAY with this code. */
class ConnectionError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export class Http2ServerConnection {
  /**
   * Bytes of a frame (or the preface) still arriving: the pieces as they came,
   * joined once `needed` bytes are there. Joining on every read instead made a
   * peer that sends a 16 KiB frame one byte per segment cost 16 KiB of copying
   * per byte.
   */
  private partial: Buffer[] = [];
  private partialLength = 0;
  private needed = 0;
  private prefaceSeen = false;
  private settingsSeen = false;
  private readonly decoder: HpackDecoder;
  private readonly streams = new Map<number, ServerStream>();
  private lastStreamId = 0;
  /** A header block still arriving in CONTINUATION frames. */
  private continuation: { stream: number; endStream: boolean; fragments: Buffer[]; length: number; wireBytes: number; startedAt: number } | undefined;
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrameSize = DEFAULT_MAX_FRAME_SIZE;
  private sendWindow = DEFAULT_WINDOW;
  /** What the peer may still send on the connection, and what it sent since we last granted more. */
  private recvWindow = CONNECTION_WINDOW;
  private recvSinceUpdate = 0;
  private sentHeaderBlock = false;
  /** Streams with DATA waiting for window, in the order they answered. */
  private blocked: ServerStream[] = [];
  private goingAway = false;
  private closed = false;
  private readonly prefaceTimer: NodeJS.Timeout;
  /** Armed while a request or header block is incomplete (see ConnectionLimits.requestTimeoutMs). */
  private requestTimer: NodeJS.Timeout | undefined;
  /**
   * One timer for the connection's life (see ConnectionLimits.idleTimeoutMs):
   * streams opening and ending only move idleSince, and the timer, when it
   * fires, looks whether the connection really was idle that long. Re-arming
   * a timer on every call cost more than the call's own work.
   */
  private idleTimer: NodeJS.Timeout | undefined;
  private idleSince = performance.now();
  /** Writes the socket has not passed on yet (see MAX_UNREAD_WRITES). */
  private unreadWrites = 0;
  private readonly written = (): void => {
    this.unreadWrites--;
  };

  constructor(
    private readonly socket: Socket,
    private readonly limits: ConnectionLimits,
    private readonly onRequest: (stream: ServerStream) => void,
    private readonly onClose: (connection: Http2ServerConnection) => void,
    private readonly log: (line: string) => void = () => undefined,
  ) {
    this.decoder = new HpackDecoder(4096, limits.maxHeaderListBytes);
    this.expireRequests = this.expireRequests.bind(this);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => this.close());
    socket.on('close', () => this.close());
    this.prefaceTimer = setTimeout(() => this.fail(new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'no HTTP/2 preface and SETTINGS in time')), PREFACE_TIMEOUT_MS);
    this.prefaceTimer.unref();
    this.expireIdle = this.expireIdle.bind(this);
    this.armIdleTimer(limits.idleTimeoutMs);
    const settings = settingsPayload([
      [Setting.MAX_CONCURRENT_STREAMS, limits.maxConcurrentStreams],
      [Setting.INITIAL_WINDOW_SIZE, STREAM_WINDOW],
      [Setting.MAX_HEADER_LIST_SIZE, limits.maxHeaderListBytes],
      [Setting.ENABLE_PUSH, 0],
    ]);
    this.write(Buffer.concat([frame(FrameType.SETTINGS, 0, 0, settings), frame(FrameType.WINDOW_UPDATE, 0, 0, uint32(CONNECTION_WINDOW - DEFAULT_WINDOW))]));
  }

  get peer(): string {
    const { remoteAddress, remotePort } = this.socket;
    return remoteAddress?.includes(':') ? `[${remoteAddress}]:${remotePort}` : `${remoteAddress}:${remotePort}`;
  }

  /** Graceful end: GOAWAY, answer what is open, then close. */
  goAway(reason = 'server shutting down'): void {
    if (this.closed || this.goingAway) return;
    this.goingAway = true;
    this.write(frame(FrameType.GOAWAY, 0, 0, goAwayPayload(this.lastStreamId, ErrorCode.NO_ERROR, reason)));
    if (this.streams.size === 0) this.end();
  }

  private armIdleTimer(ms: number): void {
    if (this.closed || !Number.isFinite(ms)) return;
    this.idleTimer = setTimeout(this.expireIdle, Math.min(Math.max(ms, 1), 0x7fffffff)).unref();
  }

  private expireIdle(): void {
    const limit = this.limits.idleTimeoutMs;
    if (this.streams.size > 0) return this.armIdleTimer(limit);
    const idle = performance.now() - this.idleSince;
    if (idle < limit) return this.armIdleTimer(limit - idle);
    this.goAway(`idle for ${limit} ms`);
  }

  destroy(): void {
    this.socket.destroy();
    this.close();
  }

  // --- reading -------------------------------------------------------------

  private onData(chunk: Buffer): void {
    let data = chunk;
    if (this.partialLength) {
      this.partial.push(chunk);
      this.partialLength += chunk.length;
      if (this.partialLength < this.needed) return;
      data = Buffer.concat(this.partial, this.partialLength);
      this.partial = [];
      this.partialLength = 0;
    }
    let at = 0;
    try {
      if (!this.prefaceSeen) {
        const seen = Math.min(data.length, PREFACE.length);
        if (!data.subarray(0, seen).equals(PREFACE.subarray(0, seen))) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'not an HTTP/2 connection preface');
        if (seen < PREFACE.length) return this.keepPartial(data, PREFACE.length);
        this.prefaceSeen = true;
        at = PREFACE.length;
      }
      while (!this.closed && data.length - at >= FRAME_HEADER_LENGTH) {
        const length = (data[at] << 16) | (data[at + 1] << 8) | data[at + 2];
        if (length > DEFAULT_MAX_FRAME_SIZE) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, `frame of ${length} bytes is larger than our SETTINGS_MAX_FRAME_SIZE`);
        if (data.length - at < FRAME_HEADER_LENGTH + length) break;
        const payload = data.subarray(at + FRAME_HEADER_LENGTH, at + FRAME_HEADER_LENGTH + length);
        this.onFrame(data[at + 3], data[at + 4], data.readUInt32BE(at + 5) & MAX_WINDOW, payload);
        at += FRAME_HEADER_LENGTH + length;
      }
      if (!this.closed && at < data.length) {
        const rest = data.subarray(at);
        // until the frame header is complete, its 9 bytes; then the whole frame
        this.keepPartial(rest, rest.length < FRAME_HEADER_LENGTH ? FRAME_HEADER_LENGTH : FRAME_HEADER_LENGTH + ((rest[0] << 16) | (rest[1] << 8) | rest[2]));
      }
    } catch (error) {
      if (error instanceof ConnectionError) this.fail(error);
      else {
        this.log(`http2 connection from ${this.peer}: ${(error as Error).stack ?? String(error)}`);
        this.fail(new ConnectionError(ErrorCode.INTERNAL_ERROR, 'internal error'));
      }
    }
  }

  private keepPartial(bytes: Buffer, needed: number): void {
    this.partial = [bytes];
    this.partialLength = bytes.length;
    this.needed = needed;
  }

  private onFrame(type: number, flags: number, streamId: number, payload: Buffer): void {
    if (!this.settingsSeen && type !== FrameType.SETTINGS) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'the first frame must be SETTINGS');
    if (this.continuation && type !== FrameType.CONTINUATION) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'a header block was interrupted by another frame');
    switch (type) {
      case FrameType.DATA:
        return this.onDataFrame(flags, streamId, payload);
      case FrameType.HEADERS:
        return this.onHeaders(flags, streamId, payload);
      case FrameType.CONTINUATION:
        return this.onContinuation(flags, streamId, payload);
      case FrameType.PRIORITY:
        if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'PRIORITY on stream 0');
        if (payload.length !== 5) this.resetStream(streamId, ErrorCode.FRAME_SIZE_ERROR);
        return; // advisory; we answer in arrival order
      case FrameType.RST_STREAM:
        return this.onReset(streamId, payload);
      case FrameType.SETTINGS:
        return this.onSettings(flags, streamId, payload);
      case FrameType.PUSH_PROMISE:
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'clients do not push');
      case FrameType.PING:
        if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'PING on a stream');
        if (payload.length !== 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'PING payload is not 8 bytes');
        if (!(flags & Flag.ACK)) this.write(frame(FrameType.PING, Flag.ACK, 0, payload));
        return;
      case FrameType.GOAWAY:
        if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'GOAWAY on a stream');
        if (payload.length < 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'GOAWAY payload shorter than 8 bytes');
        this.goingAway = true; // the peer opens nothing new; what is open is answered
        if (this.streams.size === 0) this.end();
        return;
      case FrameType.WINDOW_UPDATE:
        return this.onWindowUpdate(streamId, payload);
      default:
        return; // unknown frame types are ignored (RFC 9113 §5.5)
    }
  }

  private onSettings(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'SETTINGS on a stream');
    if (flags & Flag.ACK) {
      if (payload.length) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'SETTINGS acknowledgement with a payload');
      return;
    }
    if (payload.length % 6) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'SETTINGS payload is not a multiple of 6 bytes');
    for (let at = 0; at < payload.length; at += 6) {
      const value = payload.readUInt32BE(at + 2);
      switch (payload.readUInt16BE(at)) {
        case Setting.ENABLE_PUSH:
          if (value > 1) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'SETTINGS_ENABLE_PUSH must be 0 or 1');
          break;
        case Setting.INITIAL_WINDOW_SIZE: {
          if (value > MAX_WINDOW) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, 'SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1');
          const delta = value - this.peerInitialWindow;
          this.peerInitialWindow = value;
          for (const stream of this.streams.values()) {
            stream.sendWindow += delta;
            if (stream.sendWindow > MAX_WINDOW) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, 'a stream window went above 2^31-1');
          }
          break;
        }
        case Setting.MAX_FRAME_SIZE:
          if (value < DEFAULT_MAX_FRAME_SIZE || value > MAX_ALLOWED_FRAME_SIZE) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'SETTINGS_MAX_FRAME_SIZE out of range');
          this.peerMaxFrameSize = value;
          break;
        default:
          break; // the header table size needs nothing (we never index); unknown settings are ignored
      }
    }
    if (!this.settingsSeen) {
      this.settingsSeen = true;
      clearTimeout(this.prefaceTimer);
    clearTimeout(this.requestTimer);
    }
    this.write(frame(FrameType.SETTINGS, Flag.ACK, 0));
    this.flush();
  }

  private onHeaders(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'HEADERS on stream 0');
    let start = 0;
    let end = payload.length;
    if (flags & Flag.PADDED) {
      if (payload.length < 1) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'padded HEADERS without a pad length');
      end -= payload[0];
      start = 1;
    }
    if (flags & Flag.PRIORITY) start += 5;
    if (end < start) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'HEADERS padding longer than the frame');
    const fragment = payload.subarray(start, end);
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if (flags & Flag.END_HEADERS) this.onHeaderBlock(streamId, fragment, endStream);
    else {
      this.continuation = { stream: streamId, endStream, fragments: [fragment], length: fragment.length, wireBytes: FRAME_HEADER_LENGTH + payload.length, startedAt: Date.now() };
      this.watchRequests();
    }
  }

  private onContinuation(flags: number, streamId: number, payload: Buffer): void {
    const pending = this.continuation;
    if (!pending || pending.stream !== streamId) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'CONTINUATION without a header block in progress on its stream');
    pending.fragments.push(payload);
    pending.length += payload.length;
    // Frames count with their headers: empty CONTINUATION frames add nothing
    // to the block, so counting the block alone let a flood of them grow
    // `fragments` without end (~10 bytes of heap per byte received).
    pending.wireBytes += FRAME_HEADER_LENGTH + payload.length;
    if (pending.wireBytes > this.limits.maxHeaderListBytes * BLOCK_TO_LIST_RATIO) throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, 'header block too large');
    if (!(flags & Flag.END_HEADERS)) return;
    this.continuation = undefined;
    this.onHeaderBlock(streamId, Buffer.concat(pending.fragments, pending.length), pending.endStream);
  }

  private onHeaderBlock(streamId: number, block: Buffer, endStream: boolean): void {
    let fields: string[] | undefined;
    try {
      fields = this.decoder.decode(block);
    } catch (error) {
      if (error instanceof HpackError) throw new ConnectionError(ErrorCode.COMPRESSION_ERROR, `header block: ${error.message}`);
      if (!(error instanceof HeaderListTooLargeError)) throw error;
      // the table is in sync; only this request is refused
    }
    if (streamId <= this.lastStreamId) return this.onTrailers(streamId, endStream);
    if (streamId % 2 === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'clients open odd-numbered streams');
    this.lastStreamId = streamId;
    if (this.goingAway || this.streams.size >= this.limits.maxConcurrentStreams) return this.resetStream(streamId, ErrorCode.REFUSED_STREAM);
    if (!fields) {
      this.write(this.headerFrames(streamId, STATUS_431, true));
      if (!endStream) this.write(frame(FrameType.RST_STREAM, 0, streamId, uint32(ErrorCode.NO_ERROR)));
      return;
    }
    const stream = new ServerStream(streamId, this, this.peerInitialWindow);
    if (!readRequestFields(stream, fields)) return this.resetStream(streamId, ErrorCode.PROTOCOL_ERROR);
    stream.ended = endStream;
    this.streams.set(streamId, stream);
    if (endStream) this.deliver(stream);
    else this.watchRequests();
  }

  /** A second header block on an open stream: trailers, which must end it. We read none. */
  private onTrailers(streamId: number, endStream: boolean): void {
    const stream = this.streams.get(streamId);
    if (!stream) return; // a stream we already closed; the block was decoded to keep HPACK in sync
    if (stream.ended) return this.resetStream(streamId, ErrorCode.STREAM_CLOSED); // half-closed (remote): RFC 9113 §5.1
    if (!endStream) return this.resetStream(streamId, ErrorCode.PROTOCOL_ERROR);
    stream.ended = true;
    this.deliver(stream);
  }

  private onDataFrame(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'DATA on stream 0');
    if (streamId > this.lastStreamId) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'DATA on a stream that was never opened');
    this.consumeConnectionWindow(payload.length);
    let data = payload;
    if (flags & Flag.PADDED) {
      if (payload.length < 1 || payload[0] >= payload.length) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'DATA padding longer than the frame');
      data = payload.subarray(1, payload.length - payload[0]);
    }
    const stream = this.streams.get(streamId);
    if (!stream) return; // closed by us; the peer had not seen it yet
    if (stream.ended) return this.resetStream(streamId, ErrorCode.STREAM_CLOSED);
    stream.recvWindow -= payload.length;
    if (stream.recvWindow < 0) return this.resetStream(streamId, ErrorCode.FLOW_CONTROL_ERROR);
    const held = this.limits.requestBytes;
    if (!stream.overBudget && !stream.bodyTooLarge && held.held + data.length > held.max) {
      stream.overBudget = true;
      held.held -= stream.dropBody();
      // a line at the 1st, 2nd, 4th, 8th… refusal: under a flood the log must not be flooded too
      if ((++held.refused & (held.refused - 1)) === 0) this.log(`http2 server: ${held.max} bytes of requests held, refused ${held.refused} so far (from ${this.peer})`);
    }
    const before = stream.bodyLength;
    const kept = stream.addData(data, this.limits.maxBodyBytes);
    held.held += stream.bodyLength - before;
    if (flags & Flag.END_STREAM) stream.ended = true;
    else if (kept && stream.recvWindow < STREAM_WINDOW / 2) {
      this.write(frame(FrameType.WINDOW_UPDATE, 0, streamId, uint32(STREAM_WINDOW - stream.recvWindow)));
      stream.recvWindow = STREAM_WINDOW;
    }
    if (stream.ended || stream.bodyTooLarge || stream.overBudget) this.deliver(stream);
  }

  private consumeConnectionWindow(length: number): void {
    this.recvWindow -= length;
    if (this.recvWindow < 0) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, 'peer sent more than the connection window');
    this.recvSinceUpdate += length;
    if (this.recvSinceUpdate >= CONNECTION_WINDOW / 2) {
      this.write(frame(FrameType.WINDOW_UPDATE, 0, 0, uint32(this.recvSinceUpdate)));
      this.recvWindow += this.recvSinceUpdate;
      this.recvSinceUpdate = 0;
    }
  }

  private onReset(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'RST_STREAM payload is not 4 bytes');
    if (streamId === 0 || streamId > this.lastStreamId) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'RST_STREAM on a stream that was never opened');
    const stream = this.streams.get(streamId);
    if (stream) this.cancel(stream);
  }

  private onWindowUpdate(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'WINDOW_UPDATE payload is not 4 bytes');
    const increment = payload.readUInt32BE(0) & MAX_WINDOW;
    if (streamId === 0) {
      if (increment === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'WINDOW_UPDATE of 0');
      this.sendWindow += increment;
      if (this.sendWindow > MAX_WINDOW) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, 'connection window above 2^31-1');
    } else {
      if (streamId > this.lastStreamId) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'WINDOW_UPDATE on a stream that was never opened');
      const stream = this.streams.get(streamId);
      if (!stream) return;
      if (increment === 0) return this.resetStream(streamId, ErrorCode.PROTOCOL_ERROR);
      stream.sendWindow += increment;
      if (stream.sendWindow > MAX_WINDOW) return this.resetStream(streamId, ErrorCode.FLOW_CONTROL_ERROR);
    }
    this.flush();
  }

  private watchRequests(): void {
    if (!this.requestTimer && !this.closed) this.requestTimer = setTimeout(this.expireRequests, this.limits.requestTimeoutMs).unref();
  }

  /**
   * Resets the requests older than the request timeout that are still
   * arriving, and re-arms for the oldest of the others. Run at most once per
   * timeout while requests are incomplete, so a connection of complete
   * requests costs one timer per timeout, not one per request.
   */
  private expireRequests(): void {
    this.requestTimer = undefined;
    if (this.closed) return;
    const now = Date.now();
    const limit = this.limits.requestTimeoutMs;
    if (this.continuation && now - this.continuation.startedAt >= limit) {
      return this.fail(new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, `header block not complete after ${limit} ms`));
    }
    let oldest = this.continuation?.startedAt ?? Infinity;
    for (const stream of [...this.streams.values()]) {
      if (stream.delivered || stream.reset) continue;
      if (now - stream.openedAt >= limit) {
        this.log(`http2 connection from ${this.peer}: stream ${stream.id}: request not complete after ${limit} ms, reset`);
        this.resetStream(stream.id, ErrorCode.CANCEL);
      } else oldest = Math.min(oldest, stream.openedAt);
    }
    if (oldest !== Infinity) this.requestTimer = setTimeout(this.expireRequests, oldest + limit - now).unref();
  }

  private deliver(stream: ServerStream): void {
    if (stream.delivered) return;
    // a whole body that is not the length announced is a malformed request (RFC 9113 §8.1.1)
    if (stream.ended && !stream.bodyTooLarge && !stream.overBudget && !hasAnnouncedLength(stream)) return this.resetStream(stream.id, ErrorCode.PROTOCOL_ERROR);
    stream.delivered = true;
    this.onRequest(stream);
  }

  // --- writing -------------------------------------------------------------

  respond(stream: ServerStream, headerBlock: Buffer, data?: Buffer, trailerBlock?: Buffer): void {
    if (stream.answered) throw new Error(`stream ${stream.id} answered twice`);
    stream.answered = true;
    if (stream.reset || this.closed) return this.finish(stream);
    const trailersOnly = !data && !trailerBlock;
    const headers = this.headerFrames(stream.id, headerBlock, trailersOnly);
    if (trailersOnly) {
      this.write(headers);
      return this.finish(stream);
    }
    const body = data ?? Buffer.alloc(0);
    const trailers = trailerBlock ? this.headerFrames(stream.id, trailerBlock, true) : undefined;
    if (body.length <= Math.min(this.sendWindow, stream.sendWindow, this.peerMaxFrameSize)) {
      // the common case: one write for the whole answer
      this.sendWindow -= body.length;
      stream.sendWindow -= body.length;
      const out = Buffer.allocUnsafe(headers.length + FRAME_HEADER_LENGTH + body.length + (trailers?.length ?? 0));
      headers.copy(out, 0);
      writeFrameHeader(out, headers.length, body.length, FrameType.DATA, trailers ? 0 : Flag.END_STREAM, stream.id);
      body.copy(out, headers.length + FRAME_HEADER_LENGTH);
      trailers?.copy(out, headers.length + FRAME_HEADER_LENGTH + body.length);
      this.write(out);
      return this.finish(stream);
    }
    this.write(headers);
    stream.pendingData = body;
    stream.pendingTrailers = trailers;
    this.blocked.push(stream);
    this.flush();
  }

  /** Sends what flow control now allows of the answers waiting for window, in order. */
  private flush(): void {
    if (!this.blocked.length) return;
    const waiting: ServerStream[] = [];
    for (const stream of this.blocked) {
      let data = stream.pendingData!;
      while (data.length && stream.sendWindow > 0 && this.sendWindow > 0) {
        const n = Math.min(data.length, stream.sendWindow, this.sendWindow, this.peerMaxFrameSize);
        const last = n === data.length && !stream.pendingTrailers;
        this.write(frame(FrameType.DATA, last ? Flag.END_STREAM : 0, stream.id, data.subarray(0, n)));
        this.sendWindow -= n;
        stream.sendWindow -= n;
        data = data.subarray(n);
      }
      stream.pendingData = data;
      if (data.length) {
        waiting.push(stream);
        continue;
      }
      if (stream.pendingTrailers) this.write(stream.pendingTrailers);
      this.finish(stream);
    }
    this.blocked = this.closed ? [] : waiting;
  }

  /** HEADERS (and CONTINUATION if the block is larger than the peer's frame size) for one block. */
  private headerFrames(streamId: number, block: Buffer, endStream: boolean): Buffer {
    if (!this.sentHeaderBlock) {
      this.sentHeaderBlock = true;
      block = Buffer.concat([TABLE_SIZE_ZERO, block]);
    }
    const end = endStream ? Flag.END_STREAM : 0;
    if (block.length <= this.peerMaxFrameSize) {
      const out = Buffer.allocUnsafe(FRAME_HEADER_LENGTH + block.length);
      writeFrameHeader(out, 0, block.length, FrameType.HEADERS, end | Flag.END_HEADERS, streamId);
      block.copy(out, FRAME_HEADER_LENGTH);
      return out;
    }
    const frames: Buffer[] = [];
    for (let at = 0; at < block.length; at += this.peerMaxFrameSize) {
      const piece = block.subarray(at, at + this.peerMaxFrameSize);
      const last = at + this.peerMaxFrameSize >= block.length;
      frames.push(frame(at === 0 ? FrameType.HEADERS : FrameType.CONTINUATION, (at === 0 ? end : 0) | (last ? Flag.END_HEADERS : 0), streamId, piece));
    }
    return Buffer.concat(frames);
  }

  /** Our answer is on the wire: stop the peer's upload if it is still sending, then forget the stream if we may. */
  private finish(stream: ServerStream): void {
    if (stream.sent) return;
    stream.sent = true;
    if (!stream.ended && !stream.reset && !this.closed) this.write(frame(FrameType.RST_STREAM, 0, stream.id, uint32(ErrorCode.NO_ERROR)));
    this.settle(stream);
  }

  private cancel(stream: ServerStream): void {
    if (stream.reset) return;
    stream.reset = true;
    const blockedAt = this.blocked.indexOf(stream);
    if (blockedAt >= 0) this.blocked.splice(blockedAt, 1);
    stream.onReset?.();
    this.settle(stream);
  }

  /**
   * A stream leaves the count of concurrent streams when nothing more will be
   * sent on it and its handler is done. A handler still working keeps its
   * place even after a reset or a deadline answer: otherwise resetting
   * streams, or a short grpc-timeout, would let a peer run more handlers at
   * once than the limit.
   */
  settle(stream: ServerStream): void {
    if ((!stream.sent && !stream.reset) || stream.working) return;
    this.limits.requestBytes.held -= stream.dropBody();
    if (!this.streams.delete(stream.id) || this.streams.size > 0) return;
    this.idleSince = performance.now();
    if (this.goingAway) this.end();
  }

  /** See ServerStream.abort. */
  abort(stream: ServerStream): void {
    if (!stream.sent && !stream.reset) this.resetStream(stream.id, ErrorCode.INTERNAL_ERROR);
  }

  private resetStream(streamId: number, code: ErrorCode): void {
    this.write(frame(FrameType.RST_STREAM, 0, streamId, uint32(code)));
    const stream = this.streams.get(streamId);
    if (stream) this.cancel(stream);
  }

  private write(bytes: Buffer): void {
    if (this.closed) return;
    this.unreadWrites++;
    this.socket.write(bytes, this.written);
    if (this.socket.writableLength > MAX_UNREAD_BYTES || this.unreadWrites > MAX_UNREAD_WRITES) {
      this.log(`http2 connection from ${this.peer}: closed, the peer does not read (${this.unreadWrites} writes, ${this.socket.writableLength} bytes queued)`);
      this.destroy();
    }
  }

  /** Connection error: GOAWAY with the reason, then close. */
  private fail(error: ConnectionError): void {
    if (this.closed) return;
    this.write(frame(FrameType.GOAWAY, 0, 0, goAwayPayload(this.lastStreamId, error.code, error.message)));
    this.end();
  }

  private end(): void {
    if (this.closed) return;
    this.socket.end();
    // a peer that never closes its side must not keep the socket
    setTimeout(() => this.socket.destroy(), 5_000).unref();
    this.close();
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.prefaceTimer);
    clearTimeout(this.idleTimer);
    for (const stream of [...this.streams.values()]) this.cancel(stream);
    this.streams.clear();
    this.blocked = [];
    this.onClose(this);
  }
}

/**
 * Reads the pseudo-header fields into the stream and checks the request is
 * well-formed (RFC 9113 §8.2-8.3); false if not (the stream is reset).
 */
function readRequestFields(stream: ServerStream, fields: string[]): boolean {
  let i = 0;
  let scheme = '';
  for (; i < fields.length && fields[i].charCodeAt(0) === 0x3a /* ':' */; i += 2) {
    const value = fields[i + 1];
    if (!isFieldValue(value)) return false;
    switch (fields[i]) {
      case ':method':
        if (stream.method) return false;
        stream.method = value;
        break;
      case ':path':
        if (stream.path) return false;
        stream.path = value;
        break;
      case ':scheme':
        if (scheme) return false;
        scheme = value;
        break;
      case ':authority':
        if (stream.authority) return false;
        stream.authority = value;
        break;
      default:
        return false;
    }
  }
  if (!stream.method || !stream.path || !scheme) return false;
  stream.fields = fields;
  stream.regularFrom = i;
  for (; i < fields.length; i += 2) {
    const name = fields[i];
    if (!isRegularFieldName(name) || !isFieldValue(fields[i + 1]) || CONNECTION_SPECIFIC.has(name)) return false;
    if (name === 'te' && fields[i + 1] !== 'trailers') return false;
  }
  return true;
}

/** RFC 9113 §8.2.1: no controls, space, uppercase, DEL or non-ASCII; and no ':' (that is a pseudo-header's). */
function isRegularFieldName(name: string): boolean {
  if (name.length === 0) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c <= 0x20 || (c >= 0x41 && c <= 0x5a) || c >= 0x7f || c === 0x3a) return false;
  }
  return true;
}

/**
 * RFC 9113 §8.2.1: no NUL, CR or LF anywhere (they would split a header when
 * passed on to HTTP/1 or a log line), no space or tab at either end.
 */
function isFieldValue(value: string): boolean {
  if (value.length > 0) {
    const first = value.charCodeAt(0);
    const last = value.charCodeAt(value.length - 1);
    if (first === 0x20 || first === 0x09 || last === 0x20 || last === 0x09) return false;
  }
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 0x00 || c === 0x0a || c === 0x0d) return false;
  }
  return true;
}

/** True unless content-length is present and is not the body's length. */
function hasAnnouncedLength(stream: ServerStream): boolean {
  const announced = stream.header('content-length');
  return announced === undefined || (/^[0-9]{1,15}$/.test(announced) && Number(announced) === stream.bodyLength);
}

/** `:status 431` (header list too large): the answer to a request whose headers we did not keep. */
const STATUS_431 = encodeHeaderBlock([':status', '431']);
