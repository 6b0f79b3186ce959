import { describe, expect, it } from 'vitest';
import { EXIT, EXIT_STATUS_HELP, exitStatusOf, type JobOutcome } from '../../src/jobs/exit-status';

const outcome = (over: Partial<JobOutcome>): JobOutcome => ({ exitCode: 0, signal: null, blocked: 0, lockedDown: false, agentFailures: [], ...over });

describe('exit status of ringfence run', () => {
  it.each([
    { name: "CMD's own status", over: { exitCode: 3 }, status: 3, reason: 'command' },
    { name: 'CMD 0', over: {}, status: 0, reason: 'command' },
    { name: 'CMD 0 but a request blocked', over: { blocked: 2 }, status: EXIT.BLOCKED, reason: 'blocked' },
    { name: 'CMD failed and a request blocked: CMD wins', over: { exitCode: 5, blocked: 2 }, status: 5, reason: 'command' },
    { name: 'CMD killed by a signal', over: { exitCode: null, signal: 'SIGSEGV' as const }, status: 139, reason: 'command' },
    { name: 'interrupted (Ctrl-C) over CMD and blocks', over: { exitCode: 0, blocked: 1, interrupted: 'SIGINT' as const }, status: 130, reason: 'interrupted' },
    { name: 'agent failure over interrupt', over: { interrupted: 'SIGTERM' as const, agentFailures: ['lost'] }, status: EXIT.AGENT_FAILURE, reason: 'agent-failure' },
    { name: 'lockdown over everything', over: { exitCode: 0, blocked: 3, interrupted: 'SIGINT' as const, agentFailures: ['lost'], lockedDown: true }, status: EXIT.LOCKDOWN, reason: 'lockdown' },
  ])('$name', ({ over, status, reason }) => {
    expect(exitStatusOf(outcome(over))).toEqual({ status, reason });
  });

  it("ringfence's own statuses are outside what commands and shells use, and distinct", () => {
    const own = [EXIT.USAGE, EXIT.AGENT_FAILURE, EXIT.LOCKDOWN];
    expect(new Set(own).size).toBe(3);
    for (const status of own) {
      expect(status).toBeGreaterThan(165); // 0-125 commands, 126-127 the shell, 128+N up to SIGRTMAX signals
      expect(status).toBeLessThan(255);
    }
    expect(own).not.toContain(137);
  });
});

describe('the exit status help (run --help, docs/cli.md)', () => {
  it('names each of ringfence\'s own statuses with what it means, in order of precedence', () => {
    const lines = [`  ${EXIT.LOCKDOWN}  lockdown killed the job`, `  ${EXIT.AGENT_FAILURE}  ringfence failed`, '  128+N  ringfence ended the job on signal N', `  ${EXIT.BLOCKED}    CMD exited 0 but the policy blocked a request`, `  ${EXIT.USAGE}  bad usage`];
    const at = lines.map((line) => EXIT_STATUS_HELP.indexOf(line));
    expect(at.every((index) => index > 0)).toBe(true);
    expect(at).toEqual([...at].sort((a, b) => a - b));
  });

  it.each(Object.entries(EXIT))('names %s by its number, %i, at the start of a line', (_name, status) => {
    const lines = EXIT_STATUS_HELP.split('\n');
    expect(lines.filter((line) => line.trimStart().startsWith(`${status} `))).toHaveLength(1);
  });
});

describe('RINGFENCE_INSTANCE', () => {
  it('names the roots of records, cgroups and pins; a bad name is a usage error', async () => {
    const { instanceName } = await import('../../src/jobs/registry');
    expect(instanceName({})).toBe('ringfence');
    expect(instanceName({ RINGFENCE_INSTANCE: '' })).toBe('ringfence');
    expect(instanceName({ RINGFENCE_INSTANCE: 'ci-2' })).toBe('ringfence-ci-2');
    for (const bad of ['../x', 'A', '-x', 'a/b', 'x'.repeat(64)]) expect(() => instanceName({ RINGFENCE_INSTANCE: bad }), bad).toThrow(/^RINGFENCE_INSTANCE '.*': expected lower-case letters/);
  });
});
