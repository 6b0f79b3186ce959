import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CommandError, resolveCommand } from '../../src/jobs/command';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringfence-cmd-'));
const tool = path.join(dir, 'tool');
fs.writeFileSync(tool, '#!/bin/sh\n', { mode: 0o755 });
const plain = path.join(dir, 'plain');
fs.writeFileSync(plain, 'data', { mode: 0o644 });

function failure(run: () => unknown): CommandError {
  try {
    run();
  } catch (error) {
    return error as CommandError;
  }
  throw new Error('no error thrown');
}

describe('resolveCommand', () => {
  it('takes a path as it is, and finds a name on PATH', () => {
    expect(resolveCommand(tool)).toBe(tool);
    expect(resolveCommand('tool', `/nonexistent:${dir}`)).toBe(tool);
  });

  it.each([
    { name: 'a missing path', command: '/no/such/cmd', search: undefined, message: 'cannot run /no/such/cmd: no such file', status: 127 },
    { name: 'a directory', command: dir, search: undefined, message: `cannot run ${dir}: it is a directory`, status: 126 },
    { name: 'a file that is not executable', command: plain, search: undefined, message: `cannot run ${plain}: it is not executable`, status: 126 },
    { name: 'a name on no PATH entry', command: 'nothing-here', search: dir, message: `cannot run nothing-here: command not found (PATH: ${dir})`, status: 127 },
    { name: 'a name found only not executable', command: 'plain', search: dir, message: `cannot run plain: ${plain}: it is not executable`, status: 126 },
    { name: 'an empty command', command: '', search: dir, message: 'cannot run the job: the command is empty', status: 127 },
  ])('$name: one line, the shell status', ({ command, search, message, status }) => {
    const error = failure(() => resolveCommand(command, search));
    expect(error).toBeInstanceOf(CommandError);
    expect(error.message).toBe(message);
    expect(error.exitStatus).toBe(status);
  });
});
