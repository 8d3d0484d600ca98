/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The TC entry point: for every segment of an FTP control connection, in
 * either direction, track the connection, check the segment, and feed its
 * payload to the stream parser (stream.h), which writes expectations. It also
 * marks the admitted SYN of a data connection for nftables (--fwmark).
 */
#ifndef FTPGATE_CONTROL_H
#define FTPGATE_CONTROL_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <asm-generic/errno-base.h>
#include <bpf/bpf_helpers.h>

#include "ftpgate.h"
#include "maps.h"
#include "parsing.h"
#include "common.h"
#include "expect.h"
#include "checksum.h"
#include "stream.h"
#include "tcp.h"
#include "scope.h"
#include "embryo.h"
#include "hold.h"
#ifdef FTPGATE_NAT
#include "nat.h"
#endif

#ifdef FTPGATE_NAT
#include "natown.h"
#ifndef FTPGATE_NAT_OWN_ONLY
#include "natct.h"
#endif
#endif

/*
 * mark_data_syn puts the configured fwmark on an admitted data connection's
 * SYN and, in the NAT object, makes the conntrack entry that takes it to the
 * inside end (natct.h)
 */
static __always_inline void mark_data_syn(struct __sk_buff *skb, const struct pkt_info *p)
{
	if (!(p->flags & TCPF_SYN) || (p->flags & TCPF_ACK))
		return;
#if defined(FTPGATE_NAT) && !defined(FTPGATE_NAT_OWN_ONLY)
	nat_ct_syn(skb);
#endif
	struct config_val *cfg = get_config();
	if (!cfg || !(cfg->fwmark_value | cfg->fwmark_mask))
		return;
	struct flow_key fk;
	flow_key_from(&fk, p, 0);
	if (!bpf_map_lookup_elem(&data_flows, &fk))
		return;
	__u32 mask = cfg->fwmark_mask ? cfg->fwmark_mask : ~0U;
	skb->mark = (skb->mark & ~mask) | (cfg->fwmark_value & mask);
	stat_inc(STAT_SYN_FWMARK);
}

/*
 * control_dir returns the direction of a control segment, or -1 for another
 * segment: one on a control port towards (or from) a server its scope
 * leaves out is counted (ctrl_out_of_scope) and not parsed.
 */
static __always_inline int control_dir(const struct pkt_info *p)
{
	int to = port_serves(p->dport, p->family, p->dst);
	if (to == PORT_SERVES)
		return DIR_CLIENT;
	int from = port_serves(p->sport, p->family, p->src);
	if (from == PORT_SERVES)
		return DIR_SERVER;
	if (to == PORT_OUT_OF_SCOPE || from == PORT_OUT_OF_SCOPE)
		stat_inc(STAT_CTRL_OUT_OF_SCOPE);
	return -1;
}

/* forwarded tells whether egress sees a segment a guarded ingress has parsed */
static __always_inline int forwarded(struct __sk_buff *skb, int ingress)
{
	if (ingress || !skb->ingress_ifindex)
		return 0;
	__u32 ifx = skb->ingress_ifindex;
	if (!bpf_map_lookup_elem(&guarded_ifs, &ifx))
		return 0;
	stat_inc(STAT_CTRL_SKIP_FORWARDED);
	return 1;
}

/* ctrl_key_fill writes the key of the control connection of p, seen in dir */
static __always_inline void ctrl_key_fill(struct scratch *s, const struct pkt_info *p, __u32 dir)
{
	__builtin_memset(&s->key, 0, sizeof(s->key));
	s->key.family = p->family;
	if (dir == DIR_CLIENT) {
		s->key.client_port = p->sport;
		s->key.server_port = p->dport;
		copy_addr(s->key.client, p->src);
		copy_addr(s->key.server, p->dst);
	} else {
		s->key.client_port = p->dport;
		s->key.server_port = p->sport;
		copy_addr(s->key.client, p->dst);
		copy_addr(s->key.server, p->src);
	}
	s->dir = dir;
}

