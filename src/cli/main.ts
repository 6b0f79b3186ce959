/** The `ringfence` command line: one entry point, one subcommand per task. */
import { Command, CommanderError } from 'commander';
import { CommandError } from '../jobs/command';
import { EXIT, EXIT_STATUS_HELP } from '../jobs/exit-status';
import { guardStandardStreams } from '../jobs/output';
import { RingfenceError } from '../util/errors';
import { REPO_ROOT } from '../util/paths';
import fs from 'node:fs';
import path from 'node:path';
import { PolicyError } from '../policy/policy';
import { StoreError } from '../store/errors';
import { run, type RunOptions } from './run';
import { addDaemonCommands } from './daemon-commands';
import { addStoreCommands } from './store';
import { trace } from './trace';

/** The exit statuses of a command's errors: the job commands keep theirs out of CMD's range. */
interface ErrorStatuses {
  usage: number;
  failure: number;
}
const JOB_COMMAND_STATUSES: ErrorStatuses = { usage: EXIT.USAGE, failure: EXIT.AGENT_FAILURE };
const MANAGEMENT_STATUSES: ErrorStatuses = { usage: 2, failure: 2 };

/** run and trace start jobs: their errors use the job statuses (docs/cli.md); the rest exit 2. */
function statusesFor(argv: string[]): ErrorStatuses {
  const subcommand = argv.slice(2).find((arg) => !arg.startsWith('-'));
  return subcommand === 'run' || subcommand === 'trace' ? JOB_COMMAND_STATUSES : MANAGEMENT_STATUSES;
}

const isUsageError = (error: unknown) => error instanceof PolicyError || (error instanceof RingfenceError && error.code === 'RF_USAGE');

/**
 * Every failure ends as one line on stderr (plus the problem lines of a bad
 * policy or of several bad flags). A stack trace is for developers: set
 * RINGFENCE_DEBUG=1 to see one.
 */
function fail(error: unknown, statuses: ErrorStatuses): never {
  if (error instanceof CommanderError) {
    // commander has printed its one line already ("error: unknown option '--x'"), or the help / version
    process.exit(error.exitCode === 0 ? 0 : statuses.usage);
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
  if (error instanceof CommandError) process.exit(error.exitStatus);
  process.exit(isUsageError(error) ? statuses.usage : statuses.failure);
}

function version(): string {
  return (JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}

export function buildProgram(): Command {
  const program = new Command('ringfence')
    .description('Runtime protection for CI jobs: eBPF sensor, egress policy, lockdown')
    .version(version(), '-V, --version', 'print the version and exit')
    .helpOption('-h, --help', 'show help for a command')
    .addHelpCommand('help [command]', 'show help for a command')
    .enablePositionalOptions()
    // a usage error is commander's one line, exit 2 (fail); subcommands inherit this
    .exitOverride();

  program
    .command('trace')
    .description('run CMD in a cgroup of its own under the sensor and print its events (no policy, nothing refused)')
    .option('--json', 'one JSON object per event, the schema of docs/events.md')
    .option('-o, --output <file>', 'write events to FILE instead of stderr (checked before CMD starts)')
    .argument('<command>', 'the command to run')
    .argument('[args...]', 'its arguments')
    .passThroughOptions()
    .action(async (command: string, args: string[], options: { json?: boolean; output?: string }) => {
      process.exitCode = await trace(command, args, options);
    });

  program
    .command('run')
    .description(
      'run CMD as a job under the sensor and its egress policy and lockdown. The policy comes from --policy FILE; ' +
        'else from the policy store when RINGFENCE_SERVER is set; else audit mode (recorded, nothing refused)',
    )
    .option('-p, --policy <file>', 'policy file (docs/policy.md)')
    .option('-e, --events <file>', 'write the job events as JSON lines to FILE (docs/events.md)')
    .option('-s, --summary <file>', 'write the summary as Markdown to FILE')
    .option('--dns-upstream <address>', "where allowed DNS queries go, ADDRESS[:PORT] (default: the host's resolver)")
    .option('--service-endpoints <file|none|default>', 'endpoints every job may reach (docs/egress.md)', 'default')
    .option('--org <org>', "the job's organization (default: GITHUB_REPOSITORY_OWNER); with RINGFENCE_SERVER, whose policy applies")
    .option('--repo <owner/name>', "the job's repository (default: GITHUB_REPOSITORY)")
    .option('--workflow <path>', "the job's workflow file, e.g. .github/workflows/ci.yml (default: from GITHUB_WORKFLOW_REF)")
    .option('--job <job>', "the job's name (default: GITHUB_JOB)")
    .option('--run-id <id>', 'the workflow run (default: GITHUB_RUN_ID)')
    .option('--run-attempt <n>', 'the attempt of the run (default: GITHUB_RUN_ATTEMPT)')
    .option('--runner <name>', 'the runner (default: RUNNER_NAME)')
    .option('--cluster <cluster>', "the runner's cluster / runner group")
    .option('--policy-name <name>', "the policy named in the workflow step (RINGFENCE_TOKEN: the job's OIDC id-token)")
    .argument('<command>', 'the command to run')
    .argument('[args...]', 'its arguments')
    .passThroughOptions()
    .addHelpText('after', `\n${EXIT_STATUS_HELP}\n\nEnvironment: RINGFENCE_SERVER (policy store address), RINGFENCE_TOKEN (agent token or OIDC id-token), RINGFENCE_DEBUG=1 (stack traces).`)
    .action(async (command: string, args: string[], options: RunOptions) => {
      process.exitCode = await run(command, args, options);
    });

  addStoreCommands(program);
  addDaemonCommands(program);
  // bare `ringfence`: the help, on stdout, exit 0; a word that is no command: one line
  program.allowExcessArguments(true).action(() => {
    if (program.args.length) program.error(`error: unknown command '${program.args[0]}' (ringfence --help lists them)`);
    program.outputHelp();
  });
  return program;
}

export async function main(argv: string[]): Promise<void> {
  // a reader that goes away (`| head`) costs output, never the job's enforcement
  guardStandardStreams();
  // SIGUSR1 would open Node's inspector on 127.0.0.1:9229, which a job may
  // reach (loopback is allowed): with a listener of our own it never opens
  process.on('SIGUSR1', () => process.stderr.write('ringfence: SIGUSR1 ignored\n'));
  try {
    await buildProgram().parseAsync(argv);
  } catch (error) {
    fail(error, statusesFor(argv));
  }
}

if (require.main === module) void main(process.argv);
