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
#include "scope.h"

#define NAT_LOG_MASK (NAT_LOG - 1)
#define NAT_TEXT_MASK (NAT_TEXT_BUF - 1)
#define NAT_REQ_MASK (NAT_SEG_FIELDS - 1)
/* offsets in the TCP header and the IP headers */
#define TCP_SEQ_OFF 4
#define TCP_ACK_OFF 8
#define TCP_CSUM_OFF 16
#define IPV4_TOT_LEN_OFF 2
#define IPV4_CSUM_OFF 10
#define IPV6_PLEN_OFF 4
/* SACK option (RFC 2018): kind, length, then blocks of two edges */
#define TCP_OPT_SACK 5
#define SACK_EDGE_LEN 4
#define SACK_MAX_EDGES 8
/* the checksum helpers' size field: a precomputed difference, 2 or 4 bytes */
#define CSUM_BY_DIFF 0
#define CSUM_FIELD2 2
#define CSUM_FIELD4 4
#define DEC_DIGITS_MAX 5
#define HEX_GROUP_DIGITS 4
#define HEX_DIGIT_BITS 4
#define HEX_DIGIT_MASK 0xf
#define PORT_HIGH_SHIFT 8
#define PORT_LOW_MASK 0xff
#define PORT_SPACE 65536

/* nat_dir_of returns the correction log of the direction in s->dir */
static __always_inline struct nat_dir *nat_dir_of(struct ctrl_val *cv, struct scratch *s)
{
	return &cv->nat[s->dir == DIR_SERVER ? DIR_SERVER : DIR_CLIENT];
}

/* nat_log_last returns the shift after the last fix of a log (its base when empty) */
static __always_inline __s32 nat_log_last(const struct nat_dir *nd)
{
	__u32 h = nd->head, t = nd->tail;
	if (t == h)
		return nd->base;
	return nd->fix[(t - 1) & NAT_LOG_MASK].delta;
}

/*
 * nat_shift returns the shift of the sender's byte x: the delta of the last
 * fix that ends at or before it, in the sender's (inside) numbering, or,
 * with shifted, in the numbering the peer sees (an acknowledgement or SACK
 * edge: a field ends with its new text there). A byte inside a field gets
 * the shift before the field.
 */
static __always_inline __s32 nat_shift(const struct nat_dir *nd, __u32 x, int shifted)
{
	__s32 d = nd->base;
	__u32 h = nd->head, t = nd->tail;
	for (__u32 j = 0; j < NAT_LOG; j++) {
		if (h + j == t)
			break;
		const struct nat_fix *f = &nd->fix[(h + j) & NAT_LOG_MASK];
		__u32 end = shifted ? f->seq + d + f->new_len : f->seq + f->old_len;
		if (seq_before(x, end))
			break;
		d = f->delta;
	}
	return d;
}

/* nat_replace4 writes a 32-bit field of the TCP header and fixes the checksum */
static __always_inline int nat_replace4(struct __sk_buff *skb, __u32 l4_off, __u32 off, __u32 old, __u32 new)
{
	__u32 o = bpf_htonl(old), n = bpf_htonl(new);
	if (bpf_skb_store_bytes(skb, l4_off + off, &n, sizeof(n), 0))
		return -1;
	return bpf_l4_csum_replace(skb, l4_off + TCP_CSUM_OFF, o, n, CSUM_FIELD4);
}

/*
 * nat_ingress shifts the acknowledgement and every SACK edge of a control
 * segment arriving on the guarded interface back to the numbering of the
 * direction it acknowledges, when that direction's announcements were
 * rewritten (its log is not empty), and notes how far the peer has
 * acknowledged so egress can fold old fixes. It runs before the TCP tracker
 * reads the header; the checksum stays right (l4_csum_replace).
 */
