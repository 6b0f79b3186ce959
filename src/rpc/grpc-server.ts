/**
 * A gRPC server for unary methods (gRPC over HTTP/2, as in grpc's
 * PROTOCOL-HTTP2.md) on our own HTTP/2 connection (./http2-connection.ts).
 *
 * Methods are the definitions @grpc/proto-loader makes from proto/ (path,
 * request deserializer, response serializer), so the messages stay
 * generated; clients are ordinary gRPC clients (@grpc/grpc-js in the CLI and
 * agents). Handlers are async functions of the call; a thrown RpcError is
 * the status the client gets, anything else is INTERNAL and logged.
 *
 * What a unary server needs and no more: deadlines from grpc-timeout,
 * status and message in trailers, extra trailing metadata, identity
 * encoding only (a compressed request is UNIMPLEMENTED), a message size
 * limit, TLS with ALPN h2, graceful shutdown.
 */
import net from 'node:net';
import tls from 'node:tls';
import { encodeHeaderBlock } from './hpack';
import { Http2ServerConnection, RequestBytes, type ConnectionLimits, type ServerStream } from './http2-connection';

/** gRPC status codes (grpc/doc/statuscodes.md). */
export const Status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type Status = (typeof Status)[keyof typeof Status];

/** The status a call ends with, and trailing metadata to send with it. */
export class RpcError extends Error {
  constructor(
    readonly code: Status,
    message: string,
    readonly trailers: readonly (readonly [string, string])[] = [],
  ) {
    super(message);
  }
}

/** A unary method as @grpc/proto-loader defines it. */
export interface UnaryMethod<Req, Res> {
  path: string;
  requestDeserialize(bytes: Buffer): Req;
  responseSerialize(value: Res): Buffer;
}

export interface UnaryCall<Req> {
  readonly request: Req;
  /** The first value of a metadata entry (lowercase key). */
  metadata(key: string): string | undefined;
  /** When the client stops waiting (Date.now() time), Infinity without a deadline. */
  readonly deadline: number;
  readonly peer: string;
}

export type UnaryHandler<Req, Res> = (call: UnaryCall<Req>) => Promise<Res>;

export interface GrpcServerOptions {
  maxConcurrentStreams?: number;
  /** Largest request message (gRPC's usual 4 MiB). */
  maxMessageBytes?: number;
  /** Time a request may take to arrive, from its first frame to its last (default 30 s); a slower one is reset. */
  requestTimeoutMs?: number;
  /** Request bytes all connections may hold at once (default 256 MiB); beyond, requests are RESOURCE_EXHAUSTED. */
  maxHeldRequestBytes?: number;
  /** Open connections beyond which new ones are closed at once (an agent holds one; default 10,000). */
  maxConnections?: number;
  /** Time a connection may stay open without a call before it is closed (GOAWAY NO_ERROR; default 5 min; Infinity: never). */
  idleTimeoutMs?: number;
  log?: (line: string) => void;
}

const MESSAGE_PREFIX = 5;
const OK_HEADERS = encodeHeaderBlock([':status', '200', 'content-type', 'application/grpc', 'grpc-accept-encoding', 'identity']);
const OK_TRAILERS = encodeHeaderBlock(['grpc-status', '0']);
const MAX_TIMER_MS = 0x7fffffff;
const TIMEOUT_UNITS_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

interface Route {
  method: UnaryMethod<unknown, unknown>;
  handler: UnaryHandler<unknown, unknown>;
}

export class GrpcServer {
  private readonly routes = new Map<string, Route>();
  private readonly connections = new Set<Http2ServerConnection>();
  private readonly limits: ConnectionLimits;
  private readonly maxMessageBytes: number;
  private readonly maxConnections: number;
  private readonly log: (line: string) => void;
  private listener: net.Server | undefined;
  private drained: (() => void) | undefined;
  private stopping: Promise<void> | undefined;

  constructor(options: GrpcServerOptions = {}) {
    this.maxMessageBytes = options.maxMessageBytes ?? 4 << 20;
    this.limits = {
      maxConcurrentStreams: options.maxConcurrentStreams ?? 100,
      maxHeaderListBytes: 16 << 10,
      maxBodyBytes: this.maxMessageBytes + MESSAGE_PREFIX,
      requestTimeoutMs: options.requestTimeoutMs ?? 30_000,
      idleTimeoutMs: options.idleTimeoutMs ?? 300_000,
      requestBytes: new RequestBytes(options.maxHeldRequestBytes ?? 256 << 20),
    };
    this.maxConnections = options.maxConnections ?? 10_000;
    this.log = options.log ?? (() => undefined);
  }

  /** Request bytes held now by all connections (see GrpcServerOptions.maxHeldRequestBytes). */
  get heldRequestBytes(): number {
    return this.limits.requestBytes.held;
  }

