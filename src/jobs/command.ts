/**
 * The job's command, found before anything of the job exists, so that a
 * typo is one line naming the command (as a shell would say it) rather than
 * an error from inside the job's cgroup.
 */
import fs from 'node:fs';
import path from 'node:path';
import { RingfenceError } from '../util/errors';

export const COMMAND_NOT_FOUND = 127;
export const COMMAND_NOT_EXECUTABLE = 126;

/** A command that cannot be run; `exitStatus` is what a shell would exit with. */
export class CommandError extends RingfenceError {
  constructor(
    message: string,
    readonly exitStatus: number,
  ) {
    super(message, 'RF_COMMAND');
  }
}

function executableProblem(file: string): string | undefined {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ENOTDIR' ? 'no such file' : `cannot read it (${code})`;
  }
  if (stat.isDirectory()) return 'it is a directory';
  try {
    fs.accessSync(file, fs.constants.X_OK);
  } catch {
    return 'it is not executable';
  }
  return undefined;
}

/**
 * The path the job will exec: `command` itself when it has a slash, else the
 * first executable of that name on PATH. Throws CommandError.
 */
export function resolveCommand(command: string, searchPath = process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin'): string {
  if (command === '') throw new CommandError('cannot run the job: the command is empty', COMMAND_NOT_FOUND);
  if (command.includes('/')) {
    const problem = executableProblem(command);
    if (problem) throw new CommandError(`cannot run ${command}: ${problem}`, problem === 'no such file' ? COMMAND_NOT_FOUND : COMMAND_NOT_EXECUTABLE);
    return command;
  }
  let found: string | undefined;
  for (const dir of searchPath.split(':')) {
    const candidate = path.join(dir || '.', command);
    const problem = executableProblem(candidate);
    if (!problem) return candidate;
    if (problem !== 'no such file') found ??= `${candidate}: ${problem}`;
  }
  if (found) throw new CommandError(`cannot run ${command}: ${found}`, COMMAND_NOT_EXECUTABLE);
  throw new CommandError(`cannot run ${command}: command not found (PATH: ${searchPath})`, COMMAND_NOT_FOUND);
}
