/**
 * ringfenced's local API (docs/local-api.md): JSON lines over a unix socket.
 *
 *   request        {"id": 1, "method": "NAME", "params": …}
 *   reply          {"id": 1, "result": …}  or  {"id": 1, "error": {"code": "RF_…", "message": "…"}}
 *   notification   {"method": "NAME", "params": …}          (server → client, no id)
 *
 * One message a line, at most maxLineBytes (1 MiB) of it. Requests on one
 * connection are handled concurrently and replied to as they finish, so
 * replies may come out of order; the id pairs them. An error that belongs to
 * no request (a line that is not JSON, one without an id, a caller that
 * cannot be identified) is replied with `"id": null`.
 *
 * The server reads the peer's credentials once, at accept, before it reads
 * a byte from the connection, and hands them to `identify` (where the daemon
 * decides who the caller is, src/agent/caller.ts); handlers get what that
 * returned. The transport knows nothing of jobs.
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { instanceName } from '../jobs/registry';
import { loadNative, type NativeAddon } from '../sensor/native';
import { RingfenceError } from '../util/errors';

/** The native answer for a connection's peer (native/peer_credentials.h). */
export type PeerCredentials = ReturnType<NativeAddon['peerCredentials']>;

export type RequestId = number | string;

export interface ApiErrorBody {
  code: string;
  message: string;
}

/** How the server logs; the daemon passes its pino logger's methods (`(level, msg, fields) => logger[level](fields ?? {}, msg)`). */
export type LocalApiLog = (level: 'debug' | 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => void;

/** Error codes of the transport itself; handlers add their own (a RingfenceError's code goes out as it is). */
export const API_CODES = {
  /** Nothing listens at the socket (ENOENT, ECONNREFUSED): `ringfence run` falls back to an in-process supervisor. */
  noDaemon: 'RF_NO_DAEMON',
  connect: 'RF_API_CONNECT',
  timeout: 'RF_API_TIMEOUT',
  disconnected: 'RF_API_DISCONNECTED',
  badJson: 'RF_API_BAD_JSON',
  badRequest: 'RF_API_BAD_REQUEST',
  badReply: 'RF_API_BAD_REPLY',
  unknownMethod: 'RF_API_UNKNOWN_METHOD',
  lineTooLong: 'RF_API_LINE_TOO_LONG',
  internal: 'RF_API_INTERNAL',
  callerUnknown: 'RF_CALLER_UNKNOWN',
  inUse: 'RF_API_IN_USE',
  socketPath: 'RF_API_SOCKET_PATH',
  noFd: 'RF_API_NO_FD',
} as const;

export const DEFAULT_MAX_LINE_BYTES = 1 << 20;
/** Owner root, group root (or the configured group) read-write, nobody else. */
export const DEFAULT_SOCKET_MODE = 0o660;
/** Unsent bytes a connection may queue (a client that stopped reading a stream of events) before it is closed. */
export const DEFAULT_MAX_QUEUED_BYTES = 16 << 20;
/** sun_path holds 108 bytes, the terminating NUL included. */
const MAX_SOCKET_PATH_BYTES = 107;

/** Where the local API is: RINGFENCE_SOCKET, else /run/ringfence/agent.sock (/run/ringfence-NAME/… with RINGFENCE_INSTANCE=NAME). */
export function socketPath(env: NodeJS.ProcessEnv = process.env): string {
  const configured = env.RINGFENCE_SOCKET;
  if (configured !== undefined && configured !== '') {
    if (!path.isAbsolute(configured)) throw new RingfenceError(`RINGFENCE_SOCKET '${configured}': expected an absolute path`, 'RF_USAGE');
    return configured;
  }
  return `/run/${instanceName(env)}/agent.sock`;
}

/**
 * The descriptor of a connected socket. Node has no public API for it; its
 * libuv handle (a Pipe) exposes `fd` on Unix. Kept to this one function so a
 * Node that changes it fails here, with this message, not somewhere deep.
 */
export function socketFd(socket: net.Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) {
    throw new RingfenceError(
      `cannot read the descriptor of a local API connection (net.Socket._handle.fd is ${String(fd)} in Node ${process.version})`,
      API_CODES.noFd,
    );
  }
  return fd;
}

