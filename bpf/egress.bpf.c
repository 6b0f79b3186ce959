// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * Egress policy in the kernel, attached to each job's cgroup (and so to every
 * cgroup below it):
 *
 *  - connect4/6 and sendmsg4/6 judge a destination against the job's allowed
 *    IPs and networks (allow4/allow6, filled from the policy, from the DNS
 *    proxy's answers and from the runner's service list). Block mode refuses
 *    with EPERM, audit mode lets it pass; both record an egress event.
 *  - DNS (port 53, UDP and TCP, to any address) is redirected to the job's
 *    DNS proxy; recvmsg4/6 and getpeername4/6 put the original resolver back
 *    as the peer, so glibc and musl accept the answers.
 *  - cgroup_skb/egress drops packets that no socket hook judged (ICMP, raw
 *    sockets) unless their destination is allowed.
 *
 * Loopback is always allowed. An IPv4-mapped IPv6 destination is judged as
 * the IPv4 address, so AF_INET6 sockets cannot sidestep IPv4 rules.
 */
#include "lib/common.h"
#include "lib/net.h"

#define RF_MAX_ALLOW 262144
#define RF_DNS_PORT 53
#define RF_IPPROTO_TCP 6
#define RF_IPPROTO_UDP 17
#define RF_SOCK_RAW 3
#define RF_ETH_P_IP 0x0800
#define RF_ETH_P_IPV6 0x86DD
#define RF_FOLD_NS 1000000000ULL /* repeats of a flow within 1 s make one record */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RF_MAX_TRACKED_CGROUPS);
	__type(key, __u64);
	__type(value, struct rf_job_policy);
} job_policies SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, RF_MAX_ALLOW);
	__type(key, struct rf_allow4_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} allow4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, RF_MAX_ALLOW);
	__type(key, struct rf_allow6_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} allow6 SEC(".maps");

/* Socket cookie -> the resolver a redirected DNS socket really asked for. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct rf_sockaddr);
} dns_origins SEC(".maps");

/* Flows of datagrams and packets recently recorded, to fold repeats (events.h). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct rf_flow_key);
	__type(value, struct rf_flow_state);
} egress_flows SEC(".maps");

/* ---- judging ----------------------------------------------------------- */

static __always_inline bool rf_allowed4(__u32 policy_id, __u16 port, __u32 ip)
{
	struct rf_allow4_key key = {
		.prefixlen = RF_ALLOW_FIXED_BITS + 32,
		.policy_id = policy_id,
		.port = port,
	};

	__builtin_memcpy(key.addr, &ip, 4);
	return bpf_map_lookup_elem(&allow4, &key) != NULL;
}

static __always_inline bool rf_allowed6(__u32 policy_id, __u16 port, const __u32 ip[4])
{
	struct rf_allow6_key key = {
		.prefixlen = RF_ALLOW_FIXED_BITS + 128,
		.policy_id = policy_id,
		.port = port,
	};

	__builtin_memcpy(key.addr, ip, 16);
	return bpf_map_lookup_elem(&allow6, &key) != NULL;
}

/* ---- records ----------------------------------------------------------- */

/*
 * Whether to write a record for this attempt: always for connects; for
 * datagrams and packets once per flow per second, the record then counting
 * the repeats it stands for (*count).
 */
static __always_inline bool rf_should_record(struct rf_flow_key *flow, __u32 *count)
{
	struct rf_flow_state *state, fresh = {};
	__u64 now = bpf_ktime_get_boot_ns();

	*count = 1;
	if (flow->hook == RF_HOOK_CONNECT)
		return true;
	state = bpf_map_lookup_elem(&egress_flows, flow);
	if (state && now - state->last_ns < RF_FOLD_NS) {
		__sync_fetch_and_add(&state->folded, 1);
		return false;
	}
	if (state) {
		*count += state->folded;
		state->folded = 0;
		state->last_ns = now;
		return true;
	}
	fresh.last_ns = now;
	bpf_map_update_elem(&egress_flows, flow, &fresh, BPF_ANY);
	return true;
}

