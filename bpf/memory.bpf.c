// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * Access to another process's memory: ptrace requests, process_vm_readv and
 * process_vm_writev, and successful opens of /proc/PID/mem.
 *
 * A /proc/PID/mem open is recognised by the opened file itself, not by the
 * path string, so relative paths, /proc/self, symlinks and bind mounts of
 * /proc all look the same: its file_operations' open is mem_open (address
 * from kallsyms) and its proc inode names the target.
 */
#include "lib/agent.h"

#define RF_PROC_SUPER_MAGIC 0x9fa0
#define RF_FMODE_WRITE 0x2

#define RF_PTRACE_PEEKTEXT 1
#define RF_PTRACE_POKEUSER 6
#define RF_PTRACE_ATTACH 16
#define RF_PTRACE_SEIZE 0x4206

/*
 * The pid a syscall names, as a pid of the initial namespace, when the caller
 * is there; 0 otherwise. A caller in a child pid namespace cannot name a
 * process outside it, and protected processes live in the initial one.
 */
static __always_inline __u32 rf_global_target(__u32 pid)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	return BPF_CORE_READ(task, thread_pid, level) == 0 ? pid : 0;
}

/* Runner-Worker-Memory-Read: reading or writing a protected process's memory. */
static __always_inline void rf_judge_memory_access(__u64 job, __u32 target, __u8 hook, __s64 request)
{
	struct rf_detection_event d = {
		.detection = RF_DETECT_MEMORY_READ,
		.hook = hook,
		.target_tgid = target,
		.ptrace_request = request,
	};

	if (!rf_is_protected(target) || target == bpf_get_current_pid_tgid() >> 32)
		return;
	if (rf_is_agent(target)) {
		/* the agent's memory is the agent: reading or writing it is tampering, whatever lockdown says */
		rf_agent_tampered(job, hook, request);
		return;
	}
	rf_detected(job, &d);
}

SEC("tracepoint/syscalls/sys_enter_ptrace")
int handle_sys_enter_ptrace(struct trace_event_raw_sys_enter *ctx)
{
	struct rf_counter *cnt = rf_counter_of(RF_PROBE_PTRACE);
	struct rf_ptrace_event *e;
	__s64 request = ctx->args[0];
	__u64 job;

	rf_count(cnt, hits);
	job = rf_current_job();
	if (!job)
		return 0;
	if ((request == RF_PTRACE_ATTACH || request == RF_PTRACE_SEIZE) && rf_is_agent(rf_global_target(ctx->args[1])))
		rf_agent_tampered(job, RF_DHOOK_PTRACE, request); /* attaching stops the agent */
	else if (request == RF_PTRACE_ATTACH || request == RF_PTRACE_SEIZE ||
		 (request >= RF_PTRACE_PEEKTEXT && request <= RF_PTRACE_POKEUSER))
		rf_judge_memory_access(job, rf_global_target(ctx->args[1]), RF_DHOOK_PTRACE, request);
	e = rf_reserve_in(struct rf_ptrace_event, RF_EVENT_PTRACE, cnt, job);
	if (!e)
		return 0;
	e->request = ctx->args[0];
	e->target_pid = ctx->args[1];
	rf_submit(e, cnt);
	return 0;
}

static __always_inline int rf_vm_access(struct trace_event_raw_sys_enter *ctx, __u16 flags)
{
	struct rf_counter *cnt = rf_counter_of(RF_PROBE_VM_ACCESS);
	struct rf_vm_access_event *e;
	__u64 job;

	rf_count(cnt, hits);
	job = rf_current_job();
	if (!job)
		return 0;
	rf_judge_memory_access(job, rf_global_target(ctx->args[0]), RF_DHOOK_VM, -1);
	e = rf_reserve_in(struct rf_vm_access_event, RF_EVENT_VM_ACCESS, cnt, job);
	if (!e)
		return 0;
	e->hdr.flags = flags;
	e->target_pid = ctx->args[0];
	rf_submit(e, cnt);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_process_vm_readv")
int handle_sys_enter_process_vm_readv(struct trace_event_raw_sys_enter *ctx)
{
	return rf_vm_access(ctx, 0);
}

SEC("tracepoint/syscalls/sys_enter_process_vm_writev")
int handle_sys_enter_process_vm_writev(struct trace_event_raw_sys_enter *ctx)
{
	return rf_vm_access(ctx, RF_VM_F_WRITE);
}

static __always_inline bool rf_is_proc_mem(struct file *file)
{
	const struct file_operations *fops = BPF_CORE_READ(file, f_op);
	struct dentry *dentry;
	char name[4] = {};

	if (cfg_mem_open_addr)
		return (__u64)BPF_CORE_READ(fops, open) == cfg_mem_open_addr;

	/* Without kallsyms: a file named "mem" on procfs. */
	if (BPF_CORE_READ(file, f_inode, i_sb, s_magic) != RF_PROC_SUPER_MAGIC)
		return false;
	dentry = BPF_CORE_READ(file, f_path.dentry);
	bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(dentry, d_name.name));
	return name[0] == 'm' && name[1] == 'e' && name[2] == 'm' && name[3] == 0;
}

