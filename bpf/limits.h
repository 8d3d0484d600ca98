/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The limits and defaults of the dataplane (enum limits), first of the
 * types ftpgate.h gathers: everything after them may size by them.
 */
#ifndef FTPGATE_LIMITS_H
#define FTPGATE_LIMITS_H

/*
 * Parser limits. The Go reference parser and the tests import these values
 * from the generated bindings, so changing one here changes it everywhere.
 */
enum limits {
	/* payload bytes of one segment the parser reads; the rest counts as a gap */
	MAX_SCAN_BYTES = 4096,
	/* lines of one segment the parser handles; the rest counts as a gap */
	MAX_LINES = 64,
	/*
	 * the longest command or reply line the parser accepts, CRLF included; also
	 * the size of the per-direction carry buffer that rejoins a line split
	 * across segments. An IPv6 EPRT is at most 62 bytes, a verbose 227 ~ 60.
	 */
	MAX_LINE_LEN = 128,
	/* expectation slots each direction of a control connection remembers */
	EXPECT_SLOTS = 4,
	/* upper bound of config.max_expect_per_conn (both directions together) */
	MAX_EXPECT_PER_CONN = 4,
	/* VLAN tags the XDP filter follows before it gives up */
	MAX_VLAN_TAGS = 2,
	/* IPv6 extension headers the XDP filter follows before it gives up */
	MAX_IPV6_EXT = 4,
	/* entries of the two port arrays */
	PORT_ENTRIES = 65536,
	/* size of the scratch buffer; power of two >= MAX_SCAN_BYTES */
	SCAN_BUF_SIZE = 4096,
	/*
	 * Defaults of run-time settings and table sizes. The Go settings table
	 * reads them from the generated bindings: they are written only here.
	 */
	/* lifetime of an unconsumed expectation, in seconds (netfilter: 300) */
	DEFAULT_EXPECT_TIMEOUT_SEC = 300,
	/* default of config.max_expect_per_conn (netfilter: one per master) */
	DEFAULT_MAX_EXPECT_PER_CONN = 1,
	/* data ports below this are refused unless config.allow_low_data_ports */
	LOW_PORT_LIMIT = 1024,
	/* EPRT delimiters are printable ASCII: RFC 2428 allows 33..126 */
	EPRT_DELIM_MIN = 33,
	EPRT_DELIM_MAX = 126,
	/* default entries of the three connection tables, resized by the loader */
	DEFAULT_CTRL_CONNS = 65536,
	DEFAULT_EXPECTATIONS = 262144,
	DEFAULT_DATA_FLOWS = 262144,
	/*
	 * #12 NAT_OWN: entries of nat_own, two per translated data connection.
	 * Every object has the table (the maps are shared), so it is kept
	 * smaller than data_flows: 65536 translated connections at a time.
	 */
	DEFAULT_NAT_OWN = 131072,
	/* the largest size the loader accepts for one LRU table */
	MAX_TABLE_ENTRIES = 16777216,
	/* bytes of the event ring buffer */
	EVENTS_BYTES = 262144,
	/*
	 * #15 --sync-hold: the most bytes of a held control segment handed to
	 * run (the frame from its link-layer header: a 227 or 229 with TCP
	 * options is about 130), and the bytes of the ring that carries them
	 */
	HELD_BYTES = 512,
	HELD_RING_BYTES = 262144,
	/*
	 * how long a held segment waits for the peers' acknowledgements before
	 * run sends it on anyway; its sender's retransmissions are dropped
	 * until then (hold_pending), after it they pass (a run that died)
	 */
	HOLD_WAIT_MS = 1000,
	/* held segments waiting at once (hold_pending, LRU) */
	HOLD_PENDING = 4096,
	/* run renews its lease on the hold this often, for HOLD_WAIT_MS */
	HOLD_LEASE_RENEW_MS = 250,
	/*
	 * #14 the SYN gate (syngate.h): its horizon is the longest expectation
	 * timeout ever set plus the longest interval between two SYNs of one
	 * connection (Linux TCP_RTO_MAX) plus a slack for racing writers and
	 * the Go side's clock read; all in seconds
	 */
	SYN_GATE_RTO_MAX_SEC = 120,
	SYN_GATE_SLACK_SEC = 10,
	/* guarded interfaces one dataplane holds */
	MAX_GUARDED_IFS = 256,
	/*
	 * Rejections and dropped SYNs are reported at this rate per CPU, after a
	 * burst of REJECT_EVENTS_BURST; the rest count as events_suppressed. They are
	 * also reported only while the ring is less than half full, so that
	 * expectation events always find room.
	 */
	REJECT_EVENTS_PER_SEC = 100,
	REJECT_EVENTS_BURST = 200,
	/* #11 ftp */
	/* commands the client may have outstanding (a power of two): the reply queue */
	CMD_QUEUE = 16,
	/* commands after a gap in the client stream kept tentative until the gap is filled */
	TENT_CMDS = 8,
	/* first bytes of a line kept to classify it: command, reply code, HTTP method */
	LINE_HEAD = 8,
	/* Telnet's "interpret as command" byte (RFC 854): a client line may start with it (IP, Synch before ABOR) */
	TELNET_IAC = 255,
	/* #11 tcp */
	/* default entries of the untrusted-connection table and of its per-source limiter */
	DEFAULT_CTRL_EMBRYO = 16384,
	DEFAULT_EMBRYO_SOURCES = 16384,
	/*
	 * untrusted control connections one source address may start per second,
	 * after a burst of EMBRYO_PER_SRC_BURST; the rest count as ctrl_embryo_limited
	 */
	EMBRYO_PER_SRC_PER_SEC = 32,
	EMBRYO_PER_SRC_BURST = 128,
	/*
	 * #13: SYNs a (client, server) pair with a live encrypted session may
	 * have admitted through the server's TLS ranges, a second, after a
	 * burst; the rest count as tls_range_limited and are dropped
	 */
	TLS_RANGE_PER_PAIR_PER_SEC = 256,
	TLS_RANGE_PER_PAIR_BURST = 1024,
	/* the largest window scale a SYN may announce (RFC 7323) */
	TCP_MAX_WSCALE = 14,
	/*
	 * the window scale assumed for a connection picked up mid-stream, whose
	 * SYNs were not seen: Linux's choice for its usual buffer sizes
	 */
	TCP_PICKUP_WSCALE = 7,
	/* how far an ACK may lag when the acknowledging side's window is unknown (as conntrack) */
	TCP_ACK_WINDOW_FALLBACK = 66000,
	/* #11 scope */
	/* server prefixes of scoped control ports (ctrl_scopes entries) */
	MAX_PORT_SCOPES = 1024,
	/*
	 * bits of a ctrl_scopes key before the address (port, family, pad),
	 * always matched: a key's prefixlen is this plus the prefix length
	 */
	SCOPE_KEY_BASE_BITS = 32,
	/* #12 NAT */
	/* rewritten fields each direction of a control connection remembers (a power of two) */
	NAT_LOG = 4,
	/* the longest replacement text: an EPRT |2| address in full form and a port */
	NAT_TEXT_MAX = 48,
	/* announcements of one segment the rewrite handles; the rest are refused */
	NAT_SEG_FIELDS = 4,
	/* ports tried when the announced one is taken by another inside end */
	NAT_PORT_TRIES = 16,
	/* #13 FTPS */
	/* passive port ranges one server may have declared (--tls-range) */
	TLS_RANGES_PER_SERVER = 8,
	/* servers with declared ranges (tls_ranges entries) */
	MAX_TLS_SERVERS = 1024,
	/* (client, server) pairs with a live encrypted control connection */
	DEFAULT_TLS_SESSIONS = 65536,
	/* hop limit of the reset the login guard sends back to the client */
	LOGIN_RESET_TTL = 64,
};

#endif /* FTPGATE_LIMITS_H */