/** The credentials of whoever connected `socket` (see native/peer_credentials.cc). */
export function readPeerCredentials(socket: net.Socket): PeerCredentials {
  return loadNative().peerCredentials(socketFd(socket));
}

/**
 * Splits a byte stream into lines ('\n'). A line longer than `limit` bytes is
 * noticed before it is all buffered: push() then returns the complete lines
 * before it and `tooLong`, and the splitter takes nothing more.
 */
class LineSplitter {
  private parts: Buffer[] = [];
  private length = 0;
  private overflowed = false;

  constructor(readonly limit: number) {}

  push(chunk: Buffer): { lines: string[]; tooLong: boolean } {
    const lines: string[] = [];
    if (this.overflowed) return { lines, tooLong: true };
    let start = 0;
    for (let newline = chunk.indexOf(0x0a); newline >= 0; newline = chunk.indexOf(0x0a, start)) {
      if (!this.add(chunk.subarray(start, newline))) return { lines, tooLong: true };
      lines.push(Buffer.concat(this.parts, this.length).toString('utf8'));
      this.parts = [];
      this.length = 0;
      start = newline + 1;
    }
    if (start < chunk.length && !this.add(chunk.subarray(start))) return { lines, tooLong: true };
    return { lines, tooLong: false };
  }

  private add(piece: Buffer): boolean {
    if (this.length + piece.length > this.limit) {
      this.overflowed = true;
      this.parts = [];
      return false;
    }
    this.parts.push(piece);
    this.length += piece.length;
    return true;
  }
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

const errorMessage = (error: unknown) => (error instanceof Error ? error.message : String(error));

// ---------------------------------------------------------------- server

/** One client connection, as handlers see it. */
export interface LocalApiConnection<C> {
  /** Unique within the server, for logs. */
  readonly id: number;
  readonly peer: PeerCredentials;
  readonly caller: C;
  readonly closed: boolean;
  /** Pushes `{method, params}` to the client; false when the connection is closed. */
  notify(method: string, params?: unknown): boolean;
  /** `callback` runs once when the connection closes, for any reason (at once, on the next tick, if it is closed already). */
  onClose(callback: (reason: Error | undefined) => void): void;
  /** Ends the connection (pending replies are dropped). */
  close(reason?: string): void;
}

export type LocalApiHandler<C> = (params: unknown, caller: C, connection: LocalApiConnection<C>) => unknown;

export interface LocalApiServerOptions<C> {
  log: LocalApiLog;
  /** Who the peer is, decided once before any of its messages is handled; a throw refuses the connection (its message is the reply). */
  identify?: (peer: PeerCredentials) => C | Promise<C>;
  maxLineBytes?: number;
  /** The socket's mode (default 0660). */
  mode?: number;
  /** The socket's group (gid; default this process's group). */
  group?: number;
  maxQueuedBytes?: number;
  /** How a connection's peer is read (default: the native SO_PEERCRED); tests replace it to make it fail. */
  readPeer?: (socket: net.Socket) => PeerCredentials;
}

class ServerConnection<C> implements LocalApiConnection<C> {
  caller!: C;
  closed = false;
  private readonly closeCallbacks: ((reason: Error | undefined) => void)[] = [];
  private closeReason: Error | undefined;
  private readonly lines: LineSplitter;
  private lineNumber = 0;

  constructor(
    readonly id: number,
    readonly peer: PeerCredentials,
    private readonly socket: net.Socket,
    private readonly server: LocalApiServer<C>,
    private readonly options: Required<Pick<LocalApiServerOptions<C>, 'log' | 'maxLineBytes' | 'maxQueuedBytes'>>,
  ) {
    this.lines = new LineSplitter(options.maxLineBytes);
    socket.on('error', (error) => {
      this.closeReason ??= error;
      options.log('debug', 'local API connection error', this.fields({ err: error }));
    });
    socket.on('close', () => this.finish());
  }

