/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * Maps and configuration shared by every program of the sensor.
 *
 * The programs are compiled one file per area and statically linked into one
 * object (bpftool gen object); lib/maps.bpf.c defines these once with
 * RF_DEFINE_MAPS, every other file sees them as externs.
 */
#ifndef RINGFENCE_LIB_MAPS_H
#define RINGFENCE_LIB_MAPS_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "../events.h"

#ifdef RF_DEFINE_MAPS
#define RF_SHARED
#else
#define RF_SHARED extern
#endif

#define RF_MAX_TRACKED_CGROUPS 4096
#define RF_CGROUP_CACHE_SIZE 16384
#define RF_MAX_CGROUP_DEPTH 16
#define RF_MAX_PENDING_CONNECTS 16384

/* Records for user space. The loader sizes it (max_entries) before load. */
RF_SHARED struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 24);
} events SEC(".maps");

/* Per-probe counters (struct rf_counter), indexed by enum rf_probe. */
RF_SHARED struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RF_PROBE_COUNT);
	__type(key, __u32);
	__type(value, struct rf_counter);
} counters SEC(".maps");

/* Job cgroups the agent registered: cgroup id -> 1. */
RF_SHARED struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RF_MAX_TRACKED_CGROUPS);
	__type(key, __u64);
	__type(value, __u64);
} tracked_cgroups SEC(".maps");

/*
 * Answers of "which tracked cgroup is this cgroup in or below", so that the
 * ancestor walk happens once per cgroup rather than once per event. An entry
 * is valid only while its generation equals tracked_generation, which the
 * loader bumps after every change to tracked_cgroups.
 */
struct rf_cgroup_cache_entry {
	__u64 generation;
	__u64 job_cgroup_id;  /* 0: not tracked */
};

RF_SHARED struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, RF_CGROUP_CACHE_SIZE);
	__type(key, __u64);
	__type(value, struct rf_cgroup_cache_entry);
} cgroup_cache SEC(".maps");

/*
 * Lockdown detections only: small and separate, so that a flood of ordinary
 * events cannot crowd a detection out.
 */
RF_SHARED struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 18);
} detections SEC(".maps");

/* job cgroup id -> struct rf_job_lockdown (what to kill). */
RF_SHARED struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RF_MAX_TRACKED_CGROUPS);
	__type(key, __u64);
	__type(value, struct rf_job_lockdown);
} job_lockdown SEC(".maps");

/* job cgroup id -> processes killed by lockdown (seen even if a record was lost). */
RF_SHARED struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RF_MAX_TRACKED_CGROUPS);
	__type(key, __u64);
	__type(value, __u64);
} job_kills SEC(".maps");

/* Processes whose memory no job may read: tgid -> 1. */
RF_SHARED struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} protected_tgids SEC(".maps");

/* comm of programs protected from their first exec on (Runner.Worker, …). */
RF_SHARED struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, char[RF_COMM_LEN]);
	__type(value, __u8);
} protected_comms SEC(".maps");

/* comm of shells that, started without a command, read commands from stdin. */
RF_SHARED struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, char[RF_COMM_LEN]);
	__type(value, __u8);
} stdin_shells SEC(".maps");

/* Threads of the agent other than its main one (tid -> 1), to recognise tkill(2) at them. */
RF_SHARED struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} agent_threads SEC(".maps");

/*
 * Job processes already answered for Agent-Tamper (tgid -> 1): one act can
 * make several signals (a ptrace attach and its SIGSTOP, SIGIO at a write
 * and again at close); the process is killed at each, recorded once.
 */
RF_SHARED struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} tamperers SEC(".maps");

/*
 * Jobs ended in the kernel (job cgroup id -> 1): a process of theirs acted on
 * the agent and was refused; every other process of the job dies at its next
 * syscall (bpf/agent.bpf.c) while user space ends the job. Untracking a job
 * takes it out (native/sensor_handle.cc), and jobs_doomed counts the entries,
 * so that the gate looks a job up only while one is doomed.
 */
RF_SHARED struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u8);
} doomed_jobs SEC(".maps");

/* Written by user space through the skeleton's mmap of .bss. */
RF_SHARED volatile __u64 tracked_generation;
/* enum rf_agent_gone bits; set by the probes, read by user space (and by the next agent). */
RF_SHARED volatile __u64 agent_gone;
/*
 * The agent's watchdog: CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns) by which its next
 * heartbeat is due (a thread of the agent's addon moves it on every 100 ms;
 * native/sensor_handle.cc); 0: no watchdog. Past it, the agent counts as
 * gone (RF_AGENT_STALLED) at the next syscall of a job process.
 */
RF_SHARED volatile __u64 watchdog_deadline;
/* Entries of doomed_jobs; added to by the probes, taken from by user space. */
RF_SHARED volatile __u64 jobs_doomed;

/* Set by the loader before load. */
RF_SHARED const volatile __u32 cfg_init_mntns_inum;  /* mount ns of PID 1 */
RF_SHARED const volatile __u64 cfg_mem_open_addr;    /* kallsyms mem_open, 0 = unknown */
RF_SHARED const volatile __u64 cfg_wakeup_bytes;     /* wake the reader past this backlog */
RF_SHARED const volatile __u32 cfg_agent_tgid;       /* the agent that owns these programs */

#endif
