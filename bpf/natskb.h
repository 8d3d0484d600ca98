/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * #12 NAT, the rewrite of the skb at egress (FTPGATE_NAT object): the fixes
 * a segment carries, new or retransmitted, written into it with its tail
 * moved, its lengths and checksums fixed and its sequence number shifted
 * (nat_egress). docs/nat.md, "The rewrite of the skb".
 */
#ifndef FTPGATE_NATSKB_H
#define FTPGATE_NATSKB_H

#ifndef FTPGATE_NAT
#error "natskb.h is for the FTPGATE_NAT object only"
#endif

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ftpgate.h"
#include "maps.h"
#include "common.h"
#include "checksum.h"
#include "natlog.h"
#include "nattext.h"

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

/* nat_gso tells whether the skb is a GSO one, sent as several segments */
static __always_inline int nat_gso(const struct __sk_buff *skb)
{
	return skb->gso_segs > 1 || skb->gso_size;
}

/*
 * nat_past_mtu tells whether a non-GSO skb grown by growth bytes would be
 * longer than the egress device's MTU and L2 header (bpf_check_mtu, the
 * device's own test)
 */
static __always_inline int nat_past_mtu(struct __sk_buff *skb, __s32 growth)
{
	__u32 mtu = 0;
	return bpf_check_mtu(skb, 0, &mtu, growth, 0) != BPF_MTU_CHK_RET_SUCCESS;
}

/*
 * nat_gso_past_mtu tells whether a GSO skb changed in length by growth
 * would be longer than the egress device's MTU: bpf_skb_change_tail drops
 * the GSO state, shrunk or grown, and the skb then leaves as one packet
 * (bpf_check_mtu would check each GSO segment instead)
 */
static __always_inline int nat_gso_past_mtu(struct __sk_buff *skb, __u32 l3_off, __s32 growth)
{
	__u32 mtu = 0;
	bpf_check_mtu(skb, 0, &mtu, 0, 0);
	return growth && skb->len - l3_off + growth > mtu;
}

/*
 * nat_payload writes the fixes listed in s->nat.apply into the segment,
 * whose original payload is in s->pkt: the skb grows or shrinks by growth,
 * each field's text is written and the bytes after it moved, the IP length
 * and checksum and the TCP checksum (payload as a difference, length as a
 * pseudo-header change: right for a full checksum and for CHECKSUM_PARTIAL)
 * are fixed. Returns TC_ACT_OK, or TC_ACT_SHOT for a segment that cannot be
 * rewritten (a GSO skb the rewrite would take past the MTU, a retransmission
 * the growth would take past it, a helper error).
 */
static __always_inline int nat_payload(struct __sk_buff *skb, struct scratch *s, struct nat_dir *nd, __s32 growth)
{
	struct pkt_info *p = &s->nat.p;
	__u32 L = p->payload_len;
	__u32 poff = p->payload_off;
	if (nat_gso(skb)) {
		/*
		 * only a retransmission gets here (nat_rewrite leaves a new
		 * field of such an skb unchanged), collapsed past the MTU
		 */
		if (nat_gso_past_mtu(skb, p->l3_off, growth)) {
			stat_inc(STAT_NAT_GSO_DROP);
			return TC_ACT_SHOT;
		}
	} else if (growth > 0 && nat_past_mtu(skb, growth)) {
		/*
		 * only a retransmission gets here (nat_decide leaves a new field
		 * that would not fit unchanged): unchanged, its stream would be
		 * corrupt; grown, the device drops it
		 */
		stat_inc(STAT_NAT_MTU_DROP);
		return TC_ACT_SHOT;
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
			/*
			 * a retransmission longer than the parser reads (GRO, TSO):
			 * unchanged, the field would leave with its old length and
			 * every byte after it with the wrong shift. TCP sends it again.
			 */
			stat_inc(STAT_NAT_RETRANS_TOO_LONG);
			return TC_ACT_SHOT;
		}
		if ((__s32)(idx - before) < 0) /* logged by an earlier segment */
			stat_inc(STAT_NAT_RETRANS_REAPPLIED);
		s->nat.apply[k & NAT_LOG_MASK] = idx;
		k++;
		growth += (__s32)f->new_len - (__s32)f->old_len;
	}
	if (k && L + growth > MAX_SCAN_BYTES) {
		/* a collapsed retransmission too long to rebuild: dropped, as above */
		stat_inc(STAT_NAT_RETRANS_TOO_LONG);
		return TC_ACT_SHOT;
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

#endif /* FTPGATE_NATSKB_H */
