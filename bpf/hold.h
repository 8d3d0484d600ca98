/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * --sync-hold (#15): the control segment that made an expectation is
 * dropped and handed to run, which sends it on when the group's peers have
 * the expectation (docs/group.md, "Hold").
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

/* hold_key_of fills the segment's hold_pending key in scratch (off the stack) */
static __always_inline struct hold_key *hold_key_of(struct scratch *s)
{
	struct hold_key *k = &s->hold_key;
	__builtin_memset(k, 0, sizeof(*k));
	__builtin_memcpy(&k->ctrl, &s->key, sizeof(k->ctrl));
	k->dir = s->dir;
	return k;
}

/*
 * hold_live tells whether run renews its lease on the hold (hold_lease): it
 * does every HOLD_LEASE_RENEW_MS while it reads the held ring, and clears it
 * when it stops. A run that died lets its lease run out: nothing is held
 * after it. A segment held at ingress needs a kernel where run can inject a
 * frame at ingress (HOLD_INGRESS).
 */
static __always_inline int hold_live(int ingress, __u64 now)
{
	__u32 zero = 0;
	struct hold_lease *l = bpf_map_lookup_elem(&hold_lease, &zero);
	if (!l || now >= l->until_ns) {
		stat_inc(STAT_GROUP_HOLD_NO_RUN);
		return 0;
	}
	if (ingress && !(l->flags & HOLD_INGRESS)) {
		stat_inc(STAT_GROUP_HOLD_UNSENDABLE);
		return 0;
	}
	return 1;
}

/*
 * hold_hand_over gives run the segment TC is about to drop (struct
 * held_segment, ring held) and notes it in hold_pending; 0 when it cannot
 * (the segment is then passed, not held): run sends it on once the group's
 * peers have the expectation it made. Only what run can send on as it was
 * is held: one Ethernet header (a tag the device keeps aside is put back),
 * IP and TCP with nothing between, one segment (not a GRO train), at most
 * HELD_BYTES, and one at a time per control connection and direction; and
 * not a segment this host sends (egress, no ingress device): its TCP,
 * told the segment was dropped (TCX knows no TC_ACT_STOLEN), would count
 * it unsent and refuse the acknowledgement of the copy run sends.
 */
static __always_inline int hold_hand_over(struct __sk_buff *skb, struct scratch *s, struct pkt_info *p, int ingress, __u64 now)
{
	__u32 len = skb->len;
	__u32 ip_hdr = p->family == AF_INET6 ? sizeof(struct ipv6hdr) : 0;
	if (p->l3_off != sizeof(struct ethhdr) || (ip_hdr && p->l4_off - p->l3_off != ip_hdr) || skb->gso_segs > 1 ||
	    (!ingress && !skb->ingress_ifindex)) {
		stat_inc(STAT_GROUP_HOLD_UNSENDABLE);
		return 0;
	}
	if (len > HELD_BYTES) {
		stat_inc(STAT_GROUP_HOLD_LONG);
		return 0;
	}
	if (len < sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct tcphdr)) {
		stat_inc(STAT_GROUP_HOLD_UNSENDABLE);
		return 0;
	}
	struct hold_key *k = hold_key_of(s);
	struct hold_val *busy = bpf_map_lookup_elem(&hold_pending, k);
	if (busy && now < busy->until_ns) {
		stat_inc(STAT_GROUP_HOLD_BUSY);
		return 0;
	}
	struct held_segment *h = bpf_ringbuf_reserve(&held, sizeof(*h), 0);
	if (!h) {
		stat_inc(STAT_GROUP_HOLD_RING_FULL);
		return 0;
	}
	h->held_ns = now;
	h->ifindex = skb->ifindex;
	h->len = len;
	h->ingress = ingress;
	h->l3_off = p->l3_off;
	h->vlan_proto = skb->vlan_present ? skb->vlan_proto : 0;
	h->vlan_tci = skb->vlan_present ? skb->vlan_tci : 0;
	__builtin_memcpy(&h->expect, &s->made_key, sizeof(h->expect));
	__builtin_memcpy(&h->pending, k, sizeof(*k));
	/*
	 * len again, in a form whose bounds (1 to HELD_BYTES) every verifier
	 * sees at the call: 5.10 and 6.1 lost the checks above on the way
	 * (a spill, a merged range test); the barrier keeps the compiler from
	 * folding it back into len
	 */
	barrier_var(len);
	__u32 n = ((len - 1) & (HELD_BYTES - 1)) + 1;
	if (bpf_skb_load_bytes(skb, 0, h->data, n) < 0) {
		bpf_ringbuf_discard(h, 0);
		stat_inc(STAT_GROUP_HOLD_UNSENDABLE);
		return 0;
	}
	struct hold_val *v = &s->hold_val;
	v->until_ns = now + HOLD_WAIT_MS * NSEC_PER_MSEC;
	v->start_seq = p->seq;
	v->end_seq = p->seq + s->seg_len;
	if (bpf_map_update_elem(&hold_pending, k, v, BPF_ANY) != 0) {
		bpf_ringbuf_discard(h, 0);
		stat_inc(STAT_GROUP_HOLD_UNSENDABLE);
		return 0;
	}
	bpf_ringbuf_submit(h, 0);
	return 1;
}

