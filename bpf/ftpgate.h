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

/* the limits every part shares, then the counters and the NAT types, each
 * in its own header */
#include "limits.h"
#include "stats.h"
#include "nattypes.h"

/* kinds of expectation: the command or reply that created it */
enum kind {
	KIND_NONE = 0,
	KIND_PORT = 1,
	KIND_EPRT = 2,
	KIND_PASV = 3,
	KIND_EPSV = 4,
	/* #13: a data flow admitted through a TLS range (no expectation) */
	KIND_TLS_RANGE = 5,
	/* #13: in the client's command queue only, an AUTH awaiting its reply */
	KIND_AUTH = 6,
};

/* #13: how a control connection became encrypted (dir_state.tls) */
enum tls_state {
	TLS_NONE = 0,
	TLS_AUTH = 1,     /* AUTH TLS/SSL answered by 234: encrypted after the reply */
	TLS_IMPLICIT = 2, /* on an implicit-TLS port (--ftps-port): encrypted from the first byte */
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
	MODE_SKIP_LINE = 3,  /* inside a line whose first bytes are in ftp.head: wait for LF, then finish it */
};

/*
 * FTP command tokens (RFC 959, 2228, 2389, 2428, 3659, 7151, the X* forms of
 * RFC 775, LANG of RFC 2640): the first four bytes of the line, upper case,
 * little-endian as read from the wire; a three-letter command has a zero
 * fourth byte. The list is written only here: the Go reference parser reads
 * enum ftp_cmd from the object's BTF.
 */
#define FTP_TOKEN(a, b, c, d) ((__u32)(a) | ((__u32)(b) << 8) | ((__u32)(c) << 16) | ((__u32)(d) << 24))
#define FTP_COMMANDS(X)                                                                                     \
	X(ABOR, 'A', 'B', 'O', 'R') X(ACCT, 'A', 'C', 'C', 'T') X(ADAT, 'A', 'D', 'A', 'T')                 \
	X(ALLO, 'A', 'L', 'L', 'O') X(APPE, 'A', 'P', 'P', 'E') X(AUTH, 'A', 'U', 'T', 'H')                 \
	X(CCC, 'C', 'C', 'C', 0) X(CDUP, 'C', 'D', 'U', 'P') X(CONF, 'C', 'O', 'N', 'F')                    \
	X(CWD, 'C', 'W', 'D', 0) X(DELE, 'D', 'E', 'L', 'E') X(ENC, 'E', 'N', 'C', 0)                       \
	X(EPRT, 'E', 'P', 'R', 'T') X(EPSV, 'E', 'P', 'S', 'V') X(FEAT, 'F', 'E', 'A', 'T')                 \
	X(HELP, 'H', 'E', 'L', 'P') X(HOST, 'H', 'O', 'S', 'T') X(LANG, 'L', 'A', 'N', 'G')                 \
	X(LIST, 'L', 'I', 'S', 'T') X(MDTM, 'M', 'D', 'T', 'M') X(MIC, 'M', 'I', 'C', 0)                    \
	X(MKD, 'M', 'K', 'D', 0) X(MLSD, 'M', 'L', 'S', 'D') X(MLST, 'M', 'L', 'S', 'T')                    \
	X(MODE, 'M', 'O', 'D', 'E') X(NLST, 'N', 'L', 'S', 'T') X(NOOP, 'N', 'O', 'O', 'P')                 \
	X(OPTS, 'O', 'P', 'T', 'S') X(PASS, 'P', 'A', 'S', 'S') X(PASV, 'P', 'A', 'S', 'V')                 \
	X(PBSZ, 'P', 'B', 'S', 'Z') X(PORT, 'P', 'O', 'R', 'T') X(PROT, 'P', 'R', 'O', 'T')                 \
	X(PWD, 'P', 'W', 'D', 0) X(QUIT, 'Q', 'U', 'I', 'T') X(REIN, 'R', 'E', 'I', 'N')                    \
	X(REST, 'R', 'E', 'S', 'T') X(RETR, 'R', 'E', 'T', 'R') X(RMD, 'R', 'M', 'D', 0)                    \
	X(RNFR, 'R', 'N', 'F', 'R') X(RNTO, 'R', 'N', 'T', 'O') X(SITE, 'S', 'I', 'T', 'E')                 \
	X(SIZE, 'S', 'I', 'Z', 'E') X(SMNT, 'S', 'M', 'N', 'T') X(STAT, 'S', 'T', 'A', 'T')                 \
	X(STOR, 'S', 'T', 'O', 'R') X(STOU, 'S', 'T', 'O', 'U') X(STRU, 'S', 'T', 'R', 'U')                 \
	X(SYST, 'S', 'Y', 'S', 'T') X(TYPE, 'T', 'Y', 'P', 'E') X(USER, 'U', 'S', 'E', 'R')                 \
	X(XCUP, 'X', 'C', 'U', 'P') X(XCWD, 'X', 'C', 'W', 'D') X(XMKD, 'X', 'M', 'K', 'D')                 \
	X(XPWD, 'X', 'P', 'W', 'D') X(XRMD, 'X', 'R', 'M', 'D')