  /** Starts reading, once the caller is known. */
  start(caller: C): void {
    this.caller = caller;
    this.socket.on('data', (chunk: Buffer) => this.receive(chunk));
    this.socket.resume();
  }

  /** Refuses the connection: one error reply with id null, then the end. */
  refuse(body: ApiErrorBody): void {
    if (this.closed) return;
    this.write({ id: null, error: body });
    endAfterFlush(this.socket);
  }

  notify(method: string, params?: unknown): boolean {
    return this.write({ method, params: params ?? null });
  }

  onClose(callback: (reason: Error | undefined) => void): void {
    if (this.closed) process.nextTick(() => this.runCloseCallback(callback));
    else this.closeCallbacks.push(callback);
  }

  close(reason?: string): void {
    if (this.closed) return;
    if (reason) this.closeReason ??= new Error(reason);
    this.socket.destroy();
  }

  private fields(more: Record<string, unknown> = {}): Record<string, unknown> {
    return { connection: this.id, pid: this.peer.pid, uid: this.peer.uid, ...more };
  }

  private receive(chunk: Buffer): void {
    const { lines, tooLong } = this.lines.push(chunk);
    for (const line of lines) void this.handleLine(line, ++this.lineNumber);
    if (!tooLong) return;
    const message = `request line ${this.lineNumber + 1}: a line longer than ${this.lines.limit} bytes`;
    this.options.log('warn', 'local API request refused', this.fields({ code: API_CODES.lineTooLong, reason: message }));
    this.socket.pause();
    this.refuse({ code: API_CODES.lineTooLong, message });
  }

  private async handleLine(line: string, lineNumber: number): Promise<void> {
    if (line.trim() === '') return;
    const where = `request line ${lineNumber}`;
    let message: unknown;
    try {
      message = JSON.parse(line);
    } catch (error) {
      return this.replyError(null, API_CODES.badJson, `${where}: not JSON (${errorMessage(error)})`);
    }
    if (!isObject(message)) return this.replyError(null, API_CODES.badRequest, `${where}: expected an object {id, method, params}`);
    const { id, method, params } = message;
    if (typeof id !== 'number' && typeof id !== 'string') {
      return this.replyError(null, API_CODES.badRequest, `${where}: 'id' must be a number or a string`);
    }
    if (typeof method !== 'string' || method === '') return this.replyError(id, API_CODES.badRequest, `${where}: 'method' must be a non-empty string`);
    const handler = this.server.handlerOf(method);
    if (!handler) return this.replyError(id, API_CODES.unknownMethod, `unknown method '${method}'`);

    let result: unknown;
    try {
      result = await handler(params ?? null, this.caller, this);
    } catch (error) {
      if (error instanceof RingfenceError) return this.replyError(id, error.code, error.message, method);
      this.options.log('error', `local API method ${method} failed`, this.fields({ method, err: error }));
      return this.replyError(id, API_CODES.internal, `${method} failed: ${errorMessage(error)}`, method, false);
    }
    if (this.closed) {
      this.options.log('debug', 'local API reply dropped: the connection is closed', this.fields({ method }));
      return;
    }
    let text: string;
    try {
      text = JSON.stringify({ id, result: result ?? null });
    } catch (error) {
      this.options.log('error', `local API method ${method} returned what JSON cannot hold`, this.fields({ method, err: error }));
      return this.replyError(id, API_CODES.internal, `${method} failed: its result cannot be sent (${errorMessage(error)})`, method, false);
    }
    this.send(text);
  }

  private replyError(id: RequestId | null, code: string, message: string, method?: string, log = true): void {
    if (log) this.options.log('warn', 'local API request refused', this.fields({ method, code, reason: message }));
    this.write({ id, error: { code, message } });
  }

  private write(message: unknown): boolean {
    if (this.closed) return false;
    return this.send(JSON.stringify(message));
  }

  private send(text: string): boolean {
    if (this.closed) return false;
    this.socket.write(`${text}\n`);
    if (this.socket.writableLength > this.options.maxQueuedBytes) {
      const reason = `the client is not reading: ${this.socket.writableLength} bytes queued (at most ${this.options.maxQueuedBytes})`;
      this.options.log('warn', 'local API connection closed', this.fields({ reason }));
      this.close(reason);
      return false;
    }
    return true;
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.server.forget(this);
    for (const callback of this.closeCallbacks.splice(0)) this.runCloseCallback(callback);
  }

