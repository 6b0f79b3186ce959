/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * The records the sensor writes into its ring buffer.
 *
 * This header is the one contract between the kernel side (bpf/) and user space
 * (native/ copies records by their size, src/abi/layout.ts decodes them).
 * test/unit/layout.test.ts compares the TypeScript offsets with the BTF that
 * clang emits for these structs, so the two cannot drift silently.
 *
 * Rules that keep the layout identical for clang -target bpf and x86_64:
 * fixed-width types only, every field naturally aligned, explicit padding.
 */
#ifndef RINGFENCE_EVENTS_H
#define RINGFENCE_EVENTS_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define RF_COMM_LEN 16
#define RF_FILENAME_MAX 256
#define RF_ARGS_MAX 1024
#define RF_STDIO_FDS 3
#define RF_LAYOUT_VERSION 1

enum rf_event_type {
	RF_EVENT_EXEC = 1,
	RF_EVENT_FORK = 2,
	RF_EVENT_EXIT = 3,
	RF_EVENT_CONNECT = 4,
	RF_EVENT_PTRACE = 5,
	RF_EVENT_VM_ACCESS = 6,
	RF_EVENT_PROC_MEM_OPEN = 7,
	RF_EVENT_STDIO_DUP = 8,
	RF_EVENT_EGRESS = 9,
	RF_EVENT_DETECTION = 10,
};

/* One counter slot per probe; index of the per-CPU `counters` map. */
enum rf_probe {
	RF_PROBE_EXEC = 0,
	RF_PROBE_FORK,
	RF_PROBE_EXIT,
	RF_PROBE_CONNECT,
	RF_PROBE_PTRACE,
	RF_PROBE_VM_ACCESS,
	RF_PROBE_PROC_MEM_OPEN,
	RF_PROBE_STDIO_DUP,
	RF_PROBE_EGRESS,
	RF_PROBE_DETECTION,
	RF_PROBE_AGENT,      /* signals to the agent, and job processes ended because the agent is gone */
	RF_PROBE_COUNT,
};

struct rf_counter {
	__u64 hits;     /* probe invocations, machine-wide */
	__u64 seen;     /* invocations inside a tracked cgroup */
	__u64 emitted;  /* records committed to the ring buffer */
	__u64 dropped;  /* ring-buffer reservations that failed */
};

/* Common to every record. `size` is the number of valid bytes of the record. */
struct rf_event_header {
	__u32 size;
	__u16 type;          /* enum rf_event_type */
	__u16 flags;         /* per-type RF_*_F_* bits */
	__u64 ktime_ns;      /* bpf_ktime_get_boot_ns(): CLOCK_BOOTTIME */
	__u64 cgroup_id;     /* cgroup v2 id (inode) of the task */
	__u64 job_cgroup_id; /* the tracked cgroup this task is in or below */
	__u32 pid;           /* thread id, initial pid namespace */
	__u32 tgid;          /* process id, initial pid namespace */
	__u32 ppid;          /* real parent's tgid */
	__u32 uid;           /* real uid, initial user namespace */
	char comm[RF_COMM_LEN];
};

/* An IPv4 or IPv6 endpoint. IPv4 sits in addr[0..3]; port in host order. */
struct rf_sockaddr {
	__u16 family;        /* AF_INET, AF_INET6, AF_UNIX, ... ; 0 = none */
	__u16 port;
	__u8 addr[16];
};

/* What one of fd 0-2 is. kind: enum rf_fd_kind. */
enum rf_fd_kind {
	RF_FD_NONE = 0,      /* not open */
	RF_FD_OTHER = 1,     /* open, not a socket */
	RF_FD_SOCKET = 2,
};

struct rf_fd_info {
	__u8 kind;
	__u8 sock_type;      /* SOCK_STREAM, SOCK_DGRAM, ... */
	__u16 protocol;      /* IPPROTO_* */
	__u32 _pad;
	struct rf_sockaddr peer;  /* family is the socket's; addr/port its peer */
};

