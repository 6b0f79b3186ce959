// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * Fail closed when the agent is gone or attacked.
 *
 *  - Every syscall of a tracked job's process is checked against agent_gone
 *    (raw_syscalls:sys_enter): once the agent has exited, been killed, or
 *    been signalled, stopped or traced by a job process, the caller gets
 *    SIGKILL before the syscall runs, so the job makes no further progress
 *    unwatched. While the agent is fine this costs one load of a global per
 *    syscall: the job lookup happens only after something went wrong.
 *  - Signals sent by a job process to the agent (its pid, a thread, its
 *    process group, or everyone with -1) are Agent-Tamper: the sender dies,
 *    the agent counts as gone. Signal 0 (a liveness probe) is not a signal.
 *
 * Callers in a child pid namespace are not judged: the pids they name are
 * their namespace's, in which the agent does not exist.
 */
#include "lib/agent.h"

#define RF_PROC_SUPER_MAGIC 0x9fa0
#define RF_PID_FS_MAGIC 0x50494446 /* "PIDF": pidfs, Linux 6.9+ */

SEC("raw_tp/sys_enter")
int BPF_PROG(handle_sys_enter_gate, struct pt_regs *regs, long id)
{
	struct rf_counter *cnt;

	if (!agent_gone)
		return 0;
	if (!rf_current_job())
		return 0;
	bpf_send_signal(RF_SIGKILL);
	cnt = rf_counter_of(RF_PROBE_AGENT);
	rf_count(cnt, seen);
	return 0;
}

/* The caller's process group id (initial pid namespace). */
static __always_inline __u32 rf_current_pgid(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	return BPF_CORE_READ(task, signal, pids[PIDTYPE_PGID], numbers[0].nr);
}

/* kill(2) semantics: whether `pid` reaches the agent. */
static __always_inline bool rf_kill_reaches_agent(__s32 pid)
{
	if (pid > 0)
		return rf_is_agent(pid);
	if (pid == -1)
		return true; /* every process the caller may signal */
	if (pid == 0)
		return cfg_agent_pgid && rf_current_pgid() == cfg_agent_pgid;
	return cfg_agent_pgid && (__u32)(-pid) == cfg_agent_pgid;
}

/* A signal `sig` from the current task that reaches the agent when `reaches`. */
static __always_inline int rf_judge_signal(bool reaches, __s64 sig)
{
	struct rf_counter *cnt = rf_counter_of(RF_PROBE_AGENT);
	__u64 job;

	rf_count(cnt, hits);
	if (sig == 0 || !reaches)
		return 0;
	job = rf_current_job();
	if (!job || rf_current_pidns_level() != 0)
		return 0;
	rf_agent_tampered(job, RF_DHOOK_SIGNAL, sig);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_kill")
int handle_sys_enter_kill(struct trace_event_raw_sys_enter *ctx)
{
	return rf_judge_signal(rf_kill_reaches_agent((__s32)ctx->args[0]), (__s64)ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_tgkill")
int handle_sys_enter_tgkill(struct trace_event_raw_sys_enter *ctx)
{
	return rf_judge_signal(rf_is_agent((__u32)ctx->args[0]) || rf_is_agent((__u32)ctx->args[1]), (__s64)ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_enter_tkill")
int handle_sys_enter_tkill(struct trace_event_raw_sys_enter *ctx)
{
	return rf_judge_signal(rf_is_agent((__u32)ctx->args[0]), (__s64)ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_rt_sigqueueinfo")
int handle_sys_enter_rt_sigqueueinfo(struct trace_event_raw_sys_enter *ctx)
{
	return rf_judge_signal(rf_kill_reaches_agent((__s32)ctx->args[0]), (__s64)ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_rt_tgsigqueueinfo")
int handle_sys_enter_rt_tgsigqueueinfo(struct trace_event_raw_sys_enter *ctx)
{
	return rf_judge_signal(rf_is_agent((__u32)ctx->args[0]) || rf_is_agent((__u32)ctx->args[1]), (__s64)ctx->args[2]);
}

/*
 * The process a pidfd names: on pidfs (6.9+) its inode's private data is
 * the struct pid, on older kernels the anon file's own private data; a
 * /proc/PID directory's proc inode holds the pid.
 */
static __always_inline __u32 rf_pidfd_target(int fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file *file = rf_task_file(task, fd);
	struct inode *inode;
	struct pid *pid;
	unsigned long magic;

	if (!file)
		return 0;
	inode = BPF_CORE_READ(file, f_inode);
	magic = BPF_CORE_READ(inode, i_sb, s_magic);
	if (magic == RF_PROC_SUPER_MAGIC) {
		struct proc_inode *pi = (void *)inode - bpf_core_field_offset(struct proc_inode, vfs_inode);

		pid = BPF_CORE_READ(pi, pid);
	} else if (magic == RF_PID_FS_MAGIC) {
		pid = BPF_CORE_READ(inode, i_private);
	} else {
		pid = BPF_CORE_READ(file, private_data);
	}
	return BPF_CORE_READ(pid, numbers[0].nr);
}

SEC("tracepoint/syscalls/sys_enter_pidfd_send_signal")
int handle_sys_enter_pidfd_send_signal(struct trace_event_raw_sys_enter *ctx)
{
	struct rf_counter *cnt = rf_counter_of(RF_PROBE_AGENT);

	/* only look at the file of callers in a job: it costs a few reads */
	if (!rf_current_job()) {
		rf_count(cnt, hits);
		return 0;
	}
	return rf_judge_signal(rf_is_agent(rf_pidfd_target((int)ctx->args[0])), (__s64)ctx->args[1]);
}
