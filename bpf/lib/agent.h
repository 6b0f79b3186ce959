/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * The agent's own safety: recognising the agent (its process and its
 * threads), answering a job process that signals, stops or traces
 * it (Agent-Tamper), and noting that it is gone.
 *
 * A tracepoint cannot refuse the signal it sees: the agent still gets it.
 * What makes that harmless is agent_gone: once set, every process of the
 * job dies at its next syscall (agent.bpf.c), and the programs, pinned
 * under bpffs, keep refusing egress whether or not the agent lives.
 */
#ifndef RINGFENCE_LIB_AGENT_H
#define RINGFENCE_LIB_AGENT_H

#include "lockdown.h"

/* Whether `pid` (initial pid namespace) is the agent or one of its threads. */
static __always_inline bool rf_is_agent(__u32 pid)
{
	return cfg_agent_tgid && pid &&
	       (pid == cfg_agent_tgid || bpf_map_lookup_elem(&agent_threads, &pid) != NULL);
}

static __always_inline void rf_mark_agent_gone(__u64 why)
{
	__sync_fetch_and_or(&agent_gone, why);
}

/*
 * A job process acted on the agent: it dies now, and the act is recorded
 * (once per process). When the act `reached` the agent (a signal it got, a
 * trace), the agent counts as gone, so the rest of every job dies at its
 * next syscall; an act that was refused (the job's seccomp filter) leaves
 * the agent whole and ends only this job: in the kernel at once (each of
 * its processes dies at its next syscall), and by user space, which ends a
 * job at its first kill. `detail_value` is the signal number, the ptrace request or
 * the refused syscall's number.
 */
/* Job `job` is ended in the kernel: each of its processes dies at its next syscall. */
static __always_inline void rf_doom_job(__u64 job)
{
	__u8 one = 1;

	if (bpf_map_update_elem(&doomed_jobs, &job, &one, BPF_NOEXIST) == 0)
		__sync_fetch_and_add(&jobs_doomed, 1);
}

static __always_inline void rf_tampered(__u64 job, __u8 hook, __s64 detail_value, bool reached)
{
	struct rf_detection_event d = {
		.hdr.flags = reached ? 0 : RF_DETECTION_REFUSED,
		.detection = RF_DETECT_AGENT_TAMPER,
		.hook = hook,
		.target_tgid = cfg_agent_tgid,
		.ptrace_request = detail_value,
	};

	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u8 one = 1;

	if (reached)
		rf_mark_agent_gone(RF_AGENT_TAMPERED);
	else
		rf_doom_job(job);
	if (bpf_map_lookup_elem(&tamperers, &tgid)) {
		bpf_send_signal(RF_SIGKILL);
		return;
	}
	bpf_map_update_elem(&tamperers, &tgid, &one, BPF_ANY);
	rf_answer(job, &d, true);
}

/* A job process signalled, stopped or traced the agent. */
static __always_inline void rf_agent_tampered(__u64 job, __u8 hook, __s64 detail_value)
{
	rf_tampered(job, hook, detail_value, true);
}

/* The agent's thread bookkeeping at fork: a new thread of the agent is the agent too. */
static __always_inline void rf_note_agent_thread(__u32 child_pid, __u32 child_tgid)
{
	__u8 one = 1;

	if (cfg_agent_tgid && child_tgid == cfg_agent_tgid && child_pid != child_tgid)
		bpf_map_update_elem(&agent_threads, &child_pid, &one, BPF_ANY);
}

/* At a thread's exit: forget an agent thread; when the agent's last one goes, the agent is gone. */
static __always_inline void rf_note_agent_exit(__u32 pid, __u32 tgid, bool last_thread)
{
	if (!cfg_agent_tgid || tgid != cfg_agent_tgid)
		return;
	if (pid != tgid)
		bpf_map_delete_elem(&agent_threads, &pid);
	if (last_thread)
		rf_mark_agent_gone(RF_AGENT_EXITED);
}

#endif
