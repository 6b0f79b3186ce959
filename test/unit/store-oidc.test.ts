/**
 * Who a job is, from its GitHub Actions OIDC id-token (src/store/oidc.ts):
 * tokens signed here with jose, the issuer's keys served from a loopback
 * HTTP server each case starts. Refused: another issuer or audience (before
 * any key is fetched), expired or not yet valid, signed with another key,
 * not signed at all, without the claims that say which job it is. Accepted:
 * the claims become the organization, repository and workflow the job may
 * read. Every case starts its own issuer.
 */
import http from 'node:http';
import net from 'node:net';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { base64url, exportJWK, generateKeyPair, SignJWT, type GenerateKeyPairResult, type KeyLike } from 'jose';
import { StoreError } from '../../src/store/errors';
import { DEFAULT_AUDIENCE, GITHUB_ISSUER, OidcVerifier, UNVERIFIABLE, type OidcOptions } from '../../src/store/oidc';

const CLAIMS = { repository_owner: 'acme', repository: 'acme/api', workflow_ref: 'acme/api/.github/workflows/ci.yml@refs/heads/main' };
const IDENTITY = { org: 'acme', role: 'job', subject: 'oidc:acme/api:.github/workflows/ci.yml', job: { repository: 'api', workflow: '.github/workflows/ci.yml' } };

interface Issuer {
  issuer: string;
  /** A token signed with the published key (or `key`), for audience ringfence and 5 minutes unless told otherwise. */
  sign(claims: Record<string, unknown>, options?: { key?: KeyLike; kid?: string; audience?: string | string[] | null; issuer?: string | null; exp?: number | null }): Promise<string>;
  /** A key pair the issuer never publishes. */
  foreignKey: KeyLike;
  /** Publishes a second key (kid 'rotated' unless told), as an issuer does when it rotates. */
  rotate(kid?: string): Promise<KeyLike>;
  /** How many times the keys were fetched. */
  fetches(): number;
  /** The path the keys are served at (default /.well-known/jwks), and what else that server answers. */
  serve(path: string): void;
  stall(): void;
  close(): Promise<void>;
}

// key pairs are made once (they are not changed by any case; making them is the slow part), ES256 for speed
let KEYS: { own: GenerateKeyPairResult; foreign: GenerateKeyPairResult; next: GenerateKeyPairResult };
beforeAll(async () => {
  const [own, foreign, next] = await Promise.all([generateKeyPair('ES256'), generateKeyPair('ES256'), generateKeyPair('ES256')]);
  KEYS = { own, foreign, next };
});

const started: Issuer[] = [];
afterEach(async () => {
  for (const issuer of started.splice(0)) await issuer.close();
});

