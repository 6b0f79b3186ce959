import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

/** scripts/mutation-scores.js: the per-module gate of `npm run test:mutation`. */
const SCRIPT = path.resolve(__dirname, '../../scripts/mutation-scores.js');
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function mutants(counts: Record<string, number>) {
  return Object.entries(counts).flatMap(([status, n]) => Array.from({ length: n }, () => ({ status })));
}

/** A project with the given source files and a report over them; runs the script in it. */
function run(files: Record<string, { source: string; statuses: Record<string, number> }>, ...flags: string[]) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-mutation-'));
  dirs.push(dir);
  const report = { files: {} as Record<string, { mutants: unknown[] }> };
  for (const [file, { source, statuses }] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    fs.writeFileSync(path.join(dir, file), source);
    report.files[file] = { mutants: mutants(statuses) };
  }
  fs.mkdirSync(path.join(dir, 'reports/mutation'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'reports/mutation/mutation.json'), JSON.stringify(report));
  return spawnSync(process.execPath, [SCRIPT, ...flags], { cwd: dir, encoding: 'utf8' });
}

describe('mutation-scores --check', () => {
  it('passes when every module reaches 90 %, counting timeouts as killed and leaving compile errors and disabled mutants out', () => {
    const result = run({ 'src/a.ts': { source: 'x\n', statuses: { Killed: 8, Timeout: 1, Survived: 1, CompileError: 5, Ignored: 3 } } }, '--check');
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('src/a.ts   90.0 %  survived 1, no coverage 0, disabled 3');
  });

  it('fails naming the module below the target, counting mutants without coverage against it', () => {
    const result = run(
      {
        'src/good.ts': { source: 'x\n', statuses: { Killed: 10 } },
        'src/weak.ts': { source: 'x\n', statuses: { Killed: 8, NoCoverage: 1, Survived: 1, Timeout: 0 } },
        'src/low.ts': { source: 'x\n', statuses: { Killed: 17, Survived: 2 } },
      },
      '--check',
    );
    expect(result.status).toBe(1);
    expect(result.stderr.trim().split('\n')).toEqual(['mutation: src/low.ts: 89.5 % is below the 90 % target', 'mutation: src/weak.ts: 80.0 % is below the 90 % target']);
  });

  it('fails on a Stryker disable comment that gives no reason, and counts the ones that do', () => {
    const source = 'a(); // Stryker disable next-line EqualityOperator: both sides are the same length here\nb(); // Stryker disable next-line all\n';
    const result = run({ 'src/a.ts': { source, statuses: { Killed: 1, Ignored: 2 } } }, '--check', '--markdown');
    expect(result.status).toBe(1);
    expect(result.stderr.trim()).toBe('mutation: src/a.ts:2: a Stryker disable comment without a reason');
    expect(result.stdout).toContain('| src/a.ts | 100.0 % | 1 | 0 | 0 | 0 | 2 | 2 |');
  });

  it('fails with one line when there is no report', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-mutation-'));
    dirs.push(dir);
    const result = spawnSync(process.execPath, [SCRIPT, '--check'], { cwd: dir, encoding: 'utf8' });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/^mutation-scores: cannot read reports\/mutation\/mutation.json: ENOENT[^\n]*\n$/);
  });
});
