/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The maps, shared by every program of the object. Their names are the pinned
 * file names under the pin directory: an operator interface, never renamed.
 * The loader resizes the connection tables from its configuration before load.
 */
#ifndef FTPGATE_MAPS_H
#define FTPGATE_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "ftpgate.h"
#ifdef FTPGATE_NAT
#include "parsing.h"
#include "ct.h"
#endif

/*
 * Every keyed map is declared in this one form, with a named key and value
 * type (and map flags where the kind needs them), so that bpftool prints
 * field names and bpf2go generates the Go types.
 */
#define FTPGATE_MAP_FLAGS(_name, _type, _entries, _key, _value, _flags)                                      \
	struct {                                                                                             \
		__uint(type, _type);                                                                         \
		__uint(max_entries, _entries);                                                               \
		__uint(map_flags, _flags);                                                                   \
		__type(key, _key);                                                                           \
		__type(value, _value);                                                                       \
	} _name SEC(".maps")
#define FTPGATE_MAP(_name, _type, _entries, _key, _value) FTPGATE_MAP_FLAGS(_name, _type, _entries, _key, _value, 0)

/* the two port sets, indexed by port */
FTPGATE_MAP(ctrl_ports, BPF_MAP_TYPE_ARRAY, PORT_ENTRIES, __u32, struct port_val);
FTPGATE_MAP(allow_ports, BPF_MAP_TYPE_ARRAY, PORT_ENTRIES, __u32, struct port_val);

/*
 * the server prefixes of scoped control ports (PORT_SCOPED in ctrl_ports):
 * an LPM trie, which the kernel allocates only without preallocation
 */
FTPGATE_MAP_FLAGS(ctrl_scopes, BPF_MAP_TYPE_LPM_TRIE, MAX_PORT_SCOPES, struct scope_key, struct port_val, BPF_F_NO_PREALLOC);

/*
 * The connection tables, resized by the loader. Trusted control connections
 * and expectations are plain hashes: a flood can fill them (refused and
 * counted: ctrl_conn_full, expect_table_full) but never evict an entry; the
 * ager reclaims what is stale. Untrusted control connections live apart in
 * an LRU table, created at a per-source rate (embryo_sources): a flood of
 * them evicts only its own kind. See docs/design.md, "Tables under pressure".
 */
FTPGATE_MAP(ctrl_conns, BPF_MAP_TYPE_HASH, DEFAULT_CTRL_CONNS, struct ctrl_key, struct ctrl_val);
FTPGATE_MAP(expectations, BPF_MAP_TYPE_HASH, DEFAULT_EXPECTATIONS, struct expect_key, struct expect_val);
FTPGATE_MAP(data_flows, BPF_MAP_TYPE_LRU_HASH, DEFAULT_DATA_FLOWS, struct flow_key, struct flow_val);
FTPGATE_MAP(ctrl_embryo, BPF_MAP_TYPE_LRU_HASH, DEFAULT_CTRL_EMBRYO, struct ctrl_key, struct embryo_val);
FTPGATE_MAP(embryo_sources, BPF_MAP_TYPE_LRU_HASH, DEFAULT_EMBRYO_SOURCES, struct src_key, struct src_budget);

/*
 * #12 NAT_OWN: the data connections ftpgate translates itself (natown.h),
 * two entries each, keyed by the tuple TC sees. A plain hash, like
 * ctrl_conns: when full it refuses new connections (nat_own_table_full)
 * and never evicts a live translation, which could split a pair and send
 * the inside end's packets out with its private address; the ager removes
 * idle and closed pairs. In every object, so that all of them load onto the
 * same pins.
 */
FTPGATE_MAP(nat_own, BPF_MAP_TYPE_HASH, DEFAULT_NAT_OWN, struct flow_key, struct nat_own_val);

/*
 * #13 FTPS: the servers' declared passive ranges (--tls-range, written by the
 * Go side) and the (client, server) pairs with live encrypted control
 * connections (written by TC, recounted by the ager). XDP admits a SYN into
 * a range only for a pair with one (tls.h). tls_sessions is a plain hash
 * like ctrl_conns: only trusted connections make entries.
 */
FTPGATE_MAP(tls_ranges, BPF_MAP_TYPE_HASH, MAX_TLS_SERVERS, struct tls_server_key, struct tls_range_val);
FTPGATE_MAP(tls_sessions, BPF_MAP_TYPE_HASH, DEFAULT_TLS_SESSIONS, struct tls_session_key, struct tls_session_val);