  private runCloseCallback(callback: (reason: Error | undefined) => void): void {
    try {
      callback(this.closeReason);
    } catch (error) {
      this.options.log('error', 'local API close callback failed', this.fields({ err: error }));
    }
  }
}

export class LocalApiServer<C = PeerCredentials> {
  private readonly handlers = new Map<string, LocalApiHandler<C>>();
  private readonly connections = new Set<ServerConnection<C>>();
  private server: net.Server | undefined;
  private socketInode: number | undefined;
  private nextConnectionId = 1;
  private listeningPath: string | undefined;

  constructor(private readonly options: LocalApiServerOptions<C>) {}

  /** Registers the handler of `method` (one per method). */
  handle(method: string, handler: LocalApiHandler<C>): this {
    if (this.handlers.has(method)) throw new Error(`local API method '${method}' already has a handler`);
    this.handlers.set(method, handler);
    return this;
  }

  handlerOf(method: string): LocalApiHandler<C> | undefined {
    return this.handlers.get(method);
  }

  /** The socket path while listening. */
  get path(): string | undefined {
    return this.listeningPath;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /**
   * Listens at `socket`: makes its directory (0755) when missing, refuses
   * when a daemon already answers there or the path is something else, and
   * removes a socket nobody answers at (one a killed daemon left). The socket
   * is bound under a temporary name, given its mode and group, then renamed
   * into place, so that it never exists at `socket` with other permissions.
   */
  async listen(socket: string): Promise<void> {
    if (this.server) throw new Error(`the local API already listens at ${this.listeningPath}`);
    const temporary = temporaryName(socket);
    checkSocketDirectory(path.dirname(socket));
    await removeStaleSocket(socket, this.options.log);
    fs.rmSync(temporary, { force: true });

    const server = net.createServer({ pauseOnConnect: true }, (connection) => this.accept(connection));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(temporary, () => {
        server.off('error', reject);
        resolve();
      });
    }).catch((error: NodeJS.ErrnoException) => {
      throw new RingfenceError(`cannot listen at ${socket}: ${error.message}`, API_CODES.socketPath);
    });
    try {
      fs.chmodSync(temporary, this.options.mode ?? DEFAULT_SOCKET_MODE);
      fs.chownSync(temporary, process.geteuid!(), this.options.group ?? process.getegid!());
      fs.renameSync(temporary, socket);
      this.socketInode = fs.statSync(socket).ino;
    } catch (error) {
      server.close();
      fs.rmSync(temporary, { force: true });
      throw new RingfenceError(`cannot set up the socket ${socket}: ${errorMessage(error)}`, API_CODES.socketPath);
    }
    server.on('error', (error) => this.options.log('error', 'local API server error', { err: error }));
    this.server = server;
    this.listeningPath = socket;
    this.options.log('info', 'local API listening', { socket, mode: (this.options.mode ?? DEFAULT_SOCKET_MODE).toString(8) });
  }