static __always_inline void rf_record_egress(struct rf_job_policy *policy, __u64 job, __u8 hook,
					     __u8 verdict, __u8 sock_type, __u8 protocol,
					     struct rf_sockaddr *dst, bool has_task)
{
	struct rf_counter *cnt = rf_counter_of(RF_PROBE_EGRESS);
	struct rf_flow_key flow = {
		.policy_id = policy->policy_id,
		.hook = hook,
		.verdict = verdict,
		.protocol = protocol,
		.dst = *dst,
	};
	struct rf_egress_event *e;
	__u32 count;

	rf_count(cnt, seen);
	if (!rf_should_record(&flow, &count))
		return;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		rf_count(cnt, dropped);
		return;
	}
	__builtin_memset(&e->hdr, 0, sizeof(e->hdr));
	rf_fill_record_header(&e->hdr, RF_EVENT_EGRESS, sizeof(*e), job);
	/* socket hooks run in the task's context; packets may not (no ids, then) */
	if (has_task)
		rf_fill_task_ids(&e->hdr);
	e->hook = hook;
	e->verdict = verdict;
	e->sock_type = sock_type;
	e->protocol = protocol;
	e->policy_id = policy->policy_id;
	e->count = count;
	e->dst = *dst;
	rf_submit(e, cnt);
}

static __always_inline struct rf_job_policy *rf_policy_of_current(__u64 *job)
{
	*job = rf_current_job();
	if (!*job)
		return NULL;
	return bpf_map_lookup_elem(&job_policies, job);
}

/* 1 lets the syscall go on, 0 makes it fail with EPERM. */
static __always_inline int rf_verdict_to_return(struct rf_job_policy *policy, bool allowed,
						__u8 *verdict)
{
	if (allowed) {
		*verdict = RF_VERDICT_ALLOWED;
		return 1;
	}
	*verdict = policy->block ? RF_VERDICT_BLOCKED : RF_VERDICT_AUDITED;
	return policy->block ? 0 : 1;
}

/* ---- socket hooks ------------------------------------------------------ */

/* ctx->user_ip6 is four u32 context fields: written one by one. */
static __always_inline void rf_set_user_ip6(struct bpf_sock_addr *ctx, const __u32 ip[4])
{
	ctx->user_ip6[0] = ip[0];
	ctx->user_ip6[1] = ip[1];
	ctx->user_ip6[2] = ip[2];
	ctx->user_ip6[3] = ip[3];
}

/* The resolver a DNS query was sent to, for the socket's replies (rf_restore_origin*). */
static __always_inline void rf_remember_dns_origin(struct bpf_sock_addr *ctx, const struct rf_sockaddr *resolver)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);

	bpf_map_update_elem(&dns_origins, &cookie, resolver, BPF_ANY);
}

static __always_inline int rf_judge4(struct bpf_sock_addr *ctx, __u8 hook)
{
	struct rf_sockaddr dst = { .family = RF_AF_INET };
	struct rf_job_policy *policy;
	__u32 ip = ctx->user_ip4;
	__u16 port = bpf_ntohs(ctx->user_port);
	__u8 verdict;
	__u64 job;
	int ret;

	policy = rf_policy_of_current(&job);
	if (!policy)
		return 1;
	dst.port = port;
	__builtin_memcpy(dst.addr, &ip, 4);
	if (port == RF_DNS_PORT && policy->dns_port) {
		rf_remember_dns_origin(ctx, &dst);
		ctx->user_ip4 = policy->dns_ip4;
		ctx->user_port = bpf_htons(policy->dns_port);
		return 1;
	}
	if (rf_loopback4(ip))
		return 1;
	ret = rf_verdict_to_return(policy, rf_allowed4(policy->policy_id, port, ip), &verdict);
	rf_record_egress(policy, job, hook, verdict, ctx->type, ctx->protocol, &dst, true);
	return ret;
}