#define RF_EXEC_F_ARGS_TRUNCATED     (1 << 0)
#define RF_EXEC_F_FILENAME_TRUNCATED (1 << 1)
#define RF_EXEC_F_MNTNS_NOT_INIT     (1 << 2)
#define RF_EXEC_F_USERNS_INIT        (1 << 3)

struct rf_exec_event {
	struct rf_event_header hdr;
	__u64 cap_effective;
	__u64 cap_permitted;
	__u32 pidns_level;   /* 0 = initial pid namespace */
	__u32 seccomp_mode;  /* 0 disabled, 1 strict, 2 filter */
	__u32 mntns_inum;
	__u32 userns_inum;
	__u32 argc;
	__u16 filename_len;  /* bytes in filename, without the NUL */
	__u16 args_len;      /* bytes in args: NUL-separated argv */
	struct rf_fd_info stdio[RF_STDIO_FDS];
	char filename[RF_FILENAME_MAX];
	char args[RF_ARGS_MAX];  /* the record ends after args_len bytes */
};

struct rf_fork_event {
	struct rf_event_header hdr;  /* the parent */
	__u32 child_pid;
	__u32 child_tgid;
};

struct rf_exit_event {
	struct rf_event_header hdr;
	__u32 exit_code;     /* wait(2) status: code << 8 | signal */
	__u32 _pad;
};

#define RF_CONNECT_F_ADDR_UNREADABLE (1 << 0)

struct rf_connect_event {
	struct rf_event_header hdr;
	__s32 fd;
	__s32 ret;           /* 0 or -errno (-EINPROGRESS for non-blocking) */
	__u8 sock_type;
	__u8 _pad;
	__u16 protocol;
	__u32 _pad2;
	struct rf_sockaddr addr;
	__u32 _pad3;
};

struct rf_ptrace_event {
	struct rf_event_header hdr;
	__s64 request;
	__u32 target_pid;    /* as the caller named it (its pid namespace) */
	__u32 _pad;
};

#define RF_VM_F_WRITE (1 << 0)

struct rf_vm_access_event {
	struct rf_event_header hdr;  /* flags: RF_VM_F_WRITE */
	__u32 target_pid;    /* as the caller named it */
	__u32 _pad;
};

#define RF_MEM_F_SELF     (1 << 0)  /* the file's mm is the opener's own */
#define RF_MEM_F_WRITABLE (1 << 1)  /* opened for writing */

struct rf_proc_mem_event {
	struct rf_event_header hdr;
	__u32 target_tgid;   /* from the proc inode, initial pid namespace */
	__s32 fd;
};

struct rf_stdio_dup_event {
	struct rf_event_header hdr;
	__s32 fd;            /* the new descriptor: 0, 1 or 2 */
	__u32 _pad;
	struct rf_fd_info info;
};

/* Where an egress attempt was judged. */
enum rf_egress_hook {
	RF_HOOK_CONNECT = 1,  /* connect(2): TCP, connected UDP */
	RF_HOOK_SENDMSG = 2,  /* sendto/sendmsg with an address: unconnected UDP */
	RF_HOOK_PACKET = 3,   /* a packet no socket hook saw: ICMP, raw sockets */
};

enum rf_verdict {
	RF_VERDICT_ALLOWED = 1,
	RF_VERDICT_BLOCKED = 2,  /* refused: EPERM, or the packet dropped */
	RF_VERDICT_AUDITED = 3,  /* not allowed, let through in audit mode */
};

/*
 * One egress attempt of a job, judged against its policy in the kernel.
 * Header fields that a hook cannot know are 0 (a packet hook has no task).
 * `count` > 1 when repeats of the same flow within a second were folded in.
 */
struct rf_egress_event {
	struct rf_event_header hdr;
	__u8 hook;           /* enum rf_egress_hook */
	__u8 verdict;        /* enum rf_verdict */
	__u8 sock_type;
	__u8 protocol;       /* IPPROTO_* */
	__u32 policy_id;
	__u32 count;
	struct rf_sockaddr dst;  /* the destination the program asked for */
};

