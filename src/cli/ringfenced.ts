/**
 * `ringfenced [--config FILE]`: the supervisor as a service, in the
 * foreground until SIGTERM (systemd runs it so: docs/ringfenced.md). A bad
 * config is one line per problem and exit 2; a daemon that cannot start
 * (no BPF, socket in use) says why in one line and exits 1.
 */
import { Command, CommanderError } from 'commander';
import { Daemon } from '../agent/daemon';
import { DEFAULT_CONFIG_PATH, DaemonConfigError, loadDaemonConfig } from '../agent/daemon-config';
import { createLogger } from '../agent/log';
import { guardStandardStreams } from '../jobs/output';
import { PolicyError } from '../policy/policy';
import { RingfenceError } from '../util/errors';

/** A daemon that had to stop (its sensor tampered with): not a clean exit, so systemd restarts it. */
const EXIT_FATAL = 70;

function fail(error: unknown): never {
  if (process.env.RINGFENCE_DEBUG && error instanceof Error) process.stderr.write(`${error.stack}\n`);
  if (error instanceof DaemonConfigError) {
    for (const problem of error.problems) process.stderr.write(`ringfenced: ${problem}\n`);
    process.stderr.write('ringfenced: the config is not valid, nothing was started\n');
    process.exit(2);
  }
  if (error instanceof PolicyError) {
    process.stderr.write(`ringfenced: policy ${error.source} is not valid, nothing was started:\n${error.message}\n`);
    process.exit(2);
  }
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`ringfenced: ${message.split('\n')[0]}${error instanceof RingfenceError ? '' : ' (RINGFENCE_DEBUG=1 shows where)'}\n`);
  if (error instanceof RingfenceError && error.detail) process.stderr.write(error.detail.replace(/^/gm, '  ') + '\n');
  process.exit(error instanceof RingfenceError && error.code === 'RF_USAGE' ? 2 : 1);
}

export async function main(argv: string[]): Promise<void> {
  guardStandardStreams();
  // SIGUSR1 would open the Node inspector, which a job could reach on loopback
  process.on('SIGUSR1', () => undefined);
  const program = new Command('ringfenced')
    .description('the ringfence supervisor: one sensor for every job on this machine, jobs handed over by `ringfence run` through its local API')
    .option('-c, --config <file>', 'the config file (docs/ringfenced.md)', DEFAULT_CONFIG_PATH)
    .helpOption('-h, --help', 'show this help')
    .exitOverride();
  let configFile: string;
  try {
    program.parse(argv);
    configFile = program.opts<{ config: string }>().config;
  } catch (error) {
    if (error instanceof CommanderError) process.exit(error.exitCode === 0 ? 0 : 2);
    throw error;
  }
  let daemon: Daemon;
  try {
    const config = loadDaemonConfig(configFile);
    const logger = createLogger({ level: config.logLevel });
    // the sensor can protect no job any more: stop, and exit non-zero so that systemd starts a fresh one
    daemon = await Daemon.start(config, logger, () => void daemon.stop('SIGTERM').finally(() => process.exit(EXIT_FATAL)));
    const stop = (signal: NodeJS.Signals) => {
      daemon.stop(signal).then(
        () => process.exit(0),
        (error: Error) => {
          logger.fatal({ err: error }, 'stopping failed');
          process.exit(1);
        },
      );
    };
    process.on('SIGTERM', stop).on('SIGINT', stop);
    // no reload yet: a SIGHUP (a closed terminal) must not end every job
    process.on('SIGHUP', () => logger.warn('SIGHUP ignored (ringfenced reads its config at start only)'));
  } catch (error) {
    fail(error);
  }
}

if (require.main === module) void main(process.argv);
