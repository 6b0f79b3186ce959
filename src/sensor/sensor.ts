/**
 * The kernel sensor: loads the eBPF probes through the native addon, tracks
 * job cgroups, and delivers typed events in batches.
 *
 *   const sensor = Sensor.open();
 *   sensor.on('events', (events) => …);
 *   sensor.start();
 *   sensor.track(cgroup.id);
 *   …
 *   await sensor.close();   // delivers everything the kernel still holds
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import { RingfenceError } from '../util/errors';
import { decodeBatch } from './decode';
import type { ProbeName, SensorEvent } from './events';
import { initMountNamespaceInode, memOpenAddress, preflight } from './kernel';
import { loadNative, type NativeLoadError, type NativeProbeCounter, type NativeReaderStats, type NativeSensorHandle } from './native';
import { ProcessTree } from './process-tree';
import { AgentGone } from '../abi/layout';
import { KernelMaps } from '../abi/maps';

export interface SensorOptions {
  /** Kernel ring buffer in bytes (power of two). Default 16 MiB. */
  ringBufferBytes?: number;
  /** Backlog that makes the probes wake the reader. Default: ring buffer / 16. */
  wakeupBytes?: number;
  /** How often the reader looks for records when not woken, in ms. Default 10. */
  pollTimeoutMs?: number;
  /** Bytes per batch handed to JS. Default 256 KiB. */
  batchBytes?: number;
  /** Batches waiting for the JS thread before the reader stops draining. Default 16. */
  maxBatchesInFlight?: number;
  /** Skip the environment checks and mounts (tests of the checks themselves). */
  skipPreflight?: boolean;
  /**
   * Pin every program, link and map here (a bpffs directory), so that a
   * killed agent leaves its jobs enforced and unable to run on (see
   * bpf/agent.bpf.c); close()/destroy() unpin. Default: not pinned.
   */
  pinDir?: string;
  /** The agent the probes guard (Agent-Tamper, agent_gone). Default: this process; 0: none. */
  agentPid?: number;
  /** false leaves the fail-closed gate out: only the benchmark that measures its cost does that. */
  syscallGate?: boolean;
  /**
   * The watchdog: once this process's heartbeat (a thread of the addon, every
   * 100 ms) is this many ms late, because the process is stopped, frozen or
   * hung, the agent counts as gone (stalled) and every job process dies at its
   * next syscall. Default 3000; 0: none.
   */
  watchdogMs?: number;
}

/** Why the probes hold the agent to be gone (enum rf_agent_gone). */
export type AgentGoneReason = 'exited' | 'tampered' | 'stalled';
const AGENT_GONE_REASONS: [AgentGoneReason, number][] = [
  ['exited', AgentGone.EXITED],
  ['tampered', AgentGone.TAMPERED],
  ['stalled', AgentGone.STALLED],
];

/** The thread ids of a process other than its main thread. */
function otherThreadsOf(pid: number): number[] {
  return fs
    .readdirSync(`/proc/${pid}/task`)
    .map(Number)
    .filter((tid) => tid !== pid);
}

export interface SensorStats {
  probes: Record<ProbeName, NativeProbeCounter>;
  /** Records the probes could not write because the ring buffer was full. */
  dropped: number;
  reader: NativeReaderStats;
  /** Events decoded and emitted to listeners. */
  delivered: number;
  /** Records of an unknown type, and batches that failed to decode. */
  unknownRecords: number;
  decodeErrors: number;
}

/** A cgroup by id (as in events' cgroupId) or anything with an id (a Cgroup). */
export type CgroupRef = number | { id: number };

const cgroupIdOf = (cgroup: CgroupRef): bigint => BigInt(typeof cgroup === 'number' ? cgroup : cgroup.id);

export interface SensorEventMap {
  events: [SensorEvent[]];
  error: [Error];
  end: [];
}

/** Turns an addon load failure into one line a user can act on (+ the verifier's lines). */
export function explainLoadError(error: NativeLoadError): RingfenceError {
  const log = error.log?.trim() || undefined;
  switch (error.code) {
    case 'RF_LOAD':
      return new RingfenceError(
        `the kernel's verifier rejected the sensor's eBPF programs (${error.message}); its last lines follow`,
        'RF_VERIFIER',
        log,
      );
    case 'RF_ATTACH':
      return new RingfenceError(
        `attaching the sensor's probes failed (${error.message}): the kernel lacks a tracepoint it needs, or tracefs is not mounted`,
        'RF_ATTACH',
        log,
      );
    default:
      return new RingfenceError(`loading the sensor failed: ${error.message}`, error.code ?? 'RF_LOAD', log);
  }
}

export class Sensor extends EventEmitter<SensorEventMap> {
  readonly tree = new ProcessTree();
  private readonly probeNames: ProbeName[];
  /** Wall-clock ms at boot: the probes stamp events with CLOCK_BOOTTIME. */
  readonly clockOffsetMs: number;
  private handle: NativeSensorHandle | undefined;
  private started = false;
  private ended: Promise<void> | undefined;
  private delivered = 0;
  private unknownRecords = 0;
  private decodeErrors = 0;
  private drainsAsked = 0;
  private readonly drainWaiters: { token: number; resolve: () => void; reject: (error: Error) => void }[] = [];

  private constructor(
    handle: NativeSensorHandle,
    private readonly options: SensorOptions,
  ) {
    super();
    const native = loadNative();
    this.handle = handle;
    this.probeNames = native.probeNames as ProbeName[];
    const { realtimeNs, boottimeNs } = native.clocks();
    this.clockOffsetMs = Number(realtimeNs - boottimeNs) / 1e6;
  }

