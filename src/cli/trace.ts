/**
 * `ringfence trace [--json] [-o FILE] -- CMD ARGS…`: runs CMD in a cgroup of
 * its own under the sensor and prints every event of it and its descendants.
 * A debugging tool: no policy, nothing blocked.
 */
import fs from 'node:fs';
import { Cgroup } from '../cgroup/cgroup2';
import { eventToJson, formatEvent } from '../sensor/format';
import { Sensor } from '../sensor/sensor';
import { signalNumber } from '../util/signals';

export interface TraceOptions {
  json?: boolean;
  output?: string;
}

/** Resolves to the exit status to leave with (CMD's, or 128+signal). */
export async function trace(command: string, args: string[], options: TraceOptions): Promise<number> {
  const out = options.output ? fs.createWriteStream(options.output) : process.stderr;
  const sensor = Sensor.open();
  const cgroup = Cgroup.create(`ringfence/trace-${process.pid}`);
  let interrupted: NodeJS.Signals | undefined;
  try {
    sensor.on('events', (events) => {
      for (const event of events) {
        const ancestry = sensor.tree.ancestry(event.tgid);
        out.write((options.json ? eventToJson(event, ancestry) : formatEvent(event, ancestry)) + '\n');
      }
    });
    sensor.on('error', (error) => process.stderr.write(`ringfence: ${error.message}\n`));
    sensor.start();
    sensor.track(cgroup);

    const child = cgroup.spawn(command, args, { stdio: 'inherit' });
    const onSignal = (signal: NodeJS.Signals) => {
      interrupted = signal;
      void cgroup.kill().catch(() => undefined);
    };
    process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
    const status = await new Promise<number>((resolve) => {
      child.on('error', (error) => {
        process.stderr.write(`ringfence: cannot start ${command}: ${error.message}\n`);
        resolve(127);
      });
      child.on('exit', (code, signal) => resolve(code ?? 128 + (signal ? signalNumber(signal) : 0)));
    });
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);

    // Anything CMD left running in the background ends with it.
    await cgroup.kill();
    await sensor.close();
    const stats = sensor.finalStats!;
    if (stats.dropped > 0) process.stderr.write(`ringfence: ${stats.dropped} events were dropped (ring buffer full)\n`);
    return interrupted ? 128 + signalNumber(interrupted) : status;
  } finally {
    sensor.destroy();
    await cgroup.destroy().catch(() => undefined);
    if (out !== process.stderr) await new Promise((resolve) => (out as fs.WriteStream).end(resolve));
  }
}
