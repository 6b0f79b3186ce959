/** Loading, unloading and refusing to load: nothing of ours may stay in the kernel. */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Sensor } from '../../src/sensor/sensor';
import { bpftool } from '../helpers/job';

describe('sensor lifecycle', () => {
  it('leaves no program or link in the kernel after close()', async () => {
    const sensor = Sensor.open();
    sensor.start();
    const { programs, links } = sensor.kernelObjects();
    expect(programs.length).toBe(26); // 17 probes (2 of them fail closed: agent.bpf.c) + 9 egress hooks (attached per job cgroup)
    expect(links.length).toBe(17);
    for (const id of programs) expect((await bpftool(['prog', 'show', 'id', String(id)])).code).toBe(0);

    await sensor.close();
    for (const id of programs) {
      const shown = await bpftool(['prog', 'show', 'id', String(id)]);
      expect(shown.code, `program ${id} is still loaded`).not.toBe(0);
    }
    for (const id of links) {
      const shown = await bpftool(['link', 'show', 'id', String(id)]);
      expect(shown.code, `link ${id} is still attached`).not.toBe(0);
    }
    expect(() => sensor.stats()).toThrow(/closed/);
  });

  it('destroy() also unloads everything, even with the reader running', async () => {
    const sensor = Sensor.open();
    sensor.start();
    const { programs } = sensor.kernelObjects();
    sensor.destroy();
    for (const id of programs) expect((await bpftool(['prog', 'show', 'id', String(id)])).code).not.toBe(0);
  });

  it('pinned: everything is under the pin directory while loaded, and close() unpins and unloads it all', async () => {
    const pinDir = `/sys/fs/bpf/ringfence/lifecycle-test-${process.pid}`;
    const sensor = Sensor.open({ pinDir });
    sensor.start();
    const { programs } = sensor.kernelObjects();
    expect(fs.readdirSync(path.join(pinDir, 'links')).sort()).toContain('handle_sys_enter_gate');
    expect(fs.readdirSync(path.join(pinDir, 'links'))).toHaveLength(17);
    expect(fs.readdirSync(path.join(pinDir, 'maps'))).toContain('agent_threads');
    expect(sensor.agentGone()).toEqual([]);
    await sensor.close();
    expect(fs.existsSync(pinDir)).toBe(false);
    for (const id of programs) expect((await bpftool(['prog', 'show', 'id', String(id)])).code, `program ${id} is still loaded`).not.toBe(0);
  });
});