  /** Stops listening, ends every connection (their pending calls get no reply) and removes the socket. */
  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    for (const connection of [...this.connections]) connection.close('the local API is closing');
    await new Promise<void>((resolve) => server.close(() => resolve()));
    // libuv removes the name it bound (the temporary one, renamed away): the socket at our path is ours to remove, if it still is ours
    const socket = this.listeningPath!;
    this.listeningPath = undefined;
    try {
      if (fs.lstatSync(socket).ino === this.socketInode) fs.unlinkSync(socket);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') this.options.log('warn', 'cannot remove the local API socket', { socket, err: error });
    }
  }

  forget(connection: ServerConnection<C>): void {
    this.connections.delete(connection);
  }

  private accept(socket: net.Socket): void {
    const id = this.nextConnectionId++;
    let peer: PeerCredentials;
    try {
      peer = (this.options.readPeer ?? readPeerCredentials)(socket);
    } catch (error) {
      // Nobody to judge (the peer is already gone): nothing of it is read. The
      // socket may still be held by someone (a child that inherited it), so it hears why.
      const message = `cannot identify the caller: ${errorMessage(error)}`;
      this.options.log('warn', 'local API connection refused', { connection: id, reason: message });
      socket.on('error', () => undefined); // the reply may not reach a peer that is gone; that is expected
      socket.write(`${JSON.stringify({ id: null, error: { code: API_CODES.callerUnknown, message } })}\n`);
      endAfterFlush(socket);
      return;
    }
    const connection = new ServerConnection<C>(id, peer, socket, this, {
      log: this.options.log,
      maxLineBytes: this.options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES,
      maxQueuedBytes: this.options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES,
    });
    this.connections.add(connection);
    this.options.log('debug', 'local API connection', { connection: id, pid: peer.pid, uid: peer.uid });
    const identify = this.options.identify ?? ((p: PeerCredentials) => p as unknown as C);
    Promise.resolve()
      .then(() => identify(peer))
      .then(
        (caller) => {
          if (!connection.closed) connection.start(caller);
        },
        (error: unknown) => {
          const known = error instanceof RingfenceError;
          const body = { code: known ? error.code : API_CODES.internal, message: known ? error.message : `cannot identify the caller: ${errorMessage(error)}` };
          this.options.log(known ? 'warn' : 'error', 'local API caller refused', { connection: id, pid: peer.pid, uid: peer.uid, code: body.code, reason: body.message, ...(known ? {} : { err: error }) });
          connection.refuse(body);
        },
      );
  }
}

/** Where the socket is bound before it is renamed into place: beside it, within a unix socket's 107 bytes. */
function temporaryName(socket: string): string {
  const fits = (name: string) => Buffer.byteLength(name) <= MAX_SOCKET_PATH_BYTES;
  if (!fits(socket)) throw new RingfenceError(`socket ${socket}: too long for a unix socket (at most ${MAX_SOCKET_PATH_BYTES} bytes)`, API_CODES.socketPath);
  const beside = `${socket}.${process.pid}.new`;
  if (fits(beside)) return beside;
  const short = path.join(path.dirname(socket), `.${process.pid.toString(36)}`);
  if (fits(short) && short !== socket) return short;
  throw new RingfenceError(`socket ${socket}: its directory is too long for a unix socket beside it (at most ${MAX_SOCKET_PATH_BYTES} bytes)`, API_CODES.socketPath);
}

/**
 * Ends a connection we stopped reading: once what was written has reached
 * the kernel (a unix socket's peer can still read it), the socket is
 * destroyed, as waiting for the peer's end would mean reading it.
 */
function endAfterFlush(socket: net.Socket): void {
  socket.end(() => socket.destroy());
}

/** The directory of the socket: made 0755 when missing; it must be a directory of ours that nobody else can write (or they could replace the socket). */
function checkSocketDirectory(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  const stat = fs.statSync(dir);
  if (!stat.isDirectory()) throw new RingfenceError(`socket directory ${dir} is not a directory`, API_CODES.socketPath);
  if (stat.uid !== process.geteuid!() || (stat.mode & 0o022) !== 0) {
    throw new RingfenceError(
      `socket directory ${dir}: must be owned by uid ${process.geteuid!()} and writable by nobody else (it is uid ${stat.uid}, mode ${(stat.mode & 0o7777).toString(8)})`,
      API_CODES.socketPath,
    );
  }
}

