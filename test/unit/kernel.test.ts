import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { findCgroup2Mount } from '../../src/cgroup/cgroup2';
import { memOpenAddress, parseKernelRelease, preflight } from '../../src/sensor/kernel';
import { explainLoadError } from '../../src/sensor/sensor';
import type { NativeLoadError } from '../../src/sensor/native';

afterEach(() => vi.restoreAllMocks());

describe('kernel facts', () => {
  it('parses kernel releases', () => {
    expect(parseKernelRelease('6.18.44-fc-v657')).toEqual([6, 18]);
    expect(parseKernelRelease('5.15.0-1057-azure')).toEqual([5, 15]);
    expect(parseKernelRelease('weird')).toBeUndefined();
  });

  it('finds cgroup2 in the hybrid layout and in the unified one', () => {
    const hybrid = [
      '35 24 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755',
      '36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw',
      '38 35 0:33 / /sys/fs/cgroup/cpu rw shared:12 - cgroup cgroup rw,cpu',
    ].join('\n');
    expect(findCgroup2Mount(hybrid)).toBe('/sys/fs/cgroup/unified');
    expect(findCgroup2Mount('30 23 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw,nsdelegate')).toBe('/sys/fs/cgroup');
    expect(findCgroup2Mount('38 35 0:33 / /sys/fs/cgroup/cpu rw shared:12 - cgroup cgroup rw,cpu')).toBeUndefined();
  });

  it('finds mem_open in kallsyms, and 0 when addresses are hidden', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-kallsyms-'));
    const file = path.join(dir, 'kallsyms');
    fs.writeFileSync(file, 'ffffffff8177b210 t mem_read\nffffffff8177e580 t mem_open\nffffffff8177e600 t mem_open_x\n');
    expect(memOpenAddress(file)).toBe(0xffffffff8177e580n);
    fs.writeFileSync(file, '0000000000000000 t mem_read\n');
    expect(memOpenAddress(file)).toBe(0n);
    expect(memOpenAddress(path.join(dir, 'missing'))).toBe(0n);
  });
});

describe('errors a user can act on', () => {
  it('says to use root, in one line', () => {
    vi.spyOn(process, 'geteuid').mockReturnValue(1000);
    expect(() => preflight()).toThrow('ringfence needs root to load its eBPF sensor (CAP_BPF, CAP_SYS_ADMIN): run it with sudo');
  });

  it('puts the verifier’s last lines after a one-line summary', () => {
    const native = Object.assign(new Error('the kernel refused the BPF programs: Permission denied'), {
      code: 'RF_LOAD' as const,
      errno: 13,
      log: 'R1 invalid mem access\nprocessed 12 insns\n',
    }) as NativeLoadError;
    const error = explainLoadError(native);
    expect(error.message).not.toContain('\n');
    expect(error.message).toMatch(/verifier rejected/);
    expect(error.detail).toBe('R1 invalid mem access\nprocessed 12 insns');
  });
});
