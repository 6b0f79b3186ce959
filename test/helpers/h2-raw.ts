/**
 * A raw HTTP/2 client for protocol tests of src/rpc/: frames written by hand
 * on a node:net socket to 127.0.0.1, so a test can send what a well-behaved
 * client never would, and every frame the server sends is kept so a test can
 * assert exactly what came back. The server's header blocks are decoded with
 * our HpackDecoder (in arrival order, as HPACK requires), so responses read as
 * `:status`, `grpc-status`, `grpc-message`.
 *
 * After its handshake it acknowledges the server's SETTINGS, and by default
 * grants the server a large window up front (like bench/grpc-load-client.ts),
 * so answers never wait on us unless a test asks for small windows.
 */
import net from 'node:net';
import { DEFAULT_MAX_FRAME_SIZE, DEFAULT_WINDOW, Flag, frame, FRAME_HEADER_LENGTH, FrameType, PREFACE, Setting, settingsPayload, uint32 } from '../../src/rpc/frames';
import { encodeHeaderBlock, HpackDecoder } from '../../src/rpc/hpack';

export interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

/** What the server sent on one stream. */
export interface StreamResult {
  /** Decoded header blocks in order: response headers then trailers, or one block for a trailers-only answer. */
  headerBlocks: Record<string, string>[];
  /** DATA payloads joined (the gRPC-framed message, if any). */
  data: Buffer;
  /** The RST_STREAM error code, if the server reset the stream. */
  resetCode: number | undefined;
}

export interface GoAway {
  lastStream: number;
  code: number;
  debug: string;
}

/** How long a wait lasts before the test fails with a description of what did arrive. */
const WAIT_MS = 5_000;
/** What we let the server send before it needs our WINDOW_UPDATE: more than any test's answer. */
const WINDOW = 0x3fffffff;
const LOOPBACK = '127.0.0.1';

interface StreamState {
  blocks: Record<string, string>[];
  data: Buffer[];
  resetCode: number | undefined;
  ended: boolean;
}

export class RawH2Client {
  /** Every frame the server sent, in order. */
  readonly frames: Frame[] = [];
  closed = false;
  private readonly socket: net.Socket;
  private buffered = Buffer.alloc(0);
  private readonly decoder = new HpackDecoder();
  /** A response header block still arriving in CONTINUATION frames. */
  private headerBlock: { stream: number; endStream: boolean; fragments: Buffer[] } | undefined;
  private readonly streams = new Map<number, StreamState>();
  /** Why the client cannot make sense of what it got (a bad frame or header block from the server). */
  private error: Error | undefined;
  /** Re-checked on every frame and on close. */
  private readonly waiters = new Set<() => void>();
  private syncs = 0;

