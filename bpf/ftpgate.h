/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Types and limits shared by the BPF programs and the Go side.
 *
 * Every map key and value is a named struct so that bpftool prints field names,
 * and bpf2go turns each of them (and the enums below) into Go types: the Go side
 * never keeps a hand-written copy of a layout or of a limit.
 *
 * Ports are stored in host byte order (bpftool shows them as numbers people can
 * read); addresses are stored in network byte order, IPv4 in addr[0] with the
 * other words zero.
 */
#ifndef FTPGATE_H
#define FTPGATE_H

#include <linux/types.h>

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
	/* default entries of the three LRU tables, resized by the loader */
	DEFAULT_CTRL_CONNS = 65536,
	DEFAULT_EXPECTATIONS = 262144,
	DEFAULT_DATA_FLOWS = 262144,
	/* the largest size the loader accepts for one LRU table */
	MAX_TABLE_ENTRIES = 16777216,
	/* bytes of the event ring buffer */
	EVENTS_BYTES = 262144,
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
	/* server prefixes of scoped control ports (ctrl_scopes entries) */
	MAX_PORT_SCOPES = 1024,
	/*
	 * bits of a ctrl_scopes key before the address (port, family, pad),
	 * always matched: a key's prefixlen is this plus the prefix length
	 */
	SCOPE_KEY_BASE_BITS = 32,
};

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
	/* #11 scope */
	STAT_CTRL_SPOOFED,         /* control segment whose source is not routed back through its arrival interface: ignored */
	STAT_CTRL_OUT_OF_SCOPE,    /* segment on a scoped control port to or from a server outside its prefixes: not parsed */
	STAT_RP_NOT_FORWARDING,    /* control segment on an interface with forwarding off: no reverse-path check possible, parsed */
	STAT_MAX,
};

/* kinds of expectation: the command or reply that created it */
enum kind {
	KIND_NONE = 0,
	KIND_PORT = 1,
	KIND_EPRT = 2,
	KIND_PASV = 3,
	KIND_EPSV = 4,
};

/* direction of a control segment */
enum direction {
	DIR_CLIENT = 0, /* client to server: commands */
	DIR_SERVER = 1, /* server to client: replies */
};

/* where the parser of one direction stands in the byte stream */
enum parse_mode {
	MODE_LINE_START = 0, /* the next byte starts a line */
	MODE_CARRY = 1,      /* inside a line whose start is in the carry buffer */
	MODE_SKIP = 2,       /* inside a line that is not parsed: wait for LF */
};

/* events sent through the ring buffer */
enum event_type {
	EV_EXPECT_CREATED = 1,
	EV_EXPECT_CONSUMED = 2,
	EV_EXPECT_EVICTED = 3,
	EV_EXPECT_EXPIRED = 4,
	EV_EXPECT_CLOSED = 5,
	EV_REJECT = 6,   /* reason holds the enum stat of the rejection */
	EV_SYN_DROP = 7, /* a dropped (or, in dry-run, would-be dropped) SYN; reason as counted */
};

/* a control connection: client and server end, IPv4 or IPv6 */
struct ctrl_key {
	__u8 family; /* AF_INET or AF_INET6 */
	__u8 pad[3];
	__u16 client_port;
	__u16 server_port;
	__u32 client[4];
	__u32 server[4];
};

/*
 * An expected data connection: TCP from src (any source port) to dst:dport.
 */
struct expect_key {
	__u8 family;
	__u8 pad;
	__u16 dport;
	__u32 src[4];
	__u32 dst[4];
};

struct expect_val {
	__u64 expires_ns; /* ftpgate clock: ktime + config.clock_offset_ns */
	__u64 created_ns; /* also the nonce that ties a slot to this entry */
	__u8 kind;        /* enum kind */
	__u8 dir;         /* direction whose slot ring remembers it */
	__u8 pad[6];
	struct ctrl_key ctrl;
};

/* a data connection admitted through an expectation */
struct flow_key {
	__u8 family;
	__u8 pad;
	__u16 sport;
	__u16 dport;
	__u16 pad2;
	__u32 src[4];
	__u32 dst[4];
};

enum flow_flags {
	FLOW_FIN = 1,
	FLOW_RST = 2,
};

