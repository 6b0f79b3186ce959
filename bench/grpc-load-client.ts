/**
 * A load generator's gRPC client: unary calls over one HTTP/2 connection,
 * written on a plain TCP socket.
 *
 * Why not @grpc/grpc-js (or node:http2) here: one process simulating 1,000
 * agents puts all their garbage in one heap. With 1,000 grpc-js clients the
 * generator stalled in 10-15 ms scavenges several times a second on our
 * 2-core machines (node:http2 keeps every stream's native object and header
 * strings until a full GC, see docs/policy-store.md "Performance"); those
 * stalls land in the latencies it records and are not the server's. Real
 * agents are separate processes making one call per job. This client keeps a
 * call to a few small buffers, so what it measures is the server.
 *
 * It speaks just enough HTTP/2 (RFC 9113) for that, with the server's frame
 * and HPACK code (src/rpc/): the preface, SETTINGS and PING
 * acknowledgements, a large connection window, HEADERS encoded as HPACK
 * literals without indexing (so no dynamic table on our side), and frames
 * parsed by type. It never decodes the server's headers: a call succeeded when
 * it got a gRPC message and then END_STREAM on trailers; a trailers-only
 * response (how gRPC reports errors), RST_STREAM or GOAWAY count as failed.
 * The caller checks the messages' content (decode with the proto's
 * deserializer).
 */
import net from 'node:net';
import { Flag, frame, FRAME_HEADER_LENGTH, FrameType, PREFACE, Setting, settingsPayload, uint32 } from '../src/rpc/frames';
import { encodeHeaderBlock } from '../src/rpc/hpack';

/** What we grant the server up front, so responses never wait on our WINDOW_UPDATE. */
const WINDOW = 0x3fffffff;

export interface UnaryRequest {
  /** HEADERS + DATA frames with stream id 0, patched per call. */
  readonly frames: Buffer;
  /** Offsets of the two stream id fields in `frames`. */
  readonly streamIdAt: [number, number];
}

/** Encodes one unary call (path, metadata, serialized message) once, for sending many times. */
export function encodeUnary(authority: string, path: string, metadata: Record<string, string>, message: Buffer): UnaryRequest {
  const block = encodeHeaderBlock([':method', 'POST', ':scheme', 'http', ':path', path, ':authority', authority, 'content-type', 'application/grpc', 'te', 'trailers', ...Object.entries(metadata).flat()]);
  const body = Buffer.alloc(5 + message.length);
  body.writeUInt32BE(message.length, 1);
  message.copy(body, 5);
  const headers = frame(FrameType.HEADERS, Flag.END_HEADERS, 0, block);
  const data = frame(FrameType.DATA, Flag.END_STREAM, 0, body);
  return { frames: Buffer.concat([headers, data]), streamIdAt: [5, headers.length + 5] };
}

interface Pending {
  resolve: (message: Buffer) => void;
  reject: (error: Error) => void;
  chunks: Buffer[];
}

