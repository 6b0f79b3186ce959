/** Reading /proc/PID/stat. */
import fs from 'node:fs';
import path from 'node:path';

/**
 * The fields of /proc/PID/stat after comm, from field 3 (state) on, so that
 * field N is at index N - 3; undefined when the process is gone. comm (field
 * 2) may hold spaces and parentheses: the fields start after the last ')'.
 */
export function statFieldsAfterComm(pid: number | 'self', proc = '/proc'): string[] | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(path.join(proc, String(pid), 'stat'), 'utf8');
  } catch {
    return undefined;
  }
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}
