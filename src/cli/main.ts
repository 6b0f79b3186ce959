/** The `ringfence` command line: one entry point, one subcommand per task. */
import { Command } from 'commander';
import { RingfenceError } from '../util/errors';
import { PolicyError } from '../policy/policy';
import { run, type RunOptions } from './run';
import { addStoreCommands } from './store';
import { trace } from './trace';

function fail(error: unknown): never {
  if (error instanceof PolicyError) {
    process.stderr.write(`ringfence: policy ${error.source} is not valid, nothing was done:\n${error.message}\n`);
    process.exit(2);
  }
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
