// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * A socket duplicated onto stdin, stdout or stderr: the shape of a reverse
 * shell (bash /dev/tcp redirections, python's os.dup2, nc -e before exec).
 *
 * Judged at syscall exit on the resulting descriptor, so a failed dup2 is
 * not reported and the record says what fd 0-2 now really is.
 */
#include "lib/lockdown.h"

static __always_inline int rf_dup_exit(struct trace_event_raw_sys_exit *ctx)
{
	struct rf_counter *cnt = rf_counter_of(RF_PROBE_STDIO_DUP);
	struct rf_stdio_dup_event *e;
	struct rf_fd_info info = {};
	struct task_struct *task;
	struct file *file;
	__u64 job;
	long fd = ctx->ret;

	rf_count(cnt, hits);
	if (fd < 0 || fd >= RF_STDIO_FDS)
		return 0;
	job = rf_current_job();
	if (!job)
		return 0;
	task = (struct task_struct *)bpf_get_current_task();
	file = rf_task_file(task, fd);
	if (!file || !rf_file_sock(file))
		return 0;

	rf_describe_fd(task, fd, &info);
	rf_judge_stdio_socket(job, fd, &info, RF_DHOOK_DUP);
	e = rf_reserve_in(struct rf_stdio_dup_event, RF_EVENT_STDIO_DUP, cnt, job);
	if (!e)
		return 0;
	e->fd = fd;
	e->info = info;
	rf_submit(e, cnt);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_dup")
int handle_sys_exit_dup(struct trace_event_raw_sys_exit *ctx)
{
	return rf_dup_exit(ctx);
}

SEC("tracepoint/syscalls/sys_exit_dup2")
int handle_sys_exit_dup2(struct trace_event_raw_sys_exit *ctx)
{
	return rf_dup_exit(ctx);
}

SEC("tracepoint/syscalls/sys_exit_dup3")
int handle_sys_exit_dup3(struct trace_event_raw_sys_exit *ctx)
{
	return rf_dup_exit(ctx);
}
