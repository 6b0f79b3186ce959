/**
 * Every egress attempt is counted once, also those the kernel folds: repeats
 * of a datagram flow within a second ride on the flow's next record, and
 * when the job ends before that record, the agent reads them from the
 * kernel's flow table (JobEgress.unrecordedRepeats).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NetworkJobEvent } from '../../src/jobs/job-events';
import { createTestHost, type TestHost } from '../helpers/netns';
import { runScriptJob } from '../helpers/run-job';

let host: TestHost;

beforeAll(() => {
  host = createTestHost(32);
});

afterAll(() => host?.destroy());

const BURST = (address: string, count: number) =>
  `python3 -c 'import socket,sys
s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
refused=0
for i in range(${count}):
  try: s.sendto(b"x", ("${address}", 9))
  except PermissionError: refused+=1
print(refused)'`;

describe('folded datagram repeats', () => {
  it.each([
    { mode: 'block', verdict: 'blocked', refused: 1000 },
    { mode: 'audit', verdict: 'audited', refused: 0 },
  ])('$mode: 1,000 datagrams in a burst are 1,000 attempts in the events and the counts', async ({ mode, verdict, refused }) => {
    const j = await runScriptJob(BURST(host.ip4, 1000), {
      policy: `name: counts\negress-policy: ${mode}\nallowed-endpoints: ''\n`,
      upstream: { host: '127.0.0.1', port: 53 },
      resolvConf: 'nameserver 127.0.0.1\n',
    });
    expect(j.stdout.trim()).toBe(String(refused));
    const attempts = j.events.filter((e): e is NetworkJobEvent => e.kind === 'network' && e.ip === host.ip4);
    expect(attempts.every((e) => e.verdict === verdict && e.protocol === 'udp' && e.port === 9)).toBe(true);
    expect(attempts.reduce((sum, e) => sum + e.count, 0)).toBe(1000);
    // fewer records than attempts: the folding is what is being checked
    expect(attempts.length).toBeLessThan(10);
    const completed = j.events.find((e) => e.kind === 'job' && e.phase === 'completed') as { counts: { blocked: number; network: number } };
    expect(completed.counts.network).toBe(1000);
    expect(completed.counts.blocked).toBe(refused);
  });
});
