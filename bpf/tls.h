/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * #13 FTPS: what ftpgate does for control connections it cannot read.
 *
 *  - A control connection whose AUTH TLS/SSL the server answered with 234
 *    (ftp.h), or one on an implicit-TLS port (PORT_TLS, control.h), is
 *    encrypted: tracked as before (window, FIN, RST), never parsed again.
 *  - tls_sessions counts, per (client, server), the encrypted connections not
 *    yet closed; XDP admits a SYN into a server's declared passive range
 *    (tls_ranges) only while its client has one (tls_range_admit).
 *  - A USER or PASS command on a connection not encrypted is counted, and
 *    with config.require_tls its segment becomes a reset towards the server
 *    and a clone of it, turned round, resets the client (login_reset).
 *
 * docs/ftps.md states the design and its limits.
 */
#ifndef FTPGATE_TLS_H
#define FTPGATE_TLS_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "ftpgate.h"
#include "maps.h"
#include "parsing.h"
#include "common.h"
#include "checksum.h"
#include "expect.h"
#include "syngate.h"

/* the tokens of the commands the TLS code reads (token.h's form) */
#define TOK_AUTH FTP_TOKEN('A', 'U', 'T', 'H')
#define TOK_USER FTP_TOKEN('U', 'S', 'E', 'R')
#define TOK_PASS FTP_TOKEN('P', 'A', 'S', 'S')
#define TOK_234 FTP_TOKEN('2', '3', '4', ' ')

/* the IPv4 header field offsets the reset rewrites */
#define IP4_TOT_LEN_OFF 2
#define IP4_TTL_OFF 8
#define IP4_CHECK_OFF 10
#define IP4_SADDR_OFF 12
#define IP6_PLEN_OFF 4
#define IP6_HOPS_OFF 7
#define IP6_SADDR_OFF 8
#define IP6_HDR_LEN 40
#define IP4_MAX_HDR 60
#define ETH_ALEN_2 (2 * ETH_ALEN)
/* a TCP header without options: the reset carries none */
#define RST_TCP_LEN 20
#define RST_DOFF (RST_TCP_LEN / 4)

/* tls_encrypted tells whether the control connection is encrypted */
static __always_inline int tls_encrypted(const struct ctrl_val *cv)
{
	return cv->dir[DIR_CLIENT].tls | cv->dir[DIR_SERVER].tls;
}

/* tls_pair writes the tls_sessions key of a control connection into s->tls */
static __always_inline struct tls_session_key *tls_pair(struct scratch *s)
{
	__builtin_memset(&s->tls, 0, sizeof(s->tls));
	s->tls.family = s->key.family;
	copy_addr(s->tls.client, s->key.client);
	copy_addr(s->tls.server, s->key.server);
	return &s->tls;
}

/*
 * tls_begin marks the connection in s->key encrypted (how: enum tls_state)
 * in the direction s->dir, counts it and adds it to its pair's live
 * sessions. Called once per connection: at the 234 by the server
 * direction's hook, or when an implicit-TLS connection enters ctrl_conns.
 * Global functions, these two: their frames stay off parse_control's.
 */
__noinline int tls_begin(__u32 how)
{
	struct scratch *s;
	struct ctrl_val *cv = scratch_conn(&s);
	if (!cv)
		return 0;
	struct dir_state *st = dir_of(cv, s->dir);
	__u64 now = st->last_ns;
	st->tls = how;
	stat_inc(how == TLS_IMPLICIT ? STAT_TLS_IMPLICIT : STAT_TLS_AUTH);
	/* from now on XDP looks tls_sessions up for an unexpected SYN (admit.h) */
	struct config_val *cfg = get_config();
	if (cfg && !cfg->tls_seen)
		cfg->tls_seen = 1;
	struct tls_session_key *k = tls_pair(s);
	struct tls_session_val *v = bpf_map_lookup_elem(&tls_sessions, k);
	if (!v) {
		s->tls_val.live = 1;
		s->tls_val.pad = 0;
		s->tls_val.last_ns = now;
		s->tls_val.range_ns = 0;
		s->tls_val.range_credit_ns = 0;
		if (bpf_map_update_elem(&tls_sessions, k, &s->tls_val, BPF_NOEXIST) == 0)
			goto out;
		/* another CPU made it first, or the table is full */
		v = bpf_map_lookup_elem(&tls_sessions, k);
		if (!v) {
			stat_inc(STAT_TLS_SESSION_FULL);
			goto out;
		}
	}
	__sync_fetch_and_add(&v->live, 1);
	v->last_ns = now;
out:
	emit_event(EV_TLS_START, 0, how, 0, &s->key, now);
	return 0;
}

