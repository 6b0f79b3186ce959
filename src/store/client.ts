/** A typed client of the policy store, with the caller's token and a deadline on every call. */
import * as grpc from '@grpc/grpc-js';
import type { PolicyStoreClient } from '../proto/ringfence/policy/v1/PolicyStore';
import { RingfenceError } from '../util/errors';
import { loadPolicyStoreProto } from './proto';

export const DEFAULT_DEADLINE_MS = 10_000;

export interface ClientOptions {
  address: string;
  token: string;
  deadlineMs?: number;
  /** PEM of a CA to trust: TLS; without it the connection is plaintext. */
  ca?: Buffer;
}

export class StoreClient {
  readonly raw: PolicyStoreClient;

  constructor(private readonly options: ClientOptions) {
    const Client = loadPolicyStoreProto();
    const credentials = options.ca ? grpc.credentials.createSsl(options.ca) : grpc.credentials.createInsecure();
    this.raw = new Client(options.address, credentials) as unknown as PolicyStoreClient;
  }

  /** Calls method with the token and a deadline; rejects with the grpc ServiceError. */
  call<Req, Res>(method: keyof PolicyStoreClient & string, request: Req): Promise<Res> {
    const metadata = new grpc.Metadata();
    if (this.options.token) metadata.set('authorization', `Bearer ${this.options.token}`);
    const deadline = new Date(Date.now() + (this.options.deadlineMs ?? DEFAULT_DEADLINE_MS));
    const fn = (this.raw as unknown as Record<string, (req: Req, md: grpc.Metadata, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: Res) => void) => void>)[method];
    return new Promise((resolve, reject) => fn.call(this.raw, request, metadata, { deadline }, (error, response) => (error ? reject(error) : resolve(response))));
  }

  close(): void {
    (this.raw as unknown as grpc.Client).close();
  }
}

/**
 * A failed call in a user's words. Not reaching the store is said as
 * "cannot reach the policy store at ADDR (RINGFENCE_SERVER): REASON", with
 * grpc-js's wording cut down to its cause; the server's own errors keep
 * their status name and message.
 */
export function unreachableReason(error: { code?: number; details?: string; message?: string }): string | undefined {
  const details = String(error.details ?? error.message ?? '');
  if (error.code === grpc.status.DEADLINE_EXCEEDED) {
    const after = /^Deadline exceeded after ([\d.]+s)/.exec(details)?.[1];
    return `no answer within ${after ?? 'the deadline'}`;
  }
  if (error.code !== grpc.status.UNAVAILABLE) return undefined;
  const cause = /Last error: (?:Error: )?(.*?)(?:\. Resolution note:.*)?$/s.exec(details)?.[1]?.trim();
  if (cause) return cause;
  const name = /^Name resolution failed for target (?:dns:)?(.*)$/s.exec(details)?.[1];
  if (name !== undefined) return `cannot resolve ${name}`;
  return details || 'unavailable';
}

export function unreachableError(address: string, reason: string): RingfenceError {
  return new RingfenceError(`cannot reach the policy store at ${address} (RINGFENCE_SERVER): ${reason}`, 'RF_UNAVAILABLE');
}
