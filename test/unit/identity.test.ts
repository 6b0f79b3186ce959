/** Who a job is: flags first, else the GitHub Actions variables. */
import { describe, expect, it } from 'vitest';
import { identityFrom, workflowPathFromRef } from '../../src/jobs/identity';

const actionsEnv = (): NodeJS.ProcessEnv => ({
  GITHUB_REPOSITORY_OWNER: 'acme',
  GITHUB_REPOSITORY: 'acme/web',
  GITHUB_WORKFLOW: 'CI (display name)',
  GITHUB_WORKFLOW_REF: 'acme/web/.github/workflows/ci.yml@refs/heads/main',
  GITHUB_JOB: 'build',
  GITHUB_RUN_ID: '7012345678',
  GITHUB_RUN_ATTEMPT: '2',
  RUNNER_NAME: 'runner-7',
});

describe('workflowPathFromRef', () => {
  it.each([
    ['acme/web/.github/workflows/ci.yml@refs/heads/main', '.github/workflows/ci.yml'],
    ['acme/web/.github/workflows/release.yaml@refs/tags/v1.2', '.github/workflows/release.yaml'],
    ['acme/web/.github/workflows/ci.yml', '.github/workflows/ci.yml'],
    // the last '@' starts the ref: a path may have one of its own
    ['acme/web/.github/workflows/a@b.yml@refs/heads/main', '.github/workflows/a@b.yml'],
    ['acme/web/ci.yml@refs/heads/main', 'ci.yml'],
    ['acme/web/@refs/heads/main', undefined],
    ['acme/web@refs/heads/main', undefined],
    ['acme/web', undefined],
    ['', undefined],
    [undefined, undefined],
  ])('%s → %s', (ref, path) => {
    expect(workflowPathFromRef(ref)).toBe(path);
  });
});

describe('identityFrom', () => {
  it('takes the GitHub Actions variables, the workflow path from GITHUB_WORKFLOW_REF (not the display name)', () => {
    expect(identityFrom({}, actionsEnv(), 'ci-3')).toEqual({
      identity: { org: 'acme', repo: 'acme/web', workflow: '.github/workflows/ci.yml', jobName: 'build', runId: '7012345678', runAttempt: 2, runner: 'runner-7', host: 'ci-3' },
      problems: [],
    });
  });

  it('flags win over the environment, one by one', () => {
    const { identity, problems } = identityFrom(
      { org: 'other', repo: 'other/api', workflow: '.github/workflows/deploy.yml', job: 'ship', runId: '42', runAttempt: '3', runner: 'big-1', cluster: 'arc-east' },
      actionsEnv(),
      'ci-3',
    );
    expect(problems).toEqual([]);
    expect(identity).toEqual({ org: 'other', repo: 'other/api', workflow: '.github/workflows/deploy.yml', jobName: 'ship', runId: '42', runAttempt: 3, runner: 'big-1', host: 'ci-3', cluster: 'arc-east' });
    expect(identityFrom({ job: 'ship' }, actionsEnv(), 'ci-3').identity).toMatchObject({ jobName: 'ship', org: 'acme', runAttempt: 2 });
  });

  it('the cluster never comes from the job environment', () => {
    expect(identityFrom({}, { ...actionsEnv(), RINGFENCE_CLUSTER: 'x', GITHUB_CLUSTER: 'y' }, 'h').identity.cluster).toBeUndefined();
  });

  it('leaves out what is unknown or empty: only the host is always there', () => {
    // toStrictEqual: a key that is there with undefined would override a default where the identity is spread
    expect(identityFrom({}, {}, 'ci-3')).toStrictEqual({ identity: { host: 'ci-3' }, problems: [] });
    expect(identityFrom({ org: '' }, { GITHUB_REPOSITORY_OWNER: '' }, 'ci-3').identity).toStrictEqual({ host: 'ci-3' });
  });

  it('an empty flag falls back to the environment', () => {
    expect(identityFrom({ org: '', runAttempt: '' }, actionsEnv(), 'h').identity).toMatchObject({ org: 'acme', runAttempt: 2 });
  });

  it.each([
    ['1', 1],
    ['12', 12],
  ])('takes run attempt %s', (attempt, runAttempt) => {
    expect(identityFrom({}, { GITHUB_RUN_ATTEMPT: attempt }, 'h')).toStrictEqual({ identity: { runAttempt, host: 'h' }, problems: [] });
  });

  it.each([
    [{ runAttempt: '0' }, {}, { flag: '--run-attempt', value: '0', problem: 'not a positive whole number' }],
    [{ runAttempt: '1.5' }, {}, { flag: '--run-attempt', value: '1.5', problem: 'not a positive whole number' }],
    [{}, { GITHUB_RUN_ATTEMPT: 'two' }, { flag: 'GITHUB_RUN_ATTEMPT', value: 'two', problem: 'not a positive whole number' }],
    [{ runId: 'abc' }, {}, { flag: '--run-id', value: 'abc', problem: 'not a run id (digits)' }],
    [{ runId: '12a' }, {}, { flag: '--run-id', value: '12a', problem: 'not a run id (digits)' }],
    [{ runId: 'a12' }, {}, { flag: '--run-id', value: 'a12', problem: 'not a run id (digits)' }],
    [{}, { GITHUB_RUN_ID: '70-1' }, { flag: 'GITHUB_RUN_ID', value: '70-1', problem: 'not a run id (digits)' }],
    [{ runAttempt: '2x' }, {}, { flag: '--run-attempt', value: '2x', problem: 'not a positive whole number' }],
    [{ runAttempt: 'x2' }, {}, { flag: '--run-attempt', value: 'x2', problem: 'not a positive whole number' }],
  ])('a bad run attempt or id (%j %j) is a problem naming where it came from, and is left out', (flags, env, problem) => {
    const { identity, problems } = identityFrom(flags, env, 'h');
    expect(problems).toEqual([problem]);
    if (problem.flag.includes('ttempt')) expect(identity.runAttempt).toBeUndefined();
  });
});