__noinline int nat_ingress(struct __sk_buff *skb)
{
	struct scratch *s = get_scratch();
	if (!s)
		return 0;
	struct ctrl_val *cv = bpf_map_lookup_elem(&ctrl_conns, &s->key);
	if (!cv)
		return 0;
	struct nat_dir *nd = &cv->nat[s->dir == DIR_CLIENT ? DIR_SERVER : DIR_CLIENT];
	if (nd->head == nd->tail && nd->base == 0)
		return 0;
	__u32 l4 = s->nat.p.l4_off;
	__u32 hdr_len = s->nat.p.payload_off - l4;
	if (hdr_len < sizeof(struct tcphdr) || hdr_len > TCP_MAX_HDR)
		return 0;
	__u32 hl = ((hdr_len - 1) & TCP_HDR_MASK) + 1;
	if (bpf_skb_load_bytes(skb, l4, s->hdr, hl))
		return 0;
	struct tcphdr *th = (void *)s->hdr;
	if (s->nat.p.flags & TCPF_ACK) {
		__u32 a = bpf_ntohl(th->ack_seq);
		__u32 o = a - nat_shift(nd, a, 1);
		if (o != a) {
			if (nat_replace4(skb, l4, TCP_ACK_OFF, a, o))
				return 0;
			stat_inc(STAT_NAT_ACK_SHIFTED);
		}
		s->nat.ack = o;
		s->nat.ack_set = 1;
	}
	/* the SACK option's edges */
	s->hdr_len = hdr_len;
	s->opt_off = sizeof(struct tcphdr);
	for (int n = 0; n < TCP_MAX_HDR - sizeof(struct tcphdr); n++) {
		__u8 kind = 0, olen = 0;
		__u32 i = 0, len = 0;
		int r = tcp_opt_step(s, &kind, &i, &len, &olen);
		if (r == TCP_OPT_END)
			break;
		if (r == TCP_OPT_SKIP)
			continue;
		if (kind == TCP_OPT_SACK && i + olen <= len) {
			int blocks = 0;
			for (__u32 e = 0; e < SACK_MAX_EDGES; e++) {
				__u32 at = i + TCP_OPT_MIN_LEN + e * SACK_EDGE_LEN;
				if (at + SACK_EDGE_LEN > i + olen)
					break;
				/* bytewise: an edge need not stand on a word boundary */
				__u32 v = 0;
				for (int b = 0; b < SACK_EDGE_LEN; b++)
					v = (v << BITS_PER_BYTE) | s->hdr[(at + b) & TCP_HDR_MASK];
				__u32 o = v - nat_shift(nd, v, 1);
				if (o != v) {
					if (nat_replace4(skb, l4, at, v, o))
						return 0;
					blocks++;
				}
			}
			if (blocks)
				stat_inc(STAT_NAT_SACK_SHIFTED);
			break;
		}
		s->opt_off = i + olen;
	}
	return 0;
}

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

/* nat_put_dec writes v in decimal at s->nat.text[i]; returns the index after it */
static __always_inline __u32 nat_put_dec(struct scratch *s, __u32 i, __u32 v)
{
	__u32 div = 1;
	for (int k = 1; k < DEC_DIGITS_MAX; k++) {
		if (v / div < DECIMAL_BASE)
			break;
		div *= DECIMAL_BASE;
	}
	for (int k = 0; k < DEC_DIGITS_MAX; k++) {
		s->nat.text[i & NAT_TEXT_MASK] = '0' + (v / div) % DECIMAL_BASE;
		i++;
		if (div == 1)
			break;
		div /= DECIMAL_BASE;
	}
	return i;
}

/* nat_put_hex writes a 16-bit group in hex, without leading zeros, at s->nat.text[i] */
static __always_inline __u32 nat_put_hex(struct scratch *s, __u32 i, __u32 v)
{
	int started = 0;
	for (int k = HEX_GROUP_DIGITS - 1; k >= 0; k--) {
		__u32 d = (v >> (k * HEX_DIGIT_BITS)) & HEX_DIGIT_MASK;
		if (!d && !started && k > 0)
			continue;
		started = 1;
		s->nat.text[i & NAT_TEXT_MASK] = d < DECIMAL_BASE ? '0' + d : 'a' + d - HEX_LETTER_BASE;
		i++;
	}
	return i;
}