async function startIssuer(): Promise<Issuer> {
  const { own, foreign, next } = KEYS;
  const keys = [{ ...(await exportJWK(own.publicKey)), kid: 'own', alg: 'ES256', use: 'sig' }];
  let path = '/.well-known/jwks';
  let stalled = false;
  let fetches = 0;
  const server = http.createServer((request, response) => {
    if (stalled) return; // never answers
    if (request.url !== path) {
      response.statusCode = 404;
      response.end();
      return;
    }
    fetches++;
    response.setHeader('content-type', 'application/json');
    response.end(JSON.stringify({ keys }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const issuer = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  const issuerObject: Issuer = {
    issuer,
    foreignKey: foreign.privateKey,
    async sign(claims, options = {}) {
      const jwt = new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: options.kid ?? 'own' }).setIssuedAt();
      if (options.issuer !== null) jwt.setIssuer(options.issuer ?? issuer);
      if (options.audience !== null) jwt.setAudience(options.audience ?? 'ringfence');
      if (options.exp !== null) jwt.setExpirationTime(options.exp ?? '5m');
      return jwt.sign(options.key ?? own.privateKey);
    },
    async rotate(kid = 'rotated') {
      keys.push({ ...(await exportJWK(next.publicKey)), kid, alg: 'ES256', use: 'sig' });
      return next.privateKey;
    },
    fetches: () => fetches,
    serve: (at) => void (path = at),
    stall: () => void (stalled = true),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  started.push(issuerObject);
  return issuerObject;
}

const verifierOf = (issuer: Issuer, options: Partial<OidcOptions> = {}) => new OidcVerifier({ issuer: issuer.issuer, audience: 'ringfence', ...options });

/** The verifier's refusal, as the client would get it. */
async function refusal(verifier: OidcVerifier, token: string): Promise<string> {
  try {
    await verifier.verify(token);
  } catch (error) {
    if (!(error instanceof StoreError)) throw error;
    expect(error.code).toBe('UNAUTHENTICATED');
    return error.message;
  }
  throw new Error('expected the token to be refused');
}

const now = () => Math.floor(Date.now() / 1000);

describe('what the token says first: issuer and audience, refused before any key is fetched', () => {
  it.each<[string, Parameters<Issuer['sign']>[1] | 'not-a-jwt', (issuer: string) => string]>([
    ['another issuer', { issuer: 'http://127.0.0.1:1' }, (issuer) => `id-token refused: its issuer is not the one this server trusts (${issuer})`],
    ['no issuer', { issuer: null }, (issuer) => `id-token refused: its issuer is not the one this server trusts (${issuer})`],
    ['the issuer with a trailing slash', { issuer: 'ISSUER/' }, (issuer) => `id-token refused: its issuer is not the one this server trusts (${issuer})`],
    ['another audience', { audience: 'someone-else' }, () => 'id-token refused: it is not for this server (audience ringfence)'],
    ['audiences without ours', { audience: ['a', 'b'] }, () => 'id-token refused: it is not for this server (audience ringfence)'],
    ['no audience', { audience: null }, () => 'id-token refused: it is not for this server (audience ringfence)'],
    ['a near miss of our audience', { audience: 'ringfence2' }, () => 'id-token refused: it is not for this server (audience ringfence)'],
    ['not a JWT', 'not-a-jwt', () => 'id-token refused: it is not a JWT'],
  ])('%s', async (_, options, expected) => {
    const issuer = await startIssuer();
    const token = options === 'not-a-jwt' ? 'a.b.c' : await issuer.sign(CLAIMS, { ...options, issuer: options?.issuer === 'ISSUER/' ? `${issuer.issuer}/` : options?.issuer });
    expect(await refusal(verifierOf(issuer), token)).toBe(expected(issuer.issuer));
    expect(issuer.fetches()).toBe(0);
  });

  it('takes a token whose audiences include ours', async () => {
    const issuer = await startIssuer();
    expect(await verifierOf(issuer).verify(await issuer.sign(CLAIMS, { audience: ['other', 'ringfence'] }))).toEqual(IDENTITY);
  });

  it("checks the audience the server is configured with, not the default's", async () => {
    const issuer = await startIssuer();
    const verifier = verifierOf(issuer, { audience: 'store.acme' });
    expect(await refusal(verifier, await issuer.sign(CLAIMS))).toBe('id-token refused: it is not for this server (audience store.acme)');
    expect((await verifier.verify(await issuer.sign(CLAIMS, { audience: 'store.acme' }))).org).toBe('acme');
  });

  it("trusts GitHub's issuer and the audience ringfence by default", () => {
    expect([GITHUB_ISSUER, DEFAULT_AUDIENCE]).toEqual(['https://token.actions.githubusercontent.com', 'ringfence']);
  });
});

describe('the signature and the validity period', () => {
  it('refuses a token signed with a key the issuer does not publish, under its kid or another', async () => {
    const issuer = await startIssuer();
    const verifier = verifierOf(issuer);
    expect(await refusal(verifier, await issuer.sign(CLAIMS, { key: issuer.foreignKey }))).toBe('id-token refused: signature does not verify');
    expect(await refusal(verifier, await issuer.sign(CLAIMS, { key: issuer.foreignKey, kid: 'mine' }))).toBe('id-token refused: signed with a key the issuer does not publish');
  });

  it('refuses a token when the issuer publishes several keys under its kid: which one signs is unknown', async () => {
    const issuer = await startIssuer();
    await issuer.rotate('own');
    expect(await refusal(verifierOf(issuer), await issuer.sign(CLAIMS, { key: issuer.foreignKey }))).toBe('id-token refused: signed with a key the issuer does not publish');
  });

  it('refuses a token whose header is not one', async () => {
    const issuer = await startIssuer();
    const [, payload, signature] = (await issuer.sign(CLAIMS)).split('.');
    expect(await refusal(verifierOf(issuer), `${base64url.encode('{"alg":')}.${payload}.${signature}`)).toBe('id-token refused: it is not a valid signed JWT');
  });

  it('refuses a token whose claims were changed after signing', async () => {
    const issuer = await startIssuer();
    const [header, , signature] = (await issuer.sign(CLAIMS)).split('.');
    const forged = base64url.encode(JSON.stringify({ ...CLAIMS, repository_owner: 'globex', repository: 'globex/api', iss: issuer.issuer, aud: 'ringfence', exp: now() + 300 }));
    expect(await refusal(verifierOf(issuer), `${header}.${forged}.${signature}`)).toBe('id-token refused: signature does not verify');
  });

  it('refuses an unsigned token (alg none) and one signed with a shared secret', async () => {
    const issuer = await startIssuer();
    const payload = { ...CLAIMS, iss: issuer.issuer, aud: 'ringfence', exp: now() + 300 };
    const unsigned = `${base64url.encode(JSON.stringify({ alg: 'none' }))}.${base64url.encode(JSON.stringify(payload))}.`;
    const hmac = await new SignJWT(payload).setProtectedHeader({ alg: 'HS256', kid: 'own' }).sign(new TextEncoder().encode('a shared secret of 32 bytes, ok!'));
    expect(await refusal(verifierOf(issuer), unsigned)).toBe('id-token refused: it is not a valid signed JWT');
    expect(await refusal(verifierOf(issuer), hmac)).toBe('id-token refused: it is not a valid signed JWT');
  });

  it.each<[string, Record<string, unknown>, number | null | undefined, string]>([
    ['expired', {}, now() - 60, 'id-token refused: expired'],
    ['without exp (a standing credential)', {}, null, 'id-token refused: claim exp is not valid (missing)'],
    ['not valid yet', { nbf: now() + 600 }, undefined, 'id-token refused: claim nbf is not valid (check_failed)'],
  ])('refuses a token %s', async (_, extra, exp, expected) => {
    const issuer = await startIssuer();
    expect(await refusal(verifierOf(issuer), await issuer.sign({ ...CLAIMS, ...extra }, { exp }))).toBe(expected);
  });
});

describe('who the job is: the claims mapped to its identity', () => {
  it.each<[string, Record<string, unknown>, object]>([
    ['repository and workflow of the run', CLAIMS, IDENTITY],
    ['names lowered, as the store keeps them', { repository_owner: 'Acme', repository: 'Acme/API', workflow_ref: 'Acme/API/.github/workflows/CI.yml@refs/tags/v1' }, { org: 'acme', role: 'job', subject: 'oidc:Acme/API:.github/workflows/CI.yml', job: { repository: 'api', workflow: '.github/workflows/CI.yml' } }],
    ['job_workflow_ref when there is no workflow_ref', { ...CLAIMS, workflow_ref: undefined, job_workflow_ref: 'acme/api/.github/workflows/build.yml@refs/heads/main' }, { ...IDENTITY, subject: 'oidc:acme/api:.github/workflows/build.yml', job: { repository: 'api', workflow: '.github/workflows/build.yml' } }],
    ['workflow_ref rather than a reusable workflow of another repository', { ...CLAIMS, job_workflow_ref: 'acme/shared/.github/workflows/reusable.yml@refs/heads/main' }, IDENTITY],
    ["no workflow when the run's workflow is another repository's", { ...CLAIMS, workflow_ref: 'acme/shared/.github/workflows/ci.yml@refs/heads/main' }, { org: 'acme', role: 'job', subject: 'oidc:acme/api', job: { repository: 'api', workflow: undefined } }],
    ['no workflow when the ref is not a workflow file of a ref', { ...CLAIMS, workflow_ref: 'acme/api/.github/workflows/ci.yml' }, { org: 'acme', role: 'job', subject: 'oidc:acme/api', job: { repository: 'api', workflow: undefined } }],
    ['no workflow when the ref points outside .github/workflows', { ...CLAIMS, workflow_ref: 'acme/api/scripts/ci.yml@refs/heads/main' }, { org: 'acme', role: 'job', subject: 'oidc:acme/api', job: { repository: 'api', workflow: undefined } }],
    ['no workflow when the ref has a prefix', { ...CLAIMS, workflow_ref: 'x/acme/api/.github/workflows/ci.yml@refs/heads/main' }, { org: 'acme', role: 'job', subject: 'oidc:acme/api', job: { repository: 'api', workflow: undefined } }],
    ['no workflow without any ref', { ...CLAIMS, workflow_ref: undefined }, { org: 'acme', role: 'job', subject: 'oidc:acme/api', job: { repository: 'api', workflow: undefined } }],
  ])('%s', async (_, claims, identity) => {
    const issuer = await startIssuer();
    expect(await verifierOf(issuer).verify(await issuer.sign(claims))).toEqual(identity);
  });

  it.each<[string, Record<string, unknown>, string]>([
    ['no repository_owner', { ...CLAIMS, repository_owner: undefined }, 'id-token refused: no repository_owner claim or no owner/name repository claim'],
    ['an empty repository_owner', { ...CLAIMS, repository_owner: '' }, 'id-token refused: no repository_owner claim or no owner/name repository claim'],
    ['no repository', { ...CLAIMS, repository: undefined }, 'id-token refused: no repository_owner claim or no owner/name repository claim'],
    ['a repository without its owner', { ...CLAIMS, repository: 'api' }, 'id-token refused: no repository_owner claim or no owner/name repository claim'],
    ['a repository of another owner', { ...CLAIMS, repository: 'globex/api' }, 'id-token refused: repository globex/api does not belong to organization acme'],
    ['an owner that is no organization name', { ...CLAIMS, repository_owner: 'ac me', repository: 'ac me/api' }, "id-token refused: organization 'ac me' must be 1-100 letters, digits, '.', '_' or '-'"],
    ['a repository that is no repository name', { ...CLAIMS, repository: 'acme/a/b' }, "id-token refused: repository 'acme/a/b' is neither NAME nor OWNER/NAME"],
  ])('refuses a token with %s', async (_, claims, expected) => {
    const issuer = await startIssuer();
    expect(await refusal(verifierOf(issuer), await issuer.sign(claims))).toBe(expected);
  });
});

describe("the issuer's keys", () => {
  it('are fetched from the issuer, once, and kept for ten minutes by default', async () => {
    const issuer = await startIssuer();
    const verifier = verifierOf(issuer);
    for (let i = 0; i < 3; i++) expect((await verifier.verify(await issuer.sign(CLAIMS))).org).toBe('acme');
    expect(issuer.fetches()).toBe(1);
  });

  it("are at /.well-known/jwks under the issuer, a trailing slash of the issuer's not doubled", async () => {
    const issuer = await startIssuer();
    const slashed = new OidcVerifier({ issuer: `${issuer.issuer}/`, audience: 'ringfence' });
    expect((await slashed.verify(await issuer.sign(CLAIMS, { issuer: `${issuer.issuer}/` }))).org).toBe('acme');
    expect(issuer.fetches()).toBe(1);
  });

  it('are fetched from jwksUrl when given', async () => {
    const issuer = await startIssuer();
    issuer.serve('/keys');
    expect(await refusal(verifierOf(issuer), await issuer.sign(CLAIMS))).toBe(UNVERIFIABLE);
    expect((await verifierOf(issuer, { jwksUrl: `${issuer.issuer}/keys` }).verify(await issuer.sign(CLAIMS))).org).toBe('acme');
    expect(issuer.fetches()).toBe(1);
  });

  it('are fetched again once older than jwksCacheMs', async () => {
    const issuer = await startIssuer();
    const verifier = verifierOf(issuer, { jwksCacheMs: 500, jwksCooldownMs: 0 });
    await verifier.verify(await issuer.sign(CLAIMS));
    await verifier.verify(await issuer.sign(CLAIMS));
    expect(issuer.fetches()).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 600));
    await verifier.verify(await issuer.sign(CLAIMS));
    expect(issuer.fetches()).toBe(2);
  });

  it('are fetched again for a key not in the kept set, no sooner than jwksCooldownMs after the last fetch', async () => {
    const issuer = await startIssuer();
    const verifier = verifierOf(issuer, { jwksCooldownMs: 500 });
    await verifier.verify(await issuer.sign(CLAIMS));
    const rotated = await issuer.rotate();
    const token = await issuer.sign(CLAIMS, { key: rotated, kid: 'rotated' });
    expect(await refusal(verifier, token)).toBe('id-token refused: signed with a key the issuer does not publish');
    expect(issuer.fetches()).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(await verifier.verify(token)).toEqual(IDENTITY);
    expect(issuer.fetches()).toBe(2);
  });

  it('wait 30 s by default before a fetch for an unknown key', async () => {
    const issuer = await startIssuer();
    const verifier = verifierOf(issuer);
    await verifier.verify(await issuer.sign(CLAIMS));
    const rotated = await issuer.rotate();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await refusal(verifier, await issuer.sign(CLAIMS, { key: rotated, kid: 'rotated' }))).toBe('id-token refused: signed with a key the issuer does not publish');
    expect(issuer.fetches()).toBe(1);
  });
});

