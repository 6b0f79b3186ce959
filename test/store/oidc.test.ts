/**
 * The OIDC verifier on its own (no database: it reads none): routing on the
 * unverified claims before any fetch, the JWKS fetched on first need, cached,
 * refetched for a rotated key no more often than the cooldown, and failures
 * of the server's own kept from the client.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { StoreError } from '../../src/store/errors';
import { OidcVerifier, UNVERIFIABLE } from '../../src/store/oidc';
import { startTestIssuer, type TestIssuer } from './oidc-issuer';

const CLAIMS = { repository_owner: 'acme', repository: 'acme/api', workflow_ref: 'acme/api/.github/workflows/ci.yml@refs/heads/main' };

/** The verifier's refusal, as the client would get it. */
async function refusal(verifier: OidcVerifier, token: string): Promise<string> {
  try {
    await verifier.verify(token);
  } catch (error) {
    expect(error).toBeInstanceOf(StoreError);
    expect((error as StoreError).code).toBe('UNAUTHENTICATED');
    return (error as Error).message;
  }
  throw new Error('expected the token to be refused');
}

describe('OidcVerifier', () => {
  const issuers: TestIssuer[] = [];
  const start = async () => {
    const issuer = await startTestIssuer();
    issuers.push(issuer);
    return issuer;
  };
  afterEach(async () => {
    for (const issuer of issuers.splice(0)) await issuer.close();
  });

  it('refuses a token for another audience, of another issuer, or no JWT at all, before any fetch', async () => {
    const issuer = await start();
    const verifier = new OidcVerifier({ issuer: issuer.issuer, audience: 'ringfence' });
    expect(await refusal(verifier, await issuer.sign(CLAIMS, { audience: 'someone-else' }))).toBe('id-token refused: it is not for this server (audience ringfence)');
    expect(await refusal(verifier, await issuer.sign(CLAIMS, { issuer: 'http://127.0.0.1:1' }))).toBe(`id-token refused: its issuer is not the one this server trusts (${issuer.issuer})`);
    expect(await refusal(verifier, 'a.b.c')).toBe('id-token refused: it is not a JWT');
    expect(issuer.jwksRequests()).toBe(0);
    // a good one then fetches the keys, once
    expect(await verifier.verify(await issuer.sign(CLAIMS))).toMatchObject({ org: 'acme', role: 'job', job: { repository: 'api', workflow: '.github/workflows/ci.yml' } });
    expect(issuer.jwksRequests()).toBe(1);
  });

  it('fetches the keys on first need, keeps them, and refetches for a rotated key no more often than the cooldown', async () => {
    const issuer = await start();
    const verifier = new OidcVerifier({ issuer: issuer.issuer, audience: 'ringfence', jwksCooldownMs: 300 });
    expect(issuer.jwksRequests()).toBe(0);
    for (let i = 0; i < 5; i++) await verifier.verify(await issuer.sign(CLAIMS));
    expect(issuer.jwksRequests()).toBe(1);

    // a key the cached set lacks (not yet published), within the cooldown: refused without a fetch
    const unknownKey = await issuer.sign(CLAIMS, { key: 'next' });
    for (let i = 0; i < 5; i++) expect(await refusal(verifier, unknownKey)).toBe('id-token refused: signed with a key the issuer does not publish');
    expect(issuer.jwksRequests()).toBe(1);

    // the issuer rotates; after the cooldown one fetch finds the new key, and later tokens use the cache
    issuer.rotate();
    await new Promise((resolve) => setTimeout(resolve, 350));
    const rotated = await issuer.sign(CLAIMS, { key: 'next' });
    expect(await verifier.verify(rotated)).toMatchObject({ org: 'acme' });
    expect(issuer.jwksRequests()).toBe(2);
    for (let i = 0; i < 5; i++) await verifier.verify(await issuer.sign(CLAIMS, { key: 'next' }));
    expect(issuer.jwksRequests()).toBe(2);
  });

  it('refetches once the cache is older than its maximum age', async () => {
    const issuer = await start();
    const verifier = new OidcVerifier({ issuer: issuer.issuer, audience: 'ringfence', jwksCacheMs: 200, jwksCooldownMs: 0 });
    await verifier.verify(await issuer.sign(CLAIMS));
    await verifier.verify(await issuer.sign(CLAIMS));
    expect(issuer.jwksRequests()).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 250));
    await verifier.verify(await issuer.sign(CLAIMS));
    expect(issuer.jwksRequests()).toBe(2);
  });

  it('keeps its own failures (an unreachable JWKS) from the client and logs them', async () => {
    const issuer = await start();
    // a loopback port nothing listens on
    const closed = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as net.AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    const log: string[] = [];
    const verifier = new OidcVerifier({ issuer: issuer.issuer, audience: 'ringfence', jwksUrl: `http://127.0.0.1:${closed}/jwks`, log: (line) => log.push(line) });
    expect(await refusal(verifier, await issuer.sign(CLAIMS))).toBe(UNVERIFIABLE);
    expect(log).toHaveLength(1);
    expect(log[0]).toMatch(/^policy store: an id-token could not be verified: .+/);
    // the token's own faults are still said: they are the holder's to fix
    const working = new OidcVerifier({ issuer: issuer.issuer, audience: 'ringfence' });
    expect(await refusal(working, await issuer.sign(CLAIMS, { expiresIn: Math.floor(Date.now() / 1000) - 60 }))).toBe('id-token refused: expired');
    expect(await refusal(working, await issuer.sign(CLAIMS, { expiresIn: null }))).toBe('id-token refused: claim exp is not valid (missing)');
  });
});
