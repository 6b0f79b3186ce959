/**
 * Jobs authenticate with their GitHub Actions OIDC id-token to fetch the
 * policy named in their workflow step. The token is verified against the
 * issuer's JWKS (signature), and for issuer, audience and expiry; its
 * `repository_owner` becomes the organization it may read.
 */
import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload } from 'jose';
import { StoreError } from './errors';
import { orgName, repositoryName } from './model';
import type { Caller } from './service';

export const GITHUB_ISSUER = 'https://token.actions.githubusercontent.com';
export const DEFAULT_AUDIENCE = 'ringfence';

export interface JobIdentityVerifier {
  /** The job's identity, or a StoreError (UNAUTHENTICATED). */
  verify(idToken: string): Promise<Caller>;
}

interface GitHubClaims extends JWTPayload {
  repository_owner?: string;
  /** owner/name */
  repository?: string;
  /** owner/name/.github/workflows/ci.yml@refs/heads/main */
  job_workflow_ref?: string;
  workflow_ref?: string;
}

export interface OidcOptions {
  issuer: string;
  audience: string;
  /** Default: the issuer's /.well-known/jwks (where GitHub serves it). */
  jwksUrl?: string;
}

export class OidcVerifier implements JobIdentityVerifier {
  private readonly jwks: ReturnType<typeof createRemoteJWKSet>;

  constructor(private readonly options: OidcOptions) {
    this.jwks = createRemoteJWKSet(new URL(options.jwksUrl ?? `${options.issuer.replace(/\/$/, '')}/.well-known/jwks`));
  }

  async verify(idToken: string): Promise<Caller> {
    let claims: GitHubClaims;
    try {
      // exp is required: jose checks it only when present, and a token that never expires is a standing credential
      ({ payload: claims } = await jwtVerify<GitHubClaims>(idToken, this.jwks, { issuer: this.options.issuer, audience: this.options.audience, requiredClaims: ['exp'] }));
    } catch (error) {
      throw new StoreError('UNAUTHENTICATED', `id-token refused: ${describe(error)}`);
    }
    const fullName = claims.repository ?? '';
    if (!claims.repository_owner || !fullName.includes('/')) throw new StoreError('UNAUTHENTICATED', 'id-token refused: no repository_owner claim or no owner/name repository claim');
    // workflow_ref names the run's workflow file in the job's own repository (job_workflow_ref may be
    // a reusable workflow of another repository: not what workflow attachments name)
    const ref = /^([^/]+\/[^/]+)\/(\.github\/workflows\/[^@]+)@/.exec(claims.workflow_ref ?? claims.job_workflow_ref ?? '');
    const workflow = ref && ref[1].toLowerCase() === fullName.toLowerCase() ? ref[2] : undefined;
    let org: string;
    let repository: string;
    try {
      org = orgName(claims.repository_owner);
      // an OWNER/NAME of another owner than repository_owner is refused here too
      repository = repositoryName(org, fullName);
    } catch (error) {
      throw new StoreError('UNAUTHENTICATED', `id-token refused: ${(error as Error).message}`);
    }
    return {
      org,
      role: 'job',
      subject: `oidc:${claims.repository}${workflow ? `:${workflow}` : ''}`,
      job: { repository, workflow },
    };
  }
}

function describe(error: unknown): string {
  if (error instanceof errors.JWTExpired) return 'expired';
  if (error instanceof errors.JWTClaimValidationFailed) return `claim ${error.claim} is not valid (${error.reason})`;
  if (error instanceof errors.JWSSignatureVerificationFailed) return 'signature does not verify';
  if (error instanceof errors.JWKSNoMatchingKey) return 'signed with a key the issuer does not publish';
  return (error as Error).message;
}
