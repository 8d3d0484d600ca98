/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Which control segments the TC parser may read: scoped control ports (a port
 * parsed only towards the servers of its prefixes) and the reverse-path check
 * (a segment is read only if its source is routed back through the interface
 * it arrived on). bpf_fib_lookup from TC: Linux >= 4.18.
 */
#ifndef FTPGATE_SCOPE_H
#define FTPGATE_SCOPE_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ftpgate.h"
#include "maps.h"
#include "parsing.h"
#include "common.h"

/* port_for_server answers port_serves */
enum port_for_server {
	PORT_OTHER = 0,        /* not a control port */
	PORT_SERVES = 1,       /* a control port towards this server */
	PORT_OUT_OF_SCOPE = 2, /* a scoped control port, another server */
};

/* port_serves says whether port is a control port towards the server at addr */
static __always_inline int port_serves(__u16 port, __u8 family, const __u32 *server)
{
	__u32 idx = port;
	struct port_val *v = bpf_map_lookup_elem(&ctrl_ports, &idx);
	if (!v || !v->enabled)
		return PORT_OTHER;
	if (v->enabled & PORT_GLOBAL)
		return PORT_SERVES;
	if (!(v->enabled & PORT_SCOPED))
		return PORT_OTHER;
	struct scope_key k = {
		.prefixlen = SCOPE_KEY_BASE_BITS + 8 * sizeof(k.addr),
		.port = port,
		.family = family,
	};
	copy_addr(k.addr, server);
	if (bpf_map_lookup_elem(&ctrl_scopes, &k))
		return PORT_SERVES;
	return PORT_OUT_OF_SCOPE;
}

/* IPv6 link-local unicast, fe80::/10: it never crosses a router */
#define LINK_LOCAL6_MASK 0xffc00000
#define LINK_LOCAL6_NET 0xfe800000

static __always_inline int link_local6(const __u32 *a)
{
	return (a[0] & bpf_htonl(LINK_LOCAL6_MASK)) == bpf_htonl(LINK_LOCAL6_NET);
}

/*
 * rp_lookup judges the route back to src from the segment's destination, as
 * the input of interface arrival (a FIB lookup with the addresses swapped):
 * it must leave through arrival (strict) or merely exist (loose). snat_ok:
 * a local route back (src is this host's own address) is accepted and
 * counted (rp_snat_source). Returns 1 when the segment may be parsed, 0
 * (counted ctrl_spoofed) if not.
 */
static __always_inline int rp_lookup(struct __sk_buff *skb, const struct pkt_info *p, const __u32 *src,
				     __u32 arrival, __u8 mode, int snat_ok)
{
	struct bpf_fib_lookup fib;
	__builtin_memset(&fib, 0, sizeof(fib));
	fib.family = p->family;
	fib.l4_protocol = IPPROTO_TCP;
	fib.sport = bpf_htons(p->dport);
	fib.dport = bpf_htons(p->sport);
	fib.ifindex = arrival;
	if (p->family == AF_INET) {
		fib.ipv4_src = p->dst[0];
		fib.ipv4_dst = src[0];
	} else {
		if (link_local6(src) || link_local6(p->dst))
			return 1;
		copy_addr(fib.ipv6_src, p->dst);
		copy_addr(fib.ipv6_dst, src);
	}
	long rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	switch (rc) {
	case BPF_FIB_LKUP_RET_SUCCESS:
	case BPF_FIB_LKUP_RET_NO_NEIGH:    /* routed; the neighbour is not resolved yet */
	case BPF_FIB_LKUP_RET_FRAG_NEEDED: /* routed; this skb exceeds the route's MTU */
		if (mode == RP_LOOSE || fib.ifindex == arrival)
			return 1;
		break;
	case BPF_FIB_LKUP_RET_FWD_DISABLED:
		stat_inc(STAT_RP_NOT_FORWARDING);
		return 1;
	case BPF_FIB_LKUP_RET_NOT_FWDED:
		/* the route back is local: a source of this host's own */
		if (snat_ok) {
			stat_inc(STAT_RP_SNAT_SOURCE);
			return 1;
		}
		break;
	default:
		/* blackhole, unreachable, prohibited or no route: nothing leads back */
		break;
	}
	stat_inc(STAT_CTRL_SPOOFED);
	return 0;
}

#ifdef FTPGATE_NAT
/* nat.h: the check of a forwarded egress segment, by its sender's inside address */
__noinline int nat_rp_check(struct __sk_buff *skb);
#endif

/*
 * source_routed is the reverse-path check of a control segment, before
 * anything is parsed or tracked (rp_lookup).
 *
 * The arrival interface is skb->ifindex at ingress. At egress the parser
 * sees only what no guarded ingress parsed: a forwarded segment is checked
 * against the interface it came in on (ingress_ifindex); one this host sent
 * (ingress_ifindex 0) is trusted. A lookup the kernel refuses because the
 * interface does not forward (a host guarding its own NIC) cannot check
 * anything: the segment is parsed and counted (rp_not_forwarding). A
 * link-local IPv6 segment never crossed a router and is not looked up.
 * On a NAT gateway a forwarded segment leaves with the public source SNAT
 * or the reverse of DNAT gave it: the check is about the sender's inside
 * address, which its conntrack entry names (nat_rp_check, NAT object, with
 * or without --nat). Without that view (the plain object, or no entry), a
 * forwarded segment whose source is this host's own address can only have
 * been translated here, since the kernel drops arriving segments with a
 * local source as martians: it is parsed and counted (rp_snat_source).
 * Returns 1 when the segment may be parsed, 0 (counted ctrl_spoofed) if not.
 */
static __always_inline int source_routed(struct __sk_buff *skb, const struct pkt_info *p, int ingress)
{
	struct config_val *cfg = get_config();
	__u8 mode = cfg ? cfg->rp_check : RP_STRICT;
	if (mode == RP_OFF)
		return 1;
	__u32 arrival = ingress ? skb->ifindex : skb->ingress_ifindex;
	if (!arrival)
		return 1;
#ifdef FTPGATE_NAT
	/* its own function: nothing of this frame lives across it (stack) */
	if (!ingress)
		return nat_rp_check(skb);
#endif
	return rp_lookup(skb, p, p->src, arrival, mode, !ingress);
}

#endif /* FTPGATE_SCOPE_H */
