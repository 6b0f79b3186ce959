/**
 * `ringfence trace [--json] [-o FILE] -- CMD ARGS…`: runs CMD in a cgroup of
 * its own under the sensor and prints every event of it and its descendants.
 * A debugging tool: no policy, nothing blocked. Like `run`, it is a job:
 * registered, swept when its ringfence is gone, its output opened before CMD
 * starts and never fatal to write.
 */
import { resolveCommand } from '../agent/command';
import { EXIT } from '../agent/exit-status';
import { OutputFile } from '../agent/output';
import { startJob } from '../jobs/registry';
import { jobCompletedEvent, JobEventWriter, jobStartedEvent, sensorJobEvent, type PolicyRef } from '../agent/job-events';
import { identityFrom } from '../jobs/identity';
import { formatEvent } from '../sensor/format';
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
  // pinned like a run: a killed trace leaves nothing of CMD running on
  const { id, registry, sensor, cgroup } = await startJob('trace', (line) => stderr.write(line + '\n'));
  let interrupted: NodeJS.Signals | undefined;
  let sensorErrors = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    interrupted = signal;
    void cgroup.kill().catch(() => undefined);
  };
  // --json: the job events `run --events` writes (docs/events.md), the sensor's own records included
  const events = options.json ? new JobEventWriter(out, { identity: traceIdentity(stderr) }) : undefined;
  const noPolicy: PolicyRef = { name: null };
  let ended: { exitCode: number | null; signal: string | null } = { exitCode: null, signal: null };
  try {
    sensor.on('events', (batch) => {
      for (const event of batch) {
        if (events) events.write(sensorJobEvent(id, noPolicy, sensor.tree, event));
        else out.write(formatEvent(event, sensor.tree.ancestry(event.tgid)) + '\n');
      }
    });
    sensor.on('error', (error) => {
      sensorErrors++;
      stderr.write(`ringfence: ${error.message}\n`);
    });
    sensor.start();
    sensor.track(cgroup);
    events?.write(jobStartedEvent(id, new Date().toISOString(), [command, ...args], noPolicy));

    process.on('SIGINT', onSignal).on('SIGTERM', onSignal).on('SIGHUP', onSignal);
    const child = cgroup.spawn(command, args, { stdio: 'inherit', detached: true });
    const status = await new Promise<number>((resolve) => {
      child.on('error', (error) => {
        stderr.write(`ringfence: cannot start ${command}: ${error.message}\n`);
        resolve(127);
      });
      child.on('exit', (code, signal) => {
        ended = { exitCode: code, signal };
        resolve(code ?? 128 + (signal ? signalNumber(signal) : 0));
      });
    });

    // Anything CMD left running in the background ends with it.
    await cgroup.kill();
    const tampered = sensor.agentGone().includes('tampered');
    await sensor.close();
    const stats = sensor.finalStats!;
    events?.write(jobCompletedEvent(id, new Date().toISOString(), { status: ended, dropped: stats.dropped, lost: out.lost }));
    const failures: string[] = [];
    if (stats.dropped > 0) failures.push(`${stats.dropped} events were dropped (ring buffer full)`);
    if (out.lost > 0) failures.push(`${out.lost} events could not be written to ${out.label} (${out.firstError})`);
    if (sensorErrors > 0) failures.push(`${sensorErrors} sensor error(s)`);
    for (const failure of failures) stderr.write(`ringfence: ${failure}\n`);
    if (tampered) {
      // as in run: the kernel ended CMD because a process of it signalled, stopped or traced ringfence
      stderr.write(`ringfence: CMD was killed in the kernel: a process of it tampered with ringfence (Agent-Tamper, exit ${EXIT.LOCKDOWN})\n`);
      return EXIT.LOCKDOWN;
    }
    if (interrupted) return 128 + signalNumber(interrupted);
    return failures.length ? EXIT.AGENT_FAILURE : status;
  } finally {
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal).off('SIGHUP', onSignal);
    sensor.destroy();
    await cgroup.destroy().catch((error: Error) => stderr.write(`ringfence: removing ${cgroup.path}: ${error.message}\n`));
    out.close();
    registry.unregister(id);
  }
}

/** Who the traced job is, from the GitHub Actions variables (trace takes no identity flags); a bad one is left out, and said. */
function traceIdentity(stderr: OutputFile) {
  const { identity, problems } = identityFrom({}, process.env);
  for (const p of problems) stderr.write(`ringfence: ${p.flag} '${p.value}' is ${p.problem}: left out of the events\n`);
  return identity;
}
