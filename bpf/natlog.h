/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * #12 NAT, the correction log of a control connection (FTPGATE_NAT object):
 * the fixes a direction's rewrites made, the shift they give a sequence
 * number, the acknowledgements and SACK edges shifted back at ingress
 * (nat_ingress) and the acknowledgement that folds fixes once the tracker
 * accepted it (nat_ack_commit). docs/nat.md, "Sequence adjustment".
 */
#ifndef FTPGATE_NATLOG_H
#define FTPGATE_NATLOG_H

#ifndef FTPGATE_NAT
#error "natlog.h is for the FTPGATE_NAT object only"
#endif

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ftpgate.h"
#include "maps.h"
#include "common.h"
#include "expect.h"
#include "tcp.h"

#define NAT_LOG_MASK (NAT_LOG - 1)
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
 * nat_header_load reads the TCP header of the segment in s->nat.p into
 * s->hdr (s->hdr_len). Returns 0, or -1 when it cannot be read.
 */
static __always_inline int nat_header_load(struct __sk_buff *skb, struct scratch *s)
{
	__u32 hdr_len = s->nat.p.payload_off - s->nat.p.l4_off;
	if (hdr_len < sizeof(struct tcphdr) || hdr_len > TCP_MAX_HDR)
		return -1;
	__u32 hl = ((hdr_len - 1) & TCP_HDR_MASK) + 1;
	if (bpf_skb_load_bytes(skb, s->nat.p.l4_off, s->hdr, hl))
		return -1;
	s->hdr_len = hdr_len;
	return 0;
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
	if (nat_header_load(skb, s))
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
	s->opt_off = sizeof(struct tcphdr);
	__u8 kind = 0, olen = 0;
	__u32 i = 0, len = 0;
	if (tcp_opt_seek(s, 1u << TCP_OPT_SACK, &kind, &i, &len, &olen) != TCP_OPT_FOUND || i + olen > len)
		return 0;
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
	return 0;
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

#endif /* FTPGATE_NATLOG_H */
