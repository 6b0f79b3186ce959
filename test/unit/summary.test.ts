/** The end-of-job summary: blocked lines first, DNS failures as their own lines, counts as the events add up. */
import { describe, expect, it } from 'vitest';
import type { DetectionJobEvent, DnsJobEvent, NetworkJobEvent, ProcessRef } from '../../src/jobs/job-events';
import { JobSummary, policyDisplay } from '../../src/jobs/summary';

const proc = (exe: string, pid = 10): ProcessRef => ({ pid, ppid: 1, exe, argv: [exe], uid: 0, ancestry: [exe] });
const base = { time: '2026-11-26T13:19:22.474Z', job: 'run-1', policy: 'p' as string | null };

const dns = (name: string, verdict: DnsJobEvent['verdict'], rcode = 'NOERROR', error?: string, exe = '/usr/bin/getent'): DnsJobEvent => ({ ...base, kind: 'dns', process: proc(exe), name, type: 'A', answers: [], verdict, rcode, transport: 'udp', error });
const net = (ip: string, port: number, verdict: NetworkJobEvent['verdict'], count = 1, domain?: string): NetworkJobEvent => ({ ...base, kind: 'network', process: proc('/usr/bin/curl'), protocol: 'tcp', ip, port, domain, verdict, count });
const tamper = (): DetectionJobEvent => ({ ...base, kind: 'detection', process: proc('/usr/bin/bash', 77), detection: 'Agent-Tamper', action: 'killed', via: 'signal', target: { pid: 4242, exe: '/usr/bin/node', signal: 19 } });

/** A job with every kind of line, added allowed-first (the order must not come from the order of adding). */
function mixedJob(): JobSummary {
  const summary = new JobSummary();
  summary.addNetwork(net('198.18.0.1', 443, 'allowed', 3, 'ok.test'));
  summary.addDns(dns('ok.test', 'allowed'));
  summary.addNetwork(net('198.18.0.2', 443, 'audited'));
  summary.addDns(dns('maybe.test', 'audited'));
  summary.addDns(dns('down.test', 'allowed', 'SERVFAIL', 'upstream 127.0.0.1:53 did not answer'));
  summary.addDns(dns('refused.test', 'audited', 'REFUSED'));
  summary.addDetection(tamper());
  summary.addDns(dns('exfil.test', 'blocked', 'NXDOMAIN'));
  summary.addNetwork(net('198.18.0.3', 4444, 'blocked', 2));
  return summary;
}

describe('JobSummary', () => {
  it('text: blocked lines first (connections, then names), then detections, DNS failures, audited, allowed', () => {
    const lines = mixedJob().renderText('header').split('\n');
    expect(lines.map((l) => l.trim().replace(/\s+/g, ' '))).toEqual([
      'header',
      'BLOCKED 198.18.0.3:4444/tcp ×2 /usr/bin/curl',
      'BLOCKED DNS exfil.test ×1 /usr/bin/getent',
      'KILLED Agent-Tamper: /usr/bin/bash (pid 77) sending SIGSTOP to ringfence (pid 4242) (via signal)',
      'FAILED DNS down.test ×1 (SERVFAIL: upstream 127.0.0.1:53 did not answer) /usr/bin/getent',
      'FAILED DNS refused.test ×1 (REFUSED) /usr/bin/getent',
      'AUDITED 198.18.0.2:443/tcp ×1 /usr/bin/curl',
      'AUDITED DNS maybe.test ×1 /usr/bin/getent',
      'ALLOWED ok.test (198.18.0.1):443/tcp ×3 /usr/bin/curl',
    ]);
  });

  it('Markdown: a Blocked section before all others, DNS failures apart', () => {
    const md = mixedJob().renderMarkdown('title', ['fact']);
    expect(md.match(/^## .*/gm)).toEqual(['## Blocked', '## Lockdown detections', '## DNS failures', '## Endpoints', '## DNS']);
    const blocked = md.slice(md.indexOf('## Blocked'), md.indexOf('## Lockdown'));
    expect(blocked).toContain('| blocked | 198.18.0.3 | 4444 | tcp | 2 | /usr/bin/curl |');
    expect(blocked).toContain('| blocked | exfil.test | 1 | /usr/bin/getent |');
    const failures = md.slice(md.indexOf('## DNS failures'), md.indexOf('## Endpoints'));
    expect(failures).toContain('| down.test | SERVFAIL: upstream 127.0.0.1:53 did not answer | 1 | /usr/bin/getent |');
    expect(failures).toContain('| refused.test | REFUSED | 1 | /usr/bin/getent |');
    const rest = md.slice(md.indexOf('## Endpoints'));
    expect(rest).not.toContain('blocked');
    expect(rest).not.toContain('down.test');
  });

  it('a job with nothing blocked has no Blocked section; one with no connections says so', () => {
    const summary = new JobSummary();
    summary.addDns(dns('ok.test', 'allowed'));
    const md = summary.renderMarkdown('t', []);
    expect(md.match(/^## .*/gm)).toEqual(['## Endpoints', '## DNS']);
    expect(md).toContain('No outbound connections.');
    expect(summary.renderText('h').split('\n')).toEqual(['h', '  no outbound connections']);
  });

  it('counts what the events add up to: failures are DNS queries too, network by attempts', () => {
    expect(mixedJob().counts()).toEqual({ dns: 5, network: 6, blocked: 3, audited: 3, detections: 1 });
  });
});

describe('policyDisplay', () => {
  it.each([
    [{ name: null }, 'none (audit)'],
    [{ name: 'demo-build' }, 'demo-build'],
    [{ name: 'curl-test', version: 3 }, 'curl-test v3'],
  ])('%j → %s', (policy, text) => {
    expect(policyDisplay(policy)).toBe(text);
  });
});
