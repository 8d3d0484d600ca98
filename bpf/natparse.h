/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * #12 NAT, the parser's side: while a segment is parsed at egress with
 * config.nat, an announcement of an address other than the header's is not
 * decided at once but recorded (struct nat_req in scratch) with the place
 * of its address and port in the segment; nat_egress (nat.h) decides it
 * after the segment, with the conntrack entry of the connection, and
 * rewrites it. In the plain object every hook here is empty.
 */
#ifndef FTPGATE_NATPARSE_H
#define FTPGATE_NATPARSE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "ftpgate.h"
#include "maps.h"
#include "common.h"
#include "text.h"

#ifdef FTPGATE_NAT

/* NAT_FROM and NAT_TO mark the field being read: its first byte and the byte after it */
#define NAT_FROM(s) ((s)->nat.from = (s)->cur)
#define NAT_TO(s) ((s)->nat.to = (s)->cur)

/* nat_line notes where the line being parsed starts: pos in this segment, after cl carried bytes */
static __always_inline void nat_line(struct scratch *s, __u32 pos, __u32 cl)
{
	s->nat.line_pos = pos;
	s->nat.line_carry = cl;
}

/* nat_six reads the six numbers of PORT or 227, marking them as the field */
static __always_inline int nat_six(struct scratch *s)
{
	NAT_FROM(s);
	int port = text_six();
	NAT_TO(s);
	return port;
}

/*
 * nat_defer records an announcement of kind (its address in s->addr, its
 * port, its expectation in s->exp) for nat_egress instead of deciding it
 * now: at egress with config.nat, every one, noting whether its address is
 * the segment's own source (header): nat_decide needs conntrack to tell a
 * sender's own address from the public one a sender behind NAT must not
 * announce. Returns 1 when recorded. Beyond NAT_SEG_FIELDS announcements in
 * a segment, the rest are refused (counted).
 */
static __always_inline int nat_defer(struct scratch *s, __u8 kind, __u8 family, int port)
{
	if (!s->nat.on)
		return 0;
	__u32 n = s->nat.n;
	if (n >= NAT_SEG_FIELDS) {
		/* refused: undecided, it could name the public address */
		stat_inc(STAT_NAT_SEG_FIELDS);
		return 1;
	}
	struct nat_req *r = &s->nat.req[n & (NAT_SEG_FIELDS - 1)];
	__u32 from = s->nat.from;
	__u32 cl = s->nat.line_carry;
	r->off = from >= cl ? s->nat.line_pos + (from - cl) : NAT_OFF_SPLIT;
	r->len = s->nat.to - from;
	r->port = port;
	r->kind = kind;
	r->family = family;
	r->header = kind != KIND_EPSV && addr_eq(s->addr, s->dir == DIR_CLIENT ? s->key.client : s->key.server);
	/* EPRT: the field is "addr<d>port"; the delimiter stands before it */
	r->delim = from > 0 ? line_at(s, from - 1) : 0;
	copy_addr(r->addr, s->addr);
	__builtin_memcpy(&r->exp, &s->exp, sizeof(r->exp));
	s->nat.n = n + 1;
	return 1;
}

#else

#define NAT_FROM(s)
#define NAT_TO(s)
#define nat_line(s, pos, cl)
#define nat_six(s) text_six()
#define nat_defer(s, kind, family, port) 0

#endif /* FTPGATE_NAT */

#endif /* FTPGATE_NATPARSE_H */
