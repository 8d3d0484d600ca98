/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Helpers shared by the XDP filter and the TC parser. */
#ifndef FTPGATE_COMMON_H
#define FTPGATE_COMMON_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "ftpgate.h"
#include "maps.h"
#include "parsing.h"

#define NSEC_PER_SEC 1000000000ULL
#define NSEC_PER_MSEC 1000000ULL

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		*v += 1;
}

static __always_inline struct config_val *get_config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&config, &zero);
}

/*
 * bucket_take takes a token of cost ns from a token bucket kept as its clock
 * and its credit (at most max ns): 1 when it held one. A bucket that is
 * zero is full. Racing CPUs may both spend the same token: the limit is
 * approximate, its purpose is met.
 */
static __always_inline int bucket_take(__u64 *last_ns, __u64 *credit_ns, __u64 now, __u64 cost, __u64 max)
{
	if (now < *last_ns)
		*last_ns = now; /* only config.clock_offset moves the clock back */
	__u64 credit = *credit_ns + (now - *last_ns);
	if (credit > max)
		credit = max;
	*last_ns = now;
	if (credit < cost) {
		*credit_ns = credit;
		return 0;
	}
	*credit_ns = credit - cost;
	return 1;
}

/* now_ns is ftpgate's clock: the kernel's plus the configured offset */
static __always_inline __u64 now_ns(const struct config_val *cfg)
{
	__u64 t = bpf_ktime_get_ns();
	if (cfg)
		t += cfg->clock_offset_ns;
	return t;
}

/*
 * emit_event_seq reports to user space; the record is built in place in the
 * ring. sport is the source port of a dropped or admitted SYN, else 0; seq
 * the admitted SYN's sequence number (EV_EXPECT_CONSUMED), else 0; nat the
 * inside end of a rewritten announcement (#12), else NULL.
 */
static __always_inline void emit_event_seq(__u32 type, __u32 reason, __u8 kind, const struct expect_key *ek,
					   const struct ctrl_key *ck, __u16 sport, __u32 seq,
					   const struct nat_target *nat, __u64 ts)
{
	struct event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev) {
		stat_inc(STAT_EVENTS_LOST);
		return;
	}
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->ts_ns = ts;
	ev->type = type;
	ev->reason = reason;
	ev->kind = kind;
	ev->sport = sport;
	ev->seq = seq;
	if (ek)
		__builtin_memcpy(&ev->expect, ek, sizeof(ev->expect));
	if (ck)
		__builtin_memcpy(&ev->ctrl, ck, sizeof(ev->ctrl));
	if (nat)
		__builtin_memcpy(&ev->nat, nat, sizeof(ev->nat));
	bpf_ringbuf_submit(ev, 0);
}

/* emit_event_nat reports an event without a sequence number */
static __always_inline void emit_event_nat(__u32 type, __u32 reason, __u8 kind, const struct expect_key *ek,
					   const struct ctrl_key *ck, __u16 sport, const struct nat_target *nat,
					   __u64 ts)
{
	emit_event_seq(type, reason, kind, ek, ck, sport, 0, nat, ts);
}

/* emit_event_port reports an event without an inside end */
static __always_inline void emit_event_port(__u32 type, __u32 reason, __u8 kind, const struct expect_key *ek,
					    const struct ctrl_key *ck, __u16 sport, __u64 ts)
{
	emit_event_nat(type, reason, kind, ek, ck, sport, 0, ts);
}

/* emit_event reports an expectation event: never rate-limited */
static __always_inline void emit_event(__u32 type, __u32 reason, __u8 kind, const struct expect_key *ek,
				       const struct ctrl_key *ck, __u64 ts)
{
	emit_event_port(type, reason, kind, ek, ck, 0, ts);
}

/* the credit one rate-limited event costs, and the most the bucket holds */
#define EVENT_COST_NS (NSEC_PER_SEC / REJECT_EVENTS_PER_SEC)
#define EVENT_CREDIT_MAX_NS ((__u64)REJECT_EVENTS_BURST * EVENT_COST_NS)

/*
 * event_allowed decides whether a rejection or a dropped SYN, seen at now,
 * is reported: the bucket must hold a token and the ring must be less than
 * half full, so that these events can never take the room of expectation
 * events. What is not reported counts as events_suppressed.
 */
static __always_inline int event_allowed(__u64 now)
{
	__u32 zero = 0;
	struct event_budget *b = bpf_map_lookup_elem(&event_budget, &zero);
	if (!b)
		return 0;
	if (now < b->last_ns) {
		/*
		 * only config.clock_offset moves this CPU's clock back (tests,
		 * replay): start afresh
		 */
		b->last_ns = now;
		b->credit_ns = EVENT_CREDIT_MAX_NS;
	}
	__u64 credit = b->credit_ns + (now - b->last_ns);
	if (credit > EVENT_CREDIT_MAX_NS)
		credit = EVENT_CREDIT_MAX_NS;
	b->last_ns = now;
	if (credit < EVENT_COST_NS || bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= EVENTS_BYTES / 2) {
		b->credit_ns = credit;
		stat_inc(STAT_EVENTS_SUPPRESSED);
		return 0;
	}
	b->credit_ns = credit - EVENT_COST_NS;
	return 1;
}

static __always_inline int port_enabled(void *map, __u16 port)
{
	__u32 key = port;
	struct port_val *v = bpf_map_lookup_elem(map, &key);
	return v && v->enabled;
}

static __always_inline void copy_addr(__u32 *dst, const __u32 *src)
{
	dst[0] = src[0];
	dst[1] = src[1];
	dst[2] = src[2];
	dst[3] = src[3];
}

static __always_inline int addr_eq(const __u32 *a, const __u32 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3];
}

static __always_inline void flow_key_from(struct flow_key *k, const struct pkt_info *p, int reverse)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->family = p->family;
	if (reverse) {
		k->sport = p->dport;
		k->dport = p->sport;
		copy_addr(k->src, p->dst);
		copy_addr(k->dst, p->src);
	} else {
		k->sport = p->sport;
		k->dport = p->dport;
		copy_addr(k->src, p->src);
		copy_addr(k->dst, p->dst);
	}
}

/* dir_of returns the parser state of direction dir (enum direction) */
static __always_inline struct dir_state *dir_of(struct ctrl_val *cv, __u32 dir)
{
	return dir == DIR_SERVER ? &cv->dir[DIR_SERVER] : &cv->dir[DIR_CLIENT];
}

#endif /* FTPGATE_COMMON_H */