describe("failures of the server's own", () => {
  async function closedPort(): Promise<number> {
    return new Promise((resolve) => {
      const probe = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = (probe.address() as net.AddressInfo);
        probe.close(() => resolve(port));
      });
    });
  }

  it('an unreachable issuer: the client gets a fixed line, the log the cause', async () => {
    const issuer = await startIssuer();
    const log: string[] = [];
    const port = await closedPort();
    const verifier = verifierOf(issuer, { jwksUrl: `http://127.0.0.1:${port}/jwks`, log: (line) => log.push(line) });
    expect(await refusal(verifier, await issuer.sign(CLAIMS))).toBe(UNVERIFIABLE);
    expect(UNVERIFIABLE).toBe('id-token refused: it could not be verified (the server log says why)');
    expect(log).toEqual([`policy store: an id-token could not be verified: connect ECONNREFUSED 127.0.0.1:${port}`]);
  });

  it('a JWKS that is not one, without a log: still the fixed line', async () => {
    const issuer = await startIssuer();
    issuer.serve('/elsewhere'); // the JWKS path answers 404
    expect(await refusal(verifierOf(issuer), await issuer.sign(CLAIMS))).toBe(UNVERIFIABLE);
  });

  it('an issuer that does not answer: given up after jwksTimeoutMs', async () => {
    const issuer = await startIssuer();
    issuer.stall();
    const log: string[] = [];
    const started = Date.now();
    expect(await refusal(verifierOf(issuer, { jwksTimeoutMs: 200, log: (line) => log.push(line) }), await issuer.sign(CLAIMS))).toBe(UNVERIFIABLE);
    expect(Date.now() - started).toBeLessThan(2_500); // the default is 5 s
    expect(log).toEqual(['policy store: an id-token could not be verified: request timed out']);
  });
});