  private constructor(
    socket: net.Socket,
    /** Whether we speak HTTP/2 at all: without the handshake we acknowledge nothing either. */
    private readonly handshake: boolean,
  ) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    // EPIPE/ECONNRESET after the server closed are expected in these tests; 'close' follows.
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      this.notify();
    });
  }

  /**
   * Connects to 127.0.0.1:port. With `handshake` (the default), sends the
   * preface, our SETTINGS (SETTINGS_INITIAL_WINDOW_SIZE `streamWindow`) and
   * a WINDOW_UPDATE that makes the connection window `connectionWindow`;
   * without, sends nothing, for tests of what comes before the preface.
   */
  static connect(port: number, { handshake = true, streamWindow = WINDOW, connectionWindow = WINDOW } = {}): Promise<RawH2Client> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: LOOPBACK, port });
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        const client = new RawH2Client(socket, handshake);
        if (handshake) {
          client.send(PREFACE, frame(FrameType.SETTINGS, 0, 0, settingsPayload([[Setting.INITIAL_WINDOW_SIZE, streamWindow]])));
          if (connectionWindow > DEFAULT_WINDOW) client.sendFrame(FrameType.WINDOW_UPDATE, 0, 0, uint32(connectionWindow - DEFAULT_WINDOW));
        }
        resolve(client);
      });
    });
  }

  send(...bytes: Buffer[]): void {
    if (!this.socket.destroyed) this.socket.write(Buffer.concat(bytes));
  }

  sendFrame(type: number, flags: number, stream: number, payload?: Buffer): void {
    this.send(frame(type, flags, stream, payload));
  }

  /**
   * Sends a header block as HEADERS and, if it is longer than `fragmentSize`,
   * CONTINUATION frames (END_HEADERS on the last one).
   */
  sendHeaderBlock(stream: number, block: Buffer, { endStream = false, fragmentSize = 16_384 } = {}): void {
    const frames: Buffer[] = [];
    for (let at = 0; at === 0 || at < block.length; at += fragmentSize) {
      const last = at + fragmentSize >= block.length;
      const type = at === 0 ? FrameType.HEADERS : FrameType.CONTINUATION;
      const flags = (at === 0 && endStream ? Flag.END_STREAM : 0) | (last ? Flag.END_HEADERS : 0);
      frames.push(frame(type, flags, stream, block.subarray(at, at + fragmentSize)));
    }
    this.send(...frames);
  }

  /** A whole request: header fields (flat [name, value, …]), then the body in DATA frames, END_STREAM on the last. */
  request(stream: number, fields: readonly string[], body?: Buffer): void {
    this.sendHeaderBlock(stream, encodeHeaderBlock(fields), { endStream: !body });
    for (let at = 0; body && at < body.length; at += DEFAULT_MAX_FRAME_SIZE) {
      const last = at + DEFAULT_MAX_FRAME_SIZE >= body.length;
      this.sendFrame(FrameType.DATA, last ? Flag.END_STREAM : 0, stream, body.subarray(at, at + DEFAULT_MAX_FRAME_SIZE));
    }
  }

  /**
   * Sends a PING and waits for its ACK. The server reads frames in order and
   * writes in order, so everything it wrote before it read our PING has then
   * arrived: a test can assert what the server has not sent.
   */
  async sync(): Promise<void> {
    const opaque = Buffer.from(`sync${String(++this.syncs).padStart(4, '0')}`, 'latin1');
    this.sendFrame(FrameType.PING, 0, 0, opaque);
    await this.frame((f) => f.type === FrameType.PING && (f.flags & Flag.ACK) !== 0 && f.payload.equals(opaque), 'the PING ACK');
  }

  /** Bytes of DATA payload the server has sent on `stream` so far (what counts against flow control). */
  dataSent(stream: number): number {
    return this.frames.reduce((sum, f) => sum + (f.type === FrameType.DATA && f.stream === stream ? f.payload.length : 0), 0);
  }

  /** The first frame from the server that matches, waiting for it if need be. */
  frame(matches: (f: Frame) => boolean, what = 'a matching frame'): Promise<Frame> {
    return this.until(() => this.frames.find(matches), what);
  }

  /** The server's GOAWAY. */
  async goAway(): Promise<GoAway> {
    const f = await this.frame((f) => f.type === FrameType.GOAWAY, 'GOAWAY');
    return { lastStream: f.payload.readUInt32BE(0) & 0x7fffffff, code: f.payload.readUInt32BE(4), debug: f.payload.toString('utf8', 8) };
  }

  /** Resolves when the server has closed the connection. */
  async closedByServer(): Promise<void> {
    await this.until(() => this.closed || undefined, 'the connection to close', { okWhenClosed: true });
  }

  /** What the server sent on `stream`, once it ended it (END_STREAM or RST_STREAM). */
  response(stream: number): Promise<StreamResult> {
    return this.until(() => {
      const s = this.streams.get(stream);
      if (!s?.ended) return undefined;
      return { headerBlocks: s.blocks, data: Buffer.concat(s.data), resetCode: s.resetCode };
    }, `the end of stream ${stream}`);
  }

  destroy(): void {
    this.socket.destroy();
  }

  /**
   * Waits until `check` returns something; fails after WAIT_MS, or when the
   * connection closes first, with a list of the frames that did arrive.
   */
  private until<T>(check: () => T | undefined, what: string, { okWhenClosed = false } = {}): Promise<T> {
    return new Promise((resolve, reject) => {
      const attempt = () => {
        const found = check();
        if (found !== undefined) return settle(() => resolve(found));
        if (this.error) return settle(() => reject(this.error));
        if (this.closed && !okWhenClosed) return settle(() => reject(new Error(`connection closed while waiting for ${what}; got ${this.describeFrames()}`)));
      };
      const timer = setTimeout(() => settle(() => reject(new Error(`timed out waiting for ${what}; got ${this.describeFrames()}`))), WAIT_MS);
      const settle = (done: () => void) => {
        clearTimeout(timer);
        this.waiters.delete(attempt);
        done();
      };
      this.waiters.add(attempt);
      attempt();
    });
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }

  private describeFrames(): string {
    const names = Object.fromEntries(Object.entries(FrameType).map(([name, type]) => [type, name]));
    const list = this.frames.map((f) => `${names[f.type] ?? f.type}(stream ${f.stream}, flags 0x${f.flags.toString(16)}, ${f.payload.length} bytes)`);
    return list.length ? list.join(', ') : 'no frames';
  }

  private onData(chunk: Buffer): void {
    let data = this.buffered.length ? Buffer.concat([this.buffered, chunk]) : chunk;
    while (data.length >= FRAME_HEADER_LENGTH) {
      const length = data.readUIntBE(0, 3);
      if (data.length < FRAME_HEADER_LENGTH + length) break;
      // copied: the frames are kept after the read buffer is reused
      const f = { type: data[3], flags: data[4], stream: data.readUInt32BE(5) & 0x7fffffff, payload: Buffer.from(data.subarray(FRAME_HEADER_LENGTH, FRAME_HEADER_LENGTH + length)) };
      data = data.subarray(FRAME_HEADER_LENGTH + length);
      this.frames.push(f);
      try {
        this.onFrame(f);
      } catch (error) {
        this.error ??= error as Error;
      }
    }
    this.buffered = Buffer.from(data);
    this.notify();
  }

  private onFrame({ type, flags, stream, payload }: Frame): void {
    switch (type) {
      case FrameType.SETTINGS:
        if (this.handshake && !(flags & Flag.ACK)) this.sendFrame(FrameType.SETTINGS, Flag.ACK, 0);
        return;
      case FrameType.PING:
        if (this.handshake && !(flags & Flag.ACK)) this.sendFrame(FrameType.PING, Flag.ACK, 0, payload);
        return;
      case FrameType.HEADERS: {
        let start = 0;
        let end = payload.length;
        if (flags & Flag.PADDED) {
          start = 1;
          end -= payload[0];
        }
        if (flags & Flag.PRIORITY) start += 5;
        this.headerBlock = { stream, endStream: (flags & Flag.END_STREAM) !== 0, fragments: [payload.subarray(start, end)] };
        if (flags & Flag.END_HEADERS) this.endHeaderBlock();
        return;
      }
      case FrameType.CONTINUATION:
        if (!this.headerBlock || this.headerBlock.stream !== stream) throw new Error(`server sent CONTINUATION on stream ${stream} without a header block in progress`);
        this.headerBlock.fragments.push(payload);
        if (flags & Flag.END_HEADERS) this.endHeaderBlock();
        return;
      case FrameType.DATA: {
        const s = this.stream(stream);
        s.data.push(flags & Flag.PADDED ? payload.subarray(1, payload.length - payload[0]) : payload);
        if (flags & Flag.END_STREAM) s.ended = true;
        return;
      }
      case FrameType.RST_STREAM: {
        const s = this.stream(stream);
        // a reset after END_STREAM (e.g. NO_ERROR to stop our upload) does not change the answer
        if (!s.ended) s.resetCode = payload.readUInt32BE(0);
        s.ended = true;
        return;
      }
      default:
        return;
    }
  }

  private endHeaderBlock(): void {
    const { stream, endStream, fragments } = this.headerBlock!;
    this.headerBlock = undefined;
    const fields = this.decoder.decode(Buffer.concat(fragments));
    const block: Record<string, string> = {};
    for (let i = 0; i < fields.length; i += 2) block[fields[i]] = fields[i + 1];
    const s = this.stream(stream);
    s.blocks.push(block);
    if (endStream) s.ended = true;
  }

  private stream(id: number): StreamState {
    let s = this.streams.get(id);
    if (!s) this.streams.set(id, (s = { blocks: [], data: [], resetCode: undefined, ended: false }));
    return s;
  }
}

