/**
 * The agent's side of the policy store: which policy a job gets, fetched
 * with the agent's credentials (or the job's OIDC id-token for a policy named
 * in the workflow step), turned into the Policy the agent enforces.
 */
import type { Policy__Output } from '../proto/ringfence/policy/v1/Policy';
import { parsePolicy, type Policy } from '../policy/policy';
import { StoreClient, unreachableError, unreachableReason } from '../store/client';
import type { JobContext } from '../store/model';
import { RingfenceError } from '../util/errors';
import YAML from 'yaml';

export interface FetchedPolicy {
  policy?: Policy;
  /** The policy's name; null when none is attached (audit mode). */
  name: string | null;
  version?: number;
  scope: string;
}

/** A stored policy as the policy file it came from (docs/policy.md). */
export function policyYaml(message: Policy__Output): string {
  return YAML.stringify({
    name: message.name,
    'egress-policy': message.egressPolicy,
    'allowed-endpoints': message.allowedEndpoints,
    'lockdown-mode': { enabled: message.lockdownMode?.enabled ?? false, detections: message.lockdownMode?.detections ?? [] },
  });
}

/** Re-reads a stored policy with the agent's own parser: the store and the agent cannot disagree. */
export function policyFromMessage(message: Policy__Output): Policy {
  return parsePolicy(policyYaml(message), `policy store: ${message.name}`);
}

export async function fetchPolicy(address: string, token: string, job: JobContext): Promise<FetchedPolicy> {
  const client = new StoreClient({ address, token });
  try {
    const result = await client.call<unknown, { policy: Policy__Output | null; scope: string }>('ResolvePolicy', {
      job: {
        org: job.org,
        repository: job.repository ?? '',
        workflow: job.workflow ?? '',
        // Stryker disable next-line LogicalOperator,StringLiteral: no attachment selects by the job's name, so what is sent for it changes no answer
        job: job.job ?? '',
        cluster: job.cluster ?? '',
        namedPolicy: job.namedPolicy ?? '',
      },
    });
    if (!result.policy) return { name: null, scope: result.scope };
    return { policy: policyFromMessage(result.policy), name: result.policy.name, version: Number(result.policy.version), scope: result.scope };
  } catch (error) {
    const e = error as { code?: number; details?: string; message: string };
    const unreachable = unreachableReason(e);
    if (unreachable) throw unreachableError(address, unreachable);
    throw new RingfenceError(`cannot fetch the job's policy from ${address}: ${e.details ?? e.message}`, 'RF_STORE');
  } finally {
    client.close();
  }
}