export class GrpcLoadConnection {
  private readonly socket: net.Socket;
  private readonly pending = new Map<number, Pending>();
  private nextStream = 1;
  private buffered: Buffer = Buffer.alloc(0);
  private failed: Error | undefined;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (chunk) => this.onData(chunk));
    socket.on('error', (error) => this.fail(error));
    socket.on('close', () => this.fail(new Error('connection closed')));
  }

  /** Connects and exchanges the preface; resolves once the server's SETTINGS arrived. */
  static connect(host: string, port: number): Promise<GrpcLoadConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port });
      socket.once('error', reject);
      socket.once('connect', () => {
        const connection = new GrpcLoadConnection(socket);
        connection.settle = (error) => {
          socket.off('error', reject);
          if (error) reject(error);
          else resolve(connection);
        };
        const settings = settingsPayload([[Setting.INITIAL_WINDOW_SIZE, WINDOW]]);
        socket.write(Buffer.concat([PREFACE, frame(FrameType.SETTINGS, 0, 0, settings), frame(FrameType.WINDOW_UPDATE, 0, 0, uint32(WINDOW - 65535))]));
      });
    });
  }

  /** Settles connect(): with the server's first SETTINGS, or the error that came first. */
  private settle: ((error?: Error) => void) | undefined;

  /** Sends one unary call; resolves with the response message (without the 5-byte gRPC prefix). */
  call(request: UnaryRequest): Promise<Buffer> {
    if (this.failed) return Promise.reject(this.failed);
    const stream = this.nextStream;
    this.nextStream += 2;
    const frames = Buffer.from(request.frames);
    frames.writeUInt32BE(stream, request.streamIdAt[0]);
    frames.writeUInt32BE(stream, request.streamIdAt[1]);
    return new Promise((resolve, reject) => {
      this.pending.set(stream, { resolve, reject, chunks: [] });
      this.socket.write(frames);
    });
  }

  close(): void {
    this.socket.end();
  }

  private fail(error: Error): void {
    this.failed ??= error;
    this.settle?.(error);
    this.settle = undefined;
    for (const p of this.pending.values()) p.reject(error);
    this.pending.clear();
  }

  private onData(chunk: Buffer): void {
    let data = this.buffered.length ? Buffer.concat([this.buffered, chunk]) : chunk;
    while (data.length >= FRAME_HEADER_LENGTH) {
      const length = data.readUIntBE(0, 3);
      if (data.length < FRAME_HEADER_LENGTH + length) break;
      this.onFrame(data[3], data[4], data.readUInt32BE(5) & 0x7fffffff, data.subarray(FRAME_HEADER_LENGTH, FRAME_HEADER_LENGTH + length));
      data = data.subarray(FRAME_HEADER_LENGTH + length);
    }
    this.buffered = data.length ? Buffer.from(data) : Buffer.alloc(0);
  }

  private onFrame(type: number, flags: number, stream: number, payload: Buffer): void {
    switch (type) {
      case FrameType.SETTINGS:
        if (!(flags & Flag.ACK)) {
          this.socket.write(frame(FrameType.SETTINGS, Flag.ACK, 0));
          this.settle?.();
          this.settle = undefined;
        }
        return;
      case FrameType.PING:
        if (!(flags & Flag.ACK)) this.socket.write(frame(FrameType.PING, Flag.ACK, 0, payload));
        return;
      case FrameType.GOAWAY:
        this.fail(new Error(`server sent GOAWAY (error code ${payload.readUInt32BE(4)})`));
        return;
      case FrameType.RST_STREAM:
        this.finish(stream, new Error(`server reset the stream (error code ${payload.readUInt32BE(0)})`));
        return;
      case FrameType.DATA: {
        const pad = flags & Flag.PADDED ? payload[0] : -1;
        const body = pad >= 0 ? payload.subarray(1, payload.length - pad) : payload;
        this.pending.get(stream)?.chunks.push(Buffer.from(body));
        if (flags & Flag.END_STREAM) this.finish(stream);
        return;
      }
      case FrameType.HEADERS:
        // response headers, then trailers with END_STREAM; without a message first, the call failed
        if (flags & Flag.END_STREAM) this.finish(stream);
        return;
      default:
        return; // WINDOW_UPDATE, CONTINUATION of headers we do not read, PRIORITY
    }
  }

  private finish(stream: number, error?: Error): void {
    const p = this.pending.get(stream);
    if (!p) return;
    this.pending.delete(stream);
    const body = p.chunks.length === 1 ? p.chunks[0] : Buffer.concat(p.chunks);
    if (error) p.reject(error);
    else if (body.length < 5 || body.readUInt32BE(1) !== body.length - 5) p.reject(new Error(`call on stream ${stream} ended without a gRPC message (a trailers-only error status)`));
    else p.resolve(body.subarray(5));
  }
}