#define FTP_CMD_ENUM(name, a, b, c, d) FTP_CMD_##name = FTP_TOKEN(a, b, c, d),
enum ftp_cmd {
	FTP_COMMANDS(FTP_CMD_ENUM)
};
#undef FTP_CMD_ENUM

/* events sent through the ring buffer */
enum event_type {
	EV_EXPECT_CREATED = 1,
	EV_EXPECT_CONSUMED = 2,
	EV_EXPECT_EVICTED = 3,
	EV_EXPECT_EXPIRED = 4,
	EV_EXPECT_CLOSED = 5,
	EV_REJECT = 6,   /* reason holds the enum stat of the rejection */
	EV_SYN_DROP = 7, /* a dropped (or, in dry-run, would-be dropped) SYN; reason as counted */
	EV_NAT_REWRITE = 8, /* #12: an announcement rewritten; expect holds the public end, nat the inside one */
	/* #13 FTPS */
	EV_TLS_START = 9,       /* a control connection became encrypted; kind holds enum tls_state */
	EV_LOGIN_CLEARTEXT = 10, /* USER or PASS before TLS; reason: login_reset (reset) or login_cleartext (passed) */
	EV_TLS_RANGE_PASS = 11, /* a SYN admitted into a TLS range; like EV_SYN_DROP: expect and sport */
	EV_TLS_RANGE_DROP = 12, /* a SYN into a TLS range without a live encrypted session; reason as counted */
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
	__u8 pad[2];
	__u32 origin;     /* #15: 0 when made here, else the hash of the group peer that sent it */
	struct ctrl_key ctrl;
	struct nat_target nat; /* the inside end, with config.nat */
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
	__u8 flags;   /* enum flow_flags */
	__u8 pad[2];
	__u32 syn_seq; /* sequence number of the admitted SYN: a retransmission repeats it */
	struct ctrl_key ctrl;
	struct nat_target nat; /* the inside end, with config.nat */
};

/*
 * The FTP layer's state of one direction (#11): conformance, the reply queue
 * and the tentative commands after a gap. Written only by the hook that sees
 * the direction, like the rest of struct dir_state. The client direction
 * appends to the queue (queued: its tail), the server direction consumes it
 * (answered: its head). docs/design.md, "Trust model", states the rules.
 */
struct ftp_track {
	__u8 not_ftp;        /* this direction found the connection is not FTP */
	__u8 started;        /* client: first line checked; server: a well-formed first reply line seen */
	__u8 greeted;        /* server: the greeting (the reply to the connection) is complete */
	__u8 multi;          /* server: inside a multi-line reply */
	__u8 reply_kind;     /* server: kind of the command the current reply answers, if known */
	__u8 tentative;      /* client: the bytes after a gap are tentative */
	__u8 filling;        /* client: parsing bytes that fill the gap */
	__u8 tent_n;         /* client: tentative commands held */
	__u8 head_len;       /* bytes in head */
	__u8 cr;             /* the last byte parsed was a CR */
	__u8 multi_crlf;     /* server: the multi-line reply opened with a CRLF line end */
	__u8 tainted;        /* server: a multi-line reply answered a command with more outstanding */
	__u32 multi_code;    /* server: the token ("xyz ") that ends the multi-line reply */
	__u32 queued;        /* client: commands appended */
	__u32 unknown_until; /* client: pairing refused until answered reaches this (queue overflow) */
	__u32 lost_gen;      /* client: counts parse gaps, where an unknown number of commands was lost */
	__u32 lost_seen;     /* server: the lost_gen the queue has drained past */
	__u32 answered;      /* server: final replies that consumed a command */
	__u32 gap_seq;       /* client: first byte of the gap not yet seen */
	__u32 tent_seq;      /* client: first byte after the gap (the tentative bytes) */
	__u8 head[LINE_HEAD];   /* first bytes of the line being skipped (MODE_SKIP_LINE) */
	__u8 cmd[CMD_QUEUE];    /* client: enum kind of each outstanding command, by queued % CMD_QUEUE */
	__u8 tent[TENT_CMDS];   /* client: enum kind of each tentative command */
};

