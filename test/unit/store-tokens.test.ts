/**
 * Bearer tokens (src/store/tokens.ts) on the SQLite backend in memory: who a
 * token says its holder is, that an unknown or revoked one is refused, how
 * long a revoked one may still work (the cache), and that a read-only role
 * stays read-only from its token to the service. Every case opens its own
 * store; a repository's cache lives and dies with it.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { StoreError } from '../../src/store/errors';
import type { PolicyRepository, TokenRole } from '../../src/store/repository';
import { PolicyService } from '../../src/store/service';
import { SqliteRepository } from '../../src/store/sqlite';
import { callerForToken, createToken, hashToken, listTokens, revokeToken, TOKEN_CACHE_MS, TOKEN_CACHE_SIZE } from '../../src/store/tokens';

const opened: PolicyRepository[] = [];
afterEach(async () => {
  vi.useRealTimers();
  for (const repository of opened.splice(0)) await repository.close();
});

async function store(): Promise<PolicyRepository> {
  const repository = new SqliteRepository(':memory:');
  opened.push(repository);
  await repository.migrate();
  return repository;
}

async function refusal(promise: Promise<unknown>): Promise<[string, string]> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof StoreError) return [error.code, error.message];
    throw error;
  }
  throw new Error('expected a StoreError');
}

describe('createToken', () => {
  it.each<[TokenRole, RegExp]>([
    ['admin', /^rfa_[A-Za-z0-9_-]{43}$/],
    ['agent', /^rfg_[A-Za-z0-9_-]{43}$/],
  ])('makes an %s token that stands for its organization, lowered', async (role, shape) => {
    const repository = await store();
    const { token, record } = await createToken(repository, 'Acme', role, 'runner pool');
    expect(token).toMatch(shape);
    expect([record.org, record.role, record.description]).toEqual(['acme', role, 'runner pool']);
    expect(record.id).toMatch(/^[0-9a-f]{12}$/);
    expect(await callerForToken(repository, token)).toEqual({ org: 'acme', role, subject: `token:${record.id}` });
  });

  it('stores only the hash: the token is nowhere in what the store gives back', async () => {
    const repository = await store();
    const { token, record } = await createToken(repository, 'acme', 'admin');
    expect(hashToken(token)).toMatch(/^[0-9a-f]{64}$/);
    expect(await repository.findToken(hashToken(token))).toEqual(record);
    expect(await repository.findToken(token)).toBeUndefined();
    expect(JSON.stringify(await listTokens(repository))).not.toContain(token.slice(4));
    expect(record.description).toBe('');
  });

  it('makes a different secret and id each time', async () => {
    const repository = await store();
    const first = await createToken(repository, 'acme', 'agent');
    const second = await createToken(repository, 'acme', 'agent');
    expect(first.token).not.toBe(second.token);
    expect(first.record.id).not.toBe(second.record.id);
  });

  it.each(['job', 'root', ''])("refuses role '%s' and stores nothing", async (role) => {
    const repository = await store();
    expect(await refusal(createToken(repository, 'acme', role as TokenRole))).toEqual(['INVALID_ARGUMENT', `role must be admin or agent, not '${role}'`]);
    expect(await listTokens(repository)).toEqual([]);
  });

  it('refuses a bad organization name', async () => {
    const repository = await store();
    expect(await refusal(createToken(repository, 'ac me', 'admin'))).toEqual(['INVALID_ARGUMENT', "organization 'ac me' must be 1-100 letters, digits, '.', '_' or '-'"]);
    expect(await listTokens(repository)).toEqual([]);
  });
});

describe('listTokens and revokeToken', () => {
  it("lists one organization's tokens, however it is spelt, or all", async () => {
    const repository = await store();
    const acme = await createToken(repository, 'acme', 'admin');
    const globex = await createToken(repository, 'globex', 'agent');
    expect((await listTokens(repository, 'ACME')).map((t) => t.id)).toEqual([acme.record.id]);
    expect((await listTokens(repository)).map((t) => t.id).sort()).toEqual([acme.record.id, globex.record.id].sort());
  });

  it('revokes by id, and says so when there is no such token', async () => {
    const repository = await store();
    const { token, record } = await createToken(repository, 'acme', 'admin');
    const other = await createToken(repository, 'acme', 'agent');
    await revokeToken(repository, record.id);
    expect(await refusal(callerForToken(repository, token))).toEqual(['UNAUTHENTICATED', 'unknown or revoked token']);
    expect((await callerForToken(repository, other.token)).role).toBe('agent');
    expect(await refusal(revokeToken(repository, record.id))).toEqual(['NOT_FOUND', `no token with id '${record.id}' (ringfence token list shows them)`]);
  });
});

describe('callerForToken', () => {
  it('refuses an unknown token, one of another store, and one with a changed character', async () => {
    const repository = await store();
    const { token } = await createToken(repository, 'acme', 'admin');
    const elsewhere = await createToken(await store(), 'acme', 'admin');
    const UNKNOWN = ['UNAUTHENTICATED', 'unknown or revoked token'];
    expect(await refusal(callerForToken(repository, 'rfa_nope'))).toEqual(UNKNOWN);
    expect(await refusal(callerForToken(repository, elsewhere.token))).toEqual(UNKNOWN);
    expect(await refusal(callerForToken(repository, `${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`))).toEqual(UNKNOWN);
    expect(await refusal(callerForToken(repository, ''))).toEqual(UNKNOWN);
  });

  it('keeps refusing an unknown token: a refusal is not cached as a caller', async () => {
    const repository = await store();
    for (let i = 0; i < 3; i++) expect(await refusal(callerForToken(repository, 'rfa_nope'))).toEqual(['UNAUTHENTICATED', 'unknown or revoked token']);
  });

  it('refuses a token revoked before it was ever used', async () => {
    const repository = await store();
    const { token, record } = await createToken(repository, 'acme', 'agent');
    await revokeToken(repository, record.id);
    expect(await refusal(callerForToken(repository, token))).toEqual(['UNAUTHENTICATED', 'unknown or revoked token']);
  });

  it('takes a revoked token for at most TOKEN_CACHE_MS after its last database read', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const repository = await store();
    const agent = await createToken(repository, 'acme', 'agent');
    const admin = await createToken(repository, 'acme', 'admin');
    const agentCaller = await callerForToken(repository, agent.token);
    const adminCaller = await callerForToken(repository, admin.token);
    await revokeToken(repository, agent.record.id);
    await revokeToken(repository, admin.record.id);
    vi.setSystemTime(Date.now() + TOKEN_CACHE_MS - 1);
    expect(await callerForToken(repository, agent.token)).toEqual(agentCaller);
    expect(await callerForToken(repository, admin.token)).toEqual(adminCaller);
    vi.setSystemTime(Date.now() + 1);
    expect(await refusal(callerForToken(repository, agent.token))).toEqual(['UNAUTHENTICATED', 'unknown or revoked token']);
    expect(await refusal(callerForToken(repository, admin.token))).toEqual(['UNAUTHENTICATED', 'unknown or revoked token']);
    expect(TOKEN_CACHE_MS).toBe(30_000); // what docs/policy-store.md promises
  });

  it('does not take a token one store knows as a caller of another store', async () => {
    const first = await store();
    const second = await store();
    const { token } = await createToken(first, 'acme', 'admin');
    expect((await callerForToken(first, token)).org).toBe('acme');
    expect(await refusal(callerForToken(second, token))).toEqual(['UNAUTHENTICATED', 'unknown or revoked token']);
  });

  it('lowers the organization of a row written before names were lowered (schema 1)', async () => {
    const repository = await store();
    await repository.createToken({ id: 'old', org: 'Acme', role: 'admin', description: '', createdAt: '2026-01-01T00:00:00.000Z' }, hashToken('rfa_old'));
    expect(await callerForToken(repository, 'rfa_old')).toEqual({ org: 'acme', role: 'admin', subject: 'token:old' });
  });

  it('keeps at most TOKEN_CACHE_SIZE callers and starts over at the next one, so that it cannot grow without end', async () => {
    const repository = await store();
    const { token, record } = await createToken(repository, 'acme', 'agent');
    const caller = await callerForToken(repository, token);
    await revokeToken(repository, record.id);
    const another = async (i: number) => {
      await repository.createToken({ id: `t${i}`, org: 'acme', role: 'agent', description: '', createdAt: '2026-01-01T00:00:00.000Z' }, hashToken(`rfg_${i}`));
      await callerForToken(repository, `rfg_${i}`);
    };
    for (let i = 1; i < TOKEN_CACHE_SIZE; i++) await another(i);
    // the cache is full (the revoked token and TOKEN_CACHE_SIZE - 1 others): the revoked one is still taken from it
    expect(await callerForToken(repository, token)).toEqual(caller);
    await another(TOKEN_CACHE_SIZE);
    // the revoked token was in the cache that was cleared: the database says no
    expect(await refusal(callerForToken(repository, token))).toEqual(['UNAUTHENTICATED', 'unknown or revoked token']);
  });
});

describe('a role from its token to the service', () => {
  it("an agent token cannot write, and an admin token of one org cannot touch another's", async () => {
    const repository = await store();
    const service = new PolicyService(repository);
    const acmeAdmin = await callerForToken(repository, (await createToken(repository, 'acme', 'admin')).token);
    const acmeAgent = await callerForToken(repository, (await createToken(repository, 'acme', 'agent')).token);
    const globexAdmin = await callerForToken(repository, (await createToken(repository, 'globex', 'admin')).token);
    await service.create(acmeAdmin, 'name: build\negress-policy: block\n');
    expect(await refusal(service.update(acmeAgent, 'name: build\negress-policy: audit\n'))).toEqual(['PERMISSION_DENIED', 'an agent credential cannot manage policies; use an admin token']);
    expect(await refusal(service.attach(acmeAgent, 'build', { kind: 'organization' }))).toEqual(['PERMISSION_DENIED', 'an agent credential cannot manage policies; use an admin token']);
    expect(await refusal(service.update(globexAdmin, 'name: build\negress-policy: audit\n'))).toEqual(['NOT_FOUND', 'policy build does not exist in globex']);
    expect(await refusal(service.attach(globexAdmin, 'build', { kind: 'organization' }, 'acme'))).toEqual(['PERMISSION_DENIED', 'credentials of globex cannot act in organization acme']);
    expect(await refusal(service.resolve(globexAdmin, { org: 'acme' }))).toEqual(['PERMISSION_DENIED', 'credentials of globex cannot resolve policies of acme']);
    const stored = await repository.getPolicy('acme', 'build');
    expect([stored?.version, stored?.egressPolicy]).toEqual([1, 'block']);
    expect(await repository.listAttachments('acme')).toEqual([]);
  });
});
