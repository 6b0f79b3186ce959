/**
 * The typed interface of the native addon (build/Release/ringfence_sensor.node,
 * sources in native/). Everything the TypeScript side calls goes through here.
 */
import path from 'node:path';
import { REPO_ROOT } from '../util/paths';

export interface NativeLoadOptions {
  /** Ring buffer size in bytes: a power of two, at least one page. */
  ringBufferBytes?: number;
  /** Inode of PID 1's mount namespace: an exec in another one is "in a container". */
  initMntnsInum?: number;
  /**
   * Backlog in bytes past which the probes wake the reader; below it the
   * reader finds records on its poll timer. 0: wake on every record. Default:
   * a sixteenth of the ring buffer.
   */
  wakeupBytes?: number;
  /** Address of the kernel's mem_open (kallsyms) to recognise /proc/PID/mem files. */
  memOpenAddr?: bigint;
  /** The agent these programs serve: signals to it from a job are Agent-Tamper, its exit ends the jobs. 0: none. */
  agentTgid?: number;
  /**
   * A bpffs directory to pin every map and link under (created 0700), so
   * that the programs outlive this process; removed again by destroy().
   */
  pinDir?: string;
  /** false: do not attach the agent-gone gate on every syscall. Only to measure what it costs (bench/). */
  syscallGate?: boolean;
  /** The watchdog's timeout in ms (bpf/lib/maps.h watchdog_deadline); 0: none. Default 3000. */
  watchdogMs?: number;
}

export interface NativeReaderOptions {
  batchBytes?: number;
  maxBatchesInFlight?: number;
  pollTimeoutMs?: number;
}

export interface NativeProbeCounter {
  hits: number;
  seen: number;
  emitted: number;
  dropped: number;
}

export interface NativeReaderStats {
  batches: number;
  records: number;
  bytes: number;
  backpressureWaits: number;
}

export interface NativeFieldLayout {
  offset: number;
  size: number;
}

export interface NativeStructLayout {
  size: number;
  fields: Record<string, NativeFieldLayout>;
}

/** The error the addon throws when loading fails; `code` says at which step. */
export interface NativeLoadError extends Error {
  code: 'RF_OPEN' | 'RF_CONFIG' | 'RF_LOAD' | 'RF_ATTACH' | 'RF_MAP' | 'RF_PIN';
  errno: number;
  /** libbpf's last lines, including the verifier's log when a program was rejected. */
  log: string;
}

export interface NativeSensorHandle {
  track(cgroupId: bigint): void;
  /** false when the cgroup was not tracked. */
  untrack(cgroupId: bigint): boolean;
  /** Indexed like `probeNames`, summed over CPUs. */
  counters(): NativeProbeCounter[];
  /**
   * Starts the reader thread. `onBatch` gets one Buffer holding `records`
   * records, each 8-byte aligned and `header.size` long. `onEnd` is called once
   * after the last batch (error set if polling failed; aborted when destroy()
   * dropped undelivered batches).
   */
  start(
    /** `drained` > 0: no records, but a marker that every record committed before drain(drained) came before it. */
    onBatch: (batch: Buffer, records: number, drained: number) => void,
    onEnd: (error: Error | undefined, aborted: boolean) => void,
    options?: NativeReaderOptions,
  ): void;
  /** Graceful: the reader drains what the kernel holds, delivers it, then ends. */
  stop(): void;
  /** Asks for a drained marker (onBatch's third argument = token) behind every record committed until now; tokens grow. */
  drain(token: number): void;
  readerStats(): NativeReaderStats;
  programIds(): { programs: number[]; links: number[] };
  /** Stops the reader at once and detaches and unloads everything. */
  destroy(): void;
  /** Attaches the egress programs to a cgroup directory (covering its subtree); returns its id. */
  attachCgroup(path: string): bigint;
  /** false when nothing of ours was attached to that cgroup. */
  detachCgroup(cgroupId: bigint): boolean;
  /** Raw map access; keys and values laid out as in bpf/events.h. Only src/abi/maps.ts calls these. */
  mapUpdate(map: string, key: Buffer, value: Buffer): void;
  mapDelete(map: string, key: Buffer): boolean;
  mapLookup(map: string, key: Buffer): Buffer | null;
  /** Every [key, value] of a hash map (a snapshot that may miss concurrent changes). */
  mapEntries(map: string): [Buffer, Buffer][];
  /** enum rf_agent_gone bits the probes set (0: the agent is fine). */
  agentGone(): number;
  /** Where everything is pinned, if it is. */
  pinDir(): string | undefined;
}

export interface NativeAddon {
  SensorHandle: new (options?: NativeLoadOptions) => NativeSensorHandle;
  /** Record layouts from the BTF of the embedded BPF object. */
  eventLayout(): Record<string, NativeStructLayout>;
  /** The enums of bpf/events.h from the same BTF: enum name → enumerator → value. */
  eventEnums(): Record<string, Record<string, number>>;
  probeNames: string[];
  layoutVersion: number;
  clocks(): { realtimeNs: bigint; boottimeNs: bigint };
  /**
   * Who connected the unix socket `fd` (SO_PEERCRED: tgid, effective ids) and
   * that process's start time (/proc/PID/stat field 22), checked with
   * SO_PEERPIDFD to belong to the peer and not to a process that reused its
   * pid (pidReuseChecked false: a kernel before 6.5, unchecked). Throws an
   * Error whose `code` is the errno name: ESRCH when the peer has exited.
   */
  peerCredentials(fd: number): { pid: number; uid: number; gid: number; startTime: number; pidReuseChecked: boolean };
}

let addon: NativeAddon | undefined;

/** Loads the addon once; the path works from src/ (tests) and dist/src/. */
export function loadNative(): NativeAddon {
  if (!addon) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    addon = require(path.join(REPO_ROOT, 'build/Release/ringfence_sensor.node')) as NativeAddon;
  }
  return addon;
}