  addUnary<Req, Res>(method: UnaryMethod<Req, Res>, handler: UnaryHandler<Req, Res>): void {
    if (this.routes.has(method.path)) throw new Error(`${method.path} is already served`);
    this.routes.set(method.path, { method, handler } as unknown as Route);
  }

  /** Listens on HOST:PORT ([v6]:PORT); with `credentials`, TLS. Resolves with the port. */
  listen(address: string, credentials?: { cert: Buffer; key: Buffer }): Promise<number> {
    const colon = address.lastIndexOf(':');
    const host = address.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
    const port = Number(address.slice(colon + 1));
    if (colon < 0 || !Number.isInteger(port) || port < 0 || port > 65535) return Promise.reject(new Error(`not HOST:PORT: '${address}'`));
    const accept = (socket: net.Socket) => this.accept(socket);
    const listener = credentials
      ? tls.createServer({ cert: credentials.cert, key: credentials.key, ALPNProtocols: ['h2'] }).on('secureConnection', accept)
      : net.createServer(accept);
    listener.on('tlsClientError', (error: Error) => this.log(`policy store: TLS handshake failed: ${error.message}`));
    listener.maxConnections = this.maxConnections;
    let dropped = 0;
    listener.on('drop', () => {
      // one line per power of two, not per refused connection: a flood must not flood the log too
      if ((++dropped & (dropped - 1)) === 0) this.log(`policy store: ${this.maxConnections} connections open, refused ${dropped} so far`);
    });
    this.listener = listener;
    return new Promise((resolve, reject) => {
      listener.once('error', reject);
      listener.listen({ host, port }, () => {
        listener.off('error', reject);
        // after listen, 'error' is a failed accept (EMFILE, ENFILE): the listener
        // goes on, and without a listener the event would end the process
        listener.on('error', (error: Error) => this.log(`policy store: accepting a connection failed: ${error.message}`));
        resolve((listener.address() as net.AddressInfo).port);
      });
    });
  }

  /** Stops accepting, lets open calls finish (GOAWAY), closes what is left after `graceMs`. */
  shutdown(graceMs = 10_000): Promise<void> {
    this.stopping ??= new Promise<void>((resolve) => {
      this.listener?.close();
      const timer = setTimeout(() => this.connections.forEach((c) => c.destroy()), graceMs);
      this.drained = () => {
        clearTimeout(timer);
        resolve();
      };
      for (const connection of this.connections) connection.goAway();
      if (this.connections.size === 0) this.drained();
    });
    return this.stopping;
  }

  private accept(socket: net.Socket): void {
    const connection = new Http2ServerConnection(
      socket,
      this.limits,
      (stream) => this.onRequest(stream),
      (closed) => {
        this.connections.delete(closed);
        if (this.connections.size === 0) this.drained?.();
      },
      this.log,
    );
    this.connections.add(connection);
  }

  private onRequest(stream: ServerStream): void {
    if (stream.method !== 'POST') return stream.respond(encodeHeaderBlock([':status', '405']));
    if (!isGrpcContentType(stream.header('content-type'))) return stream.respond(encodeHeaderBlock([':status', '415']));
    const route = this.routes.get(stream.path);
    // the path only in part: the whole of it (up to 16 KiB, percent-encoded up to 6 bytes a character,
    // and 1 byte on the wire when it comes from the HPACK table) made each tiny request a ~100 KiB answer
    if (!route) return answerError(stream, new RpcError(Status.UNIMPLEMENTED, `unknown method ${clip(stream.path)}`));
    if (stream.overBudget) return answerError(stream, new RpcError(Status.RESOURCE_EXHAUSTED, 'server busy: too many request bytes in progress; retry later'));
    if (stream.bodyTooLarge) return answerError(stream, new RpcError(Status.RESOURCE_EXHAUSTED, `request larger than ${this.maxMessageBytes} bytes`));
    let deadline = Infinity;
    let request: unknown;
    try {
      deadline = deadlineOf(stream.header('grpc-timeout'));
      request = route.method.requestDeserialize(onlyMessage(stream.body));
    } catch (error) {
      return answerError(stream, error instanceof RpcError ? error : new RpcError(Status.INTERNAL, `cannot decode the request: ${(error as Error).message}`));
    }
    this.run(stream, route, request, deadline);
  }

