/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * #12 NAT, conntrack's view of a control connection (FTPGATE_NAT object):
 * the inside address of a segment's sender behind SNAT or DNAT
 * (nat_ct_inside), and the reverse-path check of a forwarded egress segment
 * by that address (nat_rp_check, scope.h).
 */
#ifndef FTPGATE_NATVIEW_H
#define FTPGATE_NATVIEW_H

#ifndef FTPGATE_NAT
#error "natview.h is for the FTPGATE_NAT object only"
#endif

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ftpgate.h"
#include "maps.h"
#include "common.h"
#include "parsing.h"
#include "ct.h"
#include "scope.h"

/*
 * nat_ct_inside looks up the conntrack entry of the segment's connection
 * (the inverse of its tuple, as the peer's reply would carry it) and leaves
 * the inside address of the segment's sender in s->nat.inside: the source
 * of the other tuple (orig.src behind masquerade, reply.src, the DNAT
 * backend, behind DNAT). Returns 0 when found, -1 without an entry.
 */
static __always_inline int nat_ct_inside(struct __sk_buff *skb, struct scratch *s)
{
	const struct pkt_info *p = &s->nat.p;
	struct bpf_sock_tuple *t = &s->nat.tuple;
	__builtin_memset(t, 0, sizeof(*t));
	__u32 tsz;
	if (p->family == AF_INET) {
		t->ipv4.saddr = p->dst[0];
		t->ipv4.daddr = p->src[0];
		t->ipv4.sport = bpf_htons(p->dport);
		t->ipv4.dport = bpf_htons(p->sport);
		tsz = sizeof(t->ipv4);
	} else {
		copy_addr(t->ipv6.saddr, p->dst);
		copy_addr(t->ipv6.daddr, p->src);
		t->ipv6.sport = bpf_htons(p->dport);
		t->ipv6.dport = bpf_htons(p->sport);
		tsz = sizeof(t->ipv6);
	}
	struct bpf_ct_opts *o = &s->nat.opts;
	__builtin_memset(o, 0, sizeof(*o));
	o->netns_id = CT_NETNS_SELF;
	o->l4proto = IPPROTO_TCP;
	struct nf_conn *ct = bpf_skb_ct_lookup(skb, t, tsz, o, CT_OPTS_SIZE);
	if (!ct)
		return -1;
	/* the inverse matched the original tuple (DNAT) or the reply tuple (masquerade) */
	int orig = ct->tuplehash[CT_DIR_ORIGINAL].tuple.src.u.all == bpf_htons(p->dport) &&
		   ct->tuplehash[CT_DIR_ORIGINAL].tuple.src.u3.all[0] == p->dst[0] &&
		   ct->tuplehash[CT_DIR_ORIGINAL].tuple.src.u3.all[1] == p->dst[1] &&
		   ct->tuplehash[CT_DIR_ORIGINAL].tuple.src.u3.all[2] == p->dst[2] &&
		   ct->tuplehash[CT_DIR_ORIGINAL].tuple.src.u3.all[3] == p->dst[3];
	/* constant indexes: CO-RE relocates each access, not a computed one */
	if (orig) {
		s->nat.inside[0] = ct->tuplehash[CT_DIR_REPLY].tuple.src.u3.all[0];
		s->nat.inside[1] = ct->tuplehash[CT_DIR_REPLY].tuple.src.u3.all[1];
		s->nat.inside[2] = ct->tuplehash[CT_DIR_REPLY].tuple.src.u3.all[2];
		s->nat.inside[3] = ct->tuplehash[CT_DIR_REPLY].tuple.src.u3.all[3];
	} else {
		s->nat.inside[0] = ct->tuplehash[CT_DIR_ORIGINAL].tuple.src.u3.all[0];
		s->nat.inside[1] = ct->tuplehash[CT_DIR_ORIGINAL].tuple.src.u3.all[1];
		s->nat.inside[2] = ct->tuplehash[CT_DIR_ORIGINAL].tuple.src.u3.all[2];
		s->nat.inside[3] = ct->tuplehash[CT_DIR_ORIGINAL].tuple.src.u3.all[3];
	}
	if (p->family == AF_INET)
		s->nat.inside[1] = s->nat.inside[2] = s->nat.inside[3] = 0;
	s->nat.helper = (ct->status & CT_IPS_HELPER) != 0;
	bpf_ct_release(ct);
	return 0;
}

/*
 * nat_rp_check is the reverse-path check (scope.h) of a forwarded egress
 * control segment: by its sender's inside address, which the connection's
 * conntrack entry names (with or without --nat: a NAT gateway running the
 * kernel's helper next to ftpgate's filter needs it as much); without an
 * entry by its header source, as the plain object checks it. Returns 1 when
 * the segment may be parsed, 0 if not (rp_lookup).
 */
__noinline int nat_rp_check(struct __sk_buff *skb)
{
	struct scratch *s = get_scratch();
	struct config_val *cfg = get_config();
	if (!s || !cfg)
		return 1; /* cannot happen: one-entry arrays */
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	if (parse_packet(data, data_end, &s->nat.p) != PARSE_TCP)
		return 1; /* parse_control parsed it already */
	__u32 arrival = skb->ingress_ifindex;
	if (nat_ct_inside(skb, s))
		return rp_lookup(skb, &s->nat.p, s->nat.p.src, arrival, cfg->rp_check, 1);
	return rp_lookup(skb, &s->nat.p, s->nat.inside, arrival, cfg->rp_check, 0);
}

#endif /* FTPGATE_NATVIEW_H */
