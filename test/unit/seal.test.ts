/**
 * The job's seccomp seal: the syscall numbers the sensor recognises a seal
 * kill by (bpf/agent.bpf.c) and names (src/abi/layout.ts) against the
 * kernel's own numbering (the machine's asm/unistd_*.h) and against the
 * rules native/seal.c installs; and the command line that runs a job sealed.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SEALED_SYSCALLS, SECCOMP_I386, X32_SYSCALL_BIT, sealedSyscallName } from '../../src/abi/layout';
import { processGroupOf, sealBinary, sealPrefix, selfTargets } from '../../src/jobs/seal';

const ROOT = path.join(__dirname, '../..');
const HEADERS = { x86_64: 'unistd_64.h', i386: 'unistd_32.h', x32: 'unistd_x32.h' } as const;

function kernelNumbers(header: string): Map<string, number> {
  const text = fs.readFileSync(path.join('/usr/include/x86_64-linux-gnu/asm', header), 'utf8');
  const numbers = new Map<string, number>();
  for (const [, name, bit, nr] of text.matchAll(/#define __NR_(\w+) (\(__X32_SYSCALL_BIT \+ )?(\d+)\)?/g)) numbers.set(name, Number(nr) + (bit ? X32_SYSCALL_BIT : 0));
  return numbers;
}

/** The numbers of one ABI's block of rf_sealed_syscall in bpf/agent.bpf.c. */
function bpfCases(abi: 'i386' | 'x86_64'): number[] {
  const source = fs.readFileSync(path.join(ROOT, 'bpf/agent.bpf.c'), 'utf8');
  const body = source.slice(source.indexOf('rf_sealed_syscall(__u32 arch, int nr)'), source.indexOf('static __always_inline void rf_judge_seccomp_kill'));
  const i386 = body.slice(body.indexOf('RF_AUDIT_ARCH_I386'), body.indexOf('if (arch != RF_AUDIT_ARCH_X86_64)'));
  const rest = body.slice(body.indexOf('if (arch != RF_AUDIT_ARCH_X86_64)'));
  return [...(abi === 'i386' ? i386 : rest).matchAll(/case (\d+):/g)].map((m) => Number(m[1])).sort((a, b) => a - b);
}

