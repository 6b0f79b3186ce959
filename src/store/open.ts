/** Opens the repository a --db option names: sqlite:PATH (default) or postgres://… */
import { RingfenceError } from '../util/errors';
import type { PolicyRepository } from './repository';

export const DEFAULT_DB = 'sqlite:/var/lib/ringfence/policy-store.db';

export async function openRepository(spec = DEFAULT_DB): Promise<PolicyRepository> {
  let repository: PolicyRepository;
  if (spec.startsWith('sqlite:')) {
    const { SqliteRepository } = await import('./sqlite');
    repository = new SqliteRepository(spec.slice('sqlite:'.length));
  } else if (/^postgres(ql)?:\/\//.test(spec)) {
    const { PostgresRepository } = await import('./postgres');
    repository = new PostgresRepository(spec);
  } else {
    throw new RingfenceError(`bad --db '${spec}': expected sqlite:PATH or postgres://USER@HOST/DB`, 'RF_USAGE');
  }
  await repository.migrate();
  return repository;
}
