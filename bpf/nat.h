/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * #12 NAT, the control connection (FTPGATE_NAT object, config.nat): at TC
 * egress of the guarded outside interface, after SNAT/masquerade (header
 * public, payload still private), an announcement of the sender's inside
 * address (PORT, EPRT |1| |2| from a client behind masquerade; 227 from a
 * server behind DNAT) is rewritten to the packet's public source address and
 * a public port, and its expectation carries the inside end (nat). A 229
 * only gets the inside end. The rewrite changes the segment's length: every
 * later sequence number of that direction is shifted at egress, and the
 * peer's acknowledgements and SACK edges are shifted back at ingress before
 * ftpgate's tracker and conntrack see them. docs/nat.md, "Control-connection
 * rewrite", states the rules. Linux >= 6.1 (conntrack kfuncs).
 *
 * This header decides the announcements a segment carries (nat_decide) and
 * is the entry of the NAT code at TC (nat_begin, nat_pending); the
 * correction log is natlog.h, conntrack's view natview.h, the text
 * nattext.h, the rewrite of the skb natskb.h.
 *
 * The __noinline functions are global BPF functions for the verifier's
 * sake: see text.h.
 */
#ifndef FTPGATE_NAT_H
#define FTPGATE_NAT_H

#ifndef FTPGATE_NAT
#error "nat.h is for the FTPGATE_NAT object only"
#endif

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ftpgate.h"
#include "maps.h"
#include "common.h"
#include "text.h"
#include "expect.h"
#include "announce.h"
#include "checksum.h"
#include "tcp.h"
#include "ct.h"
#include "natlog.h"
#include "natview.h"
#include "nattext.h"
#include "natskb.h"

#define NAT_REQ_MASK (NAT_SEG_FIELDS - 1)
#define PORT_SPACE 65536
/* TCP options a rewrite breaks: MD5 signature (RFC 2385), TCP-AO (RFC 5925), MPTCP (RFC 8684) */
#define TCP_OPT_MD5 19
#define TCP_OPT_AO 29
#define TCP_OPT_MPTCP 30

/*
 * nat_keep_opts tells whether the egress segment in s->nat.p carries a TCP
 * option that a rewrite would break: TCP-MD5 and TCP-AO sign the payload
 * with a key only the endpoints hold, and MPTCP's DSS maps data sequence
 * numbers over lengths the rewrite changes (and may checksum the payload).
 * A mapping may cover segments without the option, so the caller remembers
 * it for the direction.
 */
__noinline int nat_keep_opts(struct __sk_buff *skb)
{
	struct scratch *s = get_scratch();
	if (!s || !skb || nat_header_load(skb, s))
		return 0;
	s->opt_off = sizeof(struct tcphdr);
	__u8 kind = 0, olen = 0;
	__u32 i = 0, len = 0;
	return tcp_opt_seek(s, 1u << TCP_OPT_MD5 | 1u << TCP_OPT_AO | 1u << TCP_OPT_MPTCP, &kind, &i, &len, &olen) == TCP_OPT_FOUND;
}

/*
 * nat_port_free tells whether public port is free for the request: no
 * expectation for (peer, public address, port), or one for the same inside
 * end (the same client announcing again).
 */
static __always_inline int nat_port_free(struct scratch *s, struct nat_req *r, __u32 port)
{
	__builtin_memcpy(&s->nat.probe, &r->exp, sizeof(s->nat.probe));
	copy_addr(s->nat.probe.dst, s->nat.p.src);
	s->nat.probe.dport = port;
	struct expect_val *ev = bpf_map_lookup_elem(&expectations, &s->nat.probe);
	if (!ev)
		return 1;
	return ev->nat.set && ev->nat.port == r->port && addr_eq(ev->nat.addr, s->nat.inside);
}

/*
 * nat_current returns the request being decided (s->nat.cur), with the
 * scratch memory in *sp and its direction's correction log in *ndp; NULL
 * when the connection is gone.
 */
static __always_inline struct nat_req *nat_current(struct scratch **sp, struct nat_dir **ndp)
{
	struct ctrl_val *cv = scratch_conn(sp);
	if (!cv)
		return 0;
	struct scratch *s = *sp;
	*ndp = nat_dir_of(cv, s);
	return &s->nat.req[s->nat.cur & NAT_REQ_MASK];
}

/* nat_today decides request r as the plain object does: bounce and mismatch rules */
static __always_inline void nat_today(struct scratch *s, struct nat_req *r)
{
	copy_addr(s->addr, r->addr);
	__builtin_memcpy(&s->exp, &r->exp, sizeof(s->exp));
	if (r->kind == KIND_PASV)
		pasv_finish(s);
	else if (r->kind == KIND_EPSV)
		expect_create(KIND_EPSV);
	else
		active_finish(s, r->kind);
}

