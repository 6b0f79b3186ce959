/**
 * `ringfence trace [--json] [-o FILE] -- CMD ARGS…`: runs CMD in a cgroup of
 * its own under the sensor and prints every event of it and its descendants.
 * A debugging tool: no policy, nothing blocked. Like `run`, it is a job:
 * registered, swept when its ringfence is gone, its output opened before CMD
 * starts and never fatal to write; its session is src/jobs/trace-session.ts.
 */
import { resolveCommand } from '../jobs/command';
import { EXIT } from '../jobs/exit-status';
import { OutputFile } from '../jobs/output';
import { identityFrom } from '../jobs/identity';
import { connectDaemon, enclosingJob, traceViaDaemon } from '../agent/daemon-client';
import { socketPath } from '../agent/local-api';
import { Supervisor } from '../jobs/supervisor';
import { RingfenceError } from '../util/errors';
import { TraceSession } from '../jobs/trace-session';
import { sealPrefix, selfTargets } from '../jobs/seal';
import { signalNumber } from '../util/signals';

export interface TraceOptions {
  json?: boolean;
  output?: string;
}

/** Resolves to the exit status to leave with (CMD's, or 128+signal; 171 when events were lost). */
export async function trace(command: string, args: string[], options: TraceOptions): Promise<number> {
  resolveCommand(command);
  const out = options.output !== undefined ? OutputFile.open(options.output, '--output') : OutputFile.fd(2, 'stderr');
  const stderr = OutputFile.fd(2, 'stderr');
  const log = (line: string) => void stderr.write(line + '\n');
  // A running ringfenced traces the job under its sensor; else it is traced in this process.
  const socket = socketPath();
  const daemon = await connectDaemon(socket);
  if (daemon) return traceViaDaemon(daemon, command, args, { out, json: options.json ?? false, identity: options.json ? traceIdentity(stderr) : undefined, log });
  const outer = enclosingJob();
  if (outer) {
    out.close();
    throw new RingfenceError(`this process runs inside ringfence job ${outer}, and no ringfenced answers at ${socket}: a job cannot start a fresh one (it would take CMD out of its job)`, 'RF_USAGE');
  }
  let supervisor: Supervisor;
  try {
    // pinned like a run: a killed trace leaves nothing of CMD running on
    supervisor = await Supervisor.open({ log });
  } catch (error) {
    out.close();
    throw error;
  }
  try {
    // --json: the job events `run --events` writes (docs/events.md), the sensor's own records included
    const identity = options.json ? traceIdentity(stderr) : undefined;
    const { session, cgroup } = await supervisor.startTrace(
      (id, jobCgroup, sensor) =>
        new TraceSession({ id, command: [command, ...args], out, json: options.json ?? false, identity }, jobCgroup, {
          tree: sensor.tree,
          tampered: () => sensor.agentGone().includes('tampered'),
          droppedRecords: () => sensor.stats().dropped,
          now: () => new Date(),
        }),
    );
    let interrupted: NodeJS.Signals | undefined;
    const onSignal = (signal: NodeJS.Signals) => {
      interrupted = signal;
      void cgroup.kill().catch((error: Error) => session.agentFailure(`killing the job: ${error.message}`));
    };
    process.on('SIGINT', onSignal).on('SIGTERM', onSignal).on('SIGHUP', onSignal);
    try {
      // sealed against this process, the job's agent (src/jobs/seal.ts)
      const child = cgroup.spawn(command, args, { stdio: 'inherit', detached: true }, sealPrefix(selfTargets()));
      const end = await new Promise<{ exitCode: number | null; signal: NodeJS.Signals | null; status: number }>((resolve) => {
        child.on('error', (error) => {
          stderr.write(`ringfence: cannot start ${command}: ${error.message}\n`);
          resolve({ exitCode: null, signal: null, status: 127 });
        });
        child.on('exit', (code, signal) => resolve({ exitCode: code, signal, status: code ?? 128 + (signal ? signalNumber(signal) : 0) }));
      });
      const { failures, tampered } = await supervisor.endTrace(session, (drain) => session.finish(end, drain));
      for (const failure of failures) stderr.write(`ringfence: ${failure}\n`);
      if (tampered) {
        // as in run: the kernel ended CMD because a process of it signalled, stopped or traced ringfence
        stderr.write(`ringfence: CMD was killed in the kernel: a process of it tampered with ringfence (Agent-Tamper, exit ${EXIT.LOCKDOWN})\n`);
        return EXIT.LOCKDOWN;
      }
      if (interrupted) return 128 + signalNumber(interrupted);
      return failures.length ? EXIT.AGENT_FAILURE : end.status;
    } finally {
      process.off('SIGINT', onSignal).off('SIGTERM', onSignal).off('SIGHUP', onSignal);
    }
  } finally {
    await supervisor.close();
  }
}

/** Who the traced job is, from the GitHub Actions variables (trace takes no identity flags); a bad one is left out, and said. */
function traceIdentity(stderr: OutputFile) {
  const { identity, problems } = identityFrom({}, process.env);
  for (const p of problems) stderr.write(`ringfence: ${p.flag} '${p.value}' is ${p.problem}: left out of the events\n`);
  return identity;
}