/*
 * tls_implicit marks the connection in s->key, just trusted, encrypted when
 * its server port is an implicit-TLS one (PORT_TLS)
 */
__noinline int tls_implicit(void)
{
	struct scratch *s = get_scratch();
	if (!s)
		return 0;
	__u32 port = s->key.server_port;
	struct port_val *pv = bpf_map_lookup_elem(&ctrl_ports, &port);
	if (!pv || !(pv->enabled & PORT_TLS))
		return 0;
	__u32 dir = s->dir;
	s->dir = DIR_SERVER;
	tls_begin(TLS_IMPLICIT);
	s->dir = dir;
	return 0;
}

/*
 * tls_end takes the encrypted connection in s->key off its pair's live
 * sessions, at its first FIN or RST. The entry stays (at zero) for the ager
 * to remove: a delete here would race with another connection's tls_begin.
 */
__noinline int tls_end(void)
{
	struct scratch *s;
	struct ctrl_val *cv = scratch_conn(&s);
	if (!cv || !tls_encrypted(cv))
		return 0;
	struct tls_session_val *v = bpf_map_lookup_elem(&tls_sessions, tls_pair(s));
	if (!v || !v->live)
		return 0;
	__sync_fetch_and_add(&v->live, (__u32)-1);
	v->last_ns = dir_of(cv, s->dir)->last_ns;
	return 0;
}

/* what s->login says of a client segment on a connection not encrypted */
enum login_seen {
	LOGIN_NONE = 0,
	LOGIN_COMMAND = 1,   /* it starts a USER or PASS command (login_line) */
	LOGIN_HIDDEN = 2,    /* a line of it starts with Telnet IAC or a space: USER/PASS could hide behind (login_line) */
	LOGIN_UNSCANNED = 3, /* --require-tls: bytes of it the parser cannot read (login_unscanned) */
	LOGIN_NOT_FTP = 4,   /* --require-tls: the connection is not FTP, nothing of it is read (login_not_ftp) */
};

/*
 * login_line notes, in s->login, that the client line in s->line is a USER
 * or PASS command whose first four bytes this segment completes: the first
 * segment that carries a byte of its argument (or the command alone) is the
 * one the guard stops, so none of the argument passes. A line whose first
 * byte (in this segment) is Telnet IAC (0xff, RFC 959 lets the server strip
 * Telnet commands: vsftpd and others do) or a space is LOGIN_HIDDEN: only
 * its first four bytes are compared, and a server that skips them would
 * read a USER or PASS after them.
 */
static __always_inline void login_line(struct scratch *s, __u32 from_carry)
{
	if (s->dir != DIR_CLIENT)
		return;
	if (!from_carry && s->line_len >= 1 && (s->line[0] == 0xff || s->line[0] == ' ')) {
		if (!s->login)
			s->login = LOGIN_HIDDEN;
		return;
	}
	if (from_carry >= 4 || s->line_len < 4)
		return;
	__u32 t = FTP_TOKEN(s->line[0], s->line[1], s->line[2], s->line[3]) & 0xdfdfdfdfU;
	if (t != TOK_USER && t != TOK_PASS)
		return;
	__u8 c = s->line_len > 4 ? s->line[4] : 0;
	if (c == ' ' || c == '\r' || c == '\n' || c == 0)
		s->login = LOGIN_COMMAND;
}

/*
 * login_not_ftp takes a client segment with payload on a control connection
 * not encrypted that conformance found not FTP (client bytes before the
 * greeting, a malformed line): nothing of it is parsed, so a USER or PASS
 * in it would pass unseen. Under config.require_tls the guard stops it;
 * without, it is counted (login_unguarded) and passes.
 */
static __always_inline void login_not_ftp(struct scratch *s)
{
	if (s->login)
		return;
	struct config_val *cfg = get_config();
	if (cfg && cfg->require_tls)
		s->login = LOGIN_NOT_FTP;
	else
		stat_inc(STAT_LOGIN_UNGUARDED);
}