/*
 * egress_flows: datagram and packet flows recently recorded. Repeats within
 * a second are folded into the next record's count; at the end of a job the
 * agent reads what is still folded here, so that no attempt goes uncounted.
 */
struct rf_flow_key {
	__u32 policy_id;
	__u8 hook;           /* enum rf_egress_hook */
	__u8 verdict;        /* enum rf_verdict */
	__u8 protocol;
	__u8 _pad;
	struct rf_sockaddr dst;
};

struct rf_flow_state {
	__u64 last_ns;       /* when the flow's last record was written */
	__u32 folded;        /* attempts since then, not yet in any record */
	__u32 _pad;
};

/* --- egress maps, written by user space --------------------------------- */

/* job_policies: job cgroup id -> how that job's egress is judged. */
struct rf_job_policy {
	__u32 policy_id;     /* key prefix of the job's entries in allow4/allow6 */
	__u8 block;          /* 1: refuse what is not allowed; 0: audit */
	__u8 _pad;
	__u16 dns_port;      /* the job's DNS proxy port (host order); 0: none */
	__u32 dns_ip4;       /* proxy IPv4 address (network order) */
	__u8 dns_ip6[16];    /* proxy IPv6 address, for AF_INET6 sockets */
};

/*
 * Allowed destinations, per policy, as longest-prefix-match keys:
 * policy_id and port must match exactly, then `prefixlen - 48` bits of the
 * address. Port 0 entries allow port-less traffic (ICMP, raw) to a network.
 */
#define RF_ALLOW_FIXED_BITS 48

struct rf_allow4_key {
	__u32 prefixlen;
	__u32 policy_id;
	__u16 port;          /* host order */
	__u8 addr[4];        /* network order */
	__u16 _pad;
};

struct rf_allow6_key {
	__u32 prefixlen;
	__u32 policy_id;
	__u16 port;
	__u8 addr[16];
	__u16 _pad;
};

/* What an allow entry came from (informational). */
enum rf_allow_source {
	RF_ALLOW_POLICY = 1,   /* an IP or CIDR of the policy */
	RF_ALLOW_DNS = 2,      /* learned from an allowed name's DNS answer */
	RF_ALLOW_SERVICE = 3,  /* the runner's own service endpoints */
};

/* --- lockdown ----------------------------------------------------------- */

enum rf_detection {
	RF_DETECT_REVERSE_SHELL = 1,
	RF_DETECT_MEMORY_READ = 2,        /* Runner-Worker-Memory-Read */
	RF_DETECT_PRIVILEGED_CONTAINER = 3,
	/*
	 * Not a verdict yet: a shell started to read commands from a pipe or
	 * socketpair while its output goes to one too. User space decides
	 * whether the other end relays to a remote host (Reverse-Shell through
	 * ncat -e, socat, a mkfifo pipeline) and kills or resumes it.
	 */
	RF_DETECT_SHELL_ON_IPC = 4,
	/*
	 * A job process opening another cgroup's cgroup.procs/cgroup.threads for
	 * writing, or cloning into another cgroup (CLONE_INTO_CGROUP): leaving the
	 * job's cgroup would leave the sensor's scope and the egress hooks.
	 */
	RF_DETECT_CGROUP_ESCAPE = 5,
	/*
	 * A job process signalling or stopping the agent (kill, tgkill, tkill,
	 * rt_sigqueueinfo, pidfd_send_signal, with any signal but 0) or tracing
	 * it (ptrace attach/seize). Always killed, whatever the job's lockdown
	 * says, and the agent counts as gone from then on (agent_gone).
	 */
	RF_DETECT_AGENT_TAMPER = 6,
};

#define RF_DETECT_BIT(d) (1U << (d))

enum rf_detection_action {
	RF_ACTION_KILLED = 1,   /* SIGKILL sent in the offending syscall */
	RF_ACTION_AUDITED = 2,
	RF_ACTION_HELD = 3,     /* SIGSTOPped at exec, awaiting user space's verdict */
};

