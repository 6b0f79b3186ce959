/** ringfenced's log (docs/ringfenced.md, "Logs"): JSON lines, levels, job children, redaction. */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type SonicBoom from 'sonic-boom';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger, jobLogger, logDestination, type LoggerOptions } from '../../src/agent/log';

/** A logger whose lines are kept, parsed, in `lines`. */
function captured(options: Partial<LoggerOptions> = {}) {
  const raw: string[] = [];
  const logger = createLogger({ level: 'info', ...options, destination: { write: (line: string) => void raw.push(line) } });
  return { logger, raw, lines: () => raw.map((line) => JSON.parse(line) as Record<string, unknown>) };
}

describe('daemon log', () => {
  it('writes one JSON object per line: level by name, RFC 3339 time, pid, hostname, msg', () => {
    const { logger, raw, lines } = captured();
    const before = Date.now();
    logger.info({ jobs: 2 }, 'listening on /run/ringfence/agent.sock');
    expect(raw).toHaveLength(1);
    expect(raw[0].endsWith('\n')).toBe(true);
    expect(raw[0].slice(0, -1)).not.toContain('\n');
    const [line] = lines();
    expect(Object.keys(line)).toEqual(['level', 'time', 'pid', 'hostname', 'jobs', 'msg']);
    expect(line).toMatchObject({ level: 'info', pid: process.pid, hostname: os.hostname(), jobs: 2, msg: 'listening on /run/ringfence/agent.sock' });
    expect(line.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(Date.parse(line.time as string)).toBeGreaterThanOrEqual(before - 1000);
  });

  it('writes what its level lets through, and nothing when silent', () => {
    const warn = captured({ level: 'warn' });
    warn.logger.debug('d');
    warn.logger.info('i');
    warn.logger.warn('w');
    warn.logger.error('e');
    warn.logger.fatal('f');
    expect(warn.lines().map((l) => [l.level, l.msg])).toEqual([
      ['warn', 'w'],
      ['error', 'e'],
      ['fatal', 'f'],
    ]);
    const trace = captured({ level: 'trace' });
    trace.logger.trace('t');
    expect(trace.lines().map((l) => l.level)).toEqual(['trace']);
    const silent = captured({ level: 'silent' });
    silent.logger.fatal('f');
    expect(silent.raw).toEqual([]);
  });

  it("a job's lines carry its id, the daemon's do not", () => {
    const { logger, lines } = captured({ bindings: { agentId: 'host-1' } });
    const job = jobLogger(logger, 'run-abc-1');
    job.info('started');
    logger.info('idle');
    jobLogger(job, 'run-abc-2').warn('nested');
    expect(lines().map((l) => [l.agentId, l.job, l.msg])).toEqual([
      ['host-1', 'run-abc-1', 'started'],
      ['host-1', undefined, 'idle'],
      // a job's child for another job names that one (the last binding wins)
      ['host-1', 'run-abc-2', 'nested'],
    ]);
  });

  it('redacts what may carry a token, at the top and one or two levels down', () => {
    const { logger, raw, lines } = captured();
    logger.info(
      {
        token: 'rfa_top',
        authorization: 'Bearer rfa_auth',
        request: { token: 'rfa_one', authorization: 'Bearer rfa_hdr', org: 'acme' },
        config: { store: { token: 'rfa_two', url: 'https://127.0.0.1:7070' } },
        env: { RINGFENCE_TOKEN: 'rfa_env' },
        oidc: { idToken: 'eyJ.x.y' },
      },
      'handover',
    );
    expect(lines()[0]).toMatchObject({
      token: '[redacted]',
      authorization: '[redacted]',
      request: { token: '[redacted]', authorization: '[redacted]', org: 'acme' },
      config: { store: { token: '[redacted]', url: 'https://127.0.0.1:7070' } },
      env: { RINGFENCE_TOKEN: '[redacted]' },
      oidc: { idToken: '[redacted]' },
    });
    for (const secret of ['rfa_top', 'rfa_auth', 'rfa_one', 'rfa_hdr', 'rfa_two', 'rfa_env', 'eyJ.x.y']) expect(raw[0]).not.toContain(secret);
  });

  it('redacts in a job logger too', () => {
    const { logger, raw } = captured();
    jobLogger(logger, 'run-1').info({ request: { token: 'rfa_secret' } }, 'policy fetched');
    expect(raw[0]).not.toContain('rfa_secret');
    expect(JSON.parse(raw[0]).request).toEqual({ token: '[redacted]' });
  });

  it("an error is its type, message and code; its stack only when asked for", () => {
    const error = Object.assign(new Error('cannot attach connect4'), { code: 'RF_ATTACH' });
    const plain = captured({ stacks: false });
    plain.logger.error({ err: error }, 'sensor');
    expect(plain.lines()[0].err).toEqual({ type: 'Error', message: 'cannot attach connect4', code: 'RF_ATTACH' });
    const debug = captured({ stacks: true });
    debug.logger.error({ err: error }, 'sensor');
    const err = debug.lines()[0].err as Record<string, unknown>;
    expect(err.message).toBe('cannot attach connect4');
    expect(err.stack).toBe(error.stack);
  });
});

describe('daemon log destination', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-log-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('writes the lines to its descriptor (stdout by default)', async () => {
    const file = path.join(dir, 'out.jsonl');
    const fd = fs.openSync(file, 'w');
    const destination = logDestination({ fd }) as SonicBoom;
    const logger = createLogger({ level: 'info', destination });
    logger.info({ job: 'run-1' }, 'one');
    logger.warn('two');
    // end() writes what is buffered after any write in flight (flushSync beside an async write could overtake it)
    await new Promise<void>((resolve) => {
      destination.once('close', () => resolve());
      destination.end();
    });
    const lines = fs.readFileSync(file, 'utf8').trimEnd().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines.map((l) => [l.level, l.job, l.msg])).toEqual([
      ['info', 'run-1', 'one'],
      ['warn', undefined, 'two'],
    ]);
  });

  it('a stdout nobody reads never blocks the daemon: past the bound, lines are dropped and reported', async () => {
    const fifo = path.join(dir, 'stdout');
    execFileSync('mkfifo', [fifo]);
    // read-write so the open does not wait for a reader; non-blocking so a full pipe is EAGAIN, as journald's stalled socket would be
    const fd = fs.openSync(fifo, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
    const dropped: number[] = [];
    const destination = logDestination({ fd, maxBufferedBytes: 4096, onDrop: (bytes) => dropped.push(bytes) }) as SonicBoom;
    const logger = createLogger({ level: 'info', destination });
    const started = Date.now();
    const filler = 'x'.repeat(1000);
    // a pipe holds 64 KiB: 200 lines of ~1 KiB fill it and the bound
    for (let i = 0; i < 200; i++) logger.info({ filler, i }, 'line');
    expect(Date.now() - started).toBeLessThan(5000);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(dropped.length).toBeGreaterThan(0);
    const lineBytes = JSON.stringify({ level: 'info', time: new Date().toISOString(), pid: process.pid, hostname: os.hostname(), filler, i: 100, msg: 'line' }).length + 1;
    expect(dropped[0]).toBeGreaterThanOrEqual(lineBytes - 2);
    expect(dropped[0]).toBeLessThanOrEqual(lineBytes + 2);
    // destroy closes the descriptor too
    const closed = new Promise((resolve) => destination.once('close', resolve));
    destination.destroy();
    await closed;
  });
});
