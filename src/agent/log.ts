/**
 * ringfenced's log (docs/ringfenced.md, "Logs"): JSON lines on stdout, which
 * journald (or any supervisor) reads; one object per line with `level` (its
 * name), `time` (RFC 3339, UTC), `pid`, `hostname`, `msg`, and what the
 * caller bound (`job` for a job's lines).
 *
 * What may carry a credential (`token`, `authorization`, and both one and
 * two levels down) is written as "[redacted]", so a config or a request
 * object can be logged as it is. An error's stack is only written with
 * RINGFENCE_DEBUG=1, as the CLI does: an operator gets the error's one line.
 */
import os from 'node:os';
import pino, { type DestinationStream, type Logger } from 'pino';

export type { Logger } from 'pino';

/** pino's levels, most severe first; `silent` writes nothing. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const SECRET_KEYS = ['token', 'authorization', 'idToken', 'RINGFENCE_TOKEN'];
export const REDACTED_PATHS = SECRET_KEYS.flatMap((key) => [key, `*.${key}`, `*.*.${key}`]);

/**
 * How much log text may wait for a stdout that does not take it (journald
 * stalled, a pipe nobody reads) before lines are dropped: the daemon's
 * event loop must never block on its log, and its memory must not grow
 * without bound either. A dropped line is reported through onDrop.
 */
export const MAX_BUFFERED_LOG_BYTES = 16 * 1024 * 1024;

export interface DestinationOptions {
  /** Default: 1 (stdout). */
  fd?: number;
  maxBufferedBytes?: number;
  /** A line could not be buffered and is lost (for a metric: never silently). */
  onDrop?: (bytes: number) => void;
}

/**
 * stdout written asynchronously (pino flushes it synchronously when the
 * process exits, so a fatal line is not lost), bounded by maxBufferedBytes.
 */
export function logDestination(options: DestinationOptions = {}): DestinationStream {
  const stream = pino.destination({ dest: options.fd ?? 1, sync: false, maxLength: options.maxBufferedBytes ?? MAX_BUFFERED_LOG_BYTES });
  if (options.onDrop) {
    const onDrop = options.onDrop;
    stream.on('drop', (data: string | Buffer) => onDrop(Buffer.byteLength(data)));
  }
  return stream;
}

export interface LoggerOptions {
  level: LogLevel;
  /** Where the lines go; logDestination() (stdout) when absent. */
  destination?: DestinationStream;
  /** Fields every line carries, besides pid and hostname (e.g. `agentId`). */
  bindings?: Record<string, unknown>;
  /** Stacks of logged errors (default: RINGFENCE_DEBUG is set). */
  stacks?: boolean;
}

/** An error as a log field: its type, message and code; its stack only when asked for. */
function errorSerializer(stacks: boolean) {
  return (error: unknown) => {
    const serialized = pino.stdSerializers.err(error as Error) as unknown as Record<string, unknown>;
    if (!stacks && serialized && typeof serialized === 'object') delete serialized.stack;
    return serialized;
  };
}

export function createLogger(options: LoggerOptions): Logger {
  const stacks = options.stacks ?? Boolean(process.env.RINGFENCE_DEBUG);
  return pino(
    {
      level: options.level,
      base: { pid: process.pid, hostname: os.hostname(), ...options.bindings },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: errorSerializer(stacks), error: errorSerializer(stacks) },
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    },
    options.destination ?? logDestination(),
  );
}

/** A job's logger: every line of it carries `job: ID`. */
export function jobLogger(logger: Logger, jobId: string): Logger {
  return logger.child({ job: jobId });
}
