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
 *  - Every signal the kernel generates for the agent while a job process is
 *    running (signal:signal_generate) is Agent-Tamper: the job process dies,
 *    the agent counts as gone. Judged where signals are made rather than at
 *    each syscall that can make one, so that no path is missed: kill, tgkill,
 *    tkill, rt_sig*queueinfo, pidfd_send_signal (its process-group flag
 *    too), kill(-1) and kill(-pgid), F_SETOWN/SIGIO from a pipe write, 32-bit
 *    syscalls, io_uring. SIGCHLD is the one exception: the kernel sends it to
 *    the agent from the job's first process as it exits. Signal 0 makes no
 *    signal, and a signal the kernel refuses to send (EPERM) is not made.
 */
#include "lib/agent.h"

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

#define RF_SIGCHLD 17

SEC("raw_tp/signal_generate")
int BPF_PROG(handle_signal_generate, int sig, struct kernel_siginfo *info, struct task_struct *task, int group, int result)
{
	struct rf_counter *cnt;
	__u64 job;

	if (!cfg_agent_tgid || sig == RF_SIGCHLD || BPF_CORE_READ(task, tgid) != cfg_agent_tgid)
		return 0;
	job = rf_current_job();
	if (!job)
		return 0;
	cnt = rf_counter_of(RF_PROBE_AGENT);
	rf_count(cnt, hits);
	rf_agent_tampered(job, RF_DHOOK_SIGNAL, sig);
	return 0;
}