/*
 * ctrl_closing removes the expectations of a connection that saw a FIN or
 * RST, and counts the connection as closed at its first FIN or RST (in
 * either direction): once per connection.
 */
static __always_inline void ctrl_closing(struct scratch *s, const struct ctrl_val *cv, const struct dir_state *st,
					const struct dir_state *other)
{
	if (!st->fin && !other->fin) {
		stat_inc(STAT_CTRL_CLOSED);
		/* #13: an encrypted session ends for the TLS ranges at its first FIN or RST */
		tls_end();
	}
	ctrl_close();
}

/*
 * payload_load loads the segment's payload (its first MAX_SCAN_BYTES) into
 * s->pkt and checks the TCP checksum of every segment, header-only ones
 * included, before anything changes: a forged segment the receiver will drop
 * must change no state, or the genuine segment that follows would be skipped
 * as old bytes or refused as out of window. A segment whose payload cannot
 * be loaded (a frame shorter than its IP length) is refused. Returns 1 when
 * payload was loaded, 0 for an empty segment, -1 for a refused one.
 */
static __always_inline int payload_load(struct __sk_buff *skb, struct scratch *s, const struct pkt_info *p)
{
	__u32 len = p->payload_len;
	__u32 n = scan_bytes(len);
	int loaded = 0;
	if (n > 0) {
		/*
		 * Verifiers before 6.x do not learn n >= 1 from a test against zero;
		 * this form carries the range [1, MAX_SCAN_BYTES] in the arithmetic.
		 */
		__u32 load = ((n - 1) & (SCAN_BUF_SIZE - 1)) + 1;
		loaded = bpf_skb_load_bytes(skb, p->payload_off, s->pkt, load) == 0;
		s->loaded = loaded ? n : 0;
		/*
		 * the last byte, for the line start a pickup resumes at
		 * (embryo_segment): in s->pkt unless the segment is longer
		 * than the parser reads
		 */
		s->seg_lf = 0;
		if (loaded && n == len)
			s->seg_lf = s->pkt[(n - 1) & SCAN_MASK];
		else
			bpf_skb_load_bytes(skb, p->payload_off + len - 1, &s->seg_lf, sizeof(s->seg_lf));
		s->seg_lf = s->seg_lf == '\n';
	}
	if (len && !loaded) {
		/*
		 * The frame is shorter than its IP length claims: its checksum
		 * cannot be checked, and the receiver's IP layer drops it.
		 * Replay alone feeds such frames, for the unread tail of a
		 * super-segment (config.replay_pieces).
		 */
		struct config_val *cfg = get_config();
		if (cfg && cfg->replay_pieces)
			return 0;
		stat_inc(STAT_CTRL_TRUNCATED);
		return -1;
	}
	if (!segment_trusted(skb)) {
		stat_inc(STAT_CTRL_BAD_CHECKSUM);
		return -1;
	}
	return loaded;
}

/*
 * tcp_flags_valid tells whether a receiver takes a segment with these flags
 * (conntrack's tcp_valid_flags): every segment but a SYN or an RST carries
 * ACK (RFC 9293 3.10.7.4), and SYN, FIN and RST exclude one another.
 */
static __always_inline int tcp_flags_valid(__u8 fl)
{
	if ((fl & TCPF_SYN) && (fl & (TCPF_FIN | TCPF_RST)))
		return 0;
	if ((fl & TCPF_FIN) && (fl & TCPF_RST))
		return 0;
	return (fl & (TCPF_ACK | TCPF_SYN | TCPF_RST)) != 0;
}

/*
 * ctrl_forget removes a closed connection's state. One whose announcements
 * NAT rewrote (#12), or a login guard's tombstone (#13, login_guard), keeps
 * it, both directions marked closed, until the ager's closed linger: its last segments (the FIN or RST, their
 * acknowledgements and retransmissions) still need their shift.
 */
