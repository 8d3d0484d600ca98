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
#include "scope.h"

/* mark_data_syn puts the configured fwmark on an admitted data connection's SYN */
static __always_inline void mark_data_syn(struct __sk_buff *skb, const struct pkt_info *p)
{
	if (!(p->flags & TCPF_SYN) || (p->flags & TCPF_ACK))
		return;
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
 * ctrl_track returns the state of the control connection in s->key, created
 * if p may start tracking it; NULL otherwise. Only a SYN or data start
 * tracking: the last ACK after both FINs (or an RST) must not bring a closed
 * connection back.
 */
static __always_inline struct ctrl_val *ctrl_track(struct scratch *s, const struct pkt_info *p, __u64 now)
{
	struct ctrl_val *cv = bpf_map_lookup_elem(&ctrl_conns, &s->key);
	if (cv)
		return cv;
	if ((p->flags & TCPF_RST) || (!(p->flags & TCPF_SYN) && !p->payload_len))
		return 0;
	s->zero.created_ns = now;
	int err = bpf_map_update_elem(&ctrl_conns, &s->key, &s->zero, BPF_NOEXIST);
	if (err && err != -EEXIST /* the other direction won */) {
		stat_inc(STAT_CTRL_CONN_FULL);
		return 0;
	}
	return bpf_map_lookup_elem(&ctrl_conns, &s->key);
}

/*
 * stream_start notes a direction's first segment: after a SYN the stream's
 * first byte starts a line; picked up mid-stream, the first byte is not known
 * to. Returns the sequence number of the segment's first payload byte.
 */
static __always_inline __u32 stream_start(struct dir_state *st, const struct pkt_info *p, __u64 now)
{
	__u32 seq = p->seq;
	if (p->flags & TCPF_SYN) {
		st->seen = 1;
		stream_restart(st, MODE_LINE_START);
		st->fin = 0;
		seq += 1; /* the SYN takes one sequence number */
		st->next_seq = seq;
	} else if (!st->seen) {
		stat_inc(STAT_CTRL_PICKUP);
		st->seen = 1;
		stream_restart(st, MODE_SKIP);
		st->next_seq = seq;
	}
	st->last_ns = now;
	return seq;
}

/*
 * ctrl_closing removes the expectations of a connection that saw a FIN or
 * RST, and counts the connection as closed at its first FIN or RST (in
 * either direction): once per connection.
 */
static __always_inline void ctrl_closing(const struct dir_state *st, const struct dir_state *other)
{
	if (!st->fin && !other->fin)
		stat_inc(STAT_CTRL_CLOSED);
	ctrl_close();
}

/*
 * payload_load loads the segment's payload (its first MAX_SCAN_BYTES) into
 * s->pkt and checks its TCP checksum before anything changes: a forged
 * segment the receiver will drop must be neither parsed nor counted as seen,
 * or the genuine retransmission that follows would be skipped as old bytes.
 * Returns 1 when loaded, 0 when not (or empty), -1 for a forged segment.
 */
static __always_inline int payload_load(struct __sk_buff *skb, struct scratch *s, const struct pkt_info *p)
{
	__u32 len = p->payload_len;
	__u32 n = scan_bytes(len);
	if (n == 0)
		return 0;
	/*
	 * Verifiers before 6.x do not learn n >= 1 from a test against zero;
	 * this form carries the range [1, MAX_SCAN_BYTES] in the arithmetic.
	 */
	__u32 load = ((n - 1) & (SCAN_BUF_SIZE - 1)) + 1;
	int loaded = bpf_skb_load_bytes(skb, p->payload_off, s->pkt, load) == 0;
	s->loaded = loaded ? n : 0;
	s->l4_off = p->l4_off;
	s->hdr_len = p->payload_off - p->l4_off;
	s->tcp_len = s->hdr_len + len;
	if (loaded && !segment_trusted(skb)) {
		stat_inc(STAT_CTRL_BAD_CHECKSUM);
		return -1;
	}
	return loaded;
}

/* stream_fin notes a FIN (after the payload, at seq end) and forgets a closed connection */
static __always_inline void stream_fin(struct scratch *s, struct dir_state *st, struct dir_state *other, __u32 end)
{
	if (st->next_seq == end)
		st->next_seq++;
	if (!st->fin) {
		ctrl_closing(st, other);
		st->fin = 1;
	}
	if (other->fin)
		bpf_map_delete_elem(&ctrl_conns, &s->key);
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
	__u64 now = now_ns(get_config());
	struct ctrl_val *cv = ctrl_track(s, &p, now);
	if (!cv)
		return TC_ACT_OK;
	struct dir_state *st = dir_of(cv, dir);
	struct dir_state *other = dir_of(cv, dir == DIR_SERVER ? DIR_CLIENT : DIR_SERVER);
	__u32 seq = stream_start(st, &p, now);

	if (p.flags & TCPF_RST) {
		ctrl_closing(st, other);
		bpf_map_delete_elem(&ctrl_conns, &s->key);
		return TC_ACT_OK;
	}
	int loaded = payload_load(skb, s, &p);
	if (loaded < 0)
		return TC_ACT_OK;
	stream_segment(skb, s, st, other, dir, seq, p.payload_len, p.payload_off, loaded);
	if (p.flags & TCPF_FIN)
		stream_fin(s, st, other, seq + p.payload_len);
	return TC_ACT_OK;
}

#endif /* FTPGATE_CONTROL_H */
