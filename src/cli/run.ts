/**
 * `ringfence run [--policy FILE] [--events FILE] [--summary FILE] -- CMD ARGS…`:
 * runs CMD as a job under the sensor and its policy.
 *
 * Where the policy comes from is explicit and said at start: `--policy FILE`;
 * else the policy store when RINGFENCE_SERVER is set (the job's identity
 * says whose policy); else audit mode. Identity flags never pick the source.
 */
import fs from 'node:fs';
import path from 'node:path';
import { connectDaemon, enclosingJob, policyText, runViaDaemon } from '../agent/daemon-client';
import { socketPath } from '../agent/local-api';
import { loadServiceEndpoints } from '../jobs/service-endpoints';
import { parseUpstream, runJob } from '../agent/job';
import { resolveCommand } from '../jobs/command';
import { OutputFile } from '../jobs/output';
import { fetchPolicy } from '../agent/store-policy';
import { policyDisplay } from '../jobs/summary';
import { identityFrom, type IdentityFlags, type JobIdentity } from '../jobs/identity';
import { AUDIT_POLICY, readPolicyFile, type Policy } from '../policy/policy';
import { RingfenceError } from '../util/errors';

export interface RunOptions extends IdentityFlags {
  policy?: string;
  policyName?: string;
  events?: string;
  summary?: string;
  dnsUpstream?: string;
  serviceEndpoints?: string;
}

export interface PolicySource {
  kind: 'file' | 'store' | 'audit';
  /** What stderr says at start. */
  description: string;
}

/** Usage problems of `run`'s flags and environment, all at once (nothing has started). */
export function checkRunUsage(options: RunOptions, env: NodeJS.ProcessEnv, identity: JobIdentity, identityProblems: string[]): string[] {
  const problems = [...identityProblems];
  const server = env.RINGFENCE_SERVER;
  if (options.policy !== undefined && options.policyName !== undefined) problems.push('--policy FILE and --policy-name (a policy of the store) exclude each other');
  if (options.policy === undefined && server) {
    if (!identity.org) problems.push('RINGFENCE_SERVER is set, so the policy comes from the store: say whose job this is with --org ORG (or GITHUB_REPOSITORY_OWNER)');
    if (!env.RINGFENCE_TOKEN) problems.push("RINGFENCE_SERVER is set but RINGFENCE_TOKEN is not: an agent token, or the job's OIDC id-token for --policy-name");
  }
  if (options.policyName !== undefined && options.policy === undefined && !server) problems.push('--policy-name names a policy of the store: set RINGFENCE_SERVER (and RINGFENCE_TOKEN)');
  return problems;
}

export async function run(command: string, args: string[], options: RunOptions, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  resolveCommand(command);
  const { identity, problems } = identityFrom(options, env);
  const usage = checkRunUsage(options, env, identity, problems.map((p) => `${p.flag} '${p.value}': ${p.problem}`));
  let dnsUpstream;
  if (options.dnsUpstream !== undefined) {
    try {
      dnsUpstream = parseUpstream(options.dnsUpstream);
    } catch (error) {
      usage.push(`--dns-upstream: ${(error as Error).message}`);
    }
  }
  let serviceEndpoints;
  try {
    serviceEndpoints = loadServiceEndpoints(options.serviceEndpoints ?? 'default');
  } catch (error) {
    usage.push(`--service-endpoints: ${(error as Error).message}`);
  }
  if (usage.length) throw new RingfenceError(usage.length === 1 ? usage[0] : `${usage.length} problems, nothing was started`, 'RF_USAGE', usage.length === 1 ? undefined : usage.join('\n'));

  // Outputs are checked before the policy is read and the job starts (a bad path starts nothing),
  // and opened, truncating, only once nothing else can stop the job.
  if (options.events !== undefined) OutputFile.check(options.events, '--events');
  if (options.summary !== undefined) OutputFile.check(options.summary, '--summary');

  let policy: Policy = AUDIT_POLICY;
  /** What a ringfenced is handed: the policy as a policy file has it (undefined: the daemon's own). */
  let policySource: { text: string; source: string } | undefined;
  let policyName: string | null = null;
  let policyVersion: number | undefined;
  const server = env.RINGFENCE_SERVER;
  if (options.policy !== undefined) {
    const loaded = readPolicyFile(options.policy, '--policy');
    policy = loaded.policy;
    policySource = { text: fs.readFileSync(options.policy, 'utf8'), source: `--policy ${options.policy}` };
    for (const note of loaded.notes) process.stderr.write(`ringfence: note: ${note}\n`);
    policyName = policy.name ?? path.basename(options.policy).replace(/\.ya?ml$/, '');
    process.stderr.write(`ringfence: policy ${policyName} from ${options.policy}${server ? ' (--policy wins over RINGFENCE_SERVER)' : ''}\n`);
  } else if (server) {
    const fetched = await fetchPolicy(server, env.RINGFENCE_TOKEN!, {
      org: identity.org!,
      repository: identity.repo,
      workflow: identity.workflow,
      job: identity.jobName,
      cluster: identity.cluster,
      namedPolicy: options.policyName,
    });
    if (fetched.policy) policy = fetched.policy;
    policySource = { text: policyText(policy), source: `policy store: ${fetched.name ?? 'none attached (audit)'}` };
    policyName = fetched.name;
    policyVersion = fetched.version;
    process.stderr.write(`ringfence: policy ${policyDisplay({ name: fetched.name, version: fetched.version })} from the policy store (${fetched.scope} scope)\n`);
  }
  // A running ringfenced takes the job (one sensor for every job of the machine); else it runs in this process.
  const socket = socketPath(env);
  const daemon = await connectDaemon(socket);
  if (!daemon) {
    const outer = enclosingJob();
    if (outer) {
      throw new RingfenceError(`this process runs inside ringfence job ${outer}, and no ringfenced answers at ${socket}: a job cannot start a fresh one (it would take CMD out of its job)`, 'RF_USAGE');
    }
    // with a ringfenced, its policy applies (policy-file, store): it says which once the job starts
    if (options.policy === undefined && !server) process.stderr.write('ringfence: audit mode (no --policy, and RINGFENCE_SERVER is not set): everything is recorded, nothing is refused\n');
  }
  const events = options.events !== undefined ? OutputFile.open(options.events, '--events') : undefined;
  const summary = options.summary !== undefined ? OutputFile.open(options.summary, '--summary') : undefined;
  if (daemon) {
    const stderr = OutputFile.fd(2, 'stderr');
    const handed = policySource
      ? { text: policySource.text, source: policySource.source, name: policyName, ...(policyVersion !== undefined ? { version: policyVersion } : {}) }
      : undefined;
    const result = await runViaDaemon(daemon, command, args, {
      policy: handed,
      identity,
      dnsUpstream: options.dnsUpstream,
      serviceEndpoints,
      events,
      summary,
      log: (line) => void stderr.write(line + '\n'),
    });
    return result.exitStatus;
  }
  const result = await runJob(command, args, { policy, policyName, policyVersion, identity, events, summary, dnsUpstream, serviceEndpoints });
  return result.exitStatus;
}
