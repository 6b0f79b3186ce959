// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * Process lifecycle: exec (with argv, container facts and what fd 0-2 are),
 * fork and exit, so that user space can keep a process tree of each job.
 *
 * Raw tracepoints rather than the formatted ones: they hand us the task and
 * the linux_binprm, which the formatted records do not carry.
 */
#include "lib/agent.h"

#define RF_USERNS_INIT_INUM 0xEFFFFFFDU /* PROC_USER_INIT_INO */

static __always_inline void rf_read_argv(struct rf_exec_event *e, struct task_struct *task)
{
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	unsigned long start = BPF_CORE_READ(mm, arg_start);
	unsigned long end = BPF_CORE_READ(mm, arg_end);
	unsigned long len = end > start ? end - start : 0;

	if (len > RF_ARGS_MAX) {
		len = RF_ARGS_MAX;
		e->hdr.flags |= RF_EXEC_F_ARGS_TRUNCATED;
	}
	barrier_var(len);
	if (len > RF_ARGS_MAX)
		len = RF_ARGS_MAX;
	if (bpf_probe_read_user(e->args, len, (void *)start) < 0)
		len = 0;
	e->args_len = len;
}

static __always_inline void rf_read_container_facts(struct rf_exec_event *e,
						    struct task_struct *task)
{
	const struct cred *cred = BPF_CORE_READ(task, cred);

	/* kernel_cap_t is a u64 since 6.3 and two u32 before: 8 bytes either way. */
	bpf_core_read(&e->cap_effective, sizeof(e->cap_effective), &cred->cap_effective);
	bpf_core_read(&e->cap_permitted, sizeof(e->cap_permitted), &cred->cap_permitted);
	e->pidns_level = BPF_CORE_READ(task, thread_pid, level);
	e->seccomp_mode = BPF_CORE_READ(task, seccomp.mode);
	e->mntns_inum = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	e->userns_inum = BPF_CORE_READ(cred, user_ns, ns.inum);
	if (cfg_init_mntns_inum && e->mntns_inum != cfg_init_mntns_inum)
		e->hdr.flags |= RF_EXEC_F_MNTNS_NOT_INIT;
	if (e->userns_inum == RF_USERNS_INIT_INUM)
		e->hdr.flags |= RF_EXEC_F_USERNS_INIT;
}

/*
 * A shell started without a command reads its commands from stdin: argv is
 * just the shell, or the shell and one option cluster without 'c' (-i, -s).
 */
static __always_inline bool rf_reads_commands_from_stdin(struct task_struct *task, struct linux_binprm *bprm)
{
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	unsigned long start = BPF_CORE_READ(mm, arg_start);
	int argc = BPF_CORE_READ(bprm, argc);
	char args[64] = {};
	int i = 0;

	if (argc == 1)
		return true;
	if (argc != 2 || bpf_probe_read_user(args, sizeof(args), (void *)start) < 0)
		return false;
	while (i < 48 && args[i])
		i++;
	i++; /* argv[1] */
	if (i >= 48 || args[i] != '-')
		return false;
	for (int j = 1; j < 12; j++) {
		char c = args[(i + j) & 63];

		if (!c)
			return j > 1;
		if (c == 'c' || c == '-')
			return false;
	}
	return false;
}

static __always_inline void rf_judge_shell_on_ipc(struct task_struct *task, struct linux_binprm *bprm, __u64 job)
{
	struct rf_detection_event d = { .detection = RF_DETECT_SHELL_ON_IPC, .hook = RF_DHOOK_EXEC };
	char comm[RF_COMM_LEN] = {};

	bpf_get_current_comm(comm, sizeof(comm));
	if (!bpf_map_lookup_elem(&stdin_shells, comm))
		return;
	d.stdio_ipc[0] = rf_stdio_ipc(task, 0, &d.stdio_peer[0]);
	if (d.stdio_ipc[0] == RF_IPC_NONE)
		return;
	d.stdio_ipc[1] = rf_stdio_ipc(task, 1, &d.stdio_peer[1]);
	d.stdio_ipc[2] = rf_stdio_ipc(task, 2, &d.stdio_peer[2]);
	if (d.stdio_ipc[1] == RF_IPC_NONE && d.stdio_ipc[2] == RF_IPC_NONE)
		return;
	if (!rf_reads_commands_from_stdin(task, bprm))
		return;
	rf_hold_for_verdict(job, &d);
}

/*
 * Offences visible at exec: a program started with a remote socket on its
 * stdio (Reverse-Shell), and a containerised process holding CAP_SYS_ADMIN in
 * the initial user namespace (Privileged-Container). Judged from the task
 * itself, before and independently of the exec record.
 */
