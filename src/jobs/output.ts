/**
 * Where ringfence writes what a job produced (events, summaries, trace
 * lines): opened before the job starts, so that a bad path is a usage error
 * and nothing runs; written without ever throwing, so that a full disk or a
 * reader that went away (EPIPE) costs lines, counted, never enforcement.
 */
import fs from 'node:fs';
import path from 'node:path';
import { RingfenceError } from '../util/errors';

/** Why a path cannot be written, as a user reads it. */
function explainOpenError(error: NodeJS.ErrnoException, file: string): string {
  switch (error.code) {
    case 'ENOENT':
      return `directory ${path.dirname(path.resolve(file))} does not exist`;
    case 'ENOTDIR':
      return `a parent of it is not a directory`;
    case 'EISDIR':
      return 'it is a directory';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EROFS':
      return 'the file system is read-only';
    default:
      return error.message;
  }
}

export class OutputFile {
  /** Lines that could not be written. */
  lost = 0;
  /** The first write error, for the report at the end. */
  firstError: string | undefined;
  private closed = false;
  private sink: ((text: string) => boolean) | undefined;

  private constructor(
    private fd: number | undefined,
    /** How the output is named to users: "--events FILE", "stderr". */
    readonly label: string,
    private readonly owned: boolean,
  ) {}

  /**
   * Text handed to `deliver` instead of a file (ringfenced streams a job's
   * events to the `ringfence run` that writes them); `deliver` returning
   * false is a lost line, counted like a failed write.
   */
  static stream(label: string, deliver: (text: string) => boolean): OutputFile {
    const out = new OutputFile(undefined, label, false);
    out.sink = deliver;
    return out;
  }

  /**
   * Opens (creates or truncates) `file` for `option`, or throws a usage
   * error naming both: "cannot write --events /x/ev.jsonl: directory /x does not exist".
   */
  static open(file: string, option: string): OutputFile {
    try {
      return new OutputFile(fs.openSync(file, 'w'), `${option} ${file}`, true);
    } catch (error) {
      throw new RingfenceError(`cannot write ${option} ${file}: ${explainOpenError(error as NodeJS.ErrnoException, file)}`, 'RF_USAGE');
    }
  }

  /**
   * Checks, without changing anything, that `file` could be opened for
   * writing: an existing file is opened without truncating it, a new one
   * needs an existing, writable directory. Throws the usage error open() would.
   */
  static check(file: string, option: string): void {
    try {
      if (fs.existsSync(file)) {
        fs.closeSync(fs.openSync(file, fs.constants.O_WRONLY));
        return;
      }
      const dir = path.dirname(path.resolve(file));
      if (!fs.statSync(dir).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
      fs.accessSync(dir, fs.constants.W_OK);
    } catch (error) {
      throw new RingfenceError(`cannot write ${option} ${file}: ${explainOpenError(error as NodeJS.ErrnoException, file)}`, 'RF_USAGE');
    }
  }

  /** An inherited descriptor (1, 2): written, never closed. */
  static fd(fd: number, label: string): OutputFile {
    return new OutputFile(fd, label, false);
  }

  /** Writes all of `text`, or counts one loss per line in it and remembers why. */
  write(text: string): boolean {
    if (this.sink) {
      if (!this.closed && this.sink(text)) return true;
      this.lose(text, this.closed ? undefined : new Error('the reader went away'));
      return false;
    }
    if (this.fd === undefined) {
      this.lose(text, undefined);
      return false;
    }
    const bytes = Buffer.from(text);
    let offset = 0;
    try {
      while (offset < bytes.length) offset += fs.writeSync(this.fd, bytes, offset);
      return true;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN') {
        // a non-blocking pipe that is full: wait for it rather than lose lines
        return this.retryAfterEagain(bytes, offset);
      }
      this.lose(text, error as Error);
      // a reader that went away does not come back
      if (code === 'EPIPE') this.release();
      return false;
    }
  }

  /** Closes the file (once); inherited descriptors stay open. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.release();
  }

  private retryAfterEagain(bytes: Buffer, offset: number): boolean {
    const deadline = Date.now() + 5_000;
    while (offset < bytes.length) {
      try {
        offset += fs.writeSync(this.fd!, bytes, offset);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EAGAIN' || Date.now() > deadline) {
          this.lose(bytes.subarray(offset).toString(), error as Error);
          return false;
        }
      }
    }
    return true;
  }

  private lose(text: string, error: Error | undefined): void {
    const lines = text.split('\n').filter(Boolean).length;
    this.lost += Math.max(lines, 1);
    this.firstError ??= error ? ((error as NodeJS.ErrnoException).code ?? error.message) : 'closed after an earlier error';
  }

  private release(): void {
    if (this.fd !== undefined && this.owned) {
      try {
        fs.closeSync(this.fd);
      } catch (error) {
        // the lines were written; a failing close is still worth reporting
        this.firstError ??= (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      }
    }
    this.fd = undefined;
  }
}

let standardFailures = 0;
const onStandardError = () => {
  standardFailures++;
};

/**
 * Makes EPIPE (and any other write error) on process.stdout/stderr a counted
 * loss instead of an uncaught 'error' that would end ringfence mid-job.
 */
export function guardStandardStreams(): void {
  for (const stream of [process.stdout, process.stderr]) {
    if (!stream.listeners('error').includes(onStandardError)) stream.on('error', onStandardError);
  }
}

/** Writes to process.stdout/stderr that failed since guardStandardStreams(). */
export function standardStreamFailures(): number {
  return standardFailures;
}
