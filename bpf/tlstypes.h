/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * #13 FTPS: the keys and values of the TLS range and session maps
 * (docs/ftps.md). Included by ftpgate.h, after the limits they use.
 */
#ifndef FTPGATE_TLSTYPES_H
#define FTPGATE_TLSTYPES_H

#include <linux/types.h>

/* #13: a server with declared TLS ranges (tls_ranges key) */
struct tls_server_key {
	__u8 family;
	__u8 pad[3];
	__u32 addr[4];
};

/* #13: one passive port range, both ends included */
struct tls_port_range {
	__u16 lo;
	__u16 hi;
};

/* #13: the ranges of one server; the first n entries of r are used */
struct tls_range_val {
	__u32 n;
	struct tls_port_range r[TLS_RANGES_PER_SERVER];
};

/* #13: a client and a server with encrypted control connections between them */
struct tls_session_key {
	__u8 family;
	__u8 pad[3];
	__u32 client[4];
	__u32 server[4];
};

/*
 * #13: how many of their control connections are encrypted and not closed.
 * TC adds one when a connection becomes encrypted and takes it off at its
 * first FIN or RST; the ager recounts from ctrl_conns (connections aged
 * out) and removes pairs with none.
 */
struct tls_session_val {
	__u32 live;
	__u32 pad;
	__u64 last_ns;         /* ftpgate clock of the last change */
	/* the pair's bucket of range admissions (bucket_take; zero: full) */
	__u64 range_ns;
	__u64 range_credit_ns;
};

#endif /* FTPGATE_TLSTYPES_H */
