// SPDX-License-Identifier: Apache-2.0
/*
 * ringfence_seal: installs the job's seccomp filter on itself, then execs the
 * job's command. The filter is inherited by every process of the job, across
 * fork, exec and setuid programs (sudo), and no process can remove it: what
 * it refuses, a root job cannot do (docs/threat-model.md, layer 1).
 *
 *   ringfence_seal --agent PID [--agent PID]... [--group PGID]... -- COMMAND [ARG]...
 *
 * Refused, on every syscall ABI of the machine (x86_64, and the 32-bit i386
 * and x32 ones a 64-bit process can also enter):
 *  - Aimed at an agent (its pid or any of its threads, its process group,
 *    or -1): a signal other than 0 (kill, tkill, tgkill, rt_sigqueueinfo,
 *    rt_tgsigqueueinfo), ptrace, process_vm_readv/writev, pidfd_open, setting
 *    its limits (prlimit64), nice value, scheduling, affinity or I/O
 *    priority. The caller is killed in that syscall (SIGSYS, the syscall
 *    does not run); the sensor sees the SIGSYS and records Agent-Tamper.
 *  - Taking or detaching BPF objects the job did not make: bpf(2)'s
 *    *_GET_FD_BY_ID, OBJ_GET, LINK_DETACH, LINK_UPDATE, PROG_DETACH fail
 *    with EPERM (the filter cannot tell ringfence's objects from others').
 * Exit status 126 and one line on stderr when the filter cannot be installed:
 * the job does not run unsealed.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <linux/bpf.h>
#include <linux/ioprio.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <unistd.h>

#define MAX_TARGETS 256
#define LOW32 0xffffffffULL

static const char *me = "ringfence_seal";

static void fail(const char *what, int err)
{
	fprintf(stderr, "%s: cannot seal the job: %s: %s\n", me, what, strerror(err));
	exit(126);
}

struct targets {
	/* pids (the agents' thread group ids and thread ids), as the syscalls take them */
	long pids[MAX_TARGETS];
	int count;
};

static void add_target(struct targets *t, long pid)
{
	for (int i = 0; i < t->count; i++)
		if (t->pids[i] == pid)
			return;
	if (t->count == MAX_TARGETS)
		fail("too many agent pids and groups", E2BIG);
	t->pids[t->count++] = pid;
}

static long parse_pid(const char *flag, const char *text)
{
	char *end;
	long value;

	errno = 0;
	value = strtol(text, &end, 10);
	if (errno || *end || value <= 0 || value > INT_MAX) {
		fprintf(stderr, "%s: %s '%s': expected a process id (1-%d)\n", me, flag, text, INT_MAX);
		exit(126);
	}
	return value;
}

/* The agent and each of its threads: tkill and tgkill name a thread. */
static void add_agent(struct targets *t, long pid)
{
	char dir[64];
	struct dirent *entry;
	DIR *tasks;

	add_target(t, pid);
	snprintf(dir, sizeof(dir), "/proc/%ld/task", pid);
	tasks = opendir(dir);
	if (!tasks)
		fail(dir, errno);
	while ((entry = readdir(tasks)))
		if (entry->d_name[0] != '.')
			add_target(t, parse_pid("thread", entry->d_name));
	closedir(tasks);
}

static void add(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned count,
		const struct scmp_arg_cmp *args)
{
	int nr = seccomp_syscall_resolve_name(name);
	int err;

	if (nr == __NR_SCMP_ERROR)
		fail(name, ENOSYS);
	err = seccomp_rule_add_array(ctx, action, nr, count, args);
	if (err)
		fail(name, -err);
}

/* Argument `arg` names `pid`: compared on the low 32 bits, where the kernel reads a pid_t. */
#define PID_IS(arg, pid) SCMP_CMP(arg, SCMP_CMP_MASKED_EQ, LOW32, (uint64_t)(pid) & LOW32)

