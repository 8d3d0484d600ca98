/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * NAT_OWN (#12): ftpgate translates the data connection of a rewritten
 * announcement itself, where the kernel refuses conntrack entries made from
 * BPF (natct.h). At TC of the guarded (outside) interface:
 *
 *   ingress  the admitted data SYN (its data_flows entry carries the NAT
 *            target XDP copied from the expectation) makes two nat_own
 *            entries: A, keyed peer -> public end, names the inside end;
 *            B, keyed inside end -> peer, names the public end. Every
 *            ingress packet of A gets the inside end as destination.
 *   egress   every packet of B gets the public end as source.
 *
 * TC ingress runs before conntrack, TC egress after it: conntrack sees the
 * data connection as a plain one, peer -> inside end, that the ruleset
 * admits by the SYN's fwmark. ICMP errors about the connection are not
 * translated (docs/nat.md, "Data connections and kernels").
 *
 * In both NAT objects (FTPGATE_NAT). Entries are made only with config.nat
 * NAT_OWN; existing ones are translated whatever config.nat says, so that
 * a `config set` leaves live data connections working (nat_own_live keeps
 * that cheap when there are none).
 */
#ifndef FTPGATE_NATOWN_H
#define FTPGATE_NATOWN_H

#ifndef FTPGATE_NAT
#error "natown.h is for the FTPGATE_NAT objects only"
#endif

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ftpgate.h"
#include "maps.h"
#include "parsing.h"
#include "common.h"
#include "natlog.h"
#include "ct.h"

/* offsets of the addresses in the IP headers and of the ports in TCP's */
#define IPV4_SADDR_OFF 12
#define IPV4_DADDR_OFF 16
#define IPV6_SADDR_OFF 8
#define IPV6_DADDR_OFF 24
#define TCP_SPORT_OFF 0
#define TCP_DPORT_OFF 2

/*
 * nat_data_begin is the start of natct.h's global function nat_ct_syn,
 * which parses the headers again: the config when config.nat is mode and the packet TCP, with p and
 * its flow key k filled; NULL otherwise.
 */
static __always_inline struct config_val *nat_data_begin(struct __sk_buff *skb, __u8 mode, struct pkt_info *p,
							 struct flow_key *k)
{
	struct config_val *cfg = get_config();
	if (!cfg || cfg->nat != mode)
		return 0;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	if (parse_packet(data, data_end, p) != PARSE_TCP)
		return 0;
	flow_key_from(k, p, 0);
	return cfg;
}

/*
 * nat_own_live is set once this object has made a translation, or by the
 * loader when the pinned nat_own table held entries as it loaded the
 * object; never cleared while the object runs. Existing translations are
 * kept whatever config.nat says (a `config set` must not break live data
 * connections), so every TCP packet would otherwise pay a nat_own lookup:
 * with it clear, a packet with config.nat other than NAT_OWN pays one load.
 */
volatile __u32 nat_own_live;

/*
 * nat_own_on tells whether this packet is for nat_own_packet: config.nat
 * is NAT_OWN (entries are made), or translations may exist (nat_own_live)
 */
static __always_inline int nat_own_on(void)
{
	if (nat_own_live)
		return 1;
	struct config_val *cfg = get_config();
	return cfg && cfg->nat == NAT_OWN;
}

/* nat_own_b_key fills the key of entry B from entry A's key a and value v */
static __always_inline void nat_own_b_key(struct flow_key *b, const struct flow_key *a, const struct nat_own_val *v)
{
	b->family = a->family;
	b->sport = v->port;
	b->dport = a->sport;
	copy_addr(b->src, v->addr);
	copy_addr(b->dst, a->src);
}

/*
 * nat_own_make handles an admitted data SYN (no ACK) at ingress, a the
 * entry A its tuple has, if any. An A that names another inside end than
 * the SYN's flow (a closed connection lingering, an idle one on the same
 * tuple), or whose flow has no inside end at all, belongs to an earlier
 * connection: its pair is deleted, so that the new connection never goes
 * to the old inside end. With make (config.nat is NAT_OWN) and a flow that
 * carries a NAT target, the pair is (re)made, with no FIN or RST flag.
 * Returns entry A of the SYN's connection, or NULL (none, or the table
 * refused an entry). A SYN of no data flow (an allowed port) leaves a.
 */
static __always_inline struct nat_own_val *nat_own_make(const struct pkt_info *p, struct flow_key *k, __u64 now,
							struct nat_own_val *a, int make)
{
	struct flow_val *fv = bpf_map_lookup_elem(&data_flows, k);
	if (!fv)
		return a;
	struct nat_own_val v = {};
	struct flow_key b = {};
	if (a && a->side == NAT_OWN_IN &&
	    !(fv->nat.set && a->port == fv->nat.port && addr_eq(a->addr, fv->nat.addr))) {
		nat_own_b_key(&b, k, a);
		bpf_map_delete_elem(&nat_own, &b);
		bpf_map_delete_elem(&nat_own, k);
		stat_inc(STAT_NAT_OWN_STALE);
		a = 0;
	}
	if (!make || !fv->nat.set)
		return a;
	v.created_ns = now;
	v.last_seen_ns = now;

	/* B first: without it, A would send the inside end's replies out untranslated */
	copy_addr(v.addr, fv->nat.addr);
	v.port = fv->nat.port;
	nat_own_b_key(&b, k, &v);
	copy_addr(v.addr, p->dst);
	v.port = p->dport;
	v.side = NAT_OWN_OUT;
	if (bpf_map_update_elem(&nat_own, &b, &v, BPF_ANY))
		goto full;

	copy_addr(v.addr, fv->nat.addr);
	v.port = fv->nat.port;
	v.side = NAT_OWN_IN;
	if (bpf_map_update_elem(&nat_own, k, &v, BPF_ANY)) {
		bpf_map_delete_elem(&nat_own, &b);
		bpf_map_delete_elem(&nat_own, k);
		goto full;
	}
	stat_inc(STAT_NAT_OWN_MADE);
	return bpf_map_lookup_elem(&nat_own, k);
full:
	stat_inc(STAT_NAT_OWN_TABLE_FULL);
	return 0;
}

/*
 * nat_own_rewrite writes addr:port (network, host order) over the
 * destination (dst) or source of the packet, with the IPv4 header checksum
 * and the TCP checksum fixed incrementally. The TCP fixes go through
 * bpf_l4_csum_replace, which is right for a full checksum and for
 * CHECKSUM_PARTIAL (then only the pseudo-header sum in the field changes).
 * For CHECKSUM_COMPLETE, skb->csum must keep matching the bytes: an IPv4
 * address change is cancelled by its header checksum's, and
 * bpf_l4_csum_replace moves skb->csum with the TCP checksum; an IPv6 address
 * has no header checksum, so its store recomputes skb->csum
 * (BPF_F_RECOMPUTE_CSUM) for its own bytes. Returns 0, or -1 when a helper
 * refused.
 */
static __always_inline int nat_own_rewrite(struct __sk_buff *skb, const struct pkt_info *p, const __u32 *addr,
					   __u16 port, int dst)
{
	__u32 csum_off = p->l4_off + TCP_CSUM_OFF;
	const __u32 *old = dst ? p->dst : p->src;
	__be16 oport = bpf_htons(dst ? p->dport : p->sport);
	__be16 nport = bpf_htons(port);

	if (p->family == AF_INET) {
		__u32 off = p->l3_off + (dst ? IPV4_DADDR_OFF : IPV4_SADDR_OFF);
		__u32 a = addr[0];
		if (bpf_l4_csum_replace(skb, csum_off, old[0], a, BPF_F_PSEUDO_HDR | CSUM_FIELD4) ||
		    bpf_l3_csum_replace(skb, p->l3_off + IPV4_CSUM_OFF, old[0], a, CSUM_FIELD4) ||
		    bpf_skb_store_bytes(skb, off, &a, sizeof(a), 0))
			return -1;
	} else {
		__u32 off = p->l3_off + (dst ? IPV6_DADDR_OFF : IPV6_SADDR_OFF);
		__u32 a[IPV6_WORDS];
		copy_addr(a, addr);
		__s64 diff = bpf_csum_diff((__be32 *)old, sizeof(a), a, sizeof(a), 0);
		if (diff < 0 || bpf_l4_csum_replace(skb, csum_off, 0, diff, BPF_F_PSEUDO_HDR | CSUM_BY_DIFF) ||
		    bpf_skb_store_bytes(skb, off, a, sizeof(a), BPF_F_RECOMPUTE_CSUM))
			return -1;
	}
	if (oport != nport &&
	    (bpf_l4_csum_replace(skb, csum_off, oport, nport, CSUM_FIELD2) ||
	     bpf_skb_store_bytes(skb, p->l4_off + (dst ? TCP_DPORT_OFF : TCP_SPORT_OFF), &nport, sizeof(nport), 0)))
		return -1;
	return 0;
}

/*
 * nat_own_packet translates a TCP packet of a data connection ftpgate
 * translates itself: at ingress (entry A, made here from an admitted data
 * SYN) its destination, at egress (entry B) its source. Returns 1 when the
 * packet was translated, -1 when a helper refused the rewrite (counted; the
 * half-rewritten packet must be dropped), 0 for any other packet, which is
 * left as it was: one nat_own lookup for every other TCP packet.
 *
 * A global function that parses the headers again, like nat_ct_syn: its
 * frame (packet info, key, the new entries) is off the parser's call
 * chains and their 512-byte limit.
 */
__noinline int nat_own_packet(struct __sk_buff *skb, int ingress)
{
	struct pkt_info p;
	struct flow_key k;
	struct config_val *cfg = get_config();
	if (!cfg || !skb)
		return 0;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	if (parse_packet(data, data_end, &p) != PARSE_TCP)
		return 0;
	flow_key_from(&k, &p, 0);
	/* the clock only for a packet of a translated connection: the rest pay the lookup alone */
	struct nat_own_val *v = bpf_map_lookup_elem(&nat_own, &k);
	int syn = (p.flags & TCPF_SYN) && !(p.flags & TCPF_ACK);
	if (ingress && syn && (v || cfg->nat == NAT_OWN)) {
		v = nat_own_make(&p, &k, now_ns(cfg), v, cfg->nat == NAT_OWN);
		if (v) {
			nat_own_live = 1;
			v->flags = 0;
		}
	}
	if (!v || v->side != (ingress ? NAT_OWN_IN : NAT_OWN_OUT))
		return 0;
	if (ingress) {
		/*
		 * a translation whose B is gone would send the inside end's
		 * replies out with its private address: dropped instead
		 */
		struct flow_key b = {};
		nat_own_b_key(&b, &k, v);
		struct nat_own_val *bv = bpf_map_lookup_elem(&nat_own, &b);
		if (!bv || bv->side != NAT_OWN_OUT) {
			stat_inc(STAT_NAT_OWN_HALF);
			return -1;
		}
		if (syn)
			bv->flags = 0;
	}
	v->last_seen_ns = now_ns(cfg);
	/* the close only from the inside end: a spoofed RST from outside must not shorten the linger */
	if (!ingress && (p.flags & TCPF_FIN))
		v->flags |= FLOW_FIN;
	if (!ingress && (p.flags & TCPF_RST))
		v->flags |= FLOW_RST;
	__u32 addr[IPV6_WORDS];
	copy_addr(addr, v->addr);
	if (nat_own_rewrite(skb, &p, addr, v->port, ingress)) {
		stat_inc(STAT_NAT_OWN_FAILED);
		return -1;
	}
	stat_inc(ingress ? STAT_NAT_OWN_IN : STAT_NAT_OWN_OUT);
	return 1;
}

/*
 * nat_own_probe is the own object's probe (program ftpgate_nat_probe): the
 * one conntrack kfunc that object calls (bpf_skb_ct_lookup, for the control
 * connection's inside end, natview.h) and the nf_conn fields it reads, and
 * no map. The loader verifies it alone before the whole object, as it does
 * the NAT object's (nat_ct_probe). It is never attached.
 */
static __always_inline int nat_own_probe(struct __sk_buff *skb)
{
	struct bpf_sock_tuple t = {};
	struct bpf_ct_opts opts = {};
	opts.netns_id = CT_NETNS_SELF;
	opts.l4proto = IPPROTO_TCP;
	struct nf_conn *ct = bpf_skb_ct_lookup(skb, &t, sizeof(t.ipv4), &opts, CT_OPTS_SIZE);
	if (!ct)
		return 0;
	int r = ct->tuplehash[CT_DIR_ORIGINAL].tuple.src.u.all != 0 ||
		ct->tuplehash[CT_DIR_ORIGINAL].tuple.src.u3.all[3] != 0 ||
		ct->tuplehash[CT_DIR_REPLY].tuple.src.u3.all[0] != 0 || (ct->status & CT_IPS_HELPER);
	bpf_ct_release(ct);
	return r;
}

#endif /* FTPGATE_NATOWN_H */
