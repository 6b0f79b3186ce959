/**
 * The decoder's offsets (src/abi/layout.ts) against the BTF clang emitted
 * for bpf/events.h into the sensor object: the two cannot drift apart.
 * Needs no privileges: the object is only parsed, not loaded.
 */
import { describe, expect, it } from 'vitest';
import { LAYOUT, LAYOUT_VERSION } from '../../src/abi/layout';
import { loadNative } from '../../src/sensor/native';

const btf = loadNative().eventLayout();

/** Map values the kernel side keeps to itself (bpf/lib/maps.h, network.bpf.c). */
const KERNEL_ONLY = ['rf_cgroup_cache_entry', 'rf_pending_connect'];

describe('event layout', () => {
  it('has the layout version of the header', () => {
    expect(loadNative().layoutVersion).toBe(LAYOUT_VERSION);
  });

  it('knows every record struct of the BPF object', () => {
    expect(Object.keys(LAYOUT).sort()).toEqual(Object.keys(btf).filter((name) => !KERNEL_ONLY.includes(name)).sort());
  });

  for (const [name, layout] of Object.entries(LAYOUT)) {
    it(`${name}: size and every field match the BTF`, () => {
      expect(btf[name], `${name} is missing from the BPF object's BTF`).toBeDefined();
      expect(layout.size).toBe(btf[name].size);
      expect(layout.fields).toEqual(btf[name].fields);
    });
  }
});
