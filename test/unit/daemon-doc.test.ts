/** docs/ringfenced.md says what the code does: its example configs parse, its tables list every key and metric, and only those. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONFIG_KEYS, DaemonConfigError, loadDaemonConfig, parseDaemonConfig } from '../../src/agent/daemon-config';
import { DaemonMetrics } from '../../src/agent/metrics';
import { REPO_ROOT } from '../../src/util/paths';

const DOC = path.join(REPO_ROOT, 'docs/ringfenced.md');
const doc = () => fs.readFileSync(DOC, 'utf8');

/** The text of a `## ` or `### ` section, up to the next heading of its level or above. */
function section(heading: string): string {
  const text = doc();
  const start = text.indexOf(`${heading}\n`);
  expect(start, `${heading} in docs/ringfenced.md`).toBeGreaterThanOrEqual(0);
  const level = heading.split(' ')[0];
  const rest = text.slice(start + heading.length + 1);
  const end = rest.search(new RegExp(`^#{2,${level.length}} `, 'm'));
  return end < 0 ? rest : rest.slice(0, end);
}

const blocks = (text: string, lang: string) => [...text.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]);
/** The first column of a table's rows, without its backticks. */
const firstColumn = (text: string) =>
  text
    .split('\n')
    .filter((line) => /^\| `/.test(line))
    .map((line) => /^\| `([^`]+)`/.exec(line)![1]);

function problemsOf(text: string): string[] {
  try {
    parseDaemonConfig(text, '/etc/ringfence/ringfenced.yaml', {});
  } catch (error) {
    if (error instanceof DaemonConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe('docs/ringfenced.md', () => {
  it('its example configs are valid, and the first uses every key but the one that excludes store', () => {
    const examples = blocks(section('### An example'), 'yaml');
    expect(examples).toHaveLength(2);
    for (const example of examples) expect(problemsOf(example)).toEqual([]);
    const full = parseDaemonConfig(examples[0], 'example', {});
    expect(Object.keys(full).sort()).toEqual(['cluster', 'dnsUpstream', 'logLevel', 'metrics', 'socket', 'socketGroup', 'source', 'store']);
    expect(Object.keys(full.store!).sort()).toEqual(['address', 'caFile', 'tls', 'tokenFile', 'url']);
    expect(parseDaemonConfig(examples[1], 'example', {}).policyFile).toBe('/etc/ringfence/default-policy.yml');
  });

  it('the key table lists every key, and no other', () => {
    expect(firstColumn(section('### Keys')).sort()).toEqual([...CONFIG_KEYS].sort());
  });

  it('the problem lines it shows are what the parser says', () => {
    const [parseProblems, policyProblem] = blocks(section('## Configuration'), '');
    const config = 'log-level: info\npolicy-file: /etc/ringfence/default-policy.yml\nsocket-group: ci-runner\nsokcet: /run/ringfence/agent.sock\nmetrics:\n  listen: 0.0.0.0:9464\n';
    expect(problemsOf(config)).toEqual(parseProblems.trimEnd().split('\n'));

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-daemon-doc-'));
    try {
      const policy = path.join(dir, 'default-policy.yml');
      fs.writeFileSync(policy, 'name: fleet\negress-policy: block\nallowed-endpoints: >\n  127.0.0.1:8080\nlockdown-mode:\n  enabled: true\n  detections:\n    - Privileged-Container\n    - Reverse-Shel\n');
      const file = path.join(dir, 'ringfenced.yaml');
      fs.writeFileSync(file, `log-level: info\npolicy-file: ${policy}\n`);
      expect.assertions(3);
      try {
        loadDaemonConfig(file, {});
      } catch (error) {
        const shown = (error as DaemonConfigError).problems.map((line) => line.replaceAll(dir, '/etc/ringfence'));
        expect(shown).toEqual(policyProblem.trimEnd().split('\n'));
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the metrics table lists every ringfence_ metric, and no other', async () => {
    const names = new DaemonMetrics({ processMetrics: false }).registry.getMetricsAsArray().map((m) => m.name);
    expect(firstColumn(section('## Metrics'))).toEqual(names);
    // and the process metrics it names are there
    const all = await new DaemonMetrics().text();
    for (const name of ['process_cpu_user_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes']) {
      expect(all).toContain(`# TYPE ${name} `);
    }
  });

  it('the "Running ringfenced" heading is there for the lead', () => {
    expect(section('## Running ringfenced').trim().length).toBeGreaterThan(0);
  });
});
