/**
 * What failing closed costs: the agent-gone gate (raw_syscalls:sys_enter,
 * bpf/agent.bpf.c) runs on every syscall of the machine. Each round runs a
 * storm of getppid(2), which no probe reports, four ways side by side:
 * nothing loaded; the sensor loaded without the gate; with the gate (both not
 * tracking the storm: what the rest of the machine pays); with the gate and
 * the storm's cgroup tracked (what a job pays).
 */
import { Cgroup } from '../src/cgroup/cgroup2';
import { Sensor } from '../src/sensor/sensor';
import { median } from './stats';
import { runFlood } from './sensor';

export interface GateResult {
  count: number;
  rounds: number;
  /** Median CPU ms of the storm per configuration. */
  cpuMs: { none: number; noGate: number; gate: number; gateTracked: number };
  /** Median ns per syscall, from CPU time. */
  nsPerSyscall: { none: number; noGate: number; gate: number; gateTracked: number };
  /** Ratios of medians measured in the same rounds. */
  gateVsNoGate: number;
  trackedVsNone: number;
}

export async function gateCost(count: number, rounds: number, log: (line: string) => void): Promise<GateResult> {
  const cgroup = Cgroup.create(`ringfence-bench/gate-${process.pid}`);
  const cpu = { none: [] as number[], noGate: [] as number[], gate: [] as number[], gateTracked: [] as number[] };
  const args = ['getppid', String(count)];
  try {
    for (let round = 0; round < rounds; round++) {
      cpu.none.push((await runFlood(cgroup, args)).cpuMs);
      const withoutGate = Sensor.open({ syscallGate: false });
      cpu.noGate.push((await runFlood(cgroup, args)).cpuMs);
      withoutGate.destroy();
      const withGate = Sensor.open();
      cpu.gate.push((await runFlood(cgroup, args)).cpuMs);
      withGate.track(cgroup);
      cpu.gateTracked.push((await runFlood(cgroup, args)).cpuMs);
      withGate.destroy();
      log(`  gate round ${round + 1}/${rounds}: ${cpu.none[round].toFixed(0)} / ${cpu.noGate[round].toFixed(0)} / ${cpu.gate[round].toFixed(0)} / ${cpu.gateTracked[round].toFixed(0)} ms CPU`);
    }
  } finally {
    await cgroup.destroy();
  }
  const med = { none: median(cpu.none), noGate: median(cpu.noGate), gate: median(cpu.gate), gateTracked: median(cpu.gateTracked) };
  const ns = (ms: number) => (ms * 1e6) / count;
  return {
    count,
    rounds,
    cpuMs: med,
    nsPerSyscall: { none: ns(med.none), noGate: ns(med.noGate), gate: ns(med.gate), gateTracked: ns(med.gateTracked) },
    gateVsNoGate: med.gate / med.noGate,
    trackedVsNone: med.gateTracked / med.none,
  };
}