static void seal_against(scmp_filter_ctx ctx, long pid)
{
	const uint32_t kill = SCMP_ACT_KILL_PROCESS;
	struct scmp_arg_cmp a0[] = { PID_IS(0, pid) };
	struct scmp_arg_cmp a1[] = { PID_IS(1, pid) };
	/* signal 0 only asks whether a process exists */
	struct scmp_arg_cmp a0_signal[] = { PID_IS(0, pid), SCMP_A1(SCMP_CMP_NE, 0) };
	struct scmp_arg_cmp tgid_signal[] = { PID_IS(0, pid), SCMP_A2(SCMP_CMP_NE, 0) };
	struct scmp_arg_cmp tid_signal[] = { PID_IS(1, pid), SCMP_A2(SCMP_CMP_NE, 0) };
	struct scmp_arg_cmp a0_new_limit[] = { PID_IS(0, pid), SCMP_A2(SCMP_CMP_NE, 0) };
	struct scmp_arg_cmp process_who[] = { SCMP_A0(SCMP_CMP_MASKED_EQ, LOW32, PRIO_PROCESS), PID_IS(1, pid) };
	struct scmp_arg_cmp ioprio_who[] = { SCMP_A0(SCMP_CMP_MASKED_EQ, LOW32, IOPRIO_WHO_PROCESS), PID_IS(1, pid) };

	add(ctx, kill, "kill", 2, a0_signal);
	add(ctx, kill, "tkill", 2, a0_signal);
	/* tgkill(tgid, tid, sig): either naming the agent */
	add(ctx, kill, "tgkill", 2, tgid_signal);
	add(ctx, kill, "tgkill", 2, tid_signal);
	add(ctx, kill, "rt_sigqueueinfo", 2, a0_signal);
	add(ctx, kill, "rt_tgsigqueueinfo", 1, a0);
	add(ctx, kill, "rt_tgsigqueueinfo", 1, a1);
	add(ctx, kill, "ptrace", 1, a1);
	add(ctx, kill, "process_vm_readv", 1, a0);
	add(ctx, kill, "process_vm_writev", 1, a0);
	add(ctx, kill, "pidfd_open", 1, a0);
	add(ctx, kill, "prlimit64", 2, a0_new_limit);
	add(ctx, kill, "setpriority", 2, process_who);
	add(ctx, kill, "ioprio_set", 2, ioprio_who);
	add(ctx, kill, "sched_setscheduler", 1, a0);
	add(ctx, kill, "sched_setparam", 1, a0);
	add(ctx, kill, "sched_setaffinity", 1, a0);
	add(ctx, kill, "sched_setattr", 1, a0);
}

/* kill(-pgid) signals a whole process group: the agent's, or every process (-1). */
static void seal_against_group(scmp_filter_ctx ctx, long pgid)
{
	struct scmp_arg_cmp group[] = { PID_IS(0, -pgid), SCMP_A1(SCMP_CMP_NE, 0) };

	add(ctx, SCMP_ACT_KILL_PROCESS, "kill", 2, group);
}

static void seal_bpf(scmp_filter_ctx ctx)
{
	static const int refused[] = {
		BPF_OBJ_GET, BPF_PROG_DETACH, BPF_PROG_GET_FD_BY_ID, BPF_MAP_GET_FD_BY_ID,
		BPF_BTF_GET_FD_BY_ID, BPF_LINK_UPDATE, BPF_LINK_GET_FD_BY_ID, BPF_LINK_DETACH,
	};

	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		struct scmp_arg_cmp cmd[] = { SCMP_A0(SCMP_CMP_MASKED_EQ, LOW32, refused[i]) };

		add(ctx, SCMP_ACT_ERRNO(EPERM), "bpf", 1, cmd);
	}
}

int main(int argc, char **argv)
{
	struct targets agents = { .count = 0 };
	struct targets groups = { .count = 0 };
	scmp_filter_ctx ctx;
	int i, err;

	for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (i + 1 >= argc) {
			fprintf(stderr, "%s: %s needs a value\n", me, argv[i]);
			return 126;
		}
		if (strcmp(argv[i], "--agent") == 0) {
			add_agent(&agents, parse_pid(argv[i], argv[i + 1]));
		} else if (strcmp(argv[i], "--group") == 0) {
			add_target(&groups, parse_pid(argv[i], argv[i + 1]));
		} else {
			fprintf(stderr, "%s: unknown option '%s' (expected --agent PID, --group PGID, then -- COMMAND)\n", me, argv[i]);
			return 126;
		}
		i++;
	}
	if (i + 1 >= argc) {
		fprintf(stderr, "%s: no command after --\n", me);
		return 126;
	}
	if (agents.count == 0) {
		fprintf(stderr, "%s: no --agent: there is nothing to seal the job against\n", me);
		return 126;
	}

	ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (!ctx)
		fail("seccomp_init", ENOMEM);
	/* the 32-bit ABIs a 64-bit process can enter (int 0x80, x32) get the same rules */
	err = seccomp_arch_add(ctx, SCMP_ARCH_X86);
	if (err && err != -EEXIST)
		fail("adding the i386 ABI", -err);
	err = seccomp_arch_add(ctx, SCMP_ARCH_X32);
	if (err && err != -EEXIST)
		fail("adding the x32 ABI", -err);
	/* root keeps setuid programs working: no_new_privs would break sudo in the job */
	err = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
	if (err)
		fail("leaving no_new_privs off", -err);
	for (int a = 0; a < agents.count; a++)
		seal_against(ctx, agents.pids[a]);
	seal_against_group(ctx, 1); /* kill(-1): every process the caller may signal */
	for (int g = 0; g < groups.count; g++)
		seal_against_group(ctx, groups.pids[g]);
	seal_bpf(ctx);
	err = seccomp_load(ctx);
	if (err)
		fail("loading the filter", -err);
	seccomp_release(ctx);

	execvp(argv[i + 1], &argv[i + 1]);
	fprintf(stderr, "%s: cannot run %s: %s\n", me, argv[i + 1], strerror(errno));
	return errno == ENOENT ? 127 : 126;
}
