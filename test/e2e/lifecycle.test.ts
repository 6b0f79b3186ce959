/** Loading, unloading and refusing to load: nothing of ours may stay in the kernel. */
import { describe, expect, it } from 'vitest';
import { Sensor } from '../../src/sensor/sensor';
import { bpftool } from '../helpers/job';

describe('sensor lifecycle', () => {
  it('leaves no program or link in the kernel after close()', async () => {
    const sensor = Sensor.open();
    sensor.start();
    const { programs, links } = sensor.kernelObjects();
    expect(programs.length).toBe(24); // 15 probes + 9 egress hooks (attached per job cgroup)
    expect(links.length).toBe(15);
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
});