static __always_inline void ctrl_forget(struct scratch *s, struct ctrl_val *cv)
{
	/* #13 a login the guard reset: its tombstone stays until the ager's closed linger */
	if (cv->dir[DIR_CLIENT].login_reset)
		return;
	for (int d = 0; d < 2; d++) {
		if (cv->nat[d].base || cv->nat[d].head != cv->nat[d].tail) {
			cv->dir[DIR_CLIENT].fin = 1;
			cv->dir[DIR_SERVER].fin = 1;
			return;
		}
	}
	bpf_map_delete_elem(&ctrl_conns, &s->key);
}

/* stream_fin notes a FIN (after the payload, at seq end) and forgets a closed connection */
static __always_inline void stream_fin(struct scratch *s, struct ctrl_val *cv, struct dir_state *st,
				       struct dir_state *other, __u32 end)
{
	if (st->next_seq == end)
		st->next_seq++;
	if (!st->fin) {
		ctrl_closing(s, cv, st, other);
		st->fin = 1;
	}
	if (other->fin)
		ctrl_forget(s, cv);
}

/*
 * untrusted_payload keeps a direction of a connection that is not trusted
 * in step without parsing it: when trust comes, it resumes at the next line.
 */
static __always_inline void untrusted_payload(struct dir_state *st, __u32 seq, __u32 len)
{
	stat_inc(STAT_TCP_UNTRUSTED);
	stream_restart(st, MODE_SKIP);
	if (seq_after(seq + len, st->next_seq))
		st->next_seq = seq + len;
}

/*
 * login_guard handles a client segment that starts a USER or PASS command on
 * a connection not encrypted (#13), the connection in s->key: counted and
 * reported with the client's address; with config.require_tls the segment
 * becomes resets of both ends (login_reset) and the connection stays as a
 * tombstone: both directions closed, the client's login_reset set, until
 * the ager's closed linger. A later client segment with payload on it (the
 * same segment retransmitted because a reset was lost or refused) is reset
 * again (login_reset_again), never picked up as a new connection.
 * A global function: its frame stays off parse_control's.
 */
__noinline int login_guard(struct __sk_buff *skb, int ingress)
{
	struct scratch *s;
	struct ctrl_val *cv = scratch_conn(&s);
	if (!cv)
		return TC_ACT_OK;
	struct dir_state *st = &cv->dir[DIR_CLIENT];
	struct dir_state *other = &cv->dir[DIR_SERVER];
	__u64 now = st->last_ns;
	struct config_val *cfg = get_config();
	int reset = cfg && cfg->require_tls;
	__u32 why = STAT_LOGIN_CLEARTEXT;
	if (s->login == LOGIN_HIDDEN)
		why = STAT_LOGIN_HIDDEN;
	else if (s->login == LOGIN_UNSCANNED)
		why = STAT_LOGIN_UNSCANNED;
	else if (s->login == LOGIN_NOT_FTP)
		why = STAT_LOGIN_NOT_FTP;
	stat_inc(why);
	if (event_allowed(now))
		emit_event(EV_LOGIN_CLEARTEXT, reset ? STAT_LOGIN_RESET : why, KIND_NONE, 0, &s->key, now);
	if (!reset)
		return TC_ACT_OK;
	ctrl_closing(s, cv, st, other);
	st->fin = 1;
	other->fin = 1;
	st->login_reset = 1;
#ifdef FTPGATE_NAT
	/* the segment is no longer the one nat_begin took */
	s->nat.on = 0;
#endif
	return login_reset(skb, ingress);
}

/*
 * login_reset_again resets a client segment with payload on a connection the
 * login guard reset (its tombstone, login_guard), before the tracker: it
 * may be a retransmission of the login itself.
 */
static __always_inline int login_reset_again(struct __sk_buff *skb, int ingress)
{
	stat_inc(STAT_LOGIN_RESET_AGAIN);
#ifdef FTPGATE_NAT
	struct scratch *s = get_scratch();
	if (s)
		s->nat.on = 0;
#endif
	return login_reset(skb, ingress);
}

