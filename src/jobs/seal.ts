/**
 * The job's seccomp seal (native/seal.c, built as build/Release/ringfence_seal):
 * the job's first process installs it on itself and then execs the job's
 * command, so every process of the job inherits it and none can remove it.
 * It refuses, in the kernel, signals and ptrace and the like aimed at the
 * agents it names, and taking or detaching BPF objects (docs/threat-model.md).
 */
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../util/paths';
import { RingfenceError } from '../util/errors';
import { statFieldsAfterComm } from '../util/proc-stat';

/** The seal node-gyp builds (binding.gyp); a function so that mutation testing judges it (a constant is built once, at load). */
export function sealBinary(): string {
  return path.join(REPO_ROOT, 'build/Release/ringfence_seal');
}

/** Whom a job is sealed against: the agents' pids (with all their threads), and the process groups they are in. */
export interface SealTargets {
  agents: number[];
  groups: number[];
}

/** A process's group (field 5 of /proc/PID/stat), or undefined when it is gone. */
export function processGroupOf(pid: number | 'self', proc = '/proc'): number | undefined {
  const fields = statFieldsAfterComm(pid, proc);
  const group = Number(fields?.[2]);
  return Number.isInteger(group) && group > 0 ? group : undefined;
}

/** This process and its group: what an in-process ringfence seals its job against. */
export function selfTargets(): SealTargets {
  const group = processGroupOf('self');
  return { agents: [process.pid], groups: group !== undefined ? [group] : [] };
}

/**
 * The program and arguments that run what follows them sealed against
 * `targets` (Cgroup.spawn's prefix). Throws when the seal binary is missing:
 * a job never runs unsealed.
 */
export function sealPrefix(targets: SealTargets, binary = sealBinary()): string[] {
  if (!fs.existsSync(binary)) {
    throw new RingfenceError(`cannot seal the job: ${binary} is missing (npm run build:native builds it)`, 'RF_SEAL');
  }
  if (targets.agents.length === 0) throw new RingfenceError('cannot seal the job: no agent to seal it against', 'RF_SEAL');
  const flags = [...new Set(targets.agents)].flatMap((pid) => ['--agent', String(pid)]);
  for (const group of new Set(targets.groups)) flags.push('--group', String(group));
  return [binary, ...flags, '--'];
}