/*
 * nat_prepare chooses the public port of request s->nat.cur (the announced
 * one, or on a clash with another inside end a random one, NAT_PORT_TRIES
 * at most) into s->nat.port and, but for a 229, formats its text
 * (nat_format; its length in s->nat.text_len), checking that the log has
 * room.
 * Returns 0, or -1 when the request must be decided by today's rules.
 */
__noinline int nat_prepare(void)
{
	struct scratch *s;
	struct nat_dir *nd;
	struct nat_req *r = nat_current(&s, &nd);
	if (!r)
		return -1;
	__u32 port = r->port;
	s->nat.text_len = 0;
	if (r->kind == KIND_EPSV) {
		/*
		 * a 229's port is not rewritten: on a clash with another inside
		 * end's expectation nothing is made, rather than one session's
		 * data connection reaching another's backend
		 */
		if (!nat_port_free(s, r, port)) {
			stat_inc(STAT_NAT_EPSV_CLASH);
			return NAT_REFUSE;
		}
		s->nat.port = port;
		return 0;
	}
	int tries = 0;
	for (; tries < NAT_PORT_TRIES; tries++) {
		if (nat_port_free(s, r, port))
			break;
		port = LOW_PORT_LIMIT + bpf_get_prandom_u32() % (PORT_SPACE - LOW_PORT_LIMIT);
	}
	if (tries == NAT_PORT_TRIES) {
		stat_inc(STAT_NAT_PORT_EXHAUSTED);
		return -1;
	}
	if (nd->tail - nd->head >= NAT_LOG) {
		stat_inc(STAT_NAT_LOG_FULL);
		return -1;
	}
	s->nat.port = port;
	s->nat.fmt_kind = r->kind;
	s->nat.fmt_delim = r->delim;
	int len = nat_format();
	if (len <= 0 || len > NAT_TEXT_MAX)
		return -1;
	s->nat.text_len = len;
	if (tries)
		stat_inc(STAT_NAT_PORT_REMAPPED);
	return 0;
}

/*
 * nat_commit reports the rewrite of request s->nat.cur, whose expectation
 * was just made, and, but for a 229, logs its field's replacement as a new
 * fix of the direction.
 */
__noinline int nat_commit(void)
{
	struct scratch *s;
	struct nat_dir *nd;
	struct nat_req *r = nat_current(&s, &nd);
	if (!r)
		return -1;
	__u64 now = now_ns(get_config());
	if (event_allowed(now))
		emit_event_nat(EV_NAT_REWRITE, 0, r->kind, &s->exp, &s->key, 0, &s->nat.target, now);
	__builtin_memset(&s->nat.target, 0, sizeof(s->nat.target));
	if (r->kind == KIND_EPSV) {
		stat_inc(STAT_NAT_REWRITE_229);
		return 0;
	}
	__u32 len = s->nat.text_len;
	struct nat_fix *f = &nd->fix[nd->tail & NAT_LOG_MASK];
	f->seq = s->nat.p.seq + r->off;
	f->old_len = r->len;
	f->new_len = len;
	f->delta = nat_log_last(nd) + (__s32)len - (__s32)r->len;
	f->port = s->nat.port;
	f->kind = r->kind;
	f->delim = r->delim;
	nd->tail++;
	stat_inc(STAT_NAT_REWRITE);
	return 0;
}

/*
 * nat_rewrite makes the expectation of request r for the public end (the
 * segment's source address and the chosen port) with the inside end as its
 * nat, and logs the replacement (nat_prepare, nat_commit). *grown is what
 * the segment's earlier rewrites add to it: a non-GSO segment is never
 * grown past the egress device's MTU (it would be lost after TC, and its
 * retransmission, the same size, too), and a GSO skb never changed in
 * length past it (it would leave as one packet; dropping it and logging the
 * field left its MSS-sized retransmissions unrewritten where the field
 * straddled two of them, and dropped forever where a full-size one held
 * it): both pass unchanged, nothing logged (nat_mtu_unchanged). Returns 0,
 * or -1 when the request must be decided by today's rules.
 */
static __always_inline int nat_rewrite(struct __sk_buff *skb, struct scratch *s, struct nat_req *r, __s32 *grown)
{
	int rc = nat_prepare();
	if (rc < 0)
		return rc;
	if (r->kind != KIND_EPSV) {
		__s32 g = *grown + (__s32)s->nat.text_len - (__s32)r->len;
		if (nat_gso(skb) ? nat_gso_past_mtu(skb, s->nat.p.l3_off, g) : g > 0 && nat_past_mtu(skb, g)) {
			stat_inc(STAT_NAT_MTU_UNCHANGED);
			return -1;
		}
		*grown = g;
	}
	__builtin_memcpy(&s->exp, &r->exp, sizeof(s->exp));
	copy_addr(s->exp.dst, s->nat.p.src);
	s->exp.dport = s->nat.port;
	copy_addr(s->nat.target.addr, s->nat.inside);
	s->nat.target.port = r->port;
	s->nat.target.set = 1;
	expect_create(r->kind);
	nat_commit();
	/* never left for the next expectation, whatever happened above */
	__builtin_memset(&s->nat.target, 0, sizeof(s->nat.target));
	return 0;
}