struct flow_val {
	__u64 created_ns;
	__u64 last_seen_ns;
	__u64 packets; /* only with config.accounting */
	__u64 bytes;   /* only with config.accounting */
	__u8 kind;
	__u8 flags; /* enum flow_flags */
	__u8 pad[6];
	struct ctrl_key ctrl;
};

/* the parser state of one direction: written only by the hook that sees it */
struct dir_state {
	__u32 next_seq;    /* sequence number of the next unparsed byte */
	__u8 seen;         /* this direction has been seen */
	__u8 mode;         /* enum parse_mode */
	__u8 fin;          /* FIN seen in this direction */
	__u8 slot_next;    /* next slot of the ring to write */
	__u16 carry_len;   /* bytes held in carry */
	/*
	 * client direction: kind (PASV or EPSV) of the last passive request that
	 * has not yet been superseded; pasv_gen counts passive requests.
	 * server direction: pasv_gen is the request number last answered.
	 */
	__u8 pasv_kind;
	__u8 pad;
	__u32 pasv_gen;
	__u32 lines;       /* complete lines parsed */
	__u64 last_ns;     /* ftpgate clock of the last segment */
	struct expect_key slot[EXPECT_SLOTS];
	__u64 slot_created[EXPECT_SLOTS];
	__u8 carry[MAX_LINE_LEN];
};

struct ctrl_val {
	__u64 created_ns;
	struct dir_state dir[2]; /* indexed by enum direction */
};

/* port-set entry (control ports and allowed ports) */
struct port_val {
	__u32 enabled; /* allowed ports: 0 or 1; control ports: enum port_flags */
};

/* what a ctrl_ports entry says about its port */
enum port_flags {
	PORT_GLOBAL = 1, /* parsed towards every server (1 as in every release before scopes) */
	PORT_SCOPED = 2, /* parsed towards the servers of its ctrl_scopes prefixes */
};

/*
 * A server prefix of a scoped control port, an LPM trie key: the port,
 * family and pad always match (SCOPE_KEY_BASE_BITS), then prefixlen minus
 * those bits of the address (network byte order; IPv4 in addr[0]).
 */
struct scope_key {
	__u32 prefixlen;
	__u16 port;
	__u8 family;
	__u8 pad;
	__u32 addr[4];
};

/* the reverse-path check of control segments (config.rp_check) */
enum rp_check {
	RP_STRICT = 0, /* the route back to the source leaves through the arrival interface */
	RP_LOOSE = 1,  /* some route back to the source exists */
	RP_OFF = 2,    /* no check: asymmetric routing */
};

/* a guarded interface, for the egress skip of forwarded segments */
struct iface_val {
	__u32 enabled;
};

/* run-time configuration, entry 0 of the config array */
struct config_val {
	__u64 expect_timeout_ns;
	__s64 clock_offset_ns;      /* added to the kernel clock: tests and replay */
	__u32 max_expect_per_conn;  /* 1..MAX_EXPECT_PER_CONN */
	__u32 fwmark_value;         /* 0: do not mark */
	__u32 fwmark_mask;
	__u8 loose;                 /* accept bounce PORT/EPRT, use 227's address */
	__u8 dry_run;               /* count would-be drops, pass them */
	__u8 accounting;            /* per-packet counts on data flows */
	__u8 allow_low_data_ports;  /* accept data ports below 1024 */
	/* #11 scope */
	__u8 rp_check;              /* enum rp_check; 0, the default, is strict */
};

/*
 * One event. EV_SYN_DROP carries the SYN's addresses and destination port in
 * expect and its source port in sport; the others carry the expectation and
 * its control connection.
 */
struct event {
	__u64 ts_ns;  /* ftpgate clock */
	__u32 type;   /* enum event_type */
	__u32 reason; /* enum stat, for EV_REJECT and EV_SYN_DROP */
	__u8 kind;
	__u8 pad;
	__u16 sport; /* EV_SYN_DROP: the SYN's source port */
	__u8 pad2[4];
	struct expect_key expect;
	struct ctrl_key ctrl;
};

/* the rate limiter of rejection and dropped-SYN events: a token bucket in ns of credit */
struct event_budget {
	__u64 last_ns;   /* ftpgate clock of the last refill */
	__u64 credit_ns; /* one event costs NSEC_PER_SEC / REJECT_EVENTS_PER_SEC */
};

#endif /* FTPGATE_H */
