/** A test OIDC issuer on loopback: a JWKS endpoint and a signer of GitHub-shaped id-tokens. */
import http from 'node:http';
import { exportJWK, generateKeyPair, SignJWT, type KeyLike } from 'jose';

export interface TestIssuer {
  issuer: string;
  /** expiresIn null: a token without exp. */
  sign(claims: Record<string, unknown>, options?: { audience?: string; expiresIn?: string | number | null; key?: 'own' | 'foreign'; issuer?: string }): Promise<string>;
  close(): Promise<void>;
}

export async function startTestIssuer(): Promise<TestIssuer> {
  const own = await generateKeyPair('RS256');
  const foreign = await generateKeyPair('RS256');
  const jwk = { ...(await exportJWK(own.publicKey)), kid: 'test-key', alg: 'RS256', use: 'sig' };
  const server = http.createServer((request, response) => {
    if (request.url === '/.well-known/jwks') {
      response.setHeader('content-type', 'application/json');
      response.end(JSON.stringify({ keys: [jwk] }));
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
      const key: KeyLike = options.key === 'foreign' ? foreign.privateKey : own.privateKey;
      const jwt = new SignJWT(claims)
        .setProtectedHeader({ alg: 'RS256', kid: 'test-key' })
        .setIssuer(options.issuer ?? issuer)
        .setAudience(options.audience ?? 'ringfence')
        .setIssuedAt();
      if (options.expiresIn !== null) jwt.setExpirationTime(options.expiresIn ?? '5m');
      return jwt.sign(key);
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
