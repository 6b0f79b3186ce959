/**
 * `ringfence run [--policy FILE] [--events FILE] [--summary FILE] -- CMD ARGS…`:
 * runs CMD as a job under the sensor and the policy (none: audit mode).
 */
import path from 'node:path';
import { loadServiceEndpoints } from '../agent/service-endpoints';
import { parseUpstream, runJob } from '../agent/job';
import { fetchPolicy } from '../agent/store-policy';
import { AUDIT_POLICY, loadPolicyFile, type Policy } from '../policy/policy';
import { DEFAULT_LISTEN } from './store';
import { RingfenceError } from '../util/errors';

export interface RunOptions {
  policy?: string;
  /** Fetch the policy from the store (RINGFENCE_SERVER, RINGFENCE_TOKEN) for this job. */
  org?: string;
  repo?: string;
  workflow?: string;
  job?: string;
  cluster?: string;
  policyName?: string;
  events?: string;
  summary?: string;
  dnsUpstream?: string;
  serviceEndpoints?: string;
}

export async function run(command: string, args: string[], options: RunOptions): Promise<number> {
  let policy: Policy = AUDIT_POLICY;
  let policyName = 'none (audit)';
  if (options.policy && (options.org || options.policyName)) {
    throw new RingfenceError('--policy FILE and a policy from the store (--org…, --policy-name) exclude each other', 'RF_USAGE');
  }
  if (options.policy) {
    policy = loadPolicyFile(options.policy);
    policyName = policy.name ?? path.basename(options.policy).replace(/\.ya?ml$/, '');
  } else if (options.org || options.policyName) {
    if (!options.org) throw new RingfenceError('--policy-name needs --org (and --repo, --workflow) to say whose policy it is', 'RF_USAGE');
    const token = process.env.RINGFENCE_TOKEN;
    if (!token) throw new RingfenceError('RINGFENCE_TOKEN is not set: an agent token, or the job\'s OIDC id-token for --policy-name', 'RF_USAGE');
    const fetched = await fetchPolicy(process.env.RINGFENCE_SERVER || DEFAULT_LISTEN, token, {
      org: options.org,
      repository: options.repo,
      workflow: options.workflow,
      job: options.job,
      cluster: options.cluster,
      namedPolicy: options.policyName,
    });
    if (fetched.policy) policy = fetched.policy;
    policyName = fetched.name;
    process.stderr.write(`ringfence: policy ${fetched.name} from the policy store (${fetched.scope} scope)\n`);
  }
  let dnsUpstream;
  try {
    dnsUpstream = options.dnsUpstream ? parseUpstream(options.dnsUpstream) : undefined;
  } catch (error) {
    throw new RingfenceError((error as Error).message, 'RF_USAGE');
  }
  const result = await runJob(command, args, {
    policy,
    policyName,
    eventsPath: options.events,
    summaryPath: options.summary,
    dnsUpstream,
    serviceEndpoints: loadServiceEndpoints(options.serviceEndpoints ?? 'default'),
  });
  return result.exitStatus;
}
