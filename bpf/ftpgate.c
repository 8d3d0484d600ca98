//go:build ignore
// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * ftpgate: an FTP application-layer gateway in eBPF.
 *
 *   ftpgate_xdp         XDP, ingress of a guarded interface: admits new TCP
 *                       connections to allowed ports and negotiated data
 *                       connections, drops other SYNs. Linux >= 5.10.
 *   ftpgate_tc_admit    the same at TC ingress (--admit-hook tc), first in
 *                       the chain, before ftpgate_tc_ingress. Linux >= 5.10.
 *   ftpgate_tc_ingress  TC ingress (TCX or clsact): parses FTP control segments,
 *   ftpgate_tc_egress   TC egress: writes expectations. Linux >= 5.10.
 *
 * Copyright the ftpgate authors. Dual-licensed: GPL-2.0-only (required to use
 * GPL-only helpers) or BSD-2-Clause, at your option.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "ftpgate.h"
#include "admit.h"
#include "admit_tc.h"
#include "control.h"

char __license[] SEC("license") = "Dual BSD/GPL";

SEC("xdp")
int ftpgate_xdp(struct xdp_md *ctx)
{
	return admit((void *)(long)ctx->data, (void *)(long)ctx->data_end);
}

SEC("tc")
int ftpgate_tc_admit(struct __sk_buff *skb)
{
	return admit_skb(skb);
}

SEC("tc")
int ftpgate_tc_ingress(struct __sk_buff *skb)
{
	return parse_control(skb, 1);
}

#ifdef FTPGATE_NAT
/* verified alone by the loader before a NAT object (natct.h, natown.h); never attached */
SEC("tc")
int ftpgate_nat_probe(struct __sk_buff *skb)
{
#ifdef FTPGATE_NAT_OWN_ONLY
	return nat_own_probe(skb);
#else
	return nat_ct_probe(skb);
#endif
}
#endif

SEC("tc")
int ftpgate_tc_egress(struct __sk_buff *skb)
{
	int ret = parse_control(skb, 0);
#ifdef FTPGATE_NAT
	/*
	 * the rewrite and sequence shift of NAT (nat.h), after the parser,
	 * only for a control segment nat_begin took (every other packet leaves
	 * without two calls: make bench, TC egress non-control)
	 */
	if (ret == TC_ACT_OK && nat_pending()) {
		nat_decide(skb);
		ret = nat_egress(skb);
	}
#endif
	return ret;
}

/*
 * Types only the Go side reads (events, limits, counters, kinds) appear in no
 * map or program signature; this function, never called, keeps them in BTF
 * for bpf2go.
 */
struct btf_anchor {
	struct event ev;
	struct held_segment held;
	enum hold_lease_flags hold_flags;
	enum limits limits;
	enum stat stat;
	enum kind kind;
	enum event_type ev_type;
	enum parse_mode mode;
	enum direction dir;
	enum ftp_cmd cmd;
	enum tcp_track_flags tcp_flags;
	enum port_flags port_flags;
	enum rp_check rp_check;
	enum nat_mode nat_mode;
	enum nat_own_side nat_own_side;
	enum tls_state tls_state;
};

__noinline int ftpgate_btf_anchor(struct btf_anchor *a)
{
	return a != 0;
}
