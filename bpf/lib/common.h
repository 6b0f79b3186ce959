/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/* Helpers every probe uses: the job filter, counters and the record header. */
#ifndef RINGFENCE_LIB_COMMON_H
#define RINGFENCE_LIB_COMMON_H

#include "maps.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

static __always_inline struct rf_counter *rf_counter_of(enum rf_probe probe)
{
	__u32 key = probe;

	return bpf_map_lookup_elem(&counters, &key);
}

/* Per-CPU slots, but a tracepoint program can be preempted: add atomically. */
#define rf_count(cnt, field)                                  \
	do {                                                  \
		if (cnt)                                      \
			__sync_fetch_and_add(&(cnt)->field, 1); \
	} while (0)

/*
 * The tracked cgroup the current task belongs to (its own or an ancestor),
 * or 0. Every probe calls this first: it is what keeps the cost for the
 * rest of the machine to a map lookup or two.
 */
static __always_inline __u64 rf_current_job(void)
{
	__u64 cgroup_id = bpf_get_current_cgroup_id();
	struct rf_cgroup_cache_entry *cached, fresh = {};
	__u64 generation = tracked_generation;

	if (bpf_map_lookup_elem(&tracked_cgroups, &cgroup_id))
		return cgroup_id;

	cached = bpf_map_lookup_elem(&cgroup_cache, &cgroup_id);
	if (cached && cached->generation == generation)
		return cached->job_cgroup_id;

	fresh.generation = generation;
	for (int level = 1; level < RF_MAX_CGROUP_DEPTH; level++) {
		__u64 ancestor = bpf_get_current_ancestor_cgroup_id(level);

		if (!ancestor || ancestor == cgroup_id)
			break;
		if (bpf_map_lookup_elem(&tracked_cgroups, &ancestor)) {
			fresh.job_cgroup_id = ancestor;
			break;
		}
	}
	bpf_map_update_elem(&cgroup_cache, &cgroup_id, &fresh, BPF_ANY);
	return fresh.job_cgroup_id;
}

/* What every record says: its type and size, when, and of which job. */
static __always_inline void rf_fill_record_header(struct rf_event_header *hdr, __u16 type,
						  __u32 size, __u64 job)
{
	hdr->size = size;
	hdr->type = type;
	hdr->flags = 0;
	hdr->ktime_ns = bpf_ktime_get_boot_ns();
	hdr->job_cgroup_id = job;
}

/* The current task's ids, from helpers alone (no task_struct read). */
static __always_inline void rf_fill_task_ids(struct rf_event_header *hdr)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	hdr->cgroup_id = bpf_get_current_cgroup_id();
	hdr->pid = (__u32)pid_tgid;
	hdr->tgid = pid_tgid >> 32;
	hdr->uid = (__u32)bpf_get_current_uid_gid();
	bpf_get_current_comm(hdr->comm, sizeof(hdr->comm));
}

static __always_inline void rf_fill_header(struct rf_event_header *hdr, __u16 type,
					   __u32 size, __u64 job)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	rf_fill_record_header(hdr, type, size, job);
	rf_fill_task_ids(hdr);
	hdr->ppid = BPF_CORE_READ(task, real_parent, tgid);
}

/*
 * Reserve a record of type T for the current task, or NULL when the task is
 * not in a tracked cgroup or the ring buffer is full (counted as a drop).
 * `cnt` must be the probe's counter; `hits` is counted by the caller.
 */
#define rf_reserve(T, type_id, cnt) rf_reserve_in(T, type_id, cnt, rf_current_job())

/* As rf_reserve, for a caller that already knows the task's job. */
#define rf_reserve_in(T, type_id, cnt, job)                                   \
	({                                                                    \
		T *__rec = NULL;                                              \
		__u64 __job = (job);                                          \
		if (__job) {                                                  \
			rf_count(cnt, seen);                                  \
			__rec = bpf_ringbuf_reserve(&events, sizeof(T), 0);   \
			if (__rec)                                            \
				rf_fill_header(&__rec->hdr, type_id, sizeof(T), __job); \
			else                                                  \
				rf_count(cnt, dropped);                       \
		}                                                             \
		__rec;                                                        \
	})

/*
 * Wake the reader only once a backlog of cfg_wakeup_bytes has built up; it
 * polls on a short timer anyway. One wakeup per record would cost a context
 * switch per event, which on a two-core runner slows the job itself.
 */
static __always_inline __u64 rf_wakeup_flag(void)
{
	if (!cfg_wakeup_bytes)
		return 0; /* adaptive: wake when the reader has caught up */
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= cfg_wakeup_bytes
		       ? BPF_RB_FORCE_WAKEUP
		       : BPF_RB_NO_WAKEUP;
}

#define rf_submit(rec, cnt)                              \
	do {                                             \
		bpf_ringbuf_submit(rec, rf_wakeup_flag()); \
		rf_count(cnt, emitted);                  \
	} while (0)

#endif
