/**
 * The benchmark's own gRPC client (bench/grpc-load-client.ts) against the real
 * server: it must get what @grpc/grpc-js gets, and must not count an error
 * status as an answer, or the store benchmark would measure nothing.
 */
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeUnary, GrpcLoadConnection } from '../../bench/grpc-load-client';
import { StoreClient } from '../../src/store/client';
import { openRepository } from '../../src/store/open';
import { loadPolicyStoreProto } from '../../src/store/proto';
import { PolicyService } from '../../src/store/service';
import { createToken } from '../../src/store/tokens';
import { freshSqliteDatabase, startStoreServer } from '../helpers/store';

const method = loadPolicyStoreProto().service.ResolvePolicy;
const request = { job: { org: 'acme', repository: 'web', workflow: '.github/workflows/ci.yml', cluster: 'linux' } };
let server: ChildProcess;
let address: string;
let token: string;

beforeAll(async () => {
  const db = freshSqliteDatabase('rf-load-client-');
  const repository = await openRepository(db);
  const service = new PolicyService(repository);
  const admin = { org: 'acme', role: 'admin' as const, subject: 'test' };
  await service.create(admin, 'egress-policy: block\nallowed-endpoints: github.com registry.npmjs.org\n', 'web');
  await service.attach(admin, 'web', { kind: 'repository', repository: 'web' });
  ({ token } = await createToken(repository, 'acme', 'agent', 'test'));
  await repository.close();
  ({ process: server, address } = await startStoreServer(db));
});

afterAll(() => {
  server?.kill('SIGTERM');
});

const connect = () => {
  const { hostname, port } = new URL(`http://${address}`);
  return GrpcLoadConnection.connect(hostname, Number(port));
};

describe('the benchmark load client', () => {
  it('gets the same answer as @grpc/grpc-js, call after call on one connection', async () => {
    const reference = new StoreClient({ address, token });
    const expected = await reference.call('ResolvePolicy', request);
    reference.close();

    const connection = await connect();
    const call = encodeUnary(address, method.path, { authorization: `Bearer ${token}` }, method.requestSerialize(request as never));
    const answers = await Promise.all(Array.from({ length: 20 }, () => connection.call(call)));
    connection.close();
    for (const message of answers) expect(method.responseDeserialize(message)).toEqual(expected);
    expect(method.responseDeserialize(answers[0])).toMatchObject({ scope: 'repository', policy: { name: 'web', allowedEndpoints: ['github.com', 'registry.npmjs.org'] } });
  });

  it('counts an error status as a failed call', async () => {
    const connection = await connect();
    const forged = encodeUnary(address, method.path, { authorization: 'Bearer not-a-token' }, method.requestSerialize(request as never));
    await expect(connection.call(forged)).rejects.toThrow(/without a gRPC message/);
    connection.close();
  });

  it('fails to connect where nothing listens', async () => {
    await expect(GrpcLoadConnection.connect('127.0.0.1', 1)).rejects.toThrow(/ECONNREFUSED/);
  });
});
