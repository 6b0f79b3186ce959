#!/usr/bin/env node
/**
 * Reads Stryker's JSON report and prints the mutation score of every module
 * of the security path (docs/testing.md), and how many `// Stryker disable`
 * comments each carries (each must say why in the same comment).
 *
 *   node scripts/mutation-scores.js [--check] [--markdown] [REPORT]
 *
 * --check exits 1 when a module is below the target (90 %), when the report
 * is missing, or when a disable comment gives no reason; --markdown prints the
 * table for docs/testing.md. Score as Stryker defines it: killed + timed out
 * over every mutant that compiled and was not disabled.
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const TARGET = 90;
const args = process.argv.slice(2);
const check = args.includes('--check');
const markdown = args.includes('--markdown');
const reportPath = args.find((a) => !a.startsWith('--')) ?? 'reports/mutation/mutation.json';

let report;
try {
  report = JSON.parse(fs.readFileSync(reportPath, 'utf8'));
} catch (error) {
  console.error(`mutation-scores: cannot read ${reportPath}: ${error.message}`);
  process.exit(1);
}

/** `// Stryker disable…` comments of a source file, and those without a reason after the colon. */
function disableComments(file) {
  const lines = fs.readFileSync(path.resolve(file), 'utf8').split('\n');
  let count = 0;
  const unexplained = [];
  lines.forEach((line, index) => {
    const match = /\/\/\s*Stryker disable\b(.*)$/.exec(line);
    if (!match) return;
    count++;
    const reason = match[1].split(':').slice(1).join(':').trim();
    if (!reason) unexplained.push(`${file}:${index + 1}`);
  });
  return { count, unexplained };
}

const rows = [];
const problems = [];
const total = { killed: 0, timeout: 0, survived: 0, noCoverage: 0, ignored: 0, disables: 0 };
for (const [file, { mutants }] of Object.entries(report.files).sort(([a], [b]) => a.localeCompare(b))) {
  const c = { killed: 0, timeout: 0, survived: 0, noCoverage: 0, ignored: 0 };
  for (const m of mutants) {
    if (m.status === 'Killed') c.killed++;
    else if (m.status === 'Timeout') c.timeout++;
    else if (m.status === 'Survived') c.survived++;
    else if (m.status === 'NoCoverage') c.noCoverage++;
    else if (m.status === 'Ignored') c.ignored++;
  }
  const valid = c.killed + c.timeout + c.survived + c.noCoverage;
  const score = valid === 0 ? 100 : (100 * (c.killed + c.timeout)) / valid;
  const { count, unexplained } = disableComments(file);
  for (const where of unexplained) problems.push(`${where}: a Stryker disable comment without a reason`);
  if (score < TARGET) problems.push(`${file}: ${score.toFixed(1)} % is below the ${TARGET} % target`);
  rows.push({ file, score, ...c, disables: count });
  for (const key of Object.keys(c)) total[key] += c[key];
  total.disables += count;
}
const totalValid = total.killed + total.timeout + total.survived + total.noCoverage;
const totalScore = totalValid === 0 ? 100 : (100 * (total.killed + total.timeout)) / totalValid;

if (markdown) {
  console.log('| module | score | killed | timeout | survived | no coverage | disabled (equivalent) | disable comments |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.file} | ${r.score.toFixed(1)} % | ${r.killed} | ${r.timeout} | ${r.survived} | ${r.noCoverage} | ${r.ignored} | ${r.disables} |`);
  console.log(`| all | ${totalScore.toFixed(1)} % | ${total.killed} | ${total.timeout} | ${total.survived} | ${total.noCoverage} | ${total.ignored} | ${total.disables} |`);
} else {
  const width = Math.max(...rows.map((r) => r.file.length), 3);
  for (const r of rows) console.log(`${r.file.padEnd(width)}  ${r.score.toFixed(1).padStart(5)} %  survived ${r.survived}, no coverage ${r.noCoverage}, disabled ${r.ignored}`);
  console.log(`${'all'.padEnd(width)}  ${totalScore.toFixed(1).padStart(5)} %`);
}

if (check) {
  for (const problem of problems) console.error(`mutation: ${problem}`);
  if (problems.length > 0) process.exit(1);
}
