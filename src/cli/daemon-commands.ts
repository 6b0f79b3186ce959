/**
 * `ringfence status` and `ringfence jobs`: what the running ringfenced says
 * of itself and of its jobs, over the local API (RINGFENCE_SOCKET or the
 * default socket). Without a ringfenced, one line saying so, exit 2.
 */
import type { Command } from 'commander';
import { JOB_API, type JobInfo, type StatusReply } from '../agent/job-api';
import { LocalApiClient, socketPath } from '../agent/local-api';

async function ask<T>(method: string): Promise<T> {
  const client = await LocalApiClient.connect(socketPath());
  try {
    return await client.call<T>(method, {});
  } finally {
    client.close();
  }
}

export function addDaemonCommands(program: Command): void {
  program
    .command('status')
    .description('what the running ringfenced says of itself: pid, uptime, jobs, sensor counts')
    .option('--json', 'as one JSON object')
    .action(async (options: { json?: boolean }) => {
      const status = await ask<StatusReply>(JOB_API.status);
      if (options.json) {
        process.stdout.write(JSON.stringify(status) + '\n');
        return;
      }
      process.stdout.write(
        [
          `ringfenced pid ${status.pid} (${status.instance}), up since ${status.startedAt}, socket ${status.socket}`,
          `jobs running: ${status.jobs}`,
          `sensor: ${status.sensor.delivered} events delivered, ${status.sensor.dropped} dropped, ${status.sensor.unknownRecords} unknown, ${status.sensor.decodeErrors} decode errors`,
          `kernel: ${status.kernel.programs.length} programs, ${status.kernel.links.length} links`,
        ].join('\n') + '\n',
      );
    });
  program
    .command('jobs')
    .description('the jobs the running ringfenced protects now')
    .option('--json', 'one JSON object per job')
    .action(async (options: { json?: boolean }) => {
      const jobs = await ask<JobInfo[]>(JOB_API.jobs);
      for (const job of jobs) {
        process.stdout.write(
          options.json ? JSON.stringify(job) + '\n' : `${job.id}  ${job.mode}  ${job.policy ?? '(audit)'}  since ${job.startedAt}  pid ${job.starterPid}  ${job.command.join(' ')}\n`,
        );
      }
      if (!options.json && jobs.length === 0) process.stdout.write('no jobs running\n');
    });
}