static __always_inline void rf_judge_exec(struct task_struct *task, __u64 job)
{
	struct rf_detection_event d = {};
	const struct cred *cred = BPF_CORE_READ(task, cred);
	__u64 caps = 0;

	for (int fd = 0; fd < RF_STDIO_FDS; fd++) {
		struct rf_fd_info info = {};

		rf_describe_fd(task, fd, &info);
		if (rf_judge_stdio_socket(job, fd, &info, RF_DHOOK_EXEC))
			return;
	}

	d.pidns_level = BPF_CORE_READ(task, thread_pid, level);
	if (d.pidns_level == 0 || !cfg_init_mntns_inum ||
	    BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum) == cfg_init_mntns_inum ||
	    BPF_CORE_READ(cred, user_ns, ns.inum) != RF_USERNS_INIT_INUM)
		return;
	bpf_core_read(&caps, sizeof(caps), &cred->cap_effective);
	if (!(caps & (1ULL << RF_CAP_SYS_ADMIN)))
		return;
	d.detection = RF_DETECT_PRIVILEGED_CONTAINER;
	d.hook = RF_DHOOK_EXEC;
	d.cap_effective = caps;
	rf_detected(job, &d);
}

SEC("raw_tp/sched_process_exec")
int BPF_PROG(handle_sched_process_exec, struct task_struct *task, pid_t old_pid,
	     struct linux_binprm *bprm)
{
	struct rf_counter *cnt = rf_counter_of(RF_PROBE_EXEC);
	struct rf_exec_event *e;
	__u64 job;
	long n;

	rf_count(cnt, hits);
	rf_protect_by_comm(); /* machine-wide: Runner.Worker is not in a job */
	job = rf_current_job();
	if (!job)
		return 0;
	rf_judge_exec(task, job);
	rf_judge_shell_on_ipc(task, bprm, job);
	e = rf_reserve_in(struct rf_exec_event, RF_EVENT_EXEC, cnt, job);
	if (!e)
		return 0;

	n = bpf_probe_read_kernel_str(e->filename, sizeof(e->filename),
				      BPF_CORE_READ(bprm, filename));
	if (n < 1)
		n = 1;
	if (n == sizeof(e->filename))
		e->hdr.flags |= RF_EXEC_F_FILENAME_TRUNCATED;
	e->filename_len = n - 1;
	e->argc = BPF_CORE_READ(bprm, argc);
	rf_read_argv(e, task);
	rf_read_container_facts(e, task);
	for (int fd = 0; fd < RF_STDIO_FDS; fd++)
		rf_describe_fd(task, fd, &e->stdio[fd]);

	e->hdr.size = offsetof(struct rf_exec_event, args) + e->args_len;
	rf_submit(e, cnt);
	return 0;
}

SEC("raw_tp/sched_process_fork")
int BPF_PROG(handle_sched_process_fork, struct task_struct *parent, struct task_struct *child)
{
	struct rf_counter *cnt = rf_counter_of(RF_PROBE_FORK);
	struct rf_fork_event *e;
	__u32 child_pid = BPF_CORE_READ(child, pid);
	__u32 child_tgid = BPF_CORE_READ(child, tgid);

	rf_count(cnt, hits);
	rf_note_agent_thread(child_pid, child_tgid);
	if (child_pid != child_tgid)
		return 0; /* a new thread, not a new process */
	e = rf_reserve(struct rf_fork_event, RF_EVENT_FORK, cnt);
	if (!e)
		return 0;
	e->child_pid = child_pid;
	e->child_tgid = child_tgid;
	rf_submit(e, cnt);
	return 0;
}

SEC("raw_tp/sched_process_exit")
int BPF_PROG(handle_sched_process_exit, struct task_struct *task)
{
	struct rf_counter *cnt = rf_counter_of(RF_PROBE_EXIT);
	bool last_thread = BPF_CORE_READ(task, signal, live.counter) == 0;
	struct rf_exit_event *e;
	__u32 tgid;

	rf_count(cnt, hits);
	tgid = BPF_CORE_READ(task, tgid);
	rf_note_agent_exit(BPF_CORE_READ(task, pid), tgid, last_thread);
	/* Report the process once: when its last thread exits. */
	if (!last_thread)
		return 0;
	if (rf_is_protected(tgid))
		bpf_map_delete_elem(&protected_tgids, &tgid);
	e = rf_reserve(struct rf_exit_event, RF_EVENT_EXIT, cnt);
	if (!e)
		return 0;
	e->exit_code = BPF_CORE_READ(task, exit_code);
	rf_submit(e, cnt);
	return 0;
}
