/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Expectation slots: each direction of a control connection remembers the
 * last EXPECT_SLOTS expectations it wrote, so that the per-connection cap can
 * evict the oldest and a closing connection can remove what it left behind.
 * Rejected commands and replies are reported here too, with the expectation
 * they would have written.
 *
 * The __noinline functions are global BPF functions for the verifier's
 * sake: see text.h.
 */
#ifndef FTPGATE_EXPECT_H
#define FTPGATE_EXPECT_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "ftpgate.h"
#include "maps.h"
#include "common.h"
#include "syngate.h"

/* the slots of both directions of a connection, numbered client first */
#define CONN_SLOTS (2 * EXPECT_SLOTS)

/*
 * reject counts a rejected line and reports the expectation it asked for,
 * within the rate limit of rejection events
 */
static __always_inline void reject(struct scratch *s, __u32 reason, __u8 kind)
{
	stat_inc(reason);
	__u64 now = now_ns(get_config());
	if (event_allowed(now))
		emit_event(EV_REJECT, reason, kind, &s->exp, &s->key, now);
}

/* slot_owner returns the direction that holds slot i (0..CONN_SLOTS) */
static __always_inline struct dir_state *slot_owner(struct ctrl_val *cv, __u32 i)
{
	return i < EXPECT_SLOTS ? &cv->dir[DIR_CLIENT] : &cv->dir[DIR_SERVER];
}

/* slot_key returns the key in slot i (0..CONN_SLOTS) of a connection */
static __always_inline struct expect_key *slot_key(struct ctrl_val *cv, __u32 i)
{
	return &slot_owner(cv, i)->slot[i & (EXPECT_SLOTS - 1)];
}

/*
 * slot_live returns the expectation slot j of d names while the map still
 * holds it, or NULL. The creation time is the nonce: the XDP filter deletes
 * the entries it consumes without touching the slots, and another
 * connection may have reused the key since.
 */
static __always_inline struct expect_val *slot_live(struct dir_state *d, __u32 j)
{
	j &= EXPECT_SLOTS - 1;
	__u64 created = d->slot_created[j];
	if (!created)
		return 0;
	struct expect_val *ev = bpf_map_lookup_elem(&expectations, &d->slot[j]);
	if (!ev || ev->created_ns != created)
		return 0;
	return ev;
}

/* expect_remove deletes an expectation, reported as event and counted as counter */
static __always_inline void expect_remove(struct expect_key *k, struct expect_val *ev, struct ctrl_key *ctrl,
					  __u32 event, __u32 counter, __u64 now)
{
	emit_event(event, 0, ev->kind, k, ctrl, now);
	if (bpf_map_delete_elem(&expectations, k) == 0)
		stat_inc(counter);
}

/*
 * scratch_conn returns the scratch memory in *sp and the control connection
 * named by its key, or NULL: the first step of every global function that
 * works on a connection.
 */
static __always_inline struct ctrl_val *scratch_conn(struct scratch **sp)
{
	struct scratch *s = get_scratch();
	*sp = s;
	if (!s)
		return 0;
	return bpf_map_lookup_elem(&ctrl_conns, &s->key);
}

/*
 * expect_oldest counts the live expectations of the control connection in
 * s->key and leaves the slot index of the oldest in s->victim. The index goes
 * through scratch memory so the verifier does not track one state per slot.
 */
__noinline int expect_oldest(void)
{
	struct scratch *s;
	struct ctrl_val *cv = scratch_conn(&s);
	if (!cv)
		return -1;
	int live = 0;

	s->oldest = ~0ULL;
	s->victim = 0;
	for (int i = 0; i < CONN_SLOTS; i++) {
		struct expect_val *ev = slot_live(slot_owner(cv, i), i);
		if (!ev)
			continue;
		live++;
		if (ev->created_ns < s->oldest) {
			s->oldest = ev->created_ns;
			s->victim = i;
		}
	}
	return live;
}

