/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * NAT_CT (#12): the data connection of a rewritten announcement reaches its
 * inside end through a conntrack entry made here, at TC ingress of the
 * guarded interface, from the admitted data SYN. TC ingress runs before
 * conntrack, so the SYN itself then finds the entry and the kernel's NAT
 * translates the whole connection, ICMP errors included. Only the
 * FTPGATE_NAT object has this (kfuncs of Linux >= 6.1; docs/nat.md, "Data
 * connections and kernels").
 */
#ifndef FTPGATE_NATCT_H
#define FTPGATE_NATCT_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ftpgate.h"
#include "maps.h"
#include "parsing.h"
#include "common.h"
#include "ct.h"
#include "natown.h"

/*
 * The timeout of the entry until the SYN reaches conntrack, which then sets
 * its own (nf_conntrack_tcp_timeout_syn_sent, 120 s by default) and moves it
 * through the TCP states like any connection: this is that default, so an
 * entry whose SYN is dropped later in the stack lives as long as an
 * unanswered SYN would.
 */
#define NAT_CT_TIMEOUT_MS (120 * 1000)

/* bpf_ct_set_nat_info's port for "keep the tuple's port" (it maps only a port > 0) */
#define NAT_PORT_UNCHANGED 0

/* nat_ct_tuple fills t with the SYN's tuple and returns its size for the kfuncs */
static __always_inline __u32 nat_ct_tuple(struct bpf_sock_tuple *t, const struct pkt_info *p)
{
	if (p->family == AF_INET) {
		t->ipv4.saddr = p->src[0];
		t->ipv4.daddr = p->dst[0];
		t->ipv4.sport = bpf_htons(p->sport);
		t->ipv4.dport = bpf_htons(p->dport);
		return sizeof(t->ipv4);
	}
	copy_addr(t->ipv6.saddr, p->src);
	copy_addr(t->ipv6.daddr, p->dst);
	t->ipv6.sport = bpf_htons(p->sport);
	t->ipv6.dport = bpf_htons(p->dport);
	return sizeof(t->ipv6);
}

/*
 * nat_ct_entry makes the conntrack entry of an admitted data SYN whose flow
 * carries a NAT target: original tuple the SYN's (peer → public:port),
 * destination NAT to the inside end, source NAT to the peer's own address
 * (port unchanged), so that the source is marked done and no later SNAT
 * rule rewrites it. NAT info is set before the insert: nf_nat_setup_info
 * refuses a confirmed entry. A SYN whose entry exists (a retransmission,
 * already through conntrack) is counted as nat_ct_exists, not inserted
 * again. mark is the ct mark to give the entry (0: leave it).
 */
static __always_inline void nat_ct_entry(struct __sk_buff *skb, const struct pkt_info *p,
					 const struct nat_target *nat, __u32 mark)
{
	struct bpf_sock_tuple t = {};
	struct bpf_ct_opts opts = {};
	union nf_inet_addr addr = {};

	__u32 tsz = nat_ct_tuple(&t, p);
	opts.netns_id = CT_NETNS_SELF;
	opts.l4proto = IPPROTO_TCP;

	struct nf_conn *found = bpf_skb_ct_lookup(skb, &t, tsz, &opts, CT_OPTS_SIZE);
	if (found) {
		bpf_ct_release(found);
		stat_inc(STAT_NAT_CT_EXISTS);
		return;
	}

	opts.netns_id = CT_NETNS_SELF;
	opts.error = 0;
	struct nf_conn___init *ct = bpf_skb_ct_alloc(skb, &t, tsz, &opts, CT_OPTS_SIZE);
	if (!ct) {
		stat_inc(STAT_NAT_CT_ALLOC_FAILED);
		return;
	}
	copy_addr(addr.all, nat->addr);
	int err = bpf_ct_set_nat_info(ct, &addr, nat->port, NF_NAT_MANIP_DST);
	if (!err) {
		copy_addr(addr.all, p->src);
		err = bpf_ct_set_nat_info(ct, &addr, NAT_PORT_UNCHANGED, NF_NAT_MANIP_SRC);
	}
	if (err) {
		/*
		 * An allocated entry can only be given back through the insert
		 * (bpf_ct_release refuses it): insert it expired, so that the
		 * SYN finds no NAT and reaches nothing inside.
		 */
		stat_inc(STAT_NAT_CT_NAT_FAILED);
		bpf_ct_set_timeout(ct, 0);
		struct nf_conn *dead = bpf_ct_insert_entry(ct);
		if (dead)
			bpf_ct_release(dead);
		return;
	}
	bpf_ct_set_timeout(ct, NAT_CT_TIMEOUT_MS);
	if (mark)
		ct->ct.mark = mark;
	struct nf_conn *ins = bpf_ct_insert_entry(ct);
	if (!ins) {
		/* the insert consumed the entry; a racing SYN on another CPU ends here too */
		stat_inc(STAT_NAT_CT_INSERT_FAILED);
		return;
	}
	bpf_ct_release(ins);
	stat_inc(STAT_NAT_CT_INSERTED);
}

/*
 * nat_ct_probe calls every conntrack kfunc the NAT object calls, the way it
 * calls them, and uses no map: the loader verifies it alone first (program
 * ftpgate_nat_probe), so a kernel that refuses the kfuncs says so in a
 * fraction of the time the whole object's verification takes (Debian's
 * 7.3.4 refuses bpf_ct_set_nat_info only after verifying the parser). It
 * is never attached.
 */
static __always_inline int nat_ct_probe(struct __sk_buff *skb)
{
	struct bpf_sock_tuple t = {};
	struct bpf_ct_opts opts = {};
	union nf_inet_addr addr = {};
	opts.netns_id = CT_NETNS_SELF;
	opts.l4proto = IPPROTO_TCP;
	struct nf_conn *found = bpf_skb_ct_lookup(skb, &t, sizeof(t.ipv4), &opts, CT_OPTS_SIZE);
	if (found) {
		int r = found->tuplehash[CT_DIR_REPLY].tuple.src.u3.all[0] != 0 || (found->status & CT_IPS_HELPER);
		bpf_ct_release(found);
		return r;
	}
	struct nf_conn___init *ct = bpf_skb_ct_alloc(skb, &t, sizeof(t.ipv4), &opts, CT_OPTS_SIZE);
	if (!ct)
		return 0;
	bpf_ct_set_nat_info(ct, &addr, NAT_PORT_UNCHANGED, NF_NAT_MANIP_DST);
	bpf_ct_set_timeout(ct, 0);
	ct->ct.mark = 0;
	struct nf_conn *ins = bpf_ct_insert_entry(ct);
	if (ins)
		bpf_ct_release(ins);
	return 0;
}

/*
 * nat_ct_syn makes the conntrack entry of a data SYN (SYN without ACK) that
 * XDP admitted through an expectation carrying a NAT target, with NAT_CT,
 * and returns 1 when it tried. The entry's ct mark is the --fwmark value,
 * so that a ruleset can match every packet of the data connection by it (0,
 * no --fwmark: left alone).
 *
 * A global function that parses the headers again: taking only the context,
 * it costs TC's frame nothing, and its stack (packet info, flow key, tuple,
 * options, address) is a frame of its own, off the parser's call chains and
 * their 512-byte limit (docs/design.md, "Where each concept lives").
 */
__noinline int nat_ct_syn(struct __sk_buff *skb)
{
	struct pkt_info p;
	struct flow_key fk;
	struct config_val *cfg = nat_data_begin(skb, NAT_CT, &p, &fk);
	if (!cfg)
		return 0;
	struct flow_val *fv = bpf_map_lookup_elem(&data_flows, &fk);
	if (!fv || !fv->nat.set)
		return 0;
	nat_ct_entry(skb, &p, &fv->nat, cfg->fwmark_value);
	return 1;
}

#endif /* FTPGATE_NATCT_H */