static __always_inline int parse_control(struct __sk_buff *skb, int ingress)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct pkt_info p;

	if (parse_packet(data, data_end, &p) != PARSE_TCP)
		return TC_ACT_OK;
	if (ingress)
		mark_data_syn(skb, &p);
#ifdef FTPGATE_NAT
	/*
	 * a data connection ftpgate translates itself (made with NAT_OWN,
	 * kept whatever config.nat says now): after the SYN's mark, which
	 * looks its flow up by the public end; never a control segment
	 */
	if (nat_own_on()) {
		int own = nat_own_packet(skb, ingress);
		if (own)
			return own < 0 ? TC_ACT_SHOT : TC_ACT_OK;
	}
#endif
	int dir = control_dir(&p);
	if (dir < 0 || forwarded(skb, ingress))
		return TC_ACT_OK;
	stat_inc(STAT_CTRL_SEGMENTS);
	if (!source_routed(skb, &p, ingress))
		return TC_ACT_OK;

	struct scratch *s = get_scratch();
	if (!s)
		return TC_ACT_OK;
	ctrl_key_fill(s, &p, dir);
#ifdef FTPGATE_NAT
	/* acknowledgements shifted back before the tracker reads them */
	nat_begin(skb, ingress);
#endif
	if (tcp_header_load(skb, s, &p) < 0)
		return TC_ACT_OK;
	int loaded = payload_load(skb, s, &p);
	if (loaded < 0)
		return TC_ACT_OK;
	if (!tcp_flags_valid(p.flags)) {
		stat_inc(STAT_TCP_BAD_FLAGS);
		return TC_ACT_OK;
	}
	__u64 now = now_ns(get_config());

	s->embryo = 0;
	struct ctrl_val *cv = bpf_map_lookup_elem(&ctrl_conns, &s->key);
	if (!cv) {
		cv = embryo_segment(s, &p, now);
		if (!cv)
			return TC_ACT_OK;
		s->embryo = 0; /* promoted: this segment is tracked already */
	} else {
		if (cv->dir[DIR_CLIENT].login_reset && dir == DIR_CLIENT && p.payload_len)
			return login_reset_again(skb, ingress);
		if (tcp_track() != TCP_ACCEPT)
			return TC_ACT_OK;
	}
	struct dir_state *st = dir_of(cv, dir);
	struct dir_state *other = dir_of(cv, dir == DIR_SERVER ? DIR_CLIENT : DIR_SERVER);
	st->last_ns = now;
#ifdef FTPGATE_NAT
	/* the segment is genuine: its acknowledgement may fold NAT fixes */
	if (ingress)
		nat_ack_commit();
#endif

	if (p.flags & TCPF_RST) {
		ctrl_closing(s, cv, st, other);
		ctrl_forget(s, cv);
		return TC_ACT_OK;
	}
	/* a repeated SYN or SYN-ACK: nothing to parse */
	if (p.flags & TCPF_SYN)
		return TC_ACT_OK;
	/* a bare ACK never moves the parser: only payload and FIN do */
	if (p.payload_len) {
		s->login = 0;
		s->made = 0;
		if (hold_retransmit(s, p.seq, p.payload_len, now))
			return TC_ACT_SHOT;
		if (tcp_trusted(cv))
			stream_segment(skb, s, st, other, dir, p.seq, p.payload_len, p.payload_off, loaded);
		else
			untrusted_payload(st, p.seq, p.payload_len);
		if (s->login)
			return login_guard(skb, ingress);
		if (sync_hold(skb, s, &p, ingress, now))
			return TC_ACT_SHOT;
	}
	if (p.flags & TCPF_FIN)
		stream_fin(s, cv, st, other, p.seq + p.payload_len);
	return TC_ACT_OK;
}

#endif /* FTPGATE_CONTROL_H */
