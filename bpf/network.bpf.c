// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * connect(2) attempts of job processes: the destination as the caller gave
 * it, the socket's type and protocol, and the syscall's result.
 *
 * The address is copied at syscall entry (user memory may change before
 * exit) and the record is written at exit, when the result is known.
 * Only AF_INET and AF_INET6 destinations are reported.
 */
#include "lib/task.h"

struct rf_pending_connect {
	__s32 fd;
	__u32 _pad;
	__u8 sockaddr[28]; /* sizeof(struct sockaddr_in6) */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RF_MAX_PENDING_CONNECTS);
	__type(key, __u64);
	__type(value, struct rf_pending_connect);
} pending_connects SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_connect")
int handle_sys_enter_connect(struct trace_event_raw_sys_enter *ctx)
{
	struct rf_pending_connect pending = {};
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u16 family;

	if (!rf_current_job())
		return 0;
	if (bpf_probe_read_user(&family, sizeof(family), (void *)ctx->args[1]) < 0)
		return 0;
	if (family != RF_AF_INET && family != RF_AF_INET6)
		return 0;
	pending.fd = ctx->args[0];
	bpf_probe_read_user(pending.sockaddr,
			    family == RF_AF_INET ? 16 : sizeof(pending.sockaddr),
			    (void *)ctx->args[1]);
	bpf_map_update_elem(&pending_connects, &pid_tgid, &pending, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int handle_sys_exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	struct rf_counter *cnt = rf_counter_of(RF_PROBE_CONNECT);
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct rf_pending_connect *pending;
	struct rf_connect_event *e;
	struct sock *sk = NULL;
	struct file *file;

	rf_count(cnt, hits);
	pending = bpf_map_lookup_elem(&pending_connects, &pid_tgid);
	if (!pending)
		return 0;
	e = rf_reserve(struct rf_connect_event, RF_EVENT_CONNECT, cnt);
	if (!e)
		goto out;

	e->fd = pending->fd;
	e->ret = ctx->ret;
	__builtin_memcpy(&e->addr.family, pending->sockaddr, 2);
	e->addr.port = bpf_ntohs(*(__u16 *)&pending->sockaddr[2]);
	if (e->addr.family == RF_AF_INET)
		__builtin_memcpy(e->addr.addr, &pending->sockaddr[4], 4);
	else
		__builtin_memcpy(e->addr.addr, &pending->sockaddr[8], 16);

	file = rf_task_file((struct task_struct *)bpf_get_current_task(), pending->fd);
	if (file)
		sk = rf_file_sock(file);
	if (sk) {
		e->sock_type = BPF_CORE_READ(sk, sk_type);
		e->protocol = BPF_CORE_READ(sk, sk_protocol);
	}
	rf_submit(e, cnt);
out:
	bpf_map_delete_elem(&pending_connects, &pid_tgid);
	return 0;
}
