/**
 * Jobs authenticate with their GitHub Actions OIDC id-token to fetch the
 * policy named in their workflow step. The token is verified against the
 * issuer's JWKS (signature), and for issuer, audience and expiry; its
 * `repository_owner` becomes the organization it may read.
 */
import { createRemoteJWKSet, decodeJwt, errors, jwtVerify, type JWTPayload } from 'jose';
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
  /** Where the reason for a refusal the client is not told goes (the server's log). */
  log?: (line: string) => void;
  /** How long fetched keys are used before they are fetched again (default 10 min). */
  jwksCacheMs?: number;
  /**
   * The least time between two fetches (default 30 s): a token signed with a
   * key not in the cached set (the issuer rotated) fetches again, but a
   * stream of such tokens cannot make the server hammer the issuer.
   */
  jwksCooldownMs?: number;
  /** A JWKS fetch that takes longer fails (default 5 s). */
  jwksTimeoutMs?: number;
}

/** What a client is told when its token could not be checked for a reason of the server's (network, issuer down). */
export const UNVERIFIABLE = 'id-token refused: it could not be verified (the server log says why)';

export class OidcVerifier implements JobIdentityVerifier {
  private jwks?: ReturnType<typeof createRemoteJWKSet>;

  constructor(private readonly options: OidcOptions) {}

  /** The issuer's keys, fetched on first need (a server that never sees an id-token never asks). */
  private keys(): ReturnType<typeof createRemoteJWKSet> {
    this.jwks ??= createRemoteJWKSet(new URL(this.options.jwksUrl ?? `${this.options.issuer.replace(/\/$/, '')}/.well-known/jwks`), {
      cacheMaxAge: this.options.jwksCacheMs ?? 10 * 60_000,
      cooldownDuration: this.options.jwksCooldownMs ?? 30_000,
      timeoutDuration: this.options.jwksTimeoutMs ?? 5_000,
    });
    return this.jwks;
  }

  async verify(idToken: string): Promise<Caller> {
    // Route on the claims before anything costs a fetch: a token of another issuer or for another
    // audience is refused on what it says; only then is its signature checked (and the keys fetched).
    let unverified: JWTPayload;
    try {
      unverified = decodeJwt(idToken);
    } catch {
      throw new StoreError('UNAUTHENTICATED', 'id-token refused: it is not a JWT');
    }
    if (unverified.iss !== this.options.issuer) throw new StoreError('UNAUTHENTICATED', `id-token refused: its issuer is not the one this server trusts (${this.options.issuer})`);
    // aud is one audience or a list of them (RFC 7519 §4.1.3)
    if (![unverified.aud].flat().includes(this.options.audience)) throw new StoreError('UNAUTHENTICATED', `id-token refused: it is not for this server (audience ${this.options.audience})`);

    let claims: GitHubClaims;
    try {
      // exp is required: jose checks it only when present, and a token that never expires is a standing credential
      ({ payload: claims } = await jwtVerify<GitHubClaims>(idToken, this.keys(), { issuer: this.options.issuer, audience: this.options.audience, requiredClaims: ['exp'] }));
    } catch (error) {
      const reason = refusal(error);
      if (reason) throw new StoreError('UNAUTHENTICATED', `id-token refused: ${reason}`);
      // the issuer unreachable, a bad JWKS, a bug: the detail is for the operator, never for the client
      // jose and the JWKS fetch reject only with Error objects
      this.options.log?.(`policy store: an id-token could not be verified: ${(error as Error).message}`);
      throw new StoreError('UNAUTHENTICATED', UNVERIFIABLE);
    }
    const fullName = claims.repository;
    if (!claims.repository_owner || !fullName?.includes('/')) throw new StoreError('UNAUTHENTICATED', 'id-token refused: no repository_owner claim or no owner/name repository claim');
    // workflow_ref names the run's workflow file in the job's own repository (job_workflow_ref may be
    // a reusable workflow of another repository: not what workflow attachments name)
    const refText = claims.workflow_ref ?? claims.job_workflow_ref;
    const ref = refText ? /^([^/]+\/[^/]+)\/(\.github\/workflows\/[^@]+)@/.exec(refText) : null;
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

/** Why a token itself is refused, in words fit for its holder; undefined for the server's own failures. */
function refusal(error: unknown): string | undefined {
  if (error instanceof errors.JWTExpired) return 'expired';
  if (error instanceof errors.JWTClaimValidationFailed) return `claim ${error.claim} is not valid (${error.reason})`;
  if (error instanceof errors.JWSSignatureVerificationFailed) return 'signature does not verify';
  if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys) return 'signed with a key the issuer does not publish';
  if (error instanceof errors.JWSInvalid || error instanceof errors.JWTInvalid || error instanceof errors.JOSEAlgNotAllowed || error instanceof errors.JOSENotSupported) return 'it is not a valid signed JWT';
  return undefined;
}
