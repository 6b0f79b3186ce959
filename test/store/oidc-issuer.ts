/** A test OIDC issuer on loopback: a JWKS endpoint (which counts its requests) and a signer of GitHub-shaped id-tokens. */
import http from 'node:http';
import { exportJWK, generateKeyPair, SignJWT, type KeyLike } from 'jose';

export interface TestIssuer {
  issuer: string;
  /**
   * expiresIn null: a token without exp. key 'next': the key the issuer
   * publishes only after rotate(); 'foreign': one it never publishes.
   */
  sign(claims: Record<string, unknown>, options?: { audience?: string; expiresIn?: string | number | null; key?: 'own' | 'next' | 'foreign'; issuer?: string }): Promise<string>;
  /** How many times the JWKS was fetched. */
  jwksRequests(): number;
  /** Publishes the next key beside the current one, as an issuer does when it rotates. */
  rotate(): void;
  close(): Promise<void>;
}

export async function startTestIssuer(): Promise<TestIssuer> {
  const own = await generateKeyPair('RS256');
  const next = await generateKeyPair('RS256');
  const foreign = await generateKeyPair('RS256');
  const published = [{ ...(await exportJWK(own.publicKey)), kid: 'test-key', alg: 'RS256', use: 'sig' }];
  const nextJwk = { ...(await exportJWK(next.publicKey)), kid: 'next-key', alg: 'RS256', use: 'sig' };
  let requests = 0;
  const server = http.createServer((request, response) => {
    if (request.url === '/.well-known/jwks') {
      requests++;
      response.setHeader('content-type', 'application/json');
      response.end(JSON.stringify({ keys: published }));
    } else {
      response.statusCode = 404;
      response.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const issuer = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  return {
    issuer,
    async sign(claims, options = {}) {
      const key: KeyLike = options.key === 'foreign' ? foreign.privateKey : options.key === 'next' ? next.privateKey : own.privateKey;
      const jwt = new SignJWT(claims)
        .setProtectedHeader({ alg: 'RS256', kid: options.key === 'next' ? 'next-key' : 'test-key' })
        .setIssuer(options.issuer ?? issuer)
        .setAudience(options.audience ?? 'ringfence')
        .setIssuedAt();
      if (options.expiresIn !== null) jwt.setExpirationTime(options.expiresIn ?? '5m');
      return jwt.sign(key);
    },
    jwksRequests: () => requests,
    rotate: () => void published.push(nextJwk),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
