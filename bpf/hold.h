/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * --sync-hold (#15): the control segment that made an expectation is
 * dropped once and handed to run, which sends it on when the group's peers
 * have the expectation (docs/group.md, "Hold").
 */
#ifndef FTPGATE_HOLD_H
#define FTPGATE_HOLD_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "ftpgate.h"
#include "maps.h"
#include "parsing.h"
#include "common.h"
#include "tcp.h"
#include "tls.h"

/*
 * hold_hand_over gives run the segment TC is about to drop (struct
 * held_segment, ring held): run sends it on once the group's peers have the
 * expectation it made, milliseconds later rather than one RTO. One that does
 * not fit, or finds the ring full, is held all the same and counted: the
 * sender's retransmission brings it.
 */
static __always_inline void hold_hand_over(struct __sk_buff *skb, struct scratch *s, __u32 seq, __u32 l3_off, int ingress, __u64 now)
{
	__u32 len = skb->len;
	if (len == 0 || len > HELD_BYTES || len < l3_off || l3_off > 255) {
		stat_inc(STAT_GROUP_HOLD_LONG);
		return;
	}
	struct held_segment *h = bpf_ringbuf_reserve(&held, sizeof(*h), 0);
	if (!h) {
		stat_inc(STAT_GROUP_HOLD_RING_FULL);
		return;
	}
	h->ifindex = skb->ifindex;
	h->len = len;
	h->ingress = ingress;
	h->l3_off = l3_off;
	h->vlan_proto = skb->vlan_present ? skb->vlan_proto : 0;
	h->vlan_tci = skb->vlan_present ? skb->vlan_tci : 0;
	__builtin_memcpy(&h->expect, &s->made_key, sizeof(h->expect));
	__builtin_memcpy(&h->pending.ctrl, &s->key, sizeof(s->key));
	h->pending.dir = s->dir;
	if (bpf_skb_load_bytes(skb, 0, h->data, len) < 0) {
		bpf_ringbuf_discard(h, 0);
		stat_inc(STAT_GROUP_HOLD_LONG);
		return;
	}
	struct hold_val v = { .until_ns = now + HOLD_WAIT_MS * NSEC_PER_MSEC, .end_seq = seq + s->seg_len };
	bpf_map_update_elem(&hold_pending, &h->pending, &v, BPF_ANY);
	bpf_ringbuf_submit(h, 0);
}

/*
 * hold_retransmit tells whether to drop a segment that repeats bytes of a
 * held segment run has not sent on yet: its sender's retransmission would
 * reach the other end before the peers have the expectation. After
 * HOLD_WAIT_MS it passes (run, which sends on by then, may be gone).
 */
static __always_inline int hold_retransmit(struct scratch *s, __u32 seq, __u64 now)
{
	struct config_val *cfg = get_config();
	if (!cfg || !cfg->sync_hold || !seq_before(seq, s->seg_prev_end))
		return 0;
	struct hold_key k = { .dir = s->dir };
	__builtin_memcpy(&k.ctrl, &s->key, sizeof(k.ctrl));
	struct hold_val *v = bpf_map_lookup_elem(&hold_pending, &k);
	if (!v)
		return 0;
	if (now >= v->until_ns || !seq_before(seq, v->end_seq)) {
		if (now >= v->until_ns)
			bpf_map_delete_elem(&hold_pending, &k);
		return 0;
	}
	stat_inc(STAT_GROUP_HOLD_RETRANSMIT);
	return 1;
}

/*
 * sync_hold tells whether to drop a segment that made an expectation
 * (s->made), with config.sync_hold (#15 --sync-hold): a 227/229 from the
 * server or a PORT/EPRT from the client. The client's data SYN (or the
 * server's) follows it within microseconds and may reach a peer gateway
 * before the expectation is replicated there. Dropped here, the segment
 * goes to run (hold_hand_over), which sends it on when every live peer has
 * acknowledged the expectation, or after a bound (docs/group.md, "Hold").
 * The connection's state remembers the segment: the parser's position
 * (next_seq) and the tracker's end are past it, so the copy run sends and
 * the sender's own retransmission, if it comes, are old bytes
 * (ctrl_retransmit), passed and not parsed again, and make no second
 * expectation. A segment holding bytes the tracker saw before (one that
 * starts before the sender's end, seg_prev_end) is never dropped: each byte
 * is held at most once. Never with NAT: its sequence shift is not made for
 * a dropped rewritten segment (run refuses --sync-hold with --nat).
 */
static __always_inline int sync_hold(struct __sk_buff *skb, struct scratch *s, __u32 seq, __u32 l3_off, int ingress, __u64 now)
{
	if (!s->made)
		return 0;
	struct config_val *cfg = get_config();
	if (!cfg || !cfg->sync_hold || cfg->nat)
		return 0;
	if (seq_before(seq, s->seg_prev_end))
		return 0;
	stat_inc(STAT_GROUP_HOLD);
	hold_hand_over(skb, s, seq, l3_off, ingress, now);
	return 1;
}

#endif /* FTPGATE_HOLD_H */
