/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/* Address families and which addresses are loopback, for every probe that judges a peer. */
#ifndef RINGFENCE_LIB_NET_H
#define RINGFENCE_LIB_NET_H

#include <bpf/bpf_endian.h>

#define RF_AF_UNIX 1
#define RF_AF_INET 2
#define RF_AF_INET6 10

static __always_inline bool rf_loopback4(__u32 ip /* network order */)
{
	return (bpf_ntohl(ip) >> 24) == 127;
}

/* ::ffff:a.b.c.d -> a.b.c.d; false for every other IPv6 address. */
static __always_inline bool rf_mapped4(const __u32 ip[4], __u32 *v4)
{
	if (ip[0] != 0 || ip[1] != 0 || ip[2] != bpf_htonl(0xffff))
		return false;
	*v4 = ip[3];
	return true;
}

/* ::1, or 127/8 written as IPv4-mapped IPv6. */
static __always_inline bool rf_loopback6(const __u32 ip[4])
{
	__u32 v4;

	if (rf_mapped4(ip, &v4))
		return rf_loopback4(v4);
	return ip[0] == 0 && ip[1] == 0 && ip[2] == 0 && ip[3] == bpf_htonl(1);
}

#endif