/*
 * login_unscanned notes, under config.require_tls, a client segment of a
 * connection not encrypted that holds bytes the parser does not read (lines
 * beyond MAX_LINES, bytes beyond MAX_SCAN_BYTES): a USER or PASS there
 * would pass unseen, so the guard stops the segment.
 */
static __always_inline void login_unscanned(struct scratch *s)
{
	if (s->dir != DIR_CLIENT || s->login)
		return;
	struct config_val *cfg = get_config();
	if (cfg && cfg->require_tls)
		s->login = LOGIN_UNSCANNED;
}

/* rst_sum returns the TCP checksum of the reset in s->hdr, addressed as s->dir says */
static __always_inline __u16 rst_sum(struct scratch *s, int partial)
{
	s->tcp_len = RST_TCP_LEN;
	__s64 sum = pseudo_sum(s);
	if (sum < 0)
		return 0;
	if (partial)
		/* checksum offload: the field holds the pseudo-header sum, the device adds the rest */
		return csum_fold(sum);
	sum = bpf_csum_diff(0, 0, (void *)s->hdr, RST_TCP_LEN, sum);
	if (sum < 0)
		return 0;
	return ~csum_fold(sum) & CSUM_MASK;
}

/*
 * rst_write writes the IP addresses, hop limit and checksum, and a reset
 * TCP header, for a reset sent by s->dir's end: DIR_CLIENT towards the
 * server (seq: the segment's own), DIR_SERVER towards the client (seq: what
 * the client acknowledged). Returns nonzero when a helper refused.
 */
static __always_inline int rst_write(struct __sk_buff *skb, struct scratch *s, __u32 seq, __u32 ack, __u8 ttl,
				     int partial)
{
	__u32 l3 = s->l3_off;
	__u32 *src = s->dir == DIR_CLIENT ? s->key.client : s->key.server;
	__u32 *dst = s->dir == DIR_CLIENT ? s->key.server : s->key.client;
	int err = 0;
	if (s->key.family == AF_INET) {
		err |= bpf_skb_store_bytes(skb, l3 + IP4_SADDR_OFF, src, 4, BPF_F_RECOMPUTE_CSUM);
		err |= bpf_skb_store_bytes(skb, l3 + IP4_SADDR_OFF + 4, dst, 4, BPF_F_RECOMPUTE_CSUM);
		err |= bpf_skb_store_bytes(skb, l3 + IP4_TTL_OFF, &ttl, 1, BPF_F_RECOMPUTE_CSUM);
		/* the header checksum, summed again over the whole header */
		__u32 ihl = s->l4_off - l3;
		if (ihl < sizeof(struct iphdr) || ihl > IP4_MAX_HDR)
			return -1;
		/* the mask restates the bounds checked above in a form every verifier keeps */
		ihl = ((ihl - 1) & (TCP_HDR_BUF - 1)) + 1;
		__u16 zero = 0;
		err |= bpf_skb_store_bytes(skb, l3 + IP4_CHECK_OFF, &zero, 2, BPF_F_RECOMPUTE_CSUM);
		if (bpf_skb_load_bytes(skb, l3, s->pkt, ihl))
			return -1;
		__s64 sum = bpf_csum_diff(0, 0, (void *)s->pkt, ihl, 0);
		if (sum < 0)
			return -1;
		__u16 check = ~csum_fold(sum) & CSUM_MASK;
		err |= bpf_skb_store_bytes(skb, l3 + IP4_CHECK_OFF, &check, 2, BPF_F_RECOMPUTE_CSUM);
	} else {
		err |= bpf_skb_store_bytes(skb, l3 + IP6_SADDR_OFF, src, 16, BPF_F_RECOMPUTE_CSUM);
		err |= bpf_skb_store_bytes(skb, l3 + IP6_SADDR_OFF + 16, dst, 16, BPF_F_RECOMPUTE_CSUM);
		err |= bpf_skb_store_bytes(skb, l3 + IP6_HOPS_OFF, &ttl, 1, BPF_F_RECOMPUTE_CSUM);
	}
	struct tcphdr *th = (void *)s->hdr;
	__builtin_memset(s->hdr, 0, RST_TCP_LEN);
	th->source = bpf_htons(s->dir == DIR_CLIENT ? s->key.client_port : s->key.server_port);
	th->dest = bpf_htons(s->dir == DIR_CLIENT ? s->key.server_port : s->key.client_port);
	th->seq = bpf_htonl(seq);
	th->ack_seq = bpf_htonl(ack);
	th->doff = RST_DOFF;
	th->rst = 1;
	th->ack = 1;
	th->check = rst_sum(s, partial);
	err |= bpf_skb_store_bytes(skb, s->l4_off, s->hdr, RST_TCP_LEN, BPF_F_RECOMPUTE_CSUM);
	return err;
}