  /** Checks the machine, loads and attaches the probes. Throws RingfenceError. */
  static open(options: SensorOptions = {}): Sensor {
    if (!options.skipPreflight) preflight();
    const native = loadNative();
    const agentPid = options.agentPid ?? process.pid;
    let handle: NativeSensorHandle;
    try {
      handle = new native.SensorHandle({
        ringBufferBytes: options.ringBufferBytes,
        wakeupBytes: options.wakeupBytes,
        initMntnsInum: initMountNamespaceInode(),
        memOpenAddr: memOpenAddress(),
        agentTgid: agentPid,
        pinDir: options.pinDir,
        syscallGate: options.syscallGate,
        watchdogMs: options.watchdogMs,
      });
    } catch (error) {
      if (error && typeof error === 'object' && 'log' in error) throw explainLoadError(error as NativeLoadError);
      throw error;
    }
    try {
      // threads started from now on are added by the fork probe
      const maps = new KernelMaps(handle);
      if (agentPid) for (const tid of otherThreadsOf(agentPid)) maps.addAgentThread(tid);
    } catch (error) {
      handle.destroy();
      throw error;
    }
    return new Sensor(handle, options);
  }

  /** Starts delivering events; attach 'events' listeners first. */
  start(): void {
    const handle = this.live();
    if (this.started) return;
    this.started = true;
    this.ended = new Promise((resolve) => {
      handle.start(
        (batch, records, drained) => (drained > 0 ? this.onDrained(drained) : this.onBatch(batch, records)),
        (error, aborted) => {
          if (error) this.emit('error', error);
          // a graceful end delivered everything; an aborted one dropped what was in flight
          this.settleDrains(aborted || error ? new RingfenceError(`the sensor ended before it delivered every record${error ? ` (${error.message})` : ''}`, 'RF_DRAIN') : undefined);
          this.emit('end');
          resolve();
        },
        {
          batchBytes: this.options.batchBytes,
          maxBatchesInFlight: this.options.maxBatchesInFlight,
          pollTimeoutMs: this.options.pollTimeoutMs,
        },
      );
    });
  }

  /**
   * Resolves once every record the kernel committed before this call has
   * been delivered to the 'events' listeners (within one poll interval):
   * what a job's end waits for after its last process is gone.
   */
  drain(): Promise<void> {
    const handle = this.live();
    if (!this.started) return Promise.resolve();
    const token = ++this.drainsAsked;
    return new Promise<void>((resolve, reject) => {
      this.drainWaiters.push({ token, resolve, reject });
      try {
        handle.drain(token);
      } catch (error) {
        this.drainWaiters.pop();
        reject(error as Error);
      }
    });
  }

  /** Starts watching the processes of a cgroup and of every cgroup below it. */
  track(cgroup: CgroupRef): void {
    this.live().track(cgroupIdOf(cgroup));
  }

  untrack(cgroup: CgroupRef): boolean {
    return this.live().untrack(cgroupIdOf(cgroup));
  }

  stats(): SensorStats {
    const handle = this.live();
    const counters = handle.counters();
    const probes = {} as Record<ProbeName, NativeProbeCounter>;
    let dropped = 0;
    this.probeNames.forEach((name, index) => {
      probes[name] = counters[index];
      dropped += counters[index].dropped;
    });
    return {
      probes,
      dropped,
      reader: handle.readerStats(),
      delivered: this.delivered,
      unknownRecords: this.unknownRecords,
      decodeErrors: this.decodeErrors,
    };
  }

  /** The loaded object's maps and egress programs, for the enforcement side (src/enforce/). */
  kernel(): KernelMaps {
    return new KernelMaps(this.live());
  }

  /**
   * Why the probes consider the agent gone (enum rf_agent_gone: exited,
   * tampered with), or an empty list. Once non-empty, every job process
   * dies at its next syscall.
   */
  agentGone(): AgentGoneReason[] {
    const bits = this.live().agentGone();
    return AGENT_GONE_REASONS.filter(([, bit]) => bits & bit).map(([reason]) => reason);
  }

  /** Kernel ids of the loaded programs and links (for leak checks). */
  kernelObjects(): { programs: number[]; links: number[] } {
    return this.live().programIds();
  }

  /**
   * Delivers every event the kernel holds, then detaches and unloads all
   * probes. Stats are final after this resolves.
   */
  async close(): Promise<void> {
    if (!this.handle) return;
    if (this.started) {
      this.handle.stop();
      await this.ended;
    }
    this.destroy();
  }

  /** Stops at once, dropping undelivered batches, and unloads everything. */
  destroy(): void {
    if (!this.handle) return;
    this.finalStats = this.stats();
    this.handle.destroy();
    this.handle = undefined;
    this.settleDrains(new RingfenceError('the sensor was unloaded before it delivered every record', 'RF_DRAIN'));
  }

  /** Stats as they were at close()/destroy(). */
  finalStats: SensorStats | undefined;

  private live(): NativeSensorHandle {
    if (!this.handle) throw new RingfenceError('the sensor is closed', 'RF_CLOSED');
    return this.handle;
  }

  private onDrained(token: number): void {
    while (this.drainWaiters.length && this.drainWaiters[0].token <= token) this.drainWaiters.shift()!.resolve();
  }

  private settleDrains(error: Error | undefined): void {
    for (const waiter of this.drainWaiters.splice(0)) {
      if (error) waiter.reject(error);
      else waiter.resolve();
    }
  }

  private onBatch(batch: Buffer, records: number): void {
    let events: SensorEvent[];
    try {
      const decoded = decodeBatch(batch, records, this.clockOffsetMs);
      events = decoded.events;
      this.unknownRecords += decoded.unknown;
    } catch (error) {
      this.decodeErrors++;
      this.emit('error', error as Error);
      return;
    }
    for (const event of events) this.tree.observe(event);
    this.delivered += events.length;
    this.emit('events', events);
  }
}