/*
 * #14 the SYN gate, indexed by destination port: the ftpgate clock of the
 * last write of anything a SYN to that port could need (an expectation, a
 * data flow admitted or a SYN of one passed). XDP skips its look-ups for a
 * SYN to a port not written for config.syn_gate_horizon_s (syngate.h).
 */
FTPGATE_MAP(syn_gate, BPF_MAP_TYPE_ARRAY, PORT_ENTRIES, __u32, __u64);

/* one counter per enum stat */
FTPGATE_MAP(stats, BPF_MAP_TYPE_PERCPU_ARRAY, STAT_MAX, __u32, __u64);

/* run-time configuration, entry 0 */
FTPGATE_MAP(config, BPF_MAP_TYPE_ARRAY, 1, __u32, struct config_val);

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EVENTS_BYTES);
} events SEC(".maps");

/* #15 --sync-hold: the held control segments, for run to release (hold.h) */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, HELD_RING_BYTES);
} held SEC(".maps");
/* ... and those run has not sent on yet: their retransmissions are dropped (hold.h) */
FTPGATE_MAP(hold_pending, BPF_MAP_TYPE_LRU_HASH, HOLD_PENDING, struct hold_key, struct hold_val);
/* ... and run's lease on the hold, entry 0 */
FTPGATE_MAP(hold_lease, BPF_MAP_TYPE_ARRAY, 1, __u32, struct hold_lease);

/*
 * the rate limiter of rejection and dropped-SYN events: one bucket per CPU.
 * A shared bucket bounced its cache line between the CPUs of a SYN flood on
 * every drop, and its clock went backwards whenever another CPU had just
 * written a later time. Never pinned: a restart refills it.
 */
FTPGATE_MAP(event_budget, BPF_MAP_TYPE_PERCPU_ARRAY, 1, __u32, struct event_budget);

/* guarded interfaces by ifindex: TC egress skips what one of them received */
FTPGATE_MAP(guarded_ifs, BPF_MAP_TYPE_HASH, MAX_GUARDED_IFS, __u32, struct iface_val);

/* room for a TCP header with every option (TCP_MAX_HDR), a power of two */
#define TCP_HDR_BUF 64
/* TCP pseudo-header words: IPv4 (two addresses, protocol and length), IPv6 */
#define PSEUDO_WORDS_V4 3
#define PSEUDO_WORDS_V6 10

#ifdef FTPGATE_NAT
/* the byte buffers of the NAT rewrite: powers of two, for index masks */
#define NAT_TEXT_BUF 64
/* nat_req.off of a field that began in an earlier segment */
#define NAT_OFF_SPLIT 0xffffffff
/* nat_prepare: the announcement is refused (counted), today's rules do not apply */
#define NAT_REFUSE (-2)

/* an announcement the parser found at egress, decided after the segment (nat.h) */
struct nat_req {
	__u32 off;     /* payload offset of the field, or NAT_OFF_SPLIT */
	__u16 len;     /* bytes of the field */
	__u16 port;    /* announced port */
	__u8 kind;     /* enum kind */
	__u8 family;   /* announced family */
	__u8 delim;    /* EPRT: the delimiter inside the field */
	__u8 header;   /* the announced address is the segment's own source */
	__u32 addr[4]; /* announced address */
	struct expect_key exp; /* the expectation today's rules write */
};

/* the NAT part of struct scratch */
struct nat_scratch {
	__u8 on;         /* this run is at egress with config.nat: s->key, dir and p are this segment's */
	__u8 n;          /* requests of this segment */
	__u8 napply;     /* fixes written into this segment */
	__u8 pad;
	__u32 from;      /* line offset of the field being read */
	__u32 to;        /* line offset after it */
	__u32 line_pos;  /* payload offset of this segment's first byte of the current line */
	__u32 line_carry; /* bytes of the current line from earlier segments */
	__u32 inside[4]; /* inside address of the segment's sender, from conntrack */
	__u32 cur;       /* the request being decided */
	__u32 port;      /* public port of the text nat_format writes */
	__u8 fmt_kind;   /* form of that text: enum kind */
	__u8 fmt_delim;  /* EPRT: its delimiter */
	__u8 pad2[2];
	__u32 before;    /* the first fix the segment logged (nat_decide) */
	__u32 text_len;  /* bytes in text */
	struct pkt_info p;        /* the segment */
	struct nat_target target; /* written into the next expectation expect_create makes */
	struct expect_key probe;
	struct bpf_sock_tuple tuple;
	struct bpf_ct_opts opts;
	struct nat_req req[NAT_SEG_FIELDS];
	__u32 apply[NAT_LOG];     /* ring indexes of the fixes this segment carries, in order */
	__u8 text[NAT_TEXT_BUF];  /* replacement text being formatted */
	/*
	 * the rewritten payload read back for its checksum; also keeps every
	 * (offset, length) pair within SCAN_BUF_SIZE that reads s->pkt inside
	 * the map value
	 */
	__u8 out[SCAN_BUF_SIZE];
	/*
	 * the un-shifted acknowledgement nat_ingress saw, recorded as acked
	 * only once the segment passed the checksum and the tracker
	 * (nat_ack_commit): a forged ACK must not fold the log
	 */
	__u32 ack;
	__u8 ack_set;
	__u8 helper;     /* the connection has the kernel's helper attached (nat_ct_inside) */
	__u8 pad3[2];
	/* the verifier bounds buf_sum's last rounded chunk a few bytes past out */
	__u8 out_slack[2 * sizeof(__u32)];
};
#endif