/* cgroup.procs or cgroup.threads of the cgroup2 hierarchy, opened for writing. */
static __always_inline bool rf_is_cgroup_procs_for_writing(struct file *file)
{
	struct dentry *dentry;
	static const char procs[] = "cgroup.procs", threads[] = "cgroup.threads";
	char name[16] = {};
	bool is_procs = true, is_threads = true;

	if (!(BPF_CORE_READ(file, f_mode) & RF_FMODE_WRITE))
		return false;
	if (BPF_CORE_READ(file, f_inode, i_sb, s_magic) != RF_CGROUP2_SUPER_MAGIC)
		return false;
	dentry = BPF_CORE_READ(file, f_path.dentry);
	bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(dentry, d_name.name));
	for (int i = 0; i < (int)sizeof(procs); i++)
		is_procs = is_procs && name[i] == procs[i];
	for (int i = 0; i < (int)sizeof(threads); i++)
		is_threads = is_threads && name[i] == threads[i];
	return is_procs || is_threads;
}

static __always_inline int rf_open_exit(struct trace_event_raw_sys_exit *ctx)
{
	struct rf_counter *cnt = rf_counter_of(RF_PROBE_PROC_MEM_OPEN);
	struct task_struct *task;
	struct rf_proc_mem_event *e;
	struct proc_inode *pi;
	struct inode *inode;
	struct file *file;
	__u64 job;
	struct pid *pid;
	__u32 target;
	bool self;
	int fd = ctx->ret;

	rf_count(cnt, hits);
	if (fd < 0)
		return 0;
	job = rf_current_job();
	if (!job)
		return 0;
	task = (struct task_struct *)bpf_get_current_task();
	file = rf_task_file(task, fd);
	if (!file)
		return 0;
	if (rf_is_cgroup_procs_for_writing(file)) {
		rf_judge_cgroup_target(BPF_CORE_READ(file, f_path.dentry, d_parent), job, RF_DHOOK_CGROUP_OPEN);
		return 0;
	}
	if (!rf_is_proc_mem(file))
		return 0;

	inode = BPF_CORE_READ(file, f_inode);
	pi = (void *)inode - bpf_core_field_offset(struct proc_inode, vfs_inode);
	pid = BPF_CORE_READ(pi, pid);
	target = BPF_CORE_READ(pid, numbers[0].nr);
	/* mem_open stores the target's mm as the file's private data. */
	self = BPF_CORE_READ(file, private_data) == (void *)BPF_CORE_READ(task, mm);
	if (!self)
		rf_judge_memory_access(job, target, RF_DHOOK_PROC_MEM, -1);

	e = rf_reserve_in(struct rf_proc_mem_event, RF_EVENT_PROC_MEM_OPEN, cnt, job);
	if (!e)
		return 0;
	e->target_tgid = target;
	e->fd = fd;
	if (self)
		e->hdr.flags |= RF_MEM_F_SELF;
	if (BPF_CORE_READ(file, f_mode) & RF_FMODE_WRITE)
		e->hdr.flags |= RF_MEM_F_WRITABLE;
	rf_submit(e, cnt);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_openat")
int handle_sys_exit_openat(struct trace_event_raw_sys_exit *ctx)
{
	return rf_open_exit(ctx);
}

SEC("tracepoint/syscalls/sys_exit_openat2")
int handle_sys_exit_openat2(struct trace_event_raw_sys_exit *ctx)
{
	return rf_open_exit(ctx);
}

SEC("tracepoint/syscalls/sys_exit_open")
int handle_sys_exit_open(struct trace_event_raw_sys_exit *ctx)
{
	return rf_open_exit(ctx);
}

#define RF_CLONE_INTO_CGROUP 0x200000000ULL

/* clone3(CLONE_INTO_CGROUP): a child born in another cgroup. Judged before the clone. */
SEC("tracepoint/syscalls/sys_enter_clone3")
int handle_sys_enter_clone3(struct trace_event_raw_sys_enter *ctx)
{
	struct task_struct *task;
	struct file *file;
	__u64 args[11] = {}; /* struct clone_args up to .cgroup */
	__u64 job;

	if (ctx->args[1] < sizeof(args))
		return 0;
	job = rf_current_job();
	if (!job)
		return 0;
	if (bpf_probe_read_user(args, sizeof(args), (void *)ctx->args[0]) < 0 || !(args[0] & RF_CLONE_INTO_CGROUP))
		return 0;
	task = (struct task_struct *)bpf_get_current_task();
	file = rf_task_file(task, (int)args[10]);
	if (file)
		rf_judge_cgroup_target(BPF_CORE_READ(file, f_path.dentry), job, RF_DHOOK_CLONE_INTO);
	return 0;
}