/* what the TCP tracker (tcp.h) knows of one direction */
enum tcp_track_flags {
	TCP_SEEN = 1,     /* a segment of this direction was accepted */
	TCP_SYN_SEEN = 2, /* its SYN was seen: isn is its initial sequence number */
	TCP_WSCALE = 4,   /* its SYN announced a window scale */
	TCP_WINDOW = 8,   /* it has acknowledged: maxend holds the edge it allows the peer */
	TCP_ACKED = 16,   /* it acknowledged bytes the other direction was seen sending */
	TCP_DATA = 32,    /* it sent payload before the connection was trusted */
	TCP_LINE_END = 64, /* its untrusted payload so far ends with LF: trust resumes it at a line start */
};

/*
 * The TCP state of one direction (the sender), after conntrack's
 * tcp_in_window. Only the hook that sees the direction writes it; the other
 * direction's checks read it.
 */
struct tcp_track {
	__u32 isn;    /* the SYN's sequence number, or the first one seen (pickup) */
	__u32 end;    /* highest seq + length sent; SYN and FIN count one */
	__u32 maxend; /* highest ack + window sent: the peer's seq stays at or below it */
	__u32 maxwin; /* largest window advertised, scaled */
	__u8 wscale;  /* window scale its SYN announced */
	__u8 flags;   /* enum tcp_track_flags */
	__u8 pad[2];
};

/*
 * An untrusted control connection: a handshake in progress, or one picked up
 * mid-stream whose two directions have not yet agreed on seq and ack. It
 * moves to ctrl_conns once trusted.
 */
struct embryo_val {
	__u64 created_ns;
	__u64 last_ns;
	struct tcp_track tcp[2]; /* indexed by enum direction */
};

/* the source address of a segment that starts tracking an untrusted connection */
struct src_key {
	__u8 family;
	__u8 pad[3];
	__u32 addr[4];
};

/* a per-source token bucket in ns of credit, as struct event_budget */
struct src_budget {
	__u64 last_ns;
	__u64 credit_ns;
};

/* the parser state of one direction: written only by the hook that sees it */
struct dir_state {
	struct tcp_track tcp; /* TCP tracking (tcp.h) */
	__u32 next_seq;    /* sequence number of the next unparsed byte */
	__u8 pad0;         /* (every direction of a trusted connection has been seen) */
	__u8 mode;         /* enum parse_mode */
	__u8 fin;          /* FIN seen in this direction */
	__u8 slot_next;    /* next slot of the ring to write */
	__u16 carry_len;   /* bytes held in carry */
	__u8 tls;          /* #13 enum tls_state: this direction is encrypted, never parsed again */
	__u8 login_reset;  /* #13 client direction: the login guard reset the connection (a tombstone, login_guard) */
	__u32 lines;       /* complete lines parsed */
	__u64 last_ns;     /* ftpgate clock of the last segment */
	struct expect_key slot[EXPECT_SLOTS];
	__u64 slot_created[EXPECT_SLOTS];
	__u8 carry[MAX_LINE_LEN];
	struct ftp_track ftp;
};

struct ctrl_val {
	__u64 created_ns;
	struct dir_state dir[2]; /* indexed by enum direction */
	struct nat_dir nat[2];   /* #12 NAT correction logs, indexed by enum direction */
};

/* port-set entry (control ports and allowed ports) */
struct port_val {
	__u32 enabled; /* allowed ports: 0 or 1; control ports: enum port_flags */
};

/* what a ctrl_ports entry says about its port */
enum port_flags {
	PORT_GLOBAL = 1, /* parsed towards every server (1 as in every release before scopes) */
	PORT_SCOPED = 2, /* parsed towards the servers of its ctrl_scopes prefixes */
	PORT_TLS = 4,    /* #13 implicit TLS (--ftps-port): tracked, encrypted from the first byte */
};

