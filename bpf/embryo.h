/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Untrusted control connections (embryos, issue #11): the per-source credit
 * that bounds them, and their promotion to tracked connections once the
 * handshake is seen from both sides (docs/design.md, "Trust model").
 */
#ifndef FTPGATE_EMBRYO_H
#define FTPGATE_EMBRYO_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "ftpgate.h"
#include "maps.h"
#include "parsing.h"
#include "common.h"
#include "tcp.h"
#include "tls.h"

/* the credit one untrusted connection costs its source, and the most a source holds */
#define EMBRYO_COST_NS (NSEC_PER_SEC / EMBRYO_PER_SRC_PER_SEC)
#define EMBRYO_CREDIT_MAX_NS ((__u64)EMBRYO_PER_SRC_BURST * EMBRYO_COST_NS)

/*
 * embryo_allowed takes a token from the bucket of p's source address: a
 * source starts at most EMBRYO_PER_SRC_PER_SEC untrusted connections a
 * second, after a burst.
 */
static __always_inline int embryo_allowed(const struct pkt_info *p, __u64 now)
{
	struct src_key k = {};
	k.family = p->family;
	copy_addr(k.addr, p->src);
	struct src_budget *b = bpf_map_lookup_elem(&embryo_sources, &k);
	if (!b) {
		struct src_budget nb = {now, EMBRYO_CREDIT_MAX_NS - EMBRYO_COST_NS};
		bpf_map_update_elem(&embryo_sources, &k, &nb, BPF_ANY);
		return 1;
	}
	return bucket_take(&b->last_ns, &b->credit_ns, now, EMBRYO_COST_NS, EMBRYO_CREDIT_MAX_NS);
}

/*
 * embryo_find returns the untrusted connection in s->key, created if p may
 * start tracking one (a SYN, or payload: a pickup) and its source is within
 * its rate; NULL otherwise. The last ACK after both FINs (or an RST) must not
 * bring a closed connection back.
 */
static __always_inline struct embryo_val *embryo_find(struct scratch *s, const struct pkt_info *p, __u64 now)
{
	struct embryo_val *ev = bpf_map_lookup_elem(&ctrl_embryo, &s->key);
	if (ev)
		return ev;
	if ((p->flags & TCPF_RST) || (!(p->flags & TCPF_SYN) && !p->payload_len))
		return 0;
	if (!embryo_allowed(p, now)) {
		stat_inc(STAT_CTRL_EMBRYO_LIMITED);
		return 0;
	}
	struct embryo_val zero = {};
	zero.created_ns = now;
	zero.last_ns = now;
	int err = bpf_map_update_elem(&ctrl_embryo, &s->key, &zero, BPF_NOEXIST);
	if (err == 0) {
		stat_inc(STAT_CTRL_EMBRYO_CREATED);
		if (!(p->flags & TCPF_SYN))
			stat_inc(STAT_CTRL_PICKUP);
	}
	return bpf_map_lookup_elem(&ctrl_embryo, &s->key);
}

/*
 * embryo_promote moves a connection that has become trusted into ctrl_conns.
 * A direction whose SYN was seen and that sent nothing yet starts at a line;
 * one picked up, or whose bytes went by untrusted, resynchronises at the next
 * line. The sending direction resumes at its segment, which is parsed next.
 * Returns the new state, or NULL when ctrl_conns is full (counted: the
 * connection stays untrusted and tries again with its next segment).
 */
static __always_inline struct ctrl_val *embryo_promote(struct scratch *s, struct embryo_val *ev)
{
	struct ctrl_val *t = &s->zero;
	t->created_ns = ev->created_ns;
	for (int d = 0; d < 2; d++) {
		struct dir_state *ds = &t->dir[d];
		struct tcp_track *tt = &ev->tcp[d];
		__builtin_memcpy(&ds->tcp, tt, sizeof(ds->tcp));
		ds->next_seq = (__u32)d == s->dir ? s->seg_prev_end : tt->end;
		ds->mode = tcp_resume_at_line(tt) ? MODE_LINE_START : MODE_SKIP;
		ds->last_ns = ev->last_ns;
	}
	int err = bpf_map_update_elem(&ctrl_conns, &s->key, t, BPF_NOEXIST);
	/* the template goes back to zero for the next connection */
	t->created_ns = 0;
	for (int d = 0; d < 2; d++) {
		struct dir_state *ds = &t->dir[d];
		__builtin_memset(&ds->tcp, 0, sizeof(ds->tcp));
		ds->next_seq = 0;
		ds->mode = 0;
		ds->last_ns = 0;
	}
	if (err && err != -EEXIST /* the other direction won */) {
		stat_inc(STAT_CTRL_CONN_FULL);
		return 0;
	}
	struct ctrl_val *cv = bpf_map_lookup_elem(&ctrl_conns, &s->key);
	if (!err) {
		int hs = (ev->tcp[DIR_CLIENT].flags & TCP_SYN_SEEN) && (ev->tcp[DIR_SERVER].flags & TCP_SYN_SEEN);
		stat_inc(hs ? STAT_CTRL_TRUSTED_HANDSHAKE : STAT_CTRL_TRUSTED_PICKUP);
		/* #13: on an implicit-TLS port the connection is encrypted from its first byte */
		tls_implicit();
		bpf_map_delete_elem(&ctrl_embryo, &s->key);
	}
	return cv;
}

/*
 * embryo_segment takes a segment of a connection not (yet) in ctrl_conns into
 * ctrl_embryo. Its payload is tracked, never parsed. Returns the connection's
 * trusted state when this segment made it trusted, NULL when the segment is
 * done with.
 */
static __always_inline struct ctrl_val *embryo_segment(struct scratch *s, const struct pkt_info *p, __u64 now)
{
	struct embryo_val *ev = embryo_find(s, p, now);
	if (!ev)
		return 0;
	s->embryo = 1;
	if (tcp_track() != TCP_ACCEPT)
		return 0;
	ev->last_ns = now;
	if (p->flags & (TCPF_RST | TCPF_FIN)) {
		/* an untrusted connection that closes leaves nothing worth keeping */
		bpf_map_delete_elem(&ctrl_embryo, &s->key);
		return 0;
	}
	struct ctrl_val *cv = 0;
	if (tcp_pair_trusted(&ev->tcp[DIR_CLIENT], &ev->tcp[DIR_SERVER]) && !(p->flags & TCPF_SYN))
		cv = embryo_promote(s, ev);
	if (!cv && p->payload_len) {
		/* not trusted, or ctrl_conns full: the bytes go by unparsed */
		struct tcp_track *tt = &ev->tcp[s->dir == DIR_SERVER ? DIR_SERVER : DIR_CLIENT];
		tt->flags |= TCP_DATA;
		if (p->seq + p->payload_len == tt->end) {
			/* the bytes so far end here: does a line end with them? */
			if (s->seg_lf)
				tt->flags |= TCP_LINE_END;
			else
				tt->flags &= ~TCP_LINE_END;
		}
		stat_inc(STAT_TCP_UNTRUSTED);
	}
	return cv;
}

#endif /* FTPGATE_EMBRYO_H */
