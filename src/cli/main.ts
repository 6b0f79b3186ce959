/** The `ringfence` command line: one entry point, one subcommand per task. */
import { Command } from 'commander';
import { RingfenceError } from '../util/errors';
import { trace } from './trace';

function fail(error: unknown): never {
  if (error instanceof RingfenceError) {
    process.stderr.write(`ringfence: ${error.message}\n`);
    if (error.detail) process.stderr.write(error.detail.replace(/^/gm, '  ') + '\n');
  } else {
    process.stderr.write(`ringfence: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  }
  process.exit(2);
}

export function buildProgram(): Command {
  const program = new Command('ringfence')
    .description('Runtime protection for CI jobs: eBPF sensor, egress policy, lockdown')
    .enablePositionalOptions()
    .showHelpAfterError();

  program
    .command('trace')
    .description('run CMD in a cgroup of its own under the sensor and print its events')
    .option('--json', 'one JSON object per event')
    .option('-o, --output <file>', 'write events to FILE instead of stderr')
    .argument('<command>', 'the command to run')
    .argument('[args...]', 'its arguments')
    .passThroughOptions()
    .action(async (command: string, args: string[], options: { json?: boolean; output?: string }) => {
      process.exitCode = await trace(command, args, options);
    });

  return program;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (error) {
    fail(error);
  }
}

if (require.main === module) void main(process.argv);
