/** Opens the repository a --db option names: sqlite:PATH (default) or postgres://… */
import { RingfenceError } from '../util/errors';
import type { PolicyRepository } from './repository';

export const DEFAULT_DB = 'sqlite:/var/lib/ringfence/policy-store.db';

/** A --db value fit for messages and logs: a PostgreSQL URL's password is masked. */
export function describeDb(spec: string): string {
  try {
    const url = new URL(spec);
    if (url.password) url.password = '***';
    return url.protocol.startsWith('postgres') ? url.toString() : spec;
  } catch {
    return spec;
  }
}

export async function openRepository(spec = DEFAULT_DB): Promise<PolicyRepository> {
  let repository: PolicyRepository | undefined;
  try {
    repository = await construct(spec);
    await repository.migrate();
    return repository;
  } catch (error) {
    await repository?.close().catch(() => undefined);
    if (error instanceof RingfenceError) throw error;
    const usage = error instanceof Error && error.name === 'StoreSetupError';
    throw new RingfenceError(`cannot open the policy store database ${describeDb(spec)}: ${describeOpenError(spec, error)}`, usage ? 'RF_USAGE' : 'RF_DB');
  }
}

async function construct(spec: string): Promise<PolicyRepository> {
  if (spec.startsWith('sqlite:')) {
    if (spec === 'sqlite:') throw new RingfenceError("bad --db 'sqlite:': give the database file, sqlite:PATH", 'RF_USAGE');
    const { SqliteRepository } = await import('./sqlite');
    // only the default's directory is made: a path the user typed must exist (sqlite.ts prepareDatabaseFile)
    return new SqliteRepository(spec.slice('sqlite:'.length), { createDirectory: spec === DEFAULT_DB });
  }
  if (/^postgres(ql)?:\/\//.test(spec)) {
    const { PostgresRepository } = await import('./postgres');
    return new PostgresRepository(spec);
  }
  throw new RingfenceError(`bad --db '${spec}': expected sqlite:PATH or postgres://USER@HOST/DB`, 'RF_USAGE');
}

/**
 * What the database library said, in terms of what to do about it. pg reads
 * the password from the URL, else PGPASSWORD, else ~/.pgpass (PGPASSFILE);
 * with none, its own words are about SASL internals.
 */
function describeOpenError(spec: string, error: unknown): string {
  const message = (error as Error).message;
  if (!spec.startsWith('sqlite:')) {
    const user = safeUrl(spec)?.username || process.env.PGUSER || 'the database user';
    if (/client password must be a string/.test(message)) {
      return `the server asks a password of ${user} and none was given: set PGPASSWORD (or put it in ~/.pgpass, or in the URL as postgres://USER:PASSWORD@HOST/DB)`;
    }
    if ((error as { code?: string }).code === '28P01') {
      return `the server refused the password of ${user}: check PGPASSWORD, ~/.pgpass or the URL's password`;
    }
  }
  return message;
}

function safeUrl(spec: string): URL | undefined {
  try {
    return new URL(spec);
  } catch {
    return undefined;
  }
}
