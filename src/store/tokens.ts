/**
 * Credentials: opaque bearer tokens, stored only as SHA-256 hashes. Admin
 * tokens manage an organization's policies; agent tokens (per cluster or
 * runner) may only resolve policies for that organization's jobs.
 */
import { createHash, randomBytes } from 'node:crypto';
import { StoreError } from './errors';
import { orgName } from './model';
import { now, type PolicyRepository, type TokenRecord, type TokenRole } from './repository';
import type { Caller } from './service';

const PREFIX: Record<TokenRole, string> = { admin: 'rfa_', agent: 'rfg_' };

export const hashToken = (token: string) => createHash('sha256').update(token).digest('hex');

/** Creates a token and returns it: the only time it is ever seen in clear. */
export async function createToken(repository: PolicyRepository, org: string, role: TokenRole, description = ''): Promise<{ token: string; record: TokenRecord }> {
  if (role !== 'admin' && role !== 'agent') throw new StoreError('INVALID_ARGUMENT', `role must be admin or agent, not '${role}'`);
  const record: TokenRecord = { id: randomBytes(6).toString('hex'), org: orgName(org), role, description, createdAt: now() };
  const token = `${PREFIX[role]}${randomBytes(32).toString('base64url')}`;
  await repository.createToken(record, hashToken(token));
  return { token, record };
}

/** The tokens of an organization (or all); ids and roles, never secrets. */
export async function listTokens(repository: PolicyRepository, org?: string): Promise<TokenRecord[]> {
  return repository.listTokens(org === undefined ? undefined : orgName(org));
}

/** Revokes a token by id. A server that saw it in the last TOKEN_CACHE_MS may still take it that long. */
export async function revokeToken(repository: PolicyRepository, id: string): Promise<void> {
  if (!(await repository.deleteToken(id))) throw new StoreError('NOT_FOUND', `no token with id '${id}' (ringfence token list shows them)`);
}

/**
 * Known tokens, by hash, for a short while: a database read per call for the
 * same agent is waste. This is also how long a revoked token may still work.
 */
export const TOKEN_CACHE_MS = 30_000;
/** The most callers kept per repository: a stream of distinct tokens cannot grow the cache without bound. */
export const TOKEN_CACHE_SIZE = 10_000;
const cache = new WeakMap<PolicyRepository, Map<string, { caller: Caller; until: number }>>();

/** The caller a bearer token stands for; UNAUTHENTICATED when it is unknown. */
export async function callerForToken(repository: PolicyRepository, token: string): Promise<Caller> {
  const hash = hashToken(token);
  let known = cache.get(repository);
  if (!known) cache.set(repository, (known = new Map()));
  const hit = known.get(hash);
  if (hit && hit.until > Date.now()) return hit.caller;
  const record = await repository.findToken(hash);
  if (!record) throw new StoreError('UNAUTHENTICATED', 'unknown or revoked token');
  // lowered here too: a row written by an older ringfence (schema 1) may still say Acme
  const caller: Caller = { org: record.org.toLowerCase(), role: record.role, subject: `token:${record.id}` };
  if (known.size >= TOKEN_CACHE_SIZE) known.clear();
  known.set(hash, { caller, until: Date.now() + TOKEN_CACHE_MS });
  return caller;
}
