/**
 * Who a job is (docs/design.md, "Jobs"): org, repository, workflow
 * path, job, run, attempt, runner, host, cluster. Every event carries it.
 * Flags win; otherwise the GitHub Actions variables of the environment the
 * job runs in. The identity never decides where the policy comes from.
 */
import os from 'node:os';

export interface JobIdentity {
  org?: string;
  /** OWNER/NAME as GitHub writes it. */
  repo?: string;
  /** The workflow file's path in its repository, e.g. .github/workflows/ci.yml. */
  workflow?: string;
  jobName?: string;
  runId?: string;
  runAttempt?: number;
  runner?: string;
  host: string;
  /** Runner group / ARC cluster: from the runner's configuration, never from the job. */
  cluster?: string;
}

export interface IdentityFlags {
  org?: string;
  repo?: string;
  workflow?: string;
  job?: string;
  runId?: string;
  runAttempt?: string;
  runner?: string;
  cluster?: string;
}

/**
 * The workflow path from GITHUB_WORKFLOW_REF
 * ("OWNER/REPO/.github/workflows/ci.yml@refs/heads/main"); GITHUB_WORKFLOW
 * is the display name, which is not unique and can be anything.
 */
export function workflowPathFromRef(ref: string | undefined): string | undefined {
  if (!ref) return undefined;
  const at = ref.lastIndexOf('@');
  const withoutRef = at === -1 ? ref : ref.slice(0, at);
  // OWNER/REPO/ comes first; without it (or nothing after it) there is no path
  return withoutRef.split('/').slice(2).join('/') || undefined;
}

/** A bad identity flag, with what was wrong; all of them are reported at once by the caller. */
export interface IdentityProblem {
  flag: string;
  value: string;
  problem: string;
}

const nonEmpty = (value: string | undefined) => value || undefined;

export function identityFrom(flags: IdentityFlags, env: NodeJS.ProcessEnv = process.env, host = os.hostname()): { identity: JobIdentity; problems: IdentityProblem[] } {
  const problems: IdentityProblem[] = [];
  const attemptText = nonEmpty(flags.runAttempt) ?? nonEmpty(env.GITHUB_RUN_ATTEMPT);
  let runAttempt: number | undefined;
  if (attemptText !== undefined) {
    runAttempt = Number(attemptText);
    if (!/^\d+$/.test(attemptText) || runAttempt < 1) {
      problems.push({ flag: flags.runAttempt !== undefined ? '--run-attempt' : 'GITHUB_RUN_ATTEMPT', value: attemptText, problem: 'not a positive whole number' });
      runAttempt = undefined;
    }
  }
  const runId = nonEmpty(flags.runId) ?? nonEmpty(env.GITHUB_RUN_ID);
  if (runId !== undefined && !/^\d+$/.test(runId)) problems.push({ flag: flags.runId !== undefined ? '--run-id' : 'GITHUB_RUN_ID', value: runId, problem: 'not a run id (digits)' });
  const repo = nonEmpty(flags.repo) ?? nonEmpty(env.GITHUB_REPOSITORY);
  const identity: JobIdentity = {
    org: nonEmpty(flags.org) ?? nonEmpty(env.GITHUB_REPOSITORY_OWNER),
    repo,
    workflow: nonEmpty(flags.workflow) ?? workflowPathFromRef(env.GITHUB_WORKFLOW_REF),
    jobName: nonEmpty(flags.job) ?? nonEmpty(env.GITHUB_JOB),
    runId,
    runAttempt,
    runner: nonEmpty(flags.runner) ?? nonEmpty(env.RUNNER_NAME),
    host,
    cluster: nonEmpty(flags.cluster),
  };
  for (const key of Object.keys(identity) as (keyof JobIdentity)[]) if (identity[key] === undefined) delete identity[key];
  return { identity, problems };
}
