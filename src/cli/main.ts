/** The `ringfence` command line: one entry point, one subcommand per task. */
import { Command, CommanderError } from 'commander';
import { RingfenceError } from '../util/errors';
import { PolicyError } from '../policy/policy';
import { StoreError } from '../store/errors';
import { run, type RunOptions } from './run';
import { addStoreCommands } from './store';
import { trace } from './trace';

/**
 * Every failure ends as one line on stderr (plus the problem lines of a bad
 * policy) and exit status 2. A stack trace is for developers: set
 * RINGFENCE_DEBUG=1 to see one.
 */
function fail(error: unknown): never {
  if (error instanceof CommanderError) {
    // commander has printed its one line already ("error: unknown option '--x'")
    process.exit(error.exitCode === 0 ? 0 : 2);
  }
  if (process.env.RINGFENCE_DEBUG && error instanceof Error) process.stderr.write(`${error.stack}\n`);
  if (error instanceof PolicyError) {
    process.stderr.write(`ringfence: policy ${error.source} is not valid, nothing was done:\n${error.message}\n`);
  } else if (error instanceof RingfenceError || error instanceof StoreError) {
    const detail = error instanceof StoreError ? error.details.join('\n') : error.detail;
    process.stderr.write(`ringfence: ${error.message}\n`);
    if (detail) process.stderr.write(detail.replace(/^/gm, '  ') + '\n');
  } else {
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`ringfence: ${message.split('\n')[0]} (RINGFENCE_DEBUG=1 shows where)\n`);
  }
  process.exit(2);
}

export function buildProgram(): Command {
  const program = new Command('ringfence')
    .description('Runtime protection for CI jobs: eBPF sensor, egress policy, lockdown')
    .enablePositionalOptions()
    // a usage error is commander's one line, exit 2 (fail); subcommands inherit this
    .exitOverride();

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

  program
    .command('run')
    .description('run CMD as a job under the sensor and an egress policy (no policy: audit mode)')
    .option('-p, --policy <file>', 'policy file (DESIGN.md §4 / docs/policy.md)')
    .option('-e, --events <file>', 'write the job events as JSON lines to FILE')
    .option('-s, --summary <file>', 'write the summary as Markdown to FILE')
    .option('--dns-upstream <address>', "where allowed DNS queries go (default: the host's resolver)")
    .option('--service-endpoints <file|none|default>', 'endpoints every job may reach', 'default')
    .option('--org <org>', 'fetch the policy for this job from the policy store (RINGFENCE_SERVER, RINGFENCE_TOKEN)')
    .option('--repo <repo>', "the job's repository")
    .option('--workflow <path>', "the job's workflow file, e.g. .github/workflows/ci.yml")
    .option('--job <job>', "the job's name")
    .option('--cluster <cluster>', "the runner's cluster / runner group")
    .option('--policy-name <name>', 'the policy named in the workflow step (RINGFENCE_TOKEN: the job\'s OIDC id-token)')
    .argument('<command>', 'the command to run')
    .argument('[args...]', 'its arguments')
    .passThroughOptions()
    .action(async (command: string, args: string[], options: RunOptions) => {
      process.exitCode = await run(command, args, options);
    });

  addStoreCommands(program);
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
