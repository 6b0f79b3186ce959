/** Every command, argument and option of `ringfence` says what it is for in --help. */
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/cli/main';

function undescribed(command: Command, path: string[] = ['ringfence']): string[] {
  const missing: string[] = [];
  for (const option of command.options) if (!option.description) missing.push(`${path.join(' ')} ${option.flags}`);
  for (const argument of command.registeredArguments) if (!argument.description) missing.push(`${path.join(' ')} <${argument.name()}>`);
  for (const sub of command.commands) {
    if (!sub.description()) missing.push([...path, sub.name()].join(' '));
    missing.push(...undescribed(sub, [...path, sub.name()]));
  }
  return missing;
}

describe('ringfence --help', () => {
  it('describes every command, argument and option', () => {
    expect(undescribed(buildProgram())).toEqual([]);
  });

  it('points only at pages that are in the repository', () => {
    const texts: string[] = [];
    const collect = (command: Command) => {
      texts.push(command.helpInformation());
      command.commands.forEach(collect);
    };
    collect(buildProgram());
    expect(texts.join('\n')).not.toMatch(/DESIGN\.md|shared\//);
  });
});
