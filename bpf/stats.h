/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * ftpgate's counters, shared by the BPF programs and the Go side (the stats
 * map, `ftpgate stats`, metrics). Included by ftpgate.h.
 */
#ifndef FTPGATE_STATS_H
#define FTPGATE_STATS_H

/*
 * Counters, one per event and per drop or skip reason. The Go side derives the
 * stable counter names from these enumerator names (lower case, without the
 * STAT_ prefix): append new ones before STAT_MAX, never rename one.
 */
enum stat {
	STAT_CTRL_SEGMENTS,
	STAT_CMD_PORT,
	STAT_CMD_EPRT,
	STAT_CMD_PASV,
	STAT_CMD_EPSV,
	STAT_REPLY_227,
	STAT_REPLY_229,
	STAT_EXPECT_CREATED,
	STAT_EXPECT_CONSUMED,
	STAT_EXPECT_EVICTED,
	STAT_EXPECT_EXPIRED,
	STAT_EXPECT_CLOSED,
	STAT_REJECT_BOUNCE,
	STAT_REJECT_LOW_PORT,
	STAT_REJECT_UNPAIRED,
	STAT_REJECT_MALFORMED,
	STAT_REJECT_OVERLONG,
	STAT_REJECT_FAMILY,
	STAT_REPLY_ADDR_MISMATCH,
	STAT_LINE_REASSEMBLED,
	STAT_PARSE_RESYNC,
	STAT_SCAN_LIMIT,
	STAT_SYN_PASS_ALLOWED,
	STAT_SYN_PASS_EXPECTED,
	STAT_SYN_PASS_RETRANSMIT,
	STAT_SYN_DROP_UNEXPECTED,
	STAT_SYN_DRYRUN_WOULD_DROP,
	STAT_DROP_UNPARSED,
	/* added beyond the list */
	STAT_CTRL_PICKUP,          /* a control connection first seen mid-stream */
	STAT_CTRL_RETRANSMIT,      /* a segment whose bytes were all parsed already */
	STAT_CTRL_CLOSED,          /* a control connection's first FIN or RST: once per connection */
	STAT_CTRL_SKIP_FORWARDED,  /* egress sighting of a segment already counted at a guarded ingress */
	STAT_CTRL_CONN_FULL,       /* control-connection table refused a new entry */
	STAT_EXPECT_TABLE_FULL,    /* expectation table refused a new entry */
	STAT_FLOW_TABLE_FULL,      /* data-flow table refused a new entry */
	STAT_SYN_FWMARK,           /* admitted data SYN marked at TC ingress */
	STAT_EVENTS_LOST,          /* ring buffer full, an event was not reported */
	STAT_CTRL_BAD_CHECKSUM,    /* control segment with a wrong TCP checksum: ignored */
	STAT_EVENTS_SUPPRESSED,    /* rejection or dropped-SYN event over the rate limit: not reported */
	STAT_REPLY_227_NO_ADDRESS, /* unpaired 227 without an address (pure-ftpd's "227 Logout."): ignored */
	/* #11 ftp */
	STAT_CTRL_NOT_FTP,         /* a control connection that is not FTP (HTTP, TLS, no greeting): never parsed again */
	STAT_REJECT_UNVERIFIED,    /* a picked-up connection's line before the server's first reply line: ignored */
	STAT_CMD_QUEUE_FULL,       /* a command found CMD_QUEUE outstanding: pairing refused until answered */
	STAT_REPLY_UNSOLICITED,    /* a final reply with no outstanding command */
	STAT_CMD_TENTATIVE,        /* a command after a gap in the client stream, kept tentative */
	STAT_GAP_FILLED,           /* a gap filled by a retransmission ending a line: tentative commands confirmed */
	STAT_TENTATIVE_DROPPED,    /* tentative commands given up (gap filled otherwise, another gap, too many) */
	/* #11 tcp */
	STAT_TCP_OUT_OF_WINDOW,    /* control segment outside the window learnt from the peer: ignored */
	STAT_TCP_RST_IGNORED,      /* control RST not at the sender's sequence (or out of window): ignored */
	STAT_TCP_UNTRUSTED,        /* payload of a control connection not yet trusted: tracked, not parsed */
	STAT_CTRL_EMBRYO_CREATED,  /* an untrusted control connection began to be tracked */
	STAT_CTRL_EMBRYO_LIMITED,  /* a new untrusted control connection over its source's rate: not tracked */
	STAT_CTRL_TRUSTED_HANDSHAKE, /* a control connection trusted through its handshake */
	STAT_CTRL_TRUSTED_PICKUP,  /* a control connection picked up mid-stream, trusted once seq and ack agreed */
	STAT_SYN_FLOW_REFUSED,     /* data SYN on an admitted flow's 5-tuple with another ISN, or after FIN/RST */
	/* #11 scope */
	STAT_CTRL_SPOOFED,         /* control segment whose source is not routed back through its arrival interface: ignored */
	STAT_CTRL_OUT_OF_SCOPE,    /* segment on a scoped control port to or from a server outside its prefixes: not parsed */
	STAT_RP_NOT_FORWARDING,    /* control segment on an interface with forwarding off: no reverse-path check possible, parsed */
	STAT_TCP_BAD_FLAGS,        /* control segment with flags a receiver drops (no ACK but a SYN or RST; SYN|FIN, SYN|RST, FIN|RST): ignored */
	STAT_CTRL_TRUNCATED,       /* control segment shorter than its IP length: payload and checksum unreadable, ignored */
	/* #12 NAT */
	STAT_NAT_REWRITE,          /* an announced inside address (PORT, EPRT, 227) rewritten to the public one */
	STAT_NAT_REWRITE_229,      /* a 229 of an inside server: expectation made for the inside end, text unchanged */
	STAT_NAT_PORT_REMAPPED,    /* the announced port was taken by another inside end: another public port chosen */
	STAT_NAT_PORT_EXHAUSTED,   /* no free public port in NAT_PORT_TRIES: announcement passed unchanged */
	STAT_NAT_NO_CT,            /* announcement of a foreign address, no conntrack entry for its connection: not rewritten */
	STAT_NAT_NO_MATCH,         /* announced address is neither the header's nor the conntrack inside one: not rewritten */
	STAT_NAT_SPLIT_FIELD,      /* announced field not whole in one segment (a line split across segments): passed unchanged */
	STAT_NAT_LOG_FULL,         /* NAT_LOG rewritten fields not yet acknowledged: the announcement passes unchanged */
	STAT_NAT_SEG_FIELDS,       /* more than NAT_SEG_FIELDS announcements in one segment: the rest pass unchanged */
	STAT_NAT_UNREWRITABLE,     /* segment whose rewritten payload would pass MAX_SCAN_BYTES, or not fully loaded: passed unchanged */
	STAT_NAT_GSO_DROP,         /* retransmission in a GSO control skb that re-applying a logged rewrite would take past the MTU: dropped, TCP resends it */
	STAT_NAT_RETRANS_REAPPLIED, /* retransmitted rewritten field: the same text written again (not a new rewrite) */
	STAT_NAT_RETRANS_PARTIAL,  /* segment holding part of a rewritten field: passed unchanged */
	STAT_NAT_SEQ_SHIFTED,      /* egress segment whose sequence number was shifted by earlier rewrites */
	STAT_NAT_ACK_SHIFTED,      /* ingress segment whose acknowledgement was shifted back */
	STAT_NAT_SACK_SHIFTED,     /* ingress SACK block whose edges were shifted back */
	STAT_NAT_REWRITE_FAILED,   /* a helper refused the rewrite of the skb (change_tail, store): segment dropped */
	/* #12 NAT: the data connection's conntrack entry (NAT_CT, bpf/natct.h) */
	STAT_NAT_CT_INSERTED,      /* conntrack entry with NAT to the inside end made for an admitted data SYN */
	STAT_NAT_CT_EXISTS,        /* data SYN whose conntrack entry exists (a retransmission): not made again */
	STAT_NAT_CT_ALLOC_FAILED,  /* bpf_skb_ct_alloc failed (conntrack table full, no memory): the SYN reaches no inside end */
	STAT_NAT_CT_NAT_FAILED,    /* bpf_ct_set_nat_info failed: the entry is inserted expired, the SYN reaches no inside end */
	STAT_NAT_CT_INSERT_FAILED, /* bpf_ct_insert_entry failed (another CPU inserted the tuple first, table full) */
	STAT_NAT_EPSV_CLASH,       /* 229 whose port another inside end's expectation holds: no expectation made (a 229's port is not rewritten) */
	STAT_NAT_PUBLIC_ANNOUNCED, /* announcement of the public address by a sender behind NAT without the kernel's helper: refused */
	STAT_RP_SNAT_SOURCE,       /* forwarded egress control segment whose source is this host's own address (SNAT, un-DNAT) and no conntrack view of its sender: parsed */
	/* #12 NAT: review fixes */
	STAT_NAT_RETRANS_TOO_LONG, /* retransmission holding a rewritten field too long to rebuild (MAX_SCAN_BYTES): dropped, TCP resends it */
	STAT_NAT_MTU_UNCHANGED,    /* announcement whose rewrite would grow a segment, or change a GSO skb in length, past the egress device's MTU: passed unchanged */
	STAT_NAT_MTU_DROP,         /* retransmission whose rewritten field would grow it past the egress device's MTU: dropped */
	STAT_NAT_TCP_OPTION,       /* announcement on a connection whose segments carry MPTCP, TCP-AO or TCP-MD5 options: passed unchanged */
	/* #12 NAT: data connections ftpgate translates itself (NAT_OWN, bpf/natown.h) */
	STAT_NAT_OWN_MADE,         /* admitted data SYN with a NAT target: the pair of nat_own entries made */
	STAT_NAT_OWN_TABLE_FULL,   /* nat_own refused an entry: the data connection is not translated */
	STAT_NAT_OWN_IN,           /* ingress packet whose destination was rewritten to the inside end */
	STAT_NAT_OWN_OUT,          /* egress packet whose source was rewritten to the public end */
	STAT_NAT_OWN_FAILED,       /* a helper refused the rewrite (store, checksum): packet dropped */
	STAT_NAT_OWN_STALE,        /* admitted data SYN on the tuple of an earlier connection's translation (another inside end, or none): that pair deleted */
	STAT_NAT_OWN_HALF,         /* ingress packet of a translation whose egress half (entry B) is gone: dropped, its replies would leave with the inside address */
	/* #13 FTPS */
	STAT_TLS_AUTH,             /* control connection encrypted by AUTH TLS/SSL answered 234: no longer parsed */
	STAT_TLS_IMPLICIT,         /* control connection on an implicit-TLS port (--ftps-port): never parsed */
	STAT_TLS_SEGMENT,          /* segment of an encrypted control connection: tracked, not parsed */
	STAT_TLS_AUTH_REFUSED,     /* AUTH answered by another reply than 234: the connection stays cleartext */
	STAT_TLS_RANGE_PASS,       /* SYN into a server's TLS range from a client with a live encrypted session: admitted */
	STAT_TLS_RANGE_NO_SESSION, /* SYN into a server's TLS range without a live encrypted session of its client: dropped */
	STAT_TLS_ACTIVE_REFUSED,   /* SYN from a server to a client with a live encrypted session (active-mode FTPS), once an encrypted session began (config.tls_seen): dropped */
	STAT_TLS_SESSION_FULL,     /* tls_sessions refused a new pair: its TLS ranges stay closed to it */
	STAT_LOGIN_CLEARTEXT,      /* USER or PASS on a control connection not encrypted */
	STAT_LOGIN_RESET,          /* such a segment turned into resets of both ends (--require-tls) */
	STAT_LOGIN_RESET_FAILED,   /* a helper refused the reset's rewrite: the segment is dropped instead */
	/* #13 FTPS: review fixes */
	STAT_LOGIN_RESET_AGAIN,    /* client segment with payload on a connection the login guard reset (a retransmission): reset again */
	STAT_TLS_AUTH_UNPAIRED,    /* final 234 not paired with the AUTH at the head of a known queue (tainted by a multi-line reply, a gap, pipelining) while an AUTH was outstanding: TLS starts */
	STAT_TLS_234_UNATTRIBUTED, /* final 234 with no AUTH outstanding: ignored, the connection stays in clear */
	STAT_LOGIN_UNSCANNED,      /* --require-tls: client segment of a connection not encrypted with bytes the parser does not read (MAX_LINES, MAX_SCAN_BYTES): reset like a login */
	STAT_LOGIN_HIDDEN,         /* client line on a connection not encrypted starting with Telnet IAC or a space (a USER/PASS could hide behind): reset with --require-tls */
	STAT_LOGIN_NOT_FTP,        /* --require-tls: client segment with payload on a control connection not encrypted that conformance found not FTP (nothing of it is read): reset like a login */
	STAT_LOGIN_UNGUARDED,      /* without --require-tls: such a segment: a USER or PASS in it is not seen, passed */
	STAT_TLS_RANGE_LIMITED,    /* SYN into a TLS range from a client with a live session beyond its pair's rate (TLS_RANGE_PER_PAIR_*): dropped */
	/* #14 the SYN gate (syngate.h) */
	STAT_SYN_GATE_COLD,        /* SYN to a port without an expectation or admitted flow written within the gate's horizon: data_flows and expectations not looked up (then counted as its drop reason) */
	/* #15 gateway groups: --sync-hold (control.h, sync_hold) */
	STAT_GROUP_HOLD,           /* control segment that made an expectation, new bytes only, held (--sync-hold): dropped and handed to run, which sends it on once the peers have the expectation; its retransmission passes, not parsed again */
	STAT_GROUP_HOLD_LONG,      /* such a segment longer than HELD_BYTES: passed, not held */
	STAT_GROUP_HOLD_RING_FULL, /* such a segment the held ring had no room for: passed, not held */
	STAT_GROUP_HOLD_RETRANSMIT, /* retransmission of a held segment run has not sent on yet (within HOLD_WAIT_MS): dropped */
	STAT_GROUP_HOLD_NO_RUN,    /* such a segment while run's lease on the hold has run out (run stopped or died): passed, not held */
	STAT_GROUP_HOLD_UNSENDABLE, /* such a segment run could not send on as it was (not one Ethernet header then IP then TCP, a GRO train, sent by this host, held at ingress on a kernel without live frames): passed, not held */
	STAT_GROUP_HOLD_BUSY,      /* such a segment while another of its connection and direction waits in run: passed, not held */
	STAT_MAX,
};

#endif /* FTPGATE_STATS_H */