/*
 * nat_decide runs after the parser on a control segment at egress with
 * config.nat: it folds the fixes the peer has acknowledged (they are never
 * retransmitted) and decides the requests the parser recorded. With the
 * connection's conntrack entry, an announced address that is the sender's
 * inside address is rewritten (nat_rewrite); without an entry, for an
 * address that matches neither, or when the segment's bytes cannot be
 * moved, today's rules apply (counted). It leaves in s->nat.before the
 * first fix this segment logged, for nat_egress.
 */
__noinline int nat_decide(struct __sk_buff *skb)
{
	struct scratch *s = get_scratch();
	if (!s)
		return 0;
	__u32 n = s->nat.n;
	s->nat.n = 0;
	if (!s->nat.on)
		return 0;
	struct ctrl_val *cv = bpf_map_lookup_elem(&ctrl_conns, &s->key);
	if (!cv)
		return 0;
	struct nat_dir *nd = nat_dir_of(cv, s);
	for (int j = 0; j < NAT_LOG; j++) {
		if (nd->head == nd->tail || !nd->acked_set)
			break;
		struct nat_fix *f = &nd->fix[nd->head & NAT_LOG_MASK];
		if (seq_after(f->seq + f->old_len, nd->acked))
			break;
		nd->base = f->delta;
		nd->head++;
	}
	s->nat.before = nd->tail;
	if (!nd->keep && nat_keep_opts(skb))
		nd->keep = 1;
	if (!n)
		return 0;
	int have = nat_ct_inside(skb, s) == 0;
	if (!have)
		stat_inc(STAT_NAT_NO_CT);
	/* the sender is behind NAT: its own address is the inside one */
	int natted = have && !addr_eq(s->nat.inside, s->nat.p.src);
	int rewritable = 1;
	__u32 L = s->nat.p.payload_len;
	if (L > s->loaded || L + NAT_SEG_FIELDS * NAT_TEXT_MAX > MAX_SCAN_BYTES) {
		/* the rewritten payload must fit the buffers it is rebuilt and summed in */
		stat_inc(STAT_NAT_UNREWRITABLE);
		rewritable = 0;
	}
	if (nd->keep) {
		stat_inc(STAT_NAT_TCP_OPTION);
		rewritable = 0;
	}
	__s32 grown = 0;
	for (__u32 i = 0; i < NAT_SEG_FIELDS; i++) {
		if (i >= n)
			break;
		s->nat.cur = i;
		struct nat_req *r = &s->nat.req[i & NAT_REQ_MASK];
		if (r->header && natted && !s->nat.helper) {
			/*
			 * a sender behind NAT announcing the public address: no
			 * inside end to reach, and an opening to this host's own
			 * services. The kernel's helper, attached to the
			 * connection, announces it after its own rewrite.
			 */
			stat_inc(STAT_NAT_PUBLIC_ANNOUNCED);
			continue;
		}
		if (r->header) {
			nat_today(s, r);
			continue;
		}
		if (have && rewritable) {
			int mine = r->kind == KIND_EPSV ? !addr_eq(s->nat.inside, s->nat.p.src)
							: addr_eq(r->addr, s->nat.inside);
			if (!mine) {
				if (r->kind != KIND_EPSV)
					stat_inc(STAT_NAT_NO_MATCH);
			} else if (r->kind != KIND_EPSV && r->off == NAT_OFF_SPLIT) {
				stat_inc(STAT_NAT_SPLIT_FIELD);
			} else {
				int rc = nat_rewrite(skb, s, r, &grown);
				if (rc == 0 || rc == NAT_REFUSE)
					continue;
			}
		}
		nat_today(s, r);
	}
	return 0;
}

/* nat_pending tells whether nat_begin took this egress segment for nat_decide and nat_egress */
static __always_inline int nat_pending(void)
{
	struct scratch *s = get_scratch();
	return s && s->nat.on;
}

/*
 * nat_begin prepares the control segment for the NAT code (into s->nat.p), from
 * parse_control before the TCP tracker reads it: at egress with config.nat
 * it notes the segment for nat_decide and nat_egress (and for the parser's
 * nat_defer); at ingress it shifts acknowledgements back (nat_ingress).
 */
__noinline int nat_begin(struct __sk_buff *skb, int ingress)
{
	struct scratch *s = get_scratch();
	if (!s)
		return 0;
	s->nat.on = 0;
	s->nat.n = 0;
	s->nat.ack_set = 0;
	s->loaded = 0;
	struct config_val *cfg = get_config();
	if (!cfg || cfg->nat == NAT_OFF)
		return 0;
	/* read again here rather than passed: parse_control's stack is spent */
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	if (parse_packet(data, data_end, &s->nat.p) != PARSE_TCP)
		return 0;
	if (ingress)
		return nat_ingress(skb);
	s->nat.on = 1;
	return 0;
}

#endif /* FTPGATE_NAT_H */