/*
 * nat_format writes into s->nat.text the replacement text of the form
 * s->nat.fmt_kind for the public address (the segment's source) and port
 * s->nat.port, as the announcement spells them: "h1,h2,h3,h4,p1,p2" for
 * PORT and 227, "addr<d>port" for EPRT (an IPv6 address as eight groups).
 * Returns its length.
 */
__noinline int nat_format(void)
{
	struct scratch *s = get_scratch();
	if (!s)
		return -1;
	__u8 kind = s->nat.fmt_kind;
	__u32 port = s->nat.port;
	__u32 i = 0;
	if (kind == KIND_EPRT && s->nat.p.family == AF_INET6) {
		for (int g = 0; g < IPV6_GROUPS; g++) {
			if (g)
				s->nat.text[i++ & NAT_TEXT_MASK] = ':';
			__u32 w = bpf_ntohl(s->nat.p.src[(g / 2) & (IPV6_WORDS - 1)]);
			i = nat_put_hex(s, i, (g & 1) ? w & IPV6_GROUP_MASK : w >> IPV6_GROUP_BITS);
		}
	} else {
		__u8 sep = kind == KIND_EPRT ? '.' : ',';
		__u32 a = s->nat.p.src[0];
		for (int k = 0; k < IPV4_OCTETS; k++) {
			if (k)
				s->nat.text[i++ & NAT_TEXT_MASK] = sep;
			i = nat_put_dec(s, i, (a >> (k * BITS_PER_BYTE)) & BYTE_MASK);
		}
	}
	if (kind == KIND_EPRT) {
		s->nat.text[i++ & NAT_TEXT_MASK] = s->nat.fmt_delim;
		return nat_put_dec(s, i, port);
	}
	s->nat.text[i++ & NAT_TEXT_MASK] = ',';
	i = nat_put_dec(s, i, port >> PORT_HIGH_SHIFT);
	s->nat.text[i++ & NAT_TEXT_MASK] = ',';
	return nat_put_dec(s, i, port & PORT_LOW_MASK);
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
 * nat, and logs the replacement (nat_prepare, nat_commit). Returns 0, or -1
 * when the request must be decided by today's rules.
 */
static __always_inline int nat_rewrite(struct scratch *s, struct nat_req *r)
{
	int rc = nat_prepare();
	if (rc < 0)
		return rc;
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
				int rc = nat_rewrite(s, r);
				if (rc == 0 || rc == NAT_REFUSE)
					continue;
			}
		}
		nat_today(s, r);
	}
	return 0;
}

/*
 * nat_store writes n bytes of from at off in the skb; a zero length writes
 * nothing. from holds at least mask + 1 bytes (mask: a power of two less
 * one, n <= mask + 1).
 */
static __always_inline int nat_store(struct __sk_buff *skb, __u32 off, void *from, __u32 n, __u32 mask)
{
	if (n == 0)
		return 0;
	/* [1, mask + 1] in a form the 6.1 verifier keeps: a test against zero teaches it nothing */
	return bpf_skb_store_bytes(skb, off, from, ((n - 1) & mask) + 1, 0);
}

/*
 * nat_payload writes the fixes listed in s->nat.apply into the segment,
 * whose original payload is in s->pkt: the skb grows or shrinks by growth,
 * each field's text is written and the bytes after it moved, the IP length
 * and checksum and the TCP checksum (payload as a difference, length as a
 * pseudo-header change: right for a full checksum and for CHECKSUM_PARTIAL)
 * are fixed. Returns TC_ACT_OK, or TC_ACT_SHOT for a segment that cannot be
 * rewritten (a GSO skb the growth would take past the MTU, a helper error).
 */