/* What one of fd 0-2 is, for RF_DETECT_SHELL_ON_IPC. */
enum rf_stdio_ipc {
	RF_IPC_NONE = 0,
	RF_IPC_PIPE = 1,        /* peer: the pipe's inode, shared by both ends */
	RF_IPC_UNIX = 2,        /* peer: the inode of the connected peer socket */
};

/* The syscall or event that gave the offender away. */
enum rf_detection_hook {
	RF_DHOOK_DUP = 1,       /* dup/dup2/dup3 of a socket onto 0-2 */
	RF_DHOOK_EXEC = 2,      /* exec with a socket on 0-2, or a privileged container */
	RF_DHOOK_PROC_MEM = 3,  /* open of /proc/PID/mem */
	RF_DHOOK_VM = 4,        /* process_vm_readv/writev */
	RF_DHOOK_PTRACE = 5,
	RF_DHOOK_CGROUP_OPEN = 6,   /* open of a cgroup.procs/cgroup.threads file for writing */
	RF_DHOOK_CLONE_INTO = 7,    /* clone3 with CLONE_INTO_CGROUP */
	RF_DHOOK_SIGNAL = 8,        /* a signal sent to the agent: ptrace_request holds its number */
	RF_DHOOK_SECCOMP = 9,       /* refused by the job's seccomp filter (native/seal.c): the syscall's number, */
	                            /* | RF_SECCOMP_I386 for the i386 ABI (x32's carry bit 30 of their own) */
};

#define RF_SECCOMP_I386 (1LL << 32)

/* A detection's hdr.flags. */
enum rf_detection_flags {
	RF_DETECTION_REFUSED = 1 << 0,  /* the act was refused (seccomp): it never took effect */
};

/*
 * agent_gone (.bss): why the agent can no longer watch its jobs. Once any bit
 * is set, every process of every tracked job is SIGKILLed at its next
 * syscall: nothing of a job runs on unwatched.
 */
enum rf_agent_gone {
	RF_AGENT_EXITED = 1 << 0,    /* the agent's last thread exited (it died, or was killed) */
	RF_AGENT_TAMPERED = 1 << 1,  /* a job process signalled, stopped or traced it */
	RF_AGENT_STALLED = 1 << 2,   /* its heartbeat stopped (stopped, frozen, hung) while a job ran: watchdog_deadline */
};

/*
 * A lockdown detection. Written to the `detections` ring buffer, which only
 * detections use, so that a flood of ordinary events cannot crowd it out; the
 * kill itself never depends on either buffer.
 */
struct rf_detection_event {
	struct rf_event_header hdr;
	__u8 detection;      /* enum rf_detection */
	__u8 action;         /* enum rf_detection_action */
	__u8 hook;           /* enum rf_detection_hook */
	__u8 fd;             /* the stdio descriptor (reverse shell) */
	__u32 target_tgid;   /* protected process (memory read), the agent (tamper); 0 otherwise */
	                     /* (cgroup escape: the target cgroup's id is in cap_effective) */
	__s64 ptrace_request; /* ptrace request; for RF_DHOOK_SIGNAL the signal number */
	__u64 cap_effective; /* privileged container */
	__u32 pidns_level;
	__u32 _pad;
	struct rf_sockaddr peer;  /* reverse shell: the socket's remote end */
	__u8 stdio_ipc[RF_STDIO_FDS];  /* shell on IPC: enum rf_stdio_ipc of fd 0-2 */
	__u8 _pad2;
	__u64 stdio_peer[RF_STDIO_FDS];  /* shell on IPC: see enum rf_stdio_ipc */
};

/* job_lockdown: job cgroup id -> what to kill. Jobs without an entry are only audited. */
struct rf_job_lockdown {
	__u32 kill_mask;        /* RF_DETECT_BIT(detection) for each detection to kill */
	__u8 loopback_remote;   /* 1: a loopback peer counts as remote (reverse shell) */
	__u8 _pad[3];
};

#endif /* RINGFENCE_EVENTS_H */
