/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/* Reading a task's open files and what a file is. */
#ifndef RINGFENCE_LIB_TASK_H
#define RINGFENCE_LIB_TASK_H

#include "common.h"
#include "net.h"

#define RF_S_IFMT 00170000
#define RF_S_IFSOCK 0140000

/* The file behind fd in task's table, or NULL. */
static __always_inline struct file *rf_task_file(struct task_struct *task, int fd)
{
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds;
	struct file *file = NULL;

	if (!fdt || fd < 0 || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
	return file;
}

static __always_inline struct sock *rf_file_sock(struct file *file)
{
	umode_t mode = BPF_CORE_READ(file, f_inode, i_mode);
	struct socket *socket;

	if ((mode & RF_S_IFMT) != RF_S_IFSOCK)
		return NULL;
	socket = BPF_CORE_READ(file, private_data);
	return BPF_CORE_READ(socket, sk);
}

#define RF_S_IFIFO 0010000

/*
 * Whether fd is a pipe or a unix socket, and the inode that identifies its
 * other end in /proc/PID/fd links: a pipe's own inode (both ends share it),
 * or the connected peer socket's inode.
 */
static __always_inline __u8 rf_stdio_ipc(struct task_struct *task, int fd, __u64 *peer)
{
	struct file *file = rf_task_file(task, fd);
	struct unix_sock *unix_sock;
	umode_t mode;
	struct sock *sk;

	if (!file)
		return RF_IPC_NONE;
	mode = BPF_CORE_READ(file, f_inode, i_mode);
	if ((mode & RF_S_IFMT) == RF_S_IFIFO) {
		*peer = BPF_CORE_READ(file, f_inode, i_ino);
		return RF_IPC_PIPE;
	}
	sk = rf_file_sock(file);
	if (!sk || BPF_CORE_READ(sk, __sk_common.skc_family) != RF_AF_UNIX)
		return RF_IPC_NONE;
	unix_sock = (struct unix_sock *)sk;
	*peer = BPF_CORE_READ(unix_sock, peer, sk_socket, file, f_inode, i_ino);
	return *peer ? RF_IPC_UNIX : RF_IPC_NONE;
}

/* What fd is for task: not open, not a socket, or a socket and its peer. */
static __always_inline void rf_describe_fd(struct task_struct *task, int fd,
					   struct rf_fd_info *info)
{
	struct file *file = rf_task_file(task, fd);
	struct sock *sk;
	__u16 family;

	if (!file) {
		info->kind = RF_FD_NONE;
		return;
	}
	sk = rf_file_sock(file);
	if (!sk) {
		info->kind = RF_FD_OTHER;
		return;
	}
	info->kind = RF_FD_SOCKET;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	info->sock_type = BPF_CORE_READ(sk, sk_type);
	info->protocol = BPF_CORE_READ(sk, sk_protocol);
	info->peer.family = family;
	if (family == RF_AF_INET) {
		BPF_CORE_READ_INTO(&info->peer.addr, sk, __sk_common.skc_daddr);
		info->peer.port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	} else if (family == RF_AF_INET6) {
		BPF_CORE_READ_INTO(&info->peer.addr, sk, __sk_common.skc_v6_daddr);
		info->peer.port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	}
}

#endif
