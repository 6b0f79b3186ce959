/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * Lockdown: judging an offence and answering it in the same syscall.
 *
 * When the job's lockdown lists the detection, the offender gets SIGKILL
 * from bpf_send_signal() before anything else: it dies on the way back to
 * user space, before it can use what the syscall gave it. Only then is the
 * detection recorded, so a full buffer can cost a record, never the kill
 * (and job_kills still counts it).
 */
#ifndef RINGFENCE_LIB_LOCKDOWN_H
#define RINGFENCE_LIB_LOCKDOWN_H

#include "task.h"

#define RF_SIGKILL 9
#define RF_SIGSTOP 19
#define RF_CAP_SYS_ADMIN 21

static __always_inline struct rf_job_lockdown *rf_lockdown_of(__u64 job)
{
	return bpf_map_lookup_elem(&job_lockdown, &job);
}

static __always_inline bool rf_is_protected(__u32 tgid)
{
	return tgid && bpf_map_lookup_elem(&protected_tgids, &tgid) != NULL;
}

/* A socket whose peer is remote: inet, connected, and not loopback unless configured. */
static __always_inline bool rf_remote_peer(const struct rf_fd_info *info, __u64 job)
{
	struct rf_job_lockdown *cfg;
	bool loopback;

	if (info->kind != RF_FD_SOCKET || info->peer.port == 0)
		return false;
	if (info->peer.family == RF_AF_INET) {
		__u32 ip;

		__builtin_memcpy(&ip, info->peer.addr, 4);
		loopback = rf_loopback4(ip);
	} else if (info->peer.family == RF_AF_INET6) {
		__u32 ip[4];

		__builtin_memcpy(ip, info->peer.addr, 16);
		loopback = rf_loopback6(ip);
	} else {
		return false;
	}
	if (!loopback)
		return true;
	cfg = rf_lockdown_of(job);
	return cfg && cfg->loopback_remote;
}

/* Whether the job's lockdown kills (or holds) offenders of `detection`. */
static __always_inline bool rf_lockdown_kills(__u64 job, __u8 detection)
{
	struct rf_job_lockdown *cfg = rf_lockdown_of(job);

	return cfg && (cfg->kill_mask & RF_DETECT_BIT(detection));
}

/* The caller-built `detail` as a reserved detection record `e`, with its header and action: sent. */
static __always_inline void rf_submit_detection(struct rf_detection_event *e, const struct rf_detection_event *detail,
						__u64 job, __u8 action, struct rf_counter *cnt)
{
	*e = *detail;
	rf_fill_header(&e->hdr, RF_EVENT_DETECTION, sizeof(*e), job);
	e->hdr.flags = detail->hdr.flags; /* enum rf_detection_flags */
	e->action = action;
	bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
	rf_count(cnt, emitted);
}

/*
 * Answers a detection: kill when `kill`, then record. Details are in
 * `detail` (a caller-built record, header unset).
 */
static __always_inline void rf_answer(__u64 job, const struct rf_detection_event *detail, bool kill)
{
	struct rf_counter *cnt = rf_counter_of(RF_PROBE_DETECTION);
	struct rf_detection_event *e;

	if (kill) {
		__u64 one = 1, *kills;

		bpf_send_signal(RF_SIGKILL);
		kills = bpf_map_lookup_elem(&job_kills, &job);
		if (kills)
			__sync_fetch_and_add(kills, 1);
		else
			bpf_map_update_elem(&job_kills, &job, &one, BPF_NOEXIST);
	}
	rf_count(cnt, seen);
	e = bpf_ringbuf_reserve(&detections, sizeof(*e), 0);
	if (!e) {
		rf_count(cnt, dropped);
		return;
	}
	rf_submit_detection(e, detail, job, kill ? RF_ACTION_KILLED : RF_ACTION_AUDITED, cnt);
}

/* Answers a detection as the job's lockdown says: kill if it lists it. */
static __always_inline void rf_detected(__u64 job, const struct rf_detection_event *detail)
{
	rf_answer(job, detail, rf_lockdown_kills(job, detail->detection));
}

/*
 * A shell on IPC is held (SIGSTOP, before its first instruction) while user
 * space looks for a relay, when the job kills reverse shells; else audited.
 */
static __always_inline void rf_hold_for_verdict(__u64 job, const struct rf_detection_event *detail)
{
	struct rf_counter *cnt = rf_counter_of(RF_PROBE_DETECTION);
	bool hold = rf_lockdown_kills(job, RF_DETECT_REVERSE_SHELL);
	struct rf_detection_event *e;

	rf_count(cnt, seen);
	e = bpf_ringbuf_reserve(&detections, sizeof(*e), 0);
	if (!e) {
		/* without a record nobody would resume it: let it run, count the loss */
		rf_count(cnt, dropped);
		return;
	}
	if (hold)
		bpf_send_signal(RF_SIGSTOP);
	rf_submit_detection(e, detail, job, hold ? RF_ACTION_HELD : RF_ACTION_AUDITED, cnt);
}

/* Reverse-Shell when fd (described in info) is a socket to a remote peer; whether it was. */
static __always_inline bool rf_judge_stdio_socket(__u64 job, int fd, const struct rf_fd_info *info, __u8 hook)
{
	struct rf_detection_event d = {
		.detection = RF_DETECT_REVERSE_SHELL,
		.hook = hook,
		.fd = fd,
	};

	if (!rf_remote_peer(info, job))
		return false;
	d.peer = info->peer;
	rf_detected(job, &d);
	return true;
}

#define RF_CGROUP2_SUPER_MAGIC 0x63677270

/*
 * Whether the cgroup directory `dir` (a dentry of the cgroup2 mount) is the
 * job's cgroup or below it: directory inode numbers are cgroup ids there.
 */
static __always_inline bool rf_cgroup_dir_in_job(struct dentry *dir, __u64 job)
{
	for (int level = 0; level < RF_MAX_CGROUP_DEPTH; level++) {
		struct dentry *parent;

		if (!dir)
			return false;
		if (BPF_CORE_READ(dir, d_inode, i_ino) == job)
			return true;
		parent = BPF_CORE_READ(dir, d_parent);
		if (parent == dir)
			return false; /* the hierarchy's root */
		dir = parent;
	}
	return false;
}

/* A cgroup-escape attempt toward the cgroup directory `dir`: judged like any detection. */
static __always_inline void rf_judge_cgroup_target(struct dentry *dir, __u64 job, __u8 hook)
{
	struct rf_detection_event d = { .detection = RF_DETECT_CGROUP_ESCAPE, .hook = hook };

	if (rf_cgroup_dir_in_job(dir, job))
		return;
	d.cap_effective = BPF_CORE_READ(dir, d_inode, i_ino);
	rf_detected(job, &d);
}

/* Processes named in protected_comms are protected from their exec on. */
static __always_inline void rf_protect_by_comm(void)
{
	char comm[RF_COMM_LEN] = {};
	__u32 tgid;
	__u8 one = 1;

	bpf_get_current_comm(comm, sizeof(comm));
	if (!bpf_map_lookup_elem(&protected_comms, comm))
		return;
	tgid = bpf_get_current_pid_tgid() >> 32;
	bpf_map_update_elem(&protected_tgids, &tgid, &one, BPF_ANY);
}

#endif