static __always_inline int nat_payload(struct __sk_buff *skb, struct scratch *s, struct nat_dir *nd, __s32 growth)
{
	struct pkt_info *p = &s->nat.p;
	__u32 L = p->payload_len;
	__u32 poff = p->payload_off;
	if (growth > 0 && (skb->gso_segs > 1 || skb->gso_size)) {
		__u32 mtu = 0;
		bpf_check_mtu(skb, 0, &mtu, 0, 0);
		if (skb->len - p->l3_off + growth > mtu) {
			stat_inc(STAT_NAT_GSO_DROP);
			return TC_ACT_SHOT;
		}
	}
	if (growth && bpf_skb_change_tail(skb, skb->len + growth, 0))
		goto fail;
	__s32 g = 0;
	__u32 k = s->nat.napply;
	for (__u32 j = 0; j < NAT_LOG; j++) {
		if (j >= k)
			break;
		struct nat_fix *f = &nd->fix[s->nat.apply[j] & NAT_LOG_MASK];
		__u32 o = f->seq - p->seq;
		__u32 nl = f->new_len;
		__u32 ol = f->old_len;
		if (o > MAX_SCAN_BYTES || nl > NAT_TEXT_MAX || ol > MAX_LINE_LEN)
			goto fail;
		/* the text again, from the fix */
		s->nat.port = f->port;
		s->nat.fmt_kind = f->kind;
		s->nat.fmt_delim = f->delim;
		if (nat_format() != (int)nl)
			goto fail;
		if (nat_store(skb, poff + o + g, s->nat.text, nl, NAT_TEXT_MASK))
			goto fail;
		/* the bytes up to the next fix, or to the end */
		__u32 next = L;
		if (j + 1 < k)
			next = nd->fix[s->nat.apply[(j + 1) & NAT_LOG_MASK] & NAT_LOG_MASK].seq - p->seq;
		__u32 from = o + ol;
		if (next > MAX_SCAN_BYTES || from > next)
			goto fail;
		__u32 n = next - from;
		g += (__s32)nl - (__s32)ol;
		if (nat_store(skb, poff + from + g, &s->pkt[from & SCAN_MASK], n, SCAN_MASK))
			goto fail;
	}
	/* the checksum: payload as a difference, then the length in the pseudo-header */
	__u32 newlen = L + growth;
	if (newlen > MAX_SCAN_BYTES || newlen == 0)
		goto fail;
	if (bpf_skb_load_bytes(skb, poff, s->nat.out, ((newlen - 1) & SCAN_MASK) + 1))
		goto fail;
	__s64 olds = payload_sum(s, L, 0);
	__s64 news = buf_sum(s->nat.out, newlen, 0);
	if (olds < 0 || news < 0)
		goto fail;
	__u32 diff = csum_fold(news) + (~csum_fold(olds) & CSUM_MASK);
	__u32 csum_off = p->l4_off + TCP_CSUM_OFF;
	if (bpf_l4_csum_replace(skb, csum_off, 0, diff, CSUM_BY_DIFF))
		goto fail;
	if (growth) {
		__u32 tcp_old = poff - p->l4_off + L;
		__u32 tcp_new = tcp_old + growth;
		if (bpf_l4_csum_replace(skb, csum_off, bpf_htons(tcp_old), bpf_htons(tcp_new),
					BPF_F_PSEUDO_HDR | CSUM_FIELD2))
			goto fail;
		if (p->family == AF_INET) {
			__u16 ip_old = bpf_htons(p->ip_len), ip_new = bpf_htons(p->ip_len + growth);
			if (bpf_skb_store_bytes(skb, p->l3_off + IPV4_TOT_LEN_OFF, &ip_new, sizeof(ip_new), 0) ||
			    bpf_l3_csum_replace(skb, p->l3_off + IPV4_CSUM_OFF, ip_old, ip_new, CSUM_FIELD2))
				goto fail;
		} else {
			__u16 pl = 0;
			if (bpf_skb_load_bytes(skb, p->l3_off + IPV6_PLEN_OFF, &pl, sizeof(pl)))
				goto fail;
			pl = bpf_htons(bpf_ntohs(pl) + growth);
			if (bpf_skb_store_bytes(skb, p->l3_off + IPV6_PLEN_OFF, &pl, sizeof(pl), 0))
				goto fail;
		}
	}
	return TC_ACT_OK;
fail:
	stat_inc(STAT_NAT_REWRITE_FAILED);
	return TC_ACT_SHOT;
}