/* eth_swap exchanges the frame's MAC addresses: the clone goes back the way it came */
static __always_inline int eth_swap(struct __sk_buff *skb, struct scratch *s)
{
	if (bpf_skb_load_bytes(skb, 0, s->line, ETH_ALEN_2))
		return -1;
	for (int i = 0; i < ETH_ALEN; i++) {
		__u8 c = s->line[i];
		s->line[i] = s->line[i + ETH_ALEN];
		s->line[i + ETH_ALEN] = c;
	}
	return bpf_skb_store_bytes(skb, 0, s->line, ETH_ALEN_2, 0);
}

/*
 * login_reset turns the client segment described in scratch (a USER or PASS
 * before TLS, under config.require_tls) into resets: first, turned round, a
 * reset from the server to the client, cloned back the way the client is
 * (the device's egress when the segment arrived, its ingress, where
 * conntrack and NAT take it to an inside client, when it was leaving);
 * then, in the skb itself, a reset from the client to the server at the
 * segment's sequence number. Both carry no payload and no options.
 * Returns the TC verdict: the reset goes on, or the segment is dropped when
 * a helper refused (counted).
 */
__noinline int login_reset(struct __sk_buff *skb, int ingress)
{
	struct scratch *s = get_scratch();
	if (!s)
		return TC_ACT_SHOT;
	__u32 seq = s->seg_seq, ack = s->seg_ack, len = s->seg_len;
	/* the IP header's offset, read again here rather than kept by the caller's frame */
	struct pkt_info p;
	if (parse_packet((void *)(long)skb->data, (void *)(long)skb->data_end, &p) != PARSE_TCP || p.l4_off != s->l4_off)
		goto fail;
	s->l3_off = p.l3_off;
	/* does the skb carry an offloaded checksum (the pseudo-header sum alone)? */
	s->dir = DIR_CLIENT;
	__s64 ps = pseudo_sum(s);
	int partial = ps >= 0 && csum_fold(ps) == ((struct tcphdr *)s->hdr)->check;
	__u8 ttl = 0;
	__u32 ttl_off = s->key.family == AF_INET ? IP4_TTL_OFF : IP6_HOPS_OFF;
	__u32 l3 = s->l3_off;
	__u32 l4 = s->l4_off;
	if (l4 <= l3 || bpf_skb_load_bytes(skb, l3 + ttl_off, &ttl, 1))
		goto fail;
	/* the payload goes, the header ends after its fixed part */
	if (bpf_skb_change_tail(skb, l4 + RST_TCP_LEN, 0))
		goto fail;
	if (s->key.family == AF_INET) {
		__u16 tot = bpf_htons(l4 + RST_TCP_LEN - l3);
		if (bpf_skb_store_bytes(skb, l3 + IP4_TOT_LEN_OFF, &tot, 2, BPF_F_RECOMPUTE_CSUM))
			goto fail;
	} else {
		__u16 plen = bpf_htons(l4 + RST_TCP_LEN - l3 - IP6_HDR_LEN);
		if (bpf_skb_store_bytes(skb, l3 + IP6_PLEN_OFF, &plen, 2, BPF_F_RECOMPUTE_CSUM))
			goto fail;
	}
	/* to the client, from the server: at what the client acknowledged */
	s->dir = DIR_SERVER;
	if (eth_swap(skb, s) || rst_write(skb, s, ack, seq + len, LOGIN_RESET_TTL, partial))
		goto fail;
	if (bpf_clone_redirect(skb, skb->ifindex, ingress ? 0 : BPF_F_INGRESS))
		goto fail;
	/* to the server, from the client: at the segment's own sequence number */
	s->dir = DIR_CLIENT;
	if (eth_swap(skb, s) || rst_write(skb, s, seq, ack, ttl, partial))
		goto fail;
	stat_inc(STAT_LOGIN_RESET);
	return TC_ACT_OK;
fail:
	stat_inc(STAT_LOGIN_RESET_FAILED);
	return TC_ACT_SHOT;
}

