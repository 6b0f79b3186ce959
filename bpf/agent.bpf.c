// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * Fail closed when the agent is gone or attacked.
 *
 *  - Every syscall of a tracked job's process is checked against agent_gone
 *    (raw_syscalls:sys_enter): once the agent has exited, been killed, or
 *    been signalled, stopped or traced by a job process, the caller gets
 *    SIGKILL before the syscall runs, so the job makes no further progress
 *    unwatched; and once the agent's heartbeat is overdue (watchdog_deadline:
 *    it was stopped from outside, frozen, or hangs). The same for the processes of a doomed job (doomed_jobs: one
 *    of its processes was refused an act on the agent). While the agent is fine this costs one load of a global per
 *    syscall: the job lookup happens only after something went wrong.
 *  - A job process its seccomp filter killed (native/seal.c: SIGSYS in a
 *    syscall aimed at the agent, which never ran) is Agent-Tamper too, but
 *    refused: the agent is whole and only that job ends.
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
	__u64 deadline = watchdog_deadline;
	struct rf_counter *cnt;
	bool stalled;
	__u64 job;

	/* one clock read per syscall while a watchdog is set (bench/failclosed.ts measures the gate) */
	stalled = deadline && bpf_ktime_get_ns() > deadline;
	if (!agent_gone && !jobs_doomed && !stalled)
		return 0;
	job = rf_current_job();
	if (!job)
		return 0;
	if (stalled)
		rf_mark_agent_gone(RF_AGENT_STALLED);
	else if (!agent_gone && !bpf_map_lookup_elem(&doomed_jobs, &job))
		return 0;
	bpf_send_signal(RF_SIGKILL);
	cnt = rf_counter_of(RF_PROBE_AGENT);
	rf_count(cnt, seen);
	return 0;
}

#define RF_SIGCHLD 17
#define RF_SIGSYS 31
#define RF_SYS_SECCOMP 1
#define RF_AUDIT_ARCH_X86_64 0xc000003eU
#define RF_AUDIT_ARCH_I386 0x40000003U
#define RF_X32_SYSCALL_BIT 0x40000000

/*
 * The syscalls the job's seccomp filter (native/seal.c) kills for when they
 * are aimed at the agent, by ABI. x32 numbers carry RF_X32_SYSCALL_BIT; its
 * own numbers for rt_sig*queueinfo and process_vm_* are listed as they are.
 */
static __always_inline bool rf_sealed_syscall(__u32 arch, int nr)
{
	if (arch == RF_AUDIT_ARCH_I386) {
		switch (nr) {
		case 37: case 238: case 270: case 178: case 335: /* kill tkill tgkill rt_sigqueueinfo rt_tgsigqueueinfo */
		case 26: case 347: case 348: case 434:           /* ptrace process_vm_readv/writev pidfd_open */
		case 340: case 97: case 289:                     /* prlimit64 setpriority ioprio_set */
		case 156: case 154: case 241: case 351:          /* sched_setscheduler/param/affinity/attr */
			return true;
		}
		return false;
	}
	if (arch != RF_AUDIT_ARCH_X86_64)
		return false;
	if (nr & RF_X32_SYSCALL_BIT) {
		nr &= ~RF_X32_SYSCALL_BIT;
		/* ptrace rt_sigqueueinfo rt_tgsigqueueinfo process_vm_readv/writev */
		if (nr == 521 || nr == 524 || nr == 536 || nr == 539 || nr == 540)
			return true;
	}
	switch (nr) {
	case 62: case 200: case 234: case 129: case 297: /* kill tkill tgkill rt_sigqueueinfo rt_tgsigqueueinfo */
	case 101: case 310: case 311: case 434:          /* ptrace process_vm_readv/writev pidfd_open */
	case 302: case 141: case 251:                    /* prlimit64 setpriority ioprio_set */
	case 144: case 142: case 203: case 314:          /* sched_setscheduler/param/affinity/attr */
		return true;
	}
	return false;
}

/*
 * A job process the job's seccomp filter killed for a syscall aimed at the
 * agent: the kernel makes the SIGSYS (SYS_SECCOMP) in that process's own
 * syscall, which never ran. Recognised by the syscall: these are the ones
 * the filter kills for, and no other filter a job may bring kills for them.
 */
static __always_inline void rf_judge_seccomp_kill(struct kernel_siginfo *info, struct task_struct *task)
{
	struct rf_counter *cnt;
	__u64 job;
	__u32 arch;
	int nr;

	if ((void *)task != (void *)bpf_get_current_task() || BPF_CORE_READ(info, si_code) != RF_SYS_SECCOMP)
		return;
	nr = BPF_CORE_READ(info, _sifields._sigsys._syscall);
	arch = BPF_CORE_READ(info, _sifields._sigsys._arch);
	if (!rf_sealed_syscall(arch, nr))
		return;
	job = rf_current_job();
	if (!job)
		return;
	cnt = rf_counter_of(RF_PROBE_AGENT);
	rf_count(cnt, hits);
	/* the number and its ABI: RF_SECCOMP_I386 for i386, x32's carry RF_X32_SYSCALL_BIT */
	rf_tampered(job, RF_DHOOK_SECCOMP, (arch == RF_AUDIT_ARCH_I386 ? RF_SECCOMP_I386 : 0) | nr, false);
}

SEC("raw_tp/signal_generate")
int BPF_PROG(handle_signal_generate, int sig, struct kernel_siginfo *info, struct task_struct *task, int group, int result)
{
	struct rf_counter *cnt;
	__u64 job;

	if (sig == RF_SIGSYS) {
		rf_judge_seccomp_kill(info, task);
		return 0;
	}
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