/** The header fields of a gRPC unary request to `path`, then `extra` ones (flat [name, value, …]). */
export function grpcRequestFields(path: string, extra: readonly string[] = []): string[] {
  return [':method', 'POST', ':scheme', 'http', ':path', path, ':authority', LOOPBACK, 'content-type', 'application/grpc', 'te', 'trailers', ...extra];
}

/** A gRPC request body: one uncompressed message with its 5-byte prefix. */
export function grpcBody(message: Buffer | string): Buffer {
  const bytes = Buffer.from(message);
  const out = Buffer.alloc(5 + bytes.length);
  out.writeUInt32BE(bytes.length, 1);
  bytes.copy(out, 5);
  return out;
}

/** The one message of a gRPC response, without its prefix; undefined if there is none or the framing is off. */
export function grpcMessage(result: StreamResult): Buffer | undefined {
  const { data } = result;
  if (data.length < 5 || data[0] !== 0 || data.readUInt32BE(1) !== data.length - 5) return undefined;
  return data.subarray(5);
}

/** A field of the last header block: the trailers (or the only block of a trailers-only answer). */
export function trailer(result: StreamResult, name: string): string | undefined {
  return result.headerBlocks.at(-1)?.[name];
}

/** SETTINGS payload as identifier → value. */
export function parseSettings(payload: Buffer): Map<number, number> {
  const settings = new Map<number, number>();
  for (let at = 0; at + 6 <= payload.length; at += 6) settings.set(payload.readUInt16BE(at), payload.readUInt32BE(at + 2));
  return settings;
}

/** RFC 7541 §5.1: an integer with an N-bit prefix under `flags`. */
function hpackInt(value: number, prefixBits: number, flags: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [flags | value];
  const out = [flags | max];
  let rest = value - max;
  for (; rest >= 128; rest = Math.floor(rest / 128)) out.push((rest % 128) | 0x80);
  out.push(rest);
  return out;
}

/** RFC 7541 §6.1: a field by its index in the static (1-61) or dynamic (62-) table. */
export function hpackIndexed(index: number): Buffer {
  return Buffer.from(hpackInt(index, 7, 0x80));
}

/** RFC 7541 §6.2.1: a literal field with a new name that the decoder adds to its dynamic table (as index 62). */
export function hpackIncrementalLiteral(name: string, value: string): Buffer {
  const n = Buffer.from(name, 'latin1');
  const v = Buffer.from(value, 'latin1');
  return Buffer.concat([Buffer.from([0x40, ...hpackInt(n.length, 7, 0)]), n, Buffer.from(hpackInt(v.length, 7, 0)), v]);
}
