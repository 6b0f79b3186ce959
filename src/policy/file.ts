/**
 * Reading a text file a user named (a policy, an endpoint list): each way it
 * can fail is its own one line, naming the file and what is wrong with it,
 * so that "policy is not valid" is kept for files that were read and are
 * wrong inside.
 */
import fs from 'node:fs';
import { RingfenceError } from '../util/errors';

/** `label` says how the user named the file: a flag (`-f`, `--policy`) or what it is (`policy file`). */
export function readTextFile(file: string, label: string): string {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (error) {
    throw new RingfenceError(`${label} ${file}: ${readFailure(error as NodeJS.ErrnoException)}`, 'RF_USAGE');
  }
  const problem = contentProblem(bytes);
  if (problem) throw new RingfenceError(`${label} ${file}: ${problem}`, 'RF_USAGE');
  return bytes.toString('utf8');
}

function readFailure(error: NodeJS.ErrnoException): string {
  switch (error.code) {
    case 'ENOENT':
      return 'no such file';
    case 'ENOTDIR':
      return 'no such file (a part of its path is not a directory)';
    case 'EISDIR':
      return 'is a directory, not a file';
    case 'EACCES':
    case 'EPERM':
      return `cannot read it (permission denied)`;
    default:
      return `cannot read it (${error.code ?? error.message})`;
  }
}

/** Why bytes read are not a text file, or undefined when they are. */
function contentProblem(bytes: Buffer): string | undefined {
  if (bytes.toString('utf8').trim() === '') return bytes.length === 0 ? 'is empty' : 'is empty (white space only)';
  const nul = bytes.indexOf(0);
  if (nul >= 0) return `is binary, not a text file (a NUL byte at offset ${nul})`;
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return 'is binary, not a text file (not UTF-8)';
  }
  return undefined;
}
