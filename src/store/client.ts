/** A typed client of the policy store, with the caller's token and a deadline on every call. */
import * as grpc from '@grpc/grpc-js';
import type { PolicyStoreClient } from '../proto/ringfence/policy/v1/PolicyStore';
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