  private run(stream: ServerStream, route: Route, request: unknown, deadline: number): void {
    stream.working = true;
    let answered = false;
    const answer = (send: () => void) => {
      if (answered) return;
      answered = true;
      if (timer) clearTimeout(timer);
      // Writing the answer can throw only through a bug (a serializer that
      // returns something other than a Buffer, trailing metadata that is not
      // strings). Not caught, that was an uncaught exception in the deadline's
      // timer, or an unhandled rejection after the handler, either of which
      // ends the process, and a stream never answered or released.
      try {
        send();
      } catch (error) {
        this.log(`policy store: ${stream.path}: cannot answer: ${(error as Error)?.stack ?? String(error)}`);
        stream.abort();
      }
    };
    const remaining = deadline - Date.now();
    // setTimeout takes at most 2^31-1 ms (and fires at once above it); a deadline further out than ~24 days is none
    const timer = remaining > MAX_TIMER_MS ? undefined : setTimeout(() => answer(() => answerError(stream, new RpcError(Status.DEADLINE_EXCEEDED, 'deadline exceeded'))), Math.max(0, remaining));
    const call: UnaryCall<unknown> = { request, deadline, peer: stream.peer, metadata: (key) => stream.header(key) };
    // A handler that throws instead of returning a promise, and a serializer
    // that throws, are this call's error (INTERNAL, logged): outside the chain
    // the first became a GOAWAY for every call on the connection, the second
    // an unhandled rejection and a call never answered.
    new Promise<unknown>((resolve) => resolve(route.handler(call)))
      .then((response) => route.method.responseSerialize(response))
      .then(
        (message) => answer(() => answerMessage(stream, message)),
        (error: unknown) => {
          // logged even when the deadline answered first: it is still a bug to see
          if (!(error instanceof RpcError)) this.log(`policy store: ${stream.path}: ${(error as Error)?.stack ?? String(error)}`);
          answer(() => answerError(stream, error instanceof RpcError ? error : new RpcError(Status.INTERNAL, `internal error in ${stream.path.slice(stream.path.lastIndexOf('/') + 1)}`)));
        },
      )
      .finally(() => stream.release());
  }
}

function answerMessage(stream: ServerStream, message: Buffer): void {
  const framed = Buffer.allocUnsafe(MESSAGE_PREFIX + message.length);
  framed[0] = 0; // not compressed
  framed.writeUInt32BE(message.length, 1);
  message.copy(framed, MESSAGE_PREFIX);
  stream.respond(OK_HEADERS, framed, OK_TRAILERS);
}

/** Trailers-only answer: the status, its message and any trailing metadata in one header block. */
function answerError(stream: ServerStream, error: RpcError): void {
  const fields = [':status', '200', 'content-type', 'application/grpc', 'grpc-status', String(error.code), 'grpc-message', percentEncode(error.message)];
  for (const [key, value] of error.trailers) if (allowedTrailer(key)) fields.push(key, printable(value));
  stream.respond(encodeHeaderBlock(fields));
}

/** application/grpc, optionally +format or ;parameters (grpc's PROTOCOL-HTTP2.md). */
function isGrpcContentType(value: string | undefined): boolean {
  if (!value?.startsWith('application/grpc')) return false;
  const next = value.charAt('application/grpc'.length);
  return next === '' || next === '+' || next === ';';
}

/** Trailing metadata a handler may add: lowercase token names, not gRPC's own, not binary. */
const TRAILER_KEY = /^[0-9a-z_.-]+$/;
function allowedTrailer(key: string): boolean {
  return TRAILER_KEY.test(key) && !key.startsWith('grpc-') && !key.endsWith('-bin');
}

/** The one message of a unary request, without its 5-byte prefix. */
function onlyMessage(body: Buffer): Buffer {
  if (body.length < MESSAGE_PREFIX) throw new RpcError(Status.INTERNAL, 'the request has no message');
  if (body[0] !== 0) throw new RpcError(Status.UNIMPLEMENTED, 'compressed messages are not supported (grpc-accept-encoding: identity)');
  const length = body.readUInt32BE(1);
  if (length !== body.length - MESSAGE_PREFIX) throw new RpcError(Status.INTERNAL, 'a unary request carries exactly one message');
  return body.subarray(MESSAGE_PREFIX);
}

/** grpc-timeout ("30S", "100m", up to 8 digits and a unit) as a Date.now() deadline. */
function deadlineOf(timeout: string | undefined): number {
  if (timeout === undefined) return Infinity;
  const unit = TIMEOUT_UNITS_MS[timeout[timeout.length - 1]];
  const digits = timeout.slice(0, -1);
  if (!unit || digits.length === 0 || digits.length > 8 || !/^\d+$/.test(digits)) throw new RpcError(Status.OUT_OF_RANGE, `invalid grpc-timeout '${timeout}'`);
  return Date.now() + Number(digits) * unit;
}

/** grpc-message encoding: UTF-8, then %XX for bytes outside printable ASCII and for '%'. */
function percentEncode(text: string): string {
  let plain = true;
  for (let i = 0; i < text.length && plain; i++) {
    const c = text.charCodeAt(i);
    plain = c >= 0x20 && c <= 0x7e && c !== 0x25;
  }
  if (plain) return text;
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}

/** At most the first 100 characters of a client's text in a message of ours. */
function clip(text: string): string {
  return text.length > 100 ? `${text.slice(0, 100)}…` : text;
}

/** A header value must be printable ASCII; other characters become '?'. */
function printable(value: string): string {
  return value.replace(/[^\x20-\x7e]/g, '?');
}
