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
    throw new RingfenceError(`cannot open the policy store database ${describeDb(spec)}: ${(error as Error).message}`, 'RF_DB');
  }
}

async function construct(spec: string): Promise<PolicyRepository> {
  if (spec.startsWith('sqlite:')) {
    if (spec === 'sqlite:') throw new RingfenceError("bad --db 'sqlite:': give the database file, sqlite:PATH", 'RF_USAGE');
    const { SqliteRepository } = await import('./sqlite');
    return new SqliteRepository(spec.slice('sqlite:'.length));
  }
  if (/^postgres(ql)?:\/\//.test(spec)) {
    const { PostgresRepository } = await import('./postgres');
    return new PostgresRepository(spec);
  }
  throw new RingfenceError(`bad --db '${spec}': expected sqlite:PATH or postgres://USER@HOST/DB`, 'RF_USAGE');
}
