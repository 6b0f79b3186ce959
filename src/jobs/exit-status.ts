/**
 * What `ringfence run` exits with. ringfence's own statuses sit above the
 * range commands use (0-125 for their own codes, 126-127 and 128+N for the
 * shell's "cannot run" and "killed by signal N"), so a script can tell
 * "CMD failed" from "ringfence ended the job" from "ringfence failed".
 * 137 is left to mean what it always means: something SIGKILLed ringfence
 * itself, which no code of ours can report.
 */
import { signalNumber } from '../util/signals';

export const EXIT = {
  /** CMD succeeded but the policy blocked at least one request. */
  BLOCKED: 1,
  /** Bad usage (flags, files, policy): nothing was started. */
  USAGE: 170,
  /** ringfence itself failed: it could not protect the job, or lost part of what it reports. */
  AGENT_FAILURE: 171,
  /** Lockdown killed the job (a detection, or the agent was tampered with). */
  LOCKDOWN: 172,
} as const;

export type ExitReason = 'command' | 'blocked' | 'interrupted' | 'agent-failure' | 'lockdown';

export interface JobOutcome {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** Requests refused in block mode. */
  blocked: number;
  /** The signal that made ringfence end the job (Ctrl-C, SIGTERM). */
  interrupted?: NodeJS.Signals;
  /** Lockdown ended the job. */
  lockedDown: boolean;
  /** What ringfence could not do or lost (events or summary not written, sensor records dropped). */
  agentFailures: string[];
}

/**
 * The status and why, in order of precedence: a lockdown kill, then
 * ringfence's own failure, then an interrupt, then a blocked request when
 * CMD succeeded, then CMD's own status (128+N when a signal ended it).
 */
export function exitStatusOf(outcome: JobOutcome): { status: number; reason: ExitReason } {
  if (outcome.lockedDown) return { status: EXIT.LOCKDOWN, reason: 'lockdown' };
  if (outcome.agentFailures.length > 0) return { status: EXIT.AGENT_FAILURE, reason: 'agent-failure' };
  if (outcome.interrupted) return { status: 128 + signalNumber(outcome.interrupted), reason: 'interrupted' };
  const own = outcome.exitCode ?? 128 + (outcome.signal ? signalNumber(outcome.signal) : 0);
  if (own === 0 && outcome.blocked > 0) return { status: EXIT.BLOCKED, reason: 'blocked' };
  return { status: own, reason: 'command' };
}

/** The text of `ringfence run --help` and docs/cli.md's table. */
export const EXIT_STATUS_HELP = `Exit status, first that applies:
  ${EXIT.LOCKDOWN}  lockdown killed the job (a detection, or a job process tampered with ringfence)
  ${EXIT.AGENT_FAILURE}  ringfence failed: it could not protect the job or lost part of its report
       (events or summary not written, sensor records dropped)
  128+N  ringfence ended the job on signal N (Ctrl-C: 130)
  ${EXIT.BLOCKED}    CMD exited 0 but the policy blocked a request
  CMD's own status otherwise (128+N when a signal N ended CMD)
  ${EXIT.USAGE}  bad usage (flags, files, policy): nothing was started
  137  ringfence itself was SIGKILLed (it cannot report that; the job is ended in the kernel)`;