/** Whether something answers at a unix socket: 'live', 'refused' (a stale socket), or the error that says neither. */
function probeSocket(socket: string, timeoutMs = 1000): Promise<'live' | 'refused' | Error> {
  return new Promise((resolve) => {
    const connection = net.connect(socket);
    const timer = setTimeout(() => {
      connection.destroy();
      resolve(new Error(`no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    connection.on('connect', () => {
      clearTimeout(timer);
      connection.destroy();
      resolve('live');
    });
    connection.on('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(error.code === 'ECONNREFUSED' ? 'refused' : error);
    });
  });
}

async function removeStaleSocket(socket: string, log: LocalApiLog): Promise<void> {
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(socket);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new RingfenceError(`socket ${socket}: ${errorMessage(error)}`, API_CODES.socketPath);
  }
  if (!stat.isSocket()) throw new RingfenceError(`socket ${socket}: exists and is not a socket (remove it, or configure another socket)`, API_CODES.socketPath);
  const answer = await probeSocket(socket);
  if (answer === 'live') throw new RingfenceError(`a ringfenced already answers at ${socket}: stop it first, or configure another socket`, API_CODES.inUse);
  if (answer !== 'refused') throw new RingfenceError(`socket ${socket}: cannot tell whether a ringfenced answers there (${answer.message})`, API_CODES.inUse);
  fs.unlinkSync(socket);
  log('info', 'removed a stale local API socket', { socket });
}

// ---------------------------------------------------------------- client

/** An error of a local API call: the transport's (API_CODES) or the daemon's reply (`fromDaemon`). */
export class LocalApiError extends RingfenceError {
  constructor(
    message: string,
    code: string,
    readonly fromDaemon = false,
  ) {
    super(message, code);
    this.name = 'LocalApiError';
  }
}

export interface ConnectOptions {
  /** How long connecting may take (default 5 s). */
  timeoutMs?: number;
  /** The longest reply line accepted (default 64 MiB: a job's summary can be long). */
  maxLineBytes?: number;
}

export interface CallOptions {
  /** How long to wait for the reply (default 30 s; 0: no limit, for calls that last as long as a job). */
  timeoutMs?: number;
}

export const DEFAULT_CALL_TIMEOUT_MS = 30_000;

interface PendingCall {
  method: string;
  resolve: (result: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout | undefined;
}

/**
 * A connection to ringfenced. Events: `notification` (method, params) for
 * what the daemon pushes; `close` (reason: Error | undefined) once, when the
 * connection ends (every pending call has been rejected by then).
 */
export class LocalApiClient extends EventEmitter {
  private readonly pending = new Map<number, PendingCall>();
  private nextId = 1;
  private ended = false;
  private endReason: Error | undefined;
  private readonly lines: LineSplitter;

  private constructor(
    readonly socketPath: string,
    private readonly socket: net.Socket,
    maxLineBytes: number,
  ) {
    super();
    this.lines = new LineSplitter(maxLineBytes);
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', (error) => {
      this.endReason ??= new LocalApiError(`the connection to ringfenced at ${socketPath} failed: ${error.message}`, API_CODES.disconnected);
    });
    socket.on('close', () => this.finish());
  }

  /** Connects; a RF_NO_DAEMON LocalApiError when nothing listens at `socket`. */
  static connect(socket: string, options: ConnectOptions = {}): Promise<LocalApiClient> {
    const timeoutMs = options.timeoutMs ?? 5000;
    return new Promise((resolve, reject) => {
      const connection = net.connect(socket);
      const timer = setTimeout(() => {
        connection.destroy();
        reject(new LocalApiError(`ringfenced at ${socket} did not accept the connection within ${timeoutMs} ms`, API_CODES.timeout));
      }, timeoutMs);
      connection.once('error', (error: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        if (error.code === 'ENOENT' || error.code === 'ECONNREFUSED' || error.code === 'ENOTDIR') {
          reject(new LocalApiError(`no ringfenced at ${socket}`, API_CODES.noDaemon));
        } else {
          reject(new LocalApiError(`cannot connect to ringfenced at ${socket}: ${error.message}`, API_CODES.connect));
        }
      });
      connection.once('connect', () => {
        clearTimeout(timer);
        connection.removeAllListeners('error');
        resolve(new LocalApiClient(socket, connection, options.maxLineBytes ?? 64 << 20));
      });
    });
  }

  get closed(): boolean {
    return this.ended;
  }

  /** Calls `method`; resolves with its result, rejects with a LocalApiError. */
  call<T = unknown>(method: string, params?: unknown, options: CallOptions = {}): Promise<T> {
    if (this.ended) return Promise.reject(this.disconnected(method));
    const id = this.nextId++;
    let line: string;
    try {
      line = JSON.stringify({ id, method, params: params ?? null });
    } catch (error) {
      return Promise.reject(new LocalApiError(`${method}: its params cannot be sent (${errorMessage(error)})`, API_CODES.badRequest));
    }
    return new Promise<T>((resolve, reject) => {
      const timeoutMs = options.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
      const timer =
        timeoutMs > 0
          ? setTimeout(() => {
              // a late reply finds no pending call and is dropped (receive)
              this.pending.delete(id);
              reject(new LocalApiError(`ringfenced at ${this.socketPath} did not answer '${method}' within ${timeoutMs} ms`, API_CODES.timeout));
            }, timeoutMs)
          : undefined;
      this.pending.set(id, { method, resolve: resolve as (result: unknown) => void, reject, timer });
      this.socket.write(`${line}\n`);
    });
  }

  /** Ends the connection; pending calls reject. */
  close(): void {
    this.socket.destroy();
  }

  private disconnected(method: string): LocalApiError {
    const why = this.endReason ? `: ${this.endReason.message}` : '';
    return new LocalApiError(`the connection to ringfenced at ${this.socketPath} closed before it answered '${method}'${why}`, API_CODES.disconnected);
  }

  private receive(chunk: Buffer): void {
    const { lines, tooLong } = this.lines.push(chunk);
    for (const line of lines) {
      if (line.trim() === '') continue;
      let message: unknown;
      try {
        message = JSON.parse(line);
      } catch (error) {
        return this.fail(new LocalApiError(`ringfenced at ${this.socketPath} sent a line that is not JSON (${errorMessage(error)})`, API_CODES.badReply));
      }
      if (!isObject(message)) return this.fail(new LocalApiError(`ringfenced at ${this.socketPath} sent ${JSON.stringify(message)}, not an object`, API_CODES.badReply));
      this.dispatch(message);
    }
    if (tooLong) this.fail(new LocalApiError(`ringfenced at ${this.socketPath} sent a line longer than ${this.lines.limit} bytes`, API_CODES.badReply));
  }

  private dispatch(message: Record<string, unknown>): void {
    const { id, method } = message;
    if (id === undefined && typeof method === 'string') {
      this.emit('notification', method, message.params);
      return;
    }
    const error = isObject(message.error) ? this.daemonError(message.error) : undefined;
    if (id === null) {
      // An error that belongs to no request (this caller refused, a line too
      // long): it concerns whatever is pending, and is why the connection ends.
      const reason = error ?? new LocalApiError(`ringfenced at ${this.socketPath} sent a reply without an id`, API_CODES.badReply);
      this.endReason = reason;
      for (const [pendingId, call] of this.pending) this.settle(pendingId, call, () => call.reject(reason));
      return;
    }
    if (typeof id !== 'number') return this.fail(new LocalApiError(`ringfenced at ${this.socketPath} sent a reply with id ${JSON.stringify(id)}`, API_CODES.badReply));
    const call = this.pending.get(id);
    if (!call) return; // the reply to a call that timed out
    if (error) this.settle(id, call, () => call.reject(error));
    else this.settle(id, call, () => call.resolve(message.result));
  }

  private daemonError(body: Record<string, unknown>): LocalApiError {
    const code = typeof body.code === 'string' ? body.code : API_CODES.badReply;
    const message = typeof body.message === 'string' ? body.message : `ringfenced sent an error without a message (${JSON.stringify(body)})`;
    return new LocalApiError(message, code, true);
  }

  private settle(id: number, call: PendingCall, outcome: () => void): void {
    clearTimeout(call.timer);
    this.pending.delete(id);
    outcome();
  }

  private fail(error: LocalApiError): void {
    this.endReason = error;
    for (const [id, call] of this.pending) this.settle(id, call, () => call.reject(error));
    this.socket.destroy();
  }

  private finish(): void {
    if (this.ended) return;
    this.ended = true;
    for (const [id, call] of this.pending) this.settle(id, call, () => call.reject(this.disconnected(call.method)));
    this.emit('close', this.endReason);
  }
}