/*
 * nat_egress runs after nat_decide: it writes every fix the segment holds
 * (new ones, and logged ones a retransmission repeats) and shifts its
 * sequence number by the fixes before it.
 */
__noinline int nat_egress(struct __sk_buff *skb)
{
	struct scratch *s = get_scratch();
	if (!s)
		return TC_ACT_OK;
	int on = s->nat.on;
	s->nat.on = 0;
	s->nat.napply = 0;
	if (!on)
		return TC_ACT_OK;
	struct ctrl_val *cv = bpf_map_lookup_elem(&ctrl_conns, &s->key);
	if (!cv)
		return TC_ACT_OK; /* closed by this segment: nothing to shift any more */
	struct nat_dir *nd = nat_dir_of(cv, s);
	struct pkt_info *p = &s->nat.p;
	__u32 S = p->seq;
	__u32 L = p->payload_len;
	__u32 before = s->nat.before;

	/* the fixes inside this segment, new or retransmitted, in order */
	__s32 growth = 0;
	__u32 k = 0;
	__u32 h = nd->head, t = nd->tail;
	for (__u32 j = 0; j < NAT_LOG; j++) {
		if (h + j == t)
			break;
		__u32 idx = h + j;
		struct nat_fix *f = &nd->fix[idx & NAT_LOG_MASK];
		__s32 rel = (__s32)(f->seq - S);
		__s32 end = rel + f->old_len;
		if (end <= 0 || rel >= (__s32)L)
			continue;
		if (rel < 0 || end > (__s32)L) {
			stat_inc(STAT_NAT_RETRANS_PARTIAL);
			continue;
		}
		if (L > s->loaded) {
			stat_inc(STAT_NAT_UNREWRITABLE);
			continue;
		}
		if ((__s32)(idx - before) < 0) /* logged by an earlier segment */
			stat_inc(STAT_NAT_RETRANS_REAPPLIED);
		s->nat.apply[k & NAT_LOG_MASK] = idx;
		k++;
		growth += (__s32)f->new_len - (__s32)f->old_len;
	}
	if (k && L + growth > MAX_SCAN_BYTES) {
		/* a collapsed retransmission too long to rebuild: passed unchanged */
		stat_inc(STAT_NAT_UNREWRITABLE);
		k = 0;
	}
	s->nat.napply = k;
	if (k) {
		int ret = nat_payload(skb, s, nd, growth);
		if (ret != TC_ACT_OK)
			return ret;
	}

	__s32 d = nat_shift(nd, S, 0);
	if (d) {
		if (nat_replace4(skb, p->l4_off, TCP_SEQ_OFF, S, S + d)) {
			stat_inc(STAT_NAT_REWRITE_FAILED);
			return TC_ACT_SHOT;
		}
		stat_inc(STAT_NAT_SEQ_SHIFTED);
	}
	return TC_ACT_OK;
}

/*
 * nat_ack_commit records, once the tracker accepted an ingress segment, how
 * far it acknowledged the rewritten direction (nat_ingress's candidate),
 * never beyond what that direction sent: fixes acknowledged are folded at
 * egress. A forged or out-of-window ACK never gets here.
 */
__noinline int nat_ack_commit(void)
{
	struct scratch *s;
	struct ctrl_val *cv = scratch_conn(&s);
	if (!cv || !s->nat.ack_set)
		return 0;
	s->nat.ack_set = 0;
	__u32 peer = s->dir == DIR_CLIENT ? DIR_SERVER : DIR_CLIENT;
	struct nat_dir *nd = &cv->nat[peer];
	__u32 o = s->nat.ack;
	if (seq_after(o, cv->dir[peer].tcp.end))
		return 0;
	if (!nd->acked_set || seq_after(o, nd->acked)) {
		nd->acked = o;
		nd->acked_set = 1;
	}
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