static __always_inline int rf_judge6(struct bpf_sock_addr *ctx, __u8 hook)
{
	struct rf_sockaddr dst = { .family = RF_AF_INET6 };
	struct rf_job_policy *policy;
	__u32 ip[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3] };
	__u16 port = bpf_ntohs(ctx->user_port);
	bool allowed;
	__u32 v4;
	__u8 verdict;
	__u64 job;
	int ret;

	policy = rf_policy_of_current(&job);
	if (!policy)
		return 1;
	dst.port = port;
	__builtin_memcpy(dst.addr, ip, 16);
	if (port == RF_DNS_PORT && policy->dns_port) {
		rf_remember_dns_origin(ctx, &dst);
		if (rf_mapped4(ip, &v4)) {
			/* keep the socket's family: ::ffff:proxy-ipv4 */
			ctx->user_ip6[3] = policy->dns_ip4;
		} else {
			__u32 proxy[4];

			__builtin_memcpy(proxy, policy->dns_ip6, 16);
			rf_set_user_ip6(ctx, proxy);
		}
		ctx->user_port = bpf_htons(policy->dns_port);
		return 1;
	}
	if (rf_loopback6(ip))
		return 1;
	if (rf_mapped4(ip, &v4))
		allowed = rf_allowed4(policy->policy_id, port, v4);
	else
		allowed = rf_allowed6(policy->policy_id, port, ip);
	ret = rf_verdict_to_return(policy, allowed, &verdict);
	rf_record_egress(policy, job, hook, verdict, ctx->type, ctx->protocol, &dst, true);
	return ret;
}

SEC("cgroup/connect4")
int handle_connect4(struct bpf_sock_addr *ctx)
{
	return rf_judge4(ctx, RF_HOOK_CONNECT);
}

SEC("cgroup/connect6")
int handle_connect6(struct bpf_sock_addr *ctx)
{
	return rf_judge6(ctx, RF_HOOK_CONNECT);
}

SEC("cgroup/sendmsg4")
int handle_sendmsg4(struct bpf_sock_addr *ctx)
{
	return rf_judge4(ctx, RF_HOOK_SENDMSG);
}

SEC("cgroup/sendmsg6")
int handle_sendmsg6(struct bpf_sock_addr *ctx)
{
	return rf_judge6(ctx, RF_HOOK_SENDMSG);
}

/*
 * A reply or peer address that is the job's proxy becomes the resolver the
 * socket asked for. Only that address: a socket that once sent a DNS query
 * may receive other datagrams, whose senders must show as they are. The
 * socket's entry is looked up first: most sockets never asked DNS.
 */
static __always_inline struct rf_sockaddr *rf_dns_origin(struct bpf_sock_addr *ctx, __u16 family)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct rf_sockaddr *origin = bpf_map_lookup_elem(&dns_origins, &cookie);

	return origin && origin->family == family ? origin : NULL;
}

/* The current job's policy when ctx's port is its DNS proxy's, else NULL. */
static __always_inline struct rf_job_policy *rf_proxy_port_policy(struct bpf_sock_addr *ctx)
{
	struct rf_job_policy *policy;
	__u64 job;

	policy = rf_policy_of_current(&job);
	if (!policy || !policy->dns_port || ctx->user_port != bpf_htons(policy->dns_port))
		return NULL;
	return policy;
}

static __always_inline void rf_restore_origin4(struct bpf_sock_addr *ctx)
{
	struct rf_sockaddr *origin = rf_dns_origin(ctx, RF_AF_INET);
	struct rf_job_policy *policy;
	__u32 ip;

	if (!origin)
		return;
	policy = rf_proxy_port_policy(ctx);
	if (!policy || ctx->user_ip4 != policy->dns_ip4)
		return;
	__builtin_memcpy(&ip, origin->addr, 4);
	ctx->user_ip4 = ip;
	ctx->user_port = bpf_htons(RF_DNS_PORT);
}

static __always_inline void rf_restore_origin6(struct bpf_sock_addr *ctx)
{
	struct rf_sockaddr *origin = rf_dns_origin(ctx, RF_AF_INET6);
	__u32 ip[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3] };
	struct rf_job_policy *policy;
	__u32 proxy[4], v4;

	if (!origin)
		return;
	policy = rf_proxy_port_policy(ctx);
	if (!policy)
		return;
	/* the proxy as rf_judge6 wrote it: ::ffff:dns_ip4 or dns_ip6 */
	__builtin_memcpy(proxy, policy->dns_ip6, 16);
	if (rf_mapped4(ip, &v4) ? v4 != policy->dns_ip4
				: (ip[0] != proxy[0] || ip[1] != proxy[1] || ip[2] != proxy[2] || ip[3] != proxy[3]))
		return;
	__builtin_memcpy(ip, origin->addr, 16);
	rf_set_user_ip6(ctx, ip);
	ctx->user_port = bpf_htons(RF_DNS_PORT);
}

