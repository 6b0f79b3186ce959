/**
 * Runs a bash script as a ringfence job (runJob, in-process) with a resolver
 * configuration of the test's own: the job gets a private mount namespace in
 * which /etc/resolv.conf names a test-owned address, so that a query that
 * escaped redirection could only reach a test-owned host.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runJob } from '../../src/agent/job';
import type { JobResult } from '../../src/jobs/session';
import type { JobEvent } from '../../src/jobs/job-events';
import type { Upstream } from '../../src/dns/proxy';
import type { JobIdentity } from '../../src/jobs/identity';
import { parsePolicy } from '../../src/policy/policy';

export interface ScriptJob extends JobResult {
  stdout: string;
  stderr: string;
  /** The events file, as written (each with the envelope too: Written<JobEvent>). */
  events: JobEvent[];
  summary: string;
}

export interface ScriptJobOptions {
  policy?: string;
  upstream: Upstream;
  /** Nameserver line(s) of the job's resolv.conf. */
  resolvConf: string;
  identity?: JobIdentity;
  /** How events name the policy; default: its name, else 'test'. */
  policyName?: string | null;
  policyVersion?: number;
}

export async function runScriptJob(script: string, options: ScriptJobOptions): Promise<ScriptJob> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringfence-run-'));
  const file = (name: string) => path.join(dir, name);
  fs.writeFileSync(file('resolv.conf'), options.resolvConf);
  const out = fs.openSync(file('stdout'), 'w');
  const err = fs.openSync(file('stderr'), 'w');
  let summary = '';
  try {
    const policy = parsePolicy(options.policy ?? 'egress-policy: audit\n');
    const result = await runJob(
      '/usr/bin/unshare',
      ['--mount', '--', '/bin/bash', '-c', `mount --bind ${file('resolv.conf')} /etc/resolv.conf && exec /bin/bash -c "$0"`, script],
      {
        policy,
        policyName: options.policyName !== undefined ? options.policyName : (policy.name ?? 'test'),
        policyVersion: options.policyVersion,
        identity: options.identity,
        eventsPath: file('events.jsonl'),
        dnsUpstream: options.upstream,
        serviceEndpoints: [],
        stdio: ['ignore', out, err],
        log: (text) => (summary += text + '\n'),
      },
    );
    const events = fs
      .readFileSync(file('events.jsonl'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as JobEvent);
    return { ...result, stdout: fs.readFileSync(file('stdout'), 'utf8'), stderr: fs.readFileSync(file('stderr'), 'utf8'), events, summary };
  } finally {
    fs.closeSync(out);
    fs.closeSync(err);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