#define TLS_RANGE_COST_NS (NSEC_PER_SEC / TLS_RANGE_PER_PAIR_PER_SEC)
#define TLS_RANGE_CREDIT_MAX_NS ((__u64)TLS_RANGE_PER_PAIR_BURST * TLS_RANGE_COST_NS)

/* tls_session_live tells whether client has a live encrypted control connection to server */
static __always_inline int tls_session_live(__u8 family, const __u32 *client, const __u32 *server)
{
	struct tls_session_key k = {};
	k.family = family;
	copy_addr(k.client, client);
	copy_addr(k.server, server);
	struct tls_session_val *v = bpf_map_lookup_elem(&tls_sessions, &k);
	return v && v->live;
}

/* tls_in_range tells whether the SYN's destination port is in a range its server declared */
static __always_inline int tls_in_range(const struct pkt_info *p)
{
	struct tls_server_key k = {};
	k.family = p->family;
	copy_addr(k.addr, p->dst);
	struct tls_range_val *v = bpf_map_lookup_elem(&tls_ranges, &k);
	if (!v)
		return 0;
	__u32 n = v->n;
	for (int i = 0; i < TLS_RANGES_PER_SERVER; i++) {
		if (i >= n)
			break;
		if (p->dport >= v->r[i].lo && p->dport <= v->r[i].hi)
			return 1;
	}
	return 0;
}

/*
 * tls_range_admit decides a SYN (no expectation, no allowed port) into a
 * TLS range: 1 admitted, recorded as a data flow fk of kind KIND_TLS_RANGE
 * (so FIN/RST, a retransmitted SYN and --fwmark work as for expected ones);
 * -1 in a range but its client has no live encrypted session to the
 * server; -2 in a range, but the pair's bucket of admissions is empty
 * (TLS_RANGE_PER_PAIR_*); 0 in no range. The pass event is rate-limited
 * like rejections (event_allowed).
 */
static __always_inline int tls_range_admit(const struct pkt_info *p, const struct flow_key *fk,
					   const struct config_val *cfg)
{
	if (!tls_in_range(p))
		return 0;
	struct tls_session_key k = {};
	k.family = p->family;
	copy_addr(k.client, p->src);
	copy_addr(k.server, p->dst);
	struct tls_session_val *v = bpf_map_lookup_elem(&tls_sessions, &k);
	if (!v || !v->live)
		return -1;
	__u64 now = now_ns(cfg);
	if (!bucket_take(&v->range_ns, &v->range_credit_ns, now, TLS_RANGE_COST_NS, TLS_RANGE_CREDIT_MAX_NS))
		return -2;
	struct flow_val fv = {};
	fv.created_ns = now;
	fv.last_seen_ns = now;
	fv.kind = KIND_TLS_RANGE;
	fv.syn_seq = p->seq;
	if (cfg && cfg->accounting) {
		fv.packets = 1;
		fv.bytes = p->ip_len;
	}
	fv.ctrl.family = p->family;
	copy_addr(fv.ctrl.client, p->src);
	copy_addr(fv.ctrl.server, p->dst);
	/* #14 before the flow, as consume_expectation (syngate.h) */
	syn_gate_mark(p->dport, now);
	if (bpf_map_update_elem(&data_flows, fk, &fv, BPF_ANY) != 0)
		stat_inc(STAT_FLOW_TABLE_FULL);
	stat_inc(STAT_TLS_RANGE_PASS);
	struct expect_key ek = {};
	ek.family = p->family;
	ek.dport = p->dport;
	copy_addr(ek.src, p->src);
	copy_addr(ek.dst, p->dst);
	if (event_allowed(now))
		emit_event_port(EV_TLS_RANGE_PASS, STAT_TLS_RANGE_PASS, KIND_TLS_RANGE, &ek, &fv.ctrl, p->sport, now);
	return 1;
}

#endif /* FTPGATE_TLS_H */
