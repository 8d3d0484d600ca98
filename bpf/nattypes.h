/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * #12 NAT: the types the NAT code shares with the maps and the Go side (the
 * inside end of an expectation or flow, a control connection's correction
 * log, the mechanism in config.nat). Included by ftpgate.h, after the
 * limits they use.
 */
#ifndef FTPGATE_NATTYPES_H
#define FTPGATE_NATTYPES_H

#include <linux/types.h>

/*
 * Where a data connection really goes when ftpgate rewrote its announcement
 * (#12, config.nat): the inside address and port behind the public ones the
 * expectation (or flow) is keyed on. set is 0 without NAT.
 */
struct nat_target {
	__u32 addr[4];
	__u16 port;
	__u8 set;
	__u8 pad;
};

/*
 * #12 NAT: one field of a direction's stream rewritten at egress, kept so
 * that a retransmission gets the same bytes and every later sequence number
 * (and the peer's acknowledgements) the same shift. The text is not kept:
 * it is derived again from the segment's source address (the public one,
 * the same for the whole connection), the port and the form.
 */
struct nat_fix {
	__u32 seq;     /* sender's (inside) sequence number of the field's first byte */
	__u16 old_len; /* bytes of the field as sent */
	__u16 new_len; /* bytes of its replacement */
	__s32 delta;   /* shift of every byte after the field: the sum of all fixes so far */
	__u16 port;    /* the public port written */
	__u8 kind;     /* enum kind: the form of the text */
	__u8 delim;    /* EPRT: the delimiter inside the field */
};

/*
 * The correction log of one direction: a ring of fixes. Written by the hook
 * that sees the direction (egress), except acked, which the other
 * direction's hook (ingress) writes: fixes the peer has acknowledged can no
 * longer be retransmitted, and egress folds them into base.
 */
struct nat_dir {
	__s32 base;    /* shift of every byte after the folded fixes */
	__u32 acked;   /* sender's sequence number the peer has acknowledged (ack shifted back) */
	__u32 head;    /* first live fix */
	__u32 tail;    /* one past the last fix */
	__u8 acked_set; /* acked holds a value */
	__u8 keep;      /* the direction carried MPTCP, TCP-AO or MD5 options: never rewritten */
	__u8 pad[2];
	struct nat_fix fix[NAT_LOG];
};

/*
 * NAT (#12, config.nat): ftpgate rewrites the addresses PORT, EPRT and 227
 * announce and makes the data connection reach the inside end, by one of
 * two mechanisms (docs/nat.md). The loader picks one per kernel.
 */
enum nat_mode {
	NAT_OFF = 0, /* announcements pass unchanged: today's behaviour */
	NAT_CT = 1,  /* data connections through conntrack entries made from BPF (kfuncs) */
	NAT_OWN = 2, /* data connections translated by ftpgate itself */
};

/*
 * NAT_OWN: which side of a data connection ftpgate translates itself an
 * entry of nat_own is (maps.h)
 */
enum nat_own_side {
	NAT_OWN_IN = 1,  /* entry A: peer -> public end at TC ingress; the inside end is the new destination */
	NAT_OWN_OUT = 2, /* entry B: inside end -> peer at TC egress; the public end is the new source */
};

/*
 * NAT_OWN: one direction of a data connection ftpgate translates itself,
 * keyed by the tuple (struct flow_key) the guarded interface's TC hook
 * sees. Made in pairs from the admitted data SYN (natown.h).
 */
struct nat_own_val {
	__u64 created_ns;
	__u64 last_seen_ns; /* ftpgate clock, refreshed by every translated packet */
	__u32 addr[4];      /* NAT_OWN_IN: the inside address; NAT_OWN_OUT: the public one */
	__u16 port;         /* NAT_OWN_IN: the inside port; NAT_OWN_OUT: the public one */
	__u8 side;          /* enum nat_own_side */
	__u8 flags;         /* enum flow_flags: FIN or RST seen in this entry's direction */
};

#endif /* FTPGATE_NATTYPES_H */