SEC("cgroup/recvmsg4")
int handle_recvmsg4(struct bpf_sock_addr *ctx)
{
	rf_restore_origin4(ctx);
	return 1;
}

SEC("cgroup/recvmsg6")
int handle_recvmsg6(struct bpf_sock_addr *ctx)
{
	rf_restore_origin6(ctx);
	return 1;
}

SEC("cgroup/getpeername4")
int handle_getpeername4(struct bpf_sock_addr *ctx)
{
	rf_restore_origin4(ctx);
	return 1;
}

SEC("cgroup/getpeername6")
int handle_getpeername6(struct bpf_sock_addr *ctx)
{
	rf_restore_origin6(ctx);
	return 1;
}

/* ---- packets no socket hook judged -------------------------------------- */

/* The policy of the job the packet's cgroup belongs to (*job: that cgroup), or NULL. */
static __always_inline struct rf_job_policy *rf_skb_policy(struct __sk_buff *skb, __u64 *job)
{
	struct rf_job_policy *policy;

	*job = bpf_skb_cgroup_id(skb);
	policy = bpf_map_lookup_elem(&job_policies, job);
	if (policy)
		return policy;
	for (int level = 1; level < RF_MAX_CGROUP_DEPTH; level++) {
		__u64 ancestor = bpf_skb_ancestor_cgroup_id(skb, level);

		if (!ancestor || ancestor == *job)
			break;
		policy = bpf_map_lookup_elem(&job_policies, &ancestor);
		if (policy) {
			*job = ancestor;
			return policy;
		}
	}
	return NULL;
}

SEC("cgroup_skb/egress")
int handle_skb_egress(struct __sk_buff *skb)
{
	struct rf_sockaddr dst = {};
	struct rf_job_policy *policy;
	struct bpf_sock *sk = skb->sk;
	__u8 protocol = 0, verdict;
	bool allowed;
	__u64 job;
	int ret;

	if (sk) {
		sk = bpf_sk_fullsock(sk);
		/* TCP and UDP sockets were judged at connect/sendmsg. */
		if (sk && sk->type != RF_SOCK_RAW &&
		    (sk->protocol == RF_IPPROTO_TCP || sk->protocol == RF_IPPROTO_UDP))
			return 1;
	}
	policy = rf_skb_policy(skb, &job);
	if (!policy)
		return 1;

	if (skb->protocol == bpf_htons(RF_ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) < 0)
			return 1;
		if (rf_loopback4(ip.daddr))
			return 1;
		protocol = ip.protocol;
		dst.family = RF_AF_INET;
		__builtin_memcpy(dst.addr, &ip.daddr, 4);
		allowed = rf_allowed4(policy->policy_id, 0, ip.daddr);
	} else if (skb->protocol == bpf_htons(RF_ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		__u32 daddr[4];

		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)) < 0)
			return 1;
		__builtin_memcpy(daddr, &ip6.daddr, 16);
		if (rf_loopback6(daddr))
			return 1;
		/* IPv6 link-local and multicast (neighbour discovery) stay on the link. */
		if ((bpf_ntohl(daddr[0]) >> 22) == (0xfe80 >> 6) || (bpf_ntohl(daddr[0]) >> 24) == 0xff)
			return 1;
		protocol = ip6.nexthdr;
		dst.family = RF_AF_INET6;
		__builtin_memcpy(dst.addr, daddr, 16);
		allowed = rf_allowed6(policy->policy_id, 0, daddr);
	} else {
		return 1;
	}
	ret = rf_verdict_to_return(policy, allowed, &verdict);
	rf_record_egress(policy, job, RF_HOOK_PACKET, verdict, sk ? sk->type : 0, protocol, &dst, false);
	return ret;
}
