import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { OutputFile } from '../../src/jobs/output';
import { RingfenceError } from '../../src/util/errors';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringfence-out-'));

describe('OutputFile', () => {
  it('writes whole lines and creates or truncates the file at open', () => {
    const file = path.join(dir, 'a.jsonl');
    fs.writeFileSync(file, 'old content\n');
    const out = OutputFile.open(file, '--events');
    expect(out.write('one\n')).toBe(true);
    expect(out.write('two\n')).toBe(true);
    out.close();
    expect(fs.readFileSync(file, 'utf8')).toBe('one\ntwo\n');
    expect(out.lost).toBe(0);
  });

  it.each([
    { file: path.join(dir, 'missing/x'), message: `cannot write --events ${path.join(dir, 'missing/x')}: directory ${path.join(dir, 'missing')} does not exist` },
    { file: dir, message: `cannot write --events ${dir}: it is a directory` },
  ])('a path it cannot write is a usage error naming the option and the path: $file', ({ file, message }) => {
    expect.assertions(2);
    try {
      OutputFile.open(file, '--events');
    } catch (error) {
      expect(error).toBeInstanceOf(RingfenceError);
      expect([(error as RingfenceError).message, (error as RingfenceError).code]).toEqual([message, 'RF_USAGE']);
    }
  });

  it('a full disk costs the lines, counted, and never throws', () => {
    const out = OutputFile.open('/dev/full', '--events');
    expect(out.write('a\nb\n')).toBe(false);
    expect(out.write('c\n')).toBe(false);
    out.close();
    expect(out.lost).toBe(3);
    expect(out.firstError).toBe('ENOSPC');
  });

  it('a reader that went away (EPIPE): the first failure is counted, later lines too, nothing throws', () => {
    const [readEnd, writeEnd] = pipe();
    fs.closeSync(readEnd);
    const out = OutputFile.fd(writeEnd, 'stderr');
    expect(out.write('x\n')).toBe(false);
    expect(out.write('y\n')).toBe(false);
    expect(out.lost).toBe(2);
    expect(out.firstError).toBe('EPIPE');
    fs.closeSync(writeEnd); // inherited descriptors are not closed by OutputFile
  });
});

/** A pipe from the shell: node has no pipe(2). */
function pipe(): [number, number] {
  const fifo = path.join(dir, `fifo-${process.pid}-${Math.random()}`);
  require('node:child_process').execFileSync('mkfifo', [fifo]);
  const read = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const write = fs.openSync(fifo, fs.constants.O_WRONLY);
  fs.rmSync(fifo);
  return [read, write];
}