/* expect_cap returns the configured per-connection cap, within its bounds */
static __always_inline __u32 expect_cap(const struct config_val *cfg)
{
	__u32 cap = cfg->max_expect_per_conn;
	if (cap < 1)
		cap = 1;
	if (cap > MAX_EXPECT_PER_CONN)
		cap = MAX_EXPECT_PER_CONN;
	return cap;
}

/*
 * expect_create writes the expectation in s->exp for the control connection in
 * s->key, seen in direction s->dir, enforcing the per-connection cap: the
 * oldest live expectation of the connection (either direction) is evicted.
 */
__noinline int expect_create(int kind)
{
	struct scratch *s;
	struct config_val *cfg = get_config();
	if (!cfg)
		return -1;
	struct ctrl_val *cv = scratch_conn(&s);
	if (!cv)
		return -1;
	struct dir_state *own = dir_of(cv, s->dir);

	__u64 now = now_ns(cfg);
	__u64 timeout = cfg->expect_timeout_ns ? cfg->expect_timeout_ns : DEFAULT_EXPECT_TIMEOUT_SEC * NSEC_PER_SEC;
	__u32 cap = expect_cap(cfg);

	/* evict the oldest until there is room (a lowered cap may need several) */
	for (int round = 0; round < CONN_SLOTS; round++) {
		int live = expect_oldest();
		if (live < (int)cap || live <= 0)
			break;
		struct expect_key *victim = slot_key(cv, s->victim);
		struct expect_val *vv = bpf_map_lookup_elem(&expectations, victim);
		if (vv)
			expect_remove(victim, vv, &s->key, EV_EXPECT_EVICTED, STAT_EXPECT_EVICTED, now);
	}

	/* the slot we overwrite may still name a live expectation */
	__u32 w = own->slot_next & (EXPECT_SLOTS - 1);
	struct expect_val *stale = slot_live(own, w);
	if (stale)
		expect_remove(&own->slot[w], stale, &s->key, EV_EXPECT_EVICTED, STAT_EXPECT_EVICTED, now);

	/* the value is built in scratch: the stack is spent (see struct scratch) */
	struct expect_val *val = &s->val;
	__builtin_memset(val, 0, sizeof(*val));
	val->expires_ns = now + timeout;
	val->created_ns = now;
	val->kind = kind;
	val->dir = s->dir;
	__builtin_memcpy(&val->ctrl, &s->key, sizeof(val->ctrl));
#ifdef FTPGATE_NAT
	__builtin_memcpy(&val->nat, &s->nat.target, sizeof(val->nat));
#endif
	/*
	 * #14 before the expectation, with the clock read again: a racing
	 * writer's older mark differs from ours by a store, not by this run
	 */
	syn_gate_mark(s->exp.dport, now_ns(cfg));
	if (bpf_map_update_elem(&expectations, &s->exp, val, BPF_ANY) != 0) {
		stat_inc(STAT_EXPECT_TABLE_FULL);
		return -1;
	}
	__builtin_memcpy(&own->slot[w], &s->exp, sizeof(s->exp));
	own->slot_created[w] = now;
	own->slot_next++;
	stat_inc(STAT_EXPECT_CREATED);
	s->made++;
	__builtin_memcpy(&s->made_key, &s->exp, sizeof(s->exp));
	emit_event(EV_EXPECT_CREATED, 0, kind, &s->exp, &s->key, now);
	return 0;
}

/* ctrl_close removes the pending expectations of a closing control connection */
__noinline int ctrl_close(void)
{
	struct scratch *s;
	struct ctrl_val *cv = scratch_conn(&s);
	if (!cv)
		return -1;
	__u64 now = now_ns(get_config());

	for (int i = 0; i < CONN_SLOTS; i++) {
		struct expect_val *ev = slot_live(slot_owner(cv, i), i);
		if (ev)
			expect_remove(slot_key(cv, i), ev, &s->key, EV_EXPECT_CLOSED, STAT_EXPECT_CLOSED, now);
	}
	return 0;
}

#endif /* FTPGATE_EXPECT_H */