/** The syscalls native/seal.c adds a kill rule for. */
function sealRules(): string[] {
  const source = fs.readFileSync(path.join(ROOT, 'native/seal.c'), 'utf8');
  return [...new Set([...source.matchAll(/add\(ctx, (?:kill|SCMP_ACT_KILL_PROCESS), "(\w+)"/g)].map((m) => m[1]))].sort();
}

describe('the syscalls of the seal', () => {
  it.each(['x86_64', 'i386'] as const)('%s: each number is the kernel\'s for its name', (abi) => {
    const kernel = kernelNumbers(HEADERS[abi]);
    for (const [nr, name] of Object.entries(SEALED_SYSCALLS[abi])) expect([name, kernel.get(name)]).toEqual([name, Number(nr)]);
  });

  it('x32: its own numbers are the kernel\'s, and its others are x86_64\'s with the x32 bit', () => {
    const kernel = kernelNumbers(HEADERS.x32);
    for (const [nr, name] of Object.entries(SEALED_SYSCALLS.x32)) expect([name, kernel.get(name)]).toEqual([name, X32_SYSCALL_BIT + Number(nr)]);
    for (const [nr, name] of Object.entries(SEALED_SYSCALLS.x86_64)) {
      if (Object.values(SEALED_SYSCALLS.x32).includes(name as never)) continue;
      expect([name, kernel.get(name)]).toEqual([name, X32_SYSCALL_BIT + Number(nr)]);
    }
  });

  it('every ABI names the syscalls native/seal.c kills for, no more, no fewer', () => {
    expect([...new Set(Object.values(SEALED_SYSCALLS.x86_64))].sort()).toEqual(sealRules());
    expect([...new Set(Object.values(SEALED_SYSCALLS.i386))].sort()).toEqual(sealRules());
  });

  it.each(['x86_64', 'i386'] as const)('%s: bpf/agent.bpf.c recognises exactly these numbers', (abi) => {
    expect(bpfCases(abi)).toEqual(Object.keys(SEALED_SYSCALLS[abi]).map(Number).sort((a, b) => a - b));
  });

  it.each([
    [62, 'kill'],
    [101, 'ptrace'],
    [SECCOMP_I386 + 37, 'kill (i386)'],
    [SECCOMP_I386 + 62, 'syscall 62 (i386)'],
    [X32_SYSCALL_BIT + 62, 'kill (x32)'],
    [X32_SYSCALL_BIT + 524, 'rt_sigqueueinfo (x32)'],
    [X32_SYSCALL_BIT + 129, 'rt_sigqueueinfo (x32)'],
    [X32_SYSCALL_BIT + 1, 'syscall 1 (x32)'],
    [0, 'syscall 0'],
    [37, 'syscall 37'],
  ])('record detail %i is %s', (detail, name) => {
    expect(sealedSyscallName(detail)).toBe(name);
  });
});

describe('sealPrefix', () => {
  const binary = process.execPath; // any file that exists

  it('is the seal, each agent and group once, then --', () => {
    expect(sealPrefix({ agents: [10, 20, 10], groups: [30, 30] }, binary)).toEqual([binary, '--agent', '10', '--agent', '20', '--group', '30', '--']);
  });

  it('refuses to run a job unsealed: no binary, or nobody to seal against', () => {
    expect(() => sealPrefix({ agents: [1], groups: [] }, path.join(os.tmpdir(), 'no-such-seal'))).toThrow(/cannot seal the job: .*no-such-seal is missing/);
    expect(() => sealPrefix({ agents: [], groups: [1] }, binary)).toThrow('cannot seal the job: no agent to seal it against');
    for (const targets of [{ agents: [1], groups: [] }, { agents: [], groups: [1] }]) {
      let code: string | undefined;
      try {
        sealPrefix(targets, targets.agents.length ? path.join(os.tmpdir(), 'no-such-seal') : binary);
      } catch (error) {
        code = (error as { code?: string }).code;
      }
      expect(code).toBe('RF_SEAL');
    }
  });

  it('is the binary node-gyp builds (binding.gyp target ringfence_seal), by default', () => {
    expect(sealBinary()).toBe(path.join(ROOT, 'build/Release/ringfence_seal'));
    expect(sealPrefix({ agents: [1], groups: [] })[0]).toBe(sealBinary());
  });

  it('selfTargets: this process and its group', () => {
    expect(selfTargets()).toEqual({ agents: [process.pid], groups: [processGroupOf('self')] });
  });
});

describe('processGroupOf', () => {
  it('reads field 5 after a comm with spaces and parentheses', () => {
    const proc = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-proc-'));
    fs.mkdirSync(path.join(proc, '7'));
    fs.writeFileSync(path.join(proc, '7', 'stat'), '7 (a) b) (c) S 1 4242 4242 0 -1 4194560\n');
    expect(processGroupOf(7, proc)).toBe(4242);
    expect(processGroupOf(8, proc)).toBeUndefined();
    fs.writeFileSync(path.join(proc, '7', 'stat'), '7 (x) S 1 0 0\n');
    expect(processGroupOf(7, proc)).toBeUndefined();
  });

  it('is this process\'s group for self', () => {
    expect(processGroupOf('self')).toBe(Number(fs.readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ')[2]));
  });
});

describe('x32 in bpf/agent.bpf.c', () => {
  it('recognises exactly the x32 ABI\'s own numbers', () => {
    const source = fs.readFileSync(path.join(ROOT, 'bpf/agent.bpf.c'), 'utf8');
    const x32 = /if \(nr & RF_X32_SYSCALL_BIT\) \{([\s\S]*?)\n\t\}/.exec(source)![1];
    expect([...x32.matchAll(/nr == (\d+)/g)].map((m) => Number(m[1]))).toEqual(Object.keys(SEALED_SYSCALLS.x32).map(Number));
  });
});
