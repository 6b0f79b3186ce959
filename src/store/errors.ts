/** Failures of the policy store, each mapping to one gRPC status code. */
export type StoreErrorCode = 'INVALID_ARGUMENT' | 'NOT_FOUND' | 'ALREADY_EXISTS' | 'FAILED_PRECONDITION' | 'PERMISSION_DENIED' | 'UNAUTHENTICATED';

export class StoreError extends Error {
  constructor(
    readonly code: StoreErrorCode,
    message: string,
    /** One line per problem, for INVALID_ARGUMENT (bad policy entries). */
    readonly details: string[] = [],
  ) {
    super(message);
    this.name = 'StoreError';
  }
}
