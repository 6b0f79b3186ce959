/**
 * The local API's job requests as the daemon checks them (src/agent/job-api.ts),
 * and the client's pure helpers (src/agent/daemon-client.ts): a caller is
 * never trusted to send what `ringfence run` would.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { API_ERRORS, parseFinishParams, parseJobRef, parseServiceEndpointTexts, parseStartParams, parseTraceParams } from '../../src/agent/job-api';
import { enclosingJob, policyText } from '../../src/agent/daemon-client';
import { parsePolicy } from '../../src/policy/policy';

const START = { command: ['/bin/true'], events: false, summary: true };

describe('job.start requests', () => {
  it('keep what was sent, and only that', () => {
    // toStrictEqual: an absent field stays absent (no key holding undefined)
    expect(parseStartParams(START)).toStrictEqual(START);
    const unversioned = { ...START, policy: { text: '', source: '--policy p.yml', name: null } };
    expect(parseStartParams(unversioned)).toStrictEqual(unversioned);
    const identified = { ...START, identity: { host: 'vm', runAttempt: 1 } };
    expect(parseStartParams(identified)).toStrictEqual(identified);
    const full = {
      ...START,
      policy: { text: 'egress-policy: block\n', source: '--policy p.yml', name: 'p', version: 3 },
      identity: { org: 'acme', repo: 'acme/app', runAttempt: 2, host: 'vm' },
      dnsUpstream: '127.0.0.1:53',
      serviceEndpoints: ['store.example.net:8443'],
    };
    expect(parseStartParams(full)).toStrictEqual(full);
  });

  it('refuse with the bad-params code', () => {
    expect(() => parseStartParams({ ...START, events: 1 })).toThrow(expect.objectContaining({ code: API_ERRORS.badParams }));
  });

  it.each([
    [null, 'job.start: expected an object'],
    [[], 'job.start: expected an object'],
    [{ ...START, command: [] }, "job.start: 'command' must be a non-empty array of strings"],
    [{ ...START, command: [''] }, "job.start: 'command' must be a non-empty array of strings"],
    [{ ...START, command: ['/bin/echo', 3] }, "job.start: 'command' must be a non-empty array of strings"],
    [{ ...START, command: '/bin/true' }, "job.start: 'command' must be a non-empty array of strings"],
    [{ ...START, extra: 1 }, "job.start: unknown field 'extra' (known: command, policy, identity, dnsUpstream, serviceEndpoints, events, summary)"],
    [{ ...START, policy: 'egress-policy: block' }, "job.start: 'policy' must be an object {text, source, name}"],
    [{ ...START, policy: { text: 1, source: 's', name: null } }, "job.start: 'policy.text' must be a string"],
    [{ ...START, policy: { text: '', source: '', name: null } }, "job.start: 'policy.source' must be a non-empty string"],
    [{ ...START, policy: { text: '', source: 5, name: null } }, "job.start: 'policy.source' must be a non-empty string"],
    [{ ...START, policy: { text: '', source: 's', name: 4 } }, "job.start: 'policy.name' must be a string or null"],
    [{ ...START, policy: { text: '', source: 's', name: null, version: 0 } }, "job.start: 'policy.version' must be a positive integer"],
    [{ ...START, policy: { text: '', source: 's', name: null, version: 1.5 } }, "job.start: 'policy.version' must be a positive integer"],
    [{ ...START, policy: { text: '', source: 's', name: null, version: '3' } }, "job.start: 'policy.version' must be a positive integer"],
    [{ ...START, policy: { text: '', source: 's', name: null, mode: 'audit' } }, "job.start policy: unknown field 'mode' (known: text, source, name, version)"],
    [{ ...START, identity: 'acme' }, "job.start: 'identity' must be an object"],
    [{ ...START, identity: { org: 1, host: 'vm' } }, "job.start: 'identity.org' must be a string"],
    [{ ...START, identity: { runAttempt: '2', host: 'vm' } }, "job.start: 'identity.runAttempt' must be a positive integer"],
    [{ ...START, identity: { runAttempt: 0, host: 'vm' } }, "job.start: 'identity.runAttempt' must be a positive integer"],
    [{ ...START, identity: { runAttempt: -1, host: 'vm' } }, "job.start: 'identity.runAttempt' must be a positive integer"],
    [{ ...START, identity: { runAttempt: 1.5, host: 'vm' } }, "job.start: 'identity.runAttempt' must be a positive integer"],
    [{ ...START, identity: { host: 7 } }, "job.start: 'identity.host' must be a string"],
    [{ ...START, identity: { org: 'acme' } }, "job.start: 'identity.host' must be a string"],
    [{ ...START, identity: { org: 'acme', host: 'vm', token: 'x' } }, "job.start identity: unknown field 'token' (known: org, repo, workflow, jobName, runId, runAttempt, runner, host, cluster)"],
    [{ ...START, dnsUpstream: 53 }, "job.start: 'dnsUpstream' must be a string (ADDRESS[:PORT])"],
    [{ ...START, serviceEndpoints: 'a.com' }, "job.start: 'serviceEndpoints' must be an array of endpoint strings"],
    [{ ...START, serviceEndpoints: [1] }, "job.start: 'serviceEndpoints' must be an array of endpoint strings"],
    [{ ...START, serviceEndpoints: ['a.example.com:443', 1] }, "job.start: 'serviceEndpoints' must be an array of endpoint strings"],
    [{ command: ['/bin/true'], summary: true }, "job.start: 'events' and 'summary' must be booleans"],
    [{ command: ['/bin/true'], events: true, summary: 'yes' }, "job.start: 'events' and 'summary' must be booleans"],
  ])('refuses %j: %s', (params, message) => {
    expect(() => parseStartParams(params)).toThrow(message);
  });

  it('names a bad service endpoint by its place', () => {
    expect(parseServiceEndpointTexts(['a.example.com:443']).map((e) => e.text)).toEqual(['a.example.com:443']);
    expect(() => parseServiceEndpointTexts(['a.example.com:443', 'bad..com'])).toThrow("job.start: serviceEndpoints[1] 'bad..com': ");
  });
});

describe('trace.start requests', () => {
  const TRACE = { command: ['/bin/sh', '-c', 'true'], json: true };

  it('keep what was sent, and only that', () => {
    expect(parseTraceParams(TRACE)).toStrictEqual(TRACE);
    expect(parseTraceParams({ ...TRACE, json: false })).toStrictEqual({ ...TRACE, json: false });
    const identified = { ...TRACE, identity: { org: 'acme', host: 'vm', runAttempt: 3 } };
    expect(parseTraceParams(identified)).toStrictEqual(identified);
  });

  it.each([
    [null, 'trace.start: expected an object'],
    [['/bin/true'], 'trace.start: expected an object'],
    [{ command: ['/bin/true'], json: true, events: true }, "trace.start: unknown field 'events' (known: command, json, identity)"],
    [{ command: ['/bin/true'], json: true, policy: { text: '', source: 's', name: null } }, "trace.start: unknown field 'policy' (known: command, json, identity)"],
    [{ command: ['/bin/true'] }, "trace.start: 'json' must be a boolean"],
    [{ command: ['/bin/true'], json: 'yes' }, "trace.start: 'json' must be a boolean"],
  ])('refuses %j: %s', (params, message) => {
    expect(() => parseTraceParams(params)).toThrow(message);
  });

  it("check the fields they share with job.start as job.start does (the same messages)", () => {
    expect(() => parseTraceParams({ command: [], json: true })).toThrow("job.start: 'command' must be a non-empty array of strings");
    expect(() => parseTraceParams({ json: true })).toThrow("job.start: 'command' must be a non-empty array of strings");
    expect(() => parseTraceParams({ command: ['/bin/true'], json: true, identity: { org: 'acme' } })).toThrow("job.start: 'identity.host' must be a string");
    expect(() => parseTraceParams({ command: ['/bin/true'], json: true, identity: null })).toThrow("job.start: 'identity' must be an object");
  });
});

describe('job.finish requests', () => {
  it('take an exit code, or a signal, and the interrupting signal', () => {
    expect(parseFinishParams({ id: 'run-1', exitCode: 0, signal: null })).toStrictEqual({ id: 'run-1', exitCode: 0, signal: null });
    expect(parseFinishParams({ id: 'run-1', exitCode: null, signal: 'SIGKILL', interrupted: 'SIGINT' })).toStrictEqual({ id: 'run-1', exitCode: null, signal: 'SIGKILL', interrupted: 'SIGINT' });
    expect(parseFinishParams({ id: 'run-1', exitCode: 1, signal: 'SIGRTMIN1' })).toStrictEqual({ id: 'run-1', exitCode: 1, signal: 'SIGRTMIN1' });
    expect(parseFinishParams({ id: 'run-1', exitCode: 255, signal: null }).exitCode).toBe(255);
  });

  it.each([
    [{ exitCode: 0, signal: null }, "job.finish: 'id' must be a job id"],
    [{ id: '', exitCode: 0, signal: null }, "job.finish: 'id' must be a job id"],
    [{ id: 'run-1', exitCode: 256, signal: null }, "job.finish: 'exitCode' must be 0-255 or null"],
    [{ id: 'run-1', exitCode: -1, signal: null }, "job.finish: 'exitCode' must be 0-255 or null"],
    [{ id: 'run-1', exitCode: 1.5, signal: null }, "job.finish: 'exitCode' must be 0-255 or null"],
    [null, 'job.finish: expected an object'],
    [{ id: 7, exitCode: 0, signal: null }, "job.finish: 'id' must be a job id"],
    [{ id: 'run-1', exitCode: '0', signal: null }, "job.finish: 'exitCode' must be 0-255 or null"],
    [{ id: 'run-1', signal: 'SIGTERM' }, "job.finish: 'exitCode' must be 0-255 or null"],
    [{ id: 'run-1', exitCode: null, signal: 'KILL' }, "job.finish: 'signal' must be a signal name (SIGTERM) or null"],
    // a whole signal name: nothing before SIG, nothing after the name
    [{ id: 'run-1', exitCode: null, signal: 'XSIGKILL' }, "job.finish: 'signal' must be a signal name (SIGTERM) or null"],
    [{ id: 'run-1', exitCode: null, signal: 'SIGKILL; rm' }, "job.finish: 'signal' must be a signal name (SIGTERM) or null"],
    [{ id: 'run-1', exitCode: null, signal: 'SIG' }, "job.finish: 'signal' must be a signal name (SIGTERM) or null"],
    [{ id: 'run-1', exitCode: null, signal: 9 }, "job.finish: 'signal' must be a signal name (SIGTERM) or null"],
    // an array would read as its one element were it not checked to be a string
    [{ id: 'run-1', exitCode: null, signal: ['SIGKILL'] }, "job.finish: 'signal' must be a signal name (SIGTERM) or null"],
    [{ id: 'run-1', exitCode: 0, signal: null, interrupted: ['SIGINT'] }, "job.finish: 'interrupted' must be a signal name"],
    [{ id: 'run-1', exitCode: 0 }, "job.finish: 'signal' must be a signal name (SIGTERM) or null"],
    [{ id: 'run-1', exitCode: 0, signal: null, interrupted: 'XSIGINT' }, "job.finish: 'interrupted' must be a signal name"],
    [{ id: 'run-1', exitCode: 0, signal: null, interrupted: 'SIGINTx' }, "job.finish: 'interrupted' must be a signal name"],
    [{ id: 'run-1', exitCode: 0, signal: null, interrupted: null }, "job.finish: 'interrupted' must be a signal name"],
    [{ id: 'run-1', exitCode: null, signal: null }, "job.finish: one of 'exitCode' and 'signal' must be set"],
    [{ id: 'run-1', exitCode: 0, signal: null, interrupted: 'int' }, "job.finish: 'interrupted' must be a signal name"],
    [{ id: 'run-1', exitCode: 0, signal: null, status: 0 }, "job.finish: unknown field 'status'"],
  ])('refuses %j', (params, message) => {
    expect(() => parseFinishParams(params)).toThrow(message);
  });

  it('a job reference is {id} and nothing else', () => {
    expect(parseJobRef('job.kill', { id: 'run-1' })).toStrictEqual({ id: 'run-1' });
    expect(() => parseJobRef('job.kill', { id: 7 })).toThrow("job.kill: 'id' must be a job id");
    expect(() => parseJobRef('job.kill', { id: '' })).toThrow("job.kill: 'id' must be a job id");
    expect(() => parseJobRef('job.kill', {})).toThrow("job.kill: 'id' must be a job id");
    expect(() => parseJobRef('job.kill', null)).toThrow('job.kill: expected an object {id}');
    expect(() => parseJobRef('job.kill', ['run-1'])).toThrow('job.kill: expected an object {id}');
    expect(() => parseJobRef('job.kill', { id: 'run-1', all: true })).toThrow("job.kill: unknown field 'all'");
    expect(() => parseJobRef('job.kill', 'run-1')).toThrow('job.kill: expected an object {id}');
  });
});

describe("the client's helpers", () => {
  it('write a policy the daemon reads back to the same policy', () => {
    const text = 'egress-policy: block\nallowed-endpoints: >\n  a.example.com:443\n  *.cdn.example.net:443\n  192.0.2.0/24:53\nlockdown-mode:\n  enabled: true\n  detections:\n    - Reverse-Shell\n';
    const policy = parsePolicy(text);
    const again = parsePolicy(policyText(policy));
    expect(again.egressPolicy).toBe('block');
    expect(again.allowedEndpoints.map((e) => e.text)).toEqual(policy.allowedEndpoints.map((e) => e.text));
    expect(again.lockdown).toEqual(policy.lockdown);
    expect(policyText(parsePolicy('egress-policy: audit\n'))).toBe('egress-policy: audit\n');
  });

  it('find the ringfence job a process runs in, by whole path segments', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringfence-cgroup-'));
    const file = path.join(dir, 'cgroup');
    const at = (text: string, instance = 'ringfence') => {
      fs.writeFileSync(file, text);
      return enclosingJob(file, instance);
    };
    try {
      expect(at('0::/ringfence/jobs/run-abc-12\n')).toBe('run-abc-12');
      expect(at('0::/ringfence/jobs/run-abc-12/docker/x\n')).toBe('run-abc-12');
      expect(at('0::/ringfence-ci/jobs/run-1\n', 'ringfence-ci')).toBe('run-1');
      expect(at('0::/ringfence-ci/jobs/run-1\n')).toBeUndefined();
      expect(at('0::/user.slice/ringfence/jobs\n')).toBeUndefined();
      expect(at('0::/system.slice/ssh.service\n')).toBeUndefined();
      expect(at('12:cpu:/ringfence/jobs/run-1\n')).toBeUndefined();
      expect(enclosingJob(path.join(dir, 'missing'))).toBeUndefined();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