/* #13: the TLS range and session types */
#include "tlstypes.h"

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
	/*
	 * replay only (internal/replay): a frame shorter than its IP length
	 * stands for the unread tail of a super-segment too large for a test
	 * run; the live parser refuses such frames (ctrl_truncated)
	 */
	__u8 replay_pieces;
	/* #12 NAT */
	__u8 nat;                   /* enum nat_mode; 0, the default, is off */
	/* #13 FTPS */
	__u8 require_tls;           /* USER/PASS before TLS: reset both ends instead of passing */
	/*
	 * #13 owned by the loader and TC, not by the operator (SetConfig keeps
	 * them): XDP's look-ups on a SYN nothing admitted are skipped while
	 * they are clear
	 */
	__u8 tls_ranges;            /* the loader: some --tls-range is declared (tls_ranges not empty) */
	__u8 tls_seen;              /* TC, at the first encrypted session (tls_begin): tls_sessions may hold a live pair */
	/*
	 * #15 --sync-hold (run, with --group, never with --nat): a control
	 * segment that makes an expectation is dropped once (control.h,
	 * sync_hold). In the padding: the pinned config keeps its size.
	 */
	__u8 sync_hold;
	/*
	 * #14 owned by the Go side, not by the operator: the SYN gate's horizon
	 * in seconds (syngate.h); 0, what an older ftpgate writes, turns the
	 * gate off. In the padding: the pinned config keeps its size.
	 */
	__u16 syn_gate_horizon_s;
};

/*
 * One event. EV_SYN_DROP carries the SYN's addresses and destination port in
 * expect and its source port in sport; the others carry the expectation and
 * its control connection. EV_EXPECT_CONSUMED also carries the admitted SYN's
 * source port and sequence number (sport, seq): with them a gateway group
 * (#15) makes the data flow on its peers, so a retransmitted SYN passes there.
 */
struct event {
	__u64 ts_ns;  /* ftpgate clock */
	__u32 type;   /* enum event_type */
	__u32 reason; /* enum stat, for EV_REJECT and EV_SYN_DROP */
	__u8 kind;
	__u8 pad;
	__u16 sport; /* EV_SYN_DROP, EV_EXPECT_CONSUMED: the SYN's source port */
	__u32 seq;   /* EV_EXPECT_CONSUMED: the admitted SYN's sequence number */
	struct expect_key expect;
	struct ctrl_key ctrl;
	struct nat_target nat; /* EV_NAT_REWRITE: the inside end behind expect's destination */
};

/*
 * #15 --sync-hold: a control segment TC dropped because it made an
 * expectation (hold.h), handed to run, which sends it on its way again once
 * the group's peers have the expectation (internal/group, loader/release.go).
 * data is the frame as TC saw it, from its link-layer header (l3_off bytes
 * before the IP header); a VLAN tag the device took out (vlan_proto not 0)
 * is not in it.
 */
/* a held segment waiting in run: its control connection and direction */
struct hold_key {
	struct ctrl_key ctrl;
	__u32 dir; /* enum direction */
};

/* until when its sender's retransmissions are dropped, and its bytes */
struct hold_val {
	__u64 until_ns; /* ftpgate clock */
	__u32 start_seq;
	__u32 end_seq;
};

/* run's lease on the hold (hold_lease, entry 0): renewed while it reads the held ring */
enum hold_lease_flags {
	HOLD_INGRESS = 1, /* run can send on a segment held at ingress (BPF_PROG_RUN live frames) */
};

struct hold_lease {
	__u64 until_ns; /* ftpgate clock; 0: no run */
	__u32 flags;    /* enum hold_lease_flags */
	__u32 pad;
};

struct held_segment {
	__u64 held_ns;    /* ftpgate clock: run drops a record older than HOLD_WAIT_MS */
	__u32 ifindex;    /* the device whose hook held it */
	__u16 len;        /* bytes of data */
	__u8 ingress;     /* held at TC ingress, else at egress */
	__u8 l3_off;
	__u16 vlan_proto; /* network order; 0 without a tag outside data */
	__u16 vlan_tci;
	struct expect_key expect; /* the (last) expectation it made */
	struct hold_key pending;  /* its hold_pending entry, removed by run when it sends it on */
	__u8 data[HELD_BYTES];
};

/* the rate limiter of rejection and dropped-SYN events: a token bucket in ns of credit */
struct event_budget {
	__u64 last_ns;   /* ftpgate clock of the last refill */
	__u64 credit_ns; /* one event costs NSEC_PER_SEC / REJECT_EVENTS_PER_SEC */
	/*
	 * #14 XDP's SYN path clock (syngate.h): the kernel's clock without the
	 * offset, read at the jiffy clock_jiffies
	 */
	__u64 clock_ns;
	__u64 clock_jiffies;
};

#endif /* FTPGATE_H */
