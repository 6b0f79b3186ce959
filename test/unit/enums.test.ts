/**
 * The enums of bpf/events.h against the TypeScript constants that decode and
 * encode them (src/abi/layout.ts): read from the BTF of the compiled
 * object, so that renumbering one side fails here, not in a swapped verdict.
 */
import { describe, expect, it } from 'vitest';
import { AgentGone, AllowSource, DetectionAction, DetectionFlags, DetectionHookNames, DetectionId, EgressHook, EventType, FdKind, SHELL_ON_IPC, Verdict } from '../../src/abi/layout';
import { loadNative } from '../../src/sensor/native';

const btf = loadNative().eventEnums();

/** TS name → value, as BTF enumerator name → value with a prefix. */
const prefixed = (prefix: string, values: Record<string, number>) => Object.fromEntries(Object.entries(values).map(([name, value]) => [`${prefix}${name}`, value]));

describe('enums of bpf/events.h', () => {
  it.each([
    { enum: 'rf_event_type', ts: prefixed('RF_EVENT_', EventType) },
    { enum: 'rf_fd_kind', ts: prefixed('RF_FD_', FdKind) },
    { enum: 'rf_egress_hook', ts: prefixed('RF_HOOK_', EgressHook) },
    { enum: 'rf_verdict', ts: prefixed('RF_VERDICT_', Verdict) },
    { enum: 'rf_allow_source', ts: prefixed('RF_ALLOW_', AllowSource) },
    { enum: 'rf_detection_action', ts: prefixed('RF_ACTION_', DetectionAction) },
    { enum: 'rf_agent_gone', ts: prefixed('RF_AGENT_', AgentGone) },
    { enum: 'rf_detection_flags', ts: prefixed('RF_DETECTION_', DetectionFlags) },
  ])('$enum matches the TypeScript constants, every enumerator', ({ enum: name, ts }) => {
    expect(btf[name]).toEqual(ts);
  });

  it('rf_detection: the policy names, and the shell-on-IPC verdict request', () => {
    const byPolicyName: Record<string, string> = {
      'Reverse-Shell': 'RF_DETECT_REVERSE_SHELL',
      'Runner-Worker-Memory-Read': 'RF_DETECT_MEMORY_READ',
      'Privileged-Container': 'RF_DETECT_PRIVILEGED_CONTAINER',
      'Cgroup-Escape': 'RF_DETECT_CGROUP_ESCAPE',
      'Agent-Tamper': 'RF_DETECT_AGENT_TAMPER',
    };
    const ts = { ...Object.fromEntries(Object.entries(DetectionId).map(([name, value]) => [byPolicyName[name], value])), RF_DETECT_SHELL_ON_IPC: SHELL_ON_IPC };
    expect(btf.rf_detection).toEqual(ts);
  });

  it('rf_detection_hook: the names events use', () => {
    const byEventName: Record<string, string> = {
      dup: 'RF_DHOOK_DUP',
      exec: 'RF_DHOOK_EXEC',
      proc_mem_open: 'RF_DHOOK_PROC_MEM',
      process_vm: 'RF_DHOOK_VM',
      ptrace: 'RF_DHOOK_PTRACE',
      cgroup_open: 'RF_DHOOK_CGROUP_OPEN',
      clone_into: 'RF_DHOOK_CLONE_INTO',
      signal: 'RF_DHOOK_SIGNAL',
      seccomp: 'RF_DHOOK_SECCOMP',
    };
    expect(btf.rf_detection_hook).toEqual(Object.fromEntries(Object.entries(DetectionHookNames).map(([value, name]) => [byEventName[name], Number(value)])));
  });

  it('rf_probe: the addon names the counters in enum order', () => {
    const names = loadNative().probeNames;
    const { RF_PROBE_COUNT, ...probes } = btf.rf_probe;
    expect(names).toHaveLength(RF_PROBE_COUNT);
    expect(Object.fromEntries(names.map((name, index) => [`RF_PROBE_${name.toUpperCase()}`, index]))).toEqual(probes);
  });
});
