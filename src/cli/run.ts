/**
 * `ringfence run [--policy FILE] [--events FILE] [--summary FILE] -- CMD ARGS…`:
 * runs CMD as a job under the sensor and the policy (none: audit mode).
 */
import path from 'node:path';
import { loadServiceEndpoints } from '../agent/service-endpoints';
import { parseUpstream, runJob } from '../agent/job';
import { AUDIT_POLICY, loadPolicyFile, type Policy } from '../policy/policy';
import { RingfenceError } from '../util/errors';

export interface RunOptions {
  policy?: string;
  events?: string;
  summary?: string;
  dnsUpstream?: string;
  serviceEndpoints?: string;
}

export async function run(command: string, args: string[], options: RunOptions): Promise<number> {
  let policy: Policy = AUDIT_POLICY;
  let policyName = 'none (audit)';
  if (options.policy) {
    policy = loadPolicyFile(options.policy);
    policyName = policy.name ?? path.basename(options.policy).replace(/\.ya?ml$/, '');
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