/*
 * Per-CPU working memory of the TC parser: the segment's payload, the line
 * being parsed and the cursor. It keeps large buffers off the 512-byte stack
 * and, because values read back from map memory are unknown to the verifier,
 * it keeps the verifier from exploring every possible line length separately.
 */
struct scratch {
	struct ctrl_key key;
	struct expect_key exp;
	struct ctrl_val zero; /* template for a new control connection */
	__u32 dir;
	__u32 pos;      /* cursor in pkt */
	__u32 end;      /* bytes valid in pkt */
	__u32 line_len; /* bytes valid in line */
	__u32 cur;      /* cursor in line */
	__u32 addr[4];  /* address parsed from a line */
	__u16 group[8]; /* IPv6 groups while parsing */
	__u64 oldest;   /* creation time of the oldest live expectation */
	__u32 victim;   /* its slot index */
	__u32 l4_off;   /* offset of the TCP header in the skb */
	__u32 hdr_len;  /* TCP header length */
	__u32 tcp_len;  /* TCP header plus payload */
	__u32 loaded;   /* payload bytes in pkt */
	__u32 l3_off;   /* #13 offset of the IP header in the skb (login_reset) */
	/* the segment as the TCP tracker (tcp.h) reads it */
	__u32 seg_seq;
	__u32 seg_end;  /* seq + payload, plus one each for SYN and FIN */
	__u32 seg_ack;
	__u32 seg_win;  /* the window field, unscaled */
	__u32 seg_len;  /* payload bytes */
	__u32 seg_wscale; /* window scale a SYN announces; TCP_NO_WSCALE without one */
	__u32 seg_prev_end; /* the sender's end before the segment */
	__u32 opt_off;  /* cursor in the TCP options */
	__u32 made;     /* #15 expectations the segment made (expect_create), for sync_hold */
	__u8 seg_flags;
	__u8 embryo;    /* the connection is in ctrl_embryo, not ctrl_conns */
	__u8 seg_lf;    /* the payload's last byte is LF */
	__u8 login;     /* #13 the segment starts a USER or PASS command (tls.h) */
	__u32 pseudo[PSEUDO_WORDS_V6]; /* TCP pseudo-header, for the checksum */
	__u8 hdr[TCP_HDR_BUF];         /* TCP header, for the checksum */
	__u8 pkt[SCAN_BUF_SIZE];
	__u8 line[2 * MAX_LINE_LEN];
	/*
	 * a new expectation, built here rather than on the stack (expect_create):
	 * verifiers allow 512 bytes of stack over the whole call chain (5.10 and
	 * 6.1 round every frame up to 32), and the parser's chain is deep
	 */
	struct expect_val val;
	/* #13 the tls_sessions key and value of the connection (tls.h), off the stack */
	struct tls_session_key tls;
	struct tls_session_val tls_val;
#ifdef FTPGATE_NAT
	/* #12 NAT (nat.h): after everything else, so the fields above keep their offsets */
	struct nat_scratch nat;
#endif
	/* #15 the key of the last expectation the segment made (made), for
	 * sync_hold, and the hold's hold_pending key and value (hold.h), off
	 * the stack */
	struct expect_key made_key;
	struct hold_key hold_key;
	struct hold_val hold_val;
};

FTPGATE_MAP(scratch_buf, BPF_MAP_TYPE_PERCPU_ARRAY, 1, __u32, struct scratch);

static __always_inline struct scratch *get_scratch(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&scratch_buf, &zero);
}

#endif /* FTPGATE_MAPS_H */