/*
 * hold_retransmit tells whether to drop a segment that repeats bytes of a
 * held segment run has not sent on yet: its sender's retransmission would
 * reach the other end before the peers have the expectation. After
 * HOLD_WAIT_MS it passes (run, which sends on by then, may be gone).
 */
static __always_inline int hold_retransmit(struct scratch *s, __u32 seq, __u32 len, __u64 now)
{
	struct config_val *cfg = get_config();
	if (!cfg || !cfg->sync_hold || !seq_before(seq, s->seg_prev_end))
		return 0;
	struct hold_key *k = hold_key_of(s);
	struct hold_val *v = bpf_map_lookup_elem(&hold_pending, k);
	if (!v)
		return 0;
	if (now >= v->until_ns) {
		bpf_map_delete_elem(&hold_pending, k);
		return 0;
	}
	/* bytes of the held segment: it starts before its end and ends after its start */
	if (!seq_before(seq, v->end_seq) || !seq_after(seq + len, v->start_seq))
		return 0;
	stat_inc(STAT_GROUP_HOLD_RETRANSMIT);
	return 1;
}

/*
 * sync_hold tells whether to take a segment that made an expectation
 * (s->made), with config.sync_hold (#15 --sync-hold): a 227/229 from the
 * server or a PORT/EPRT from the client. The client's data SYN (or the
 * server's) follows it within microseconds and may reach a peer gateway
 * before the expectation is replicated there. Dropped here, the segment
 * goes to run (hold_hand_over), which sends it on when every peer it waits for has
 * acknowledged the expectation, or after HOLD_WAIT_MS (docs/group.md,
 * "Hold"). The connection's state remembers the segment: the parser's
 * position (next_seq) and the tracker's end are past it, so the copy run
 * sends and the sender's own retransmission, if it comes, are old bytes
 * (ctrl_retransmit), passed and not parsed again, and make no second
 * expectation. A segment holding bytes the tracker saw before (one that
 * starts before the sender's end, seg_prev_end) is never held: each byte
 * is held at most once. Never with NAT: its sequence shift is not made for
 * a dropped rewritten segment (run refuses --sync-hold with --nat).
 */
static __always_inline int sync_hold(struct __sk_buff *skb, struct scratch *s, struct pkt_info *p, int ingress, __u64 now)
{
	if (!s->made)
		return 0;
	struct config_val *cfg = get_config();
	if (!cfg || !cfg->sync_hold || cfg->nat)
		return 0;
	if (seq_before(p->seq, s->seg_prev_end))
		return 0;
	if (!hold_live(ingress, now) || !hold_hand_over(skb, s, p, ingress, now))
		return 0;
	stat_inc(STAT_GROUP_HOLD);
	return 1;
}

#endif /* FTPGATE_HOLD_H */
