/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * TCP tracking of control connections, after the rules of conntrack's
 * tcp_in_window (simplified): each direction learns its initial sequence
 * number and window scale from its SYN, the highest sequence number it sent
 * (end), the highest edge it allowed the peer (ack + window: maxend) and its
 * largest window (maxwin). A segment is accepted only inside that window;
 * what is not is counted and changes nothing. See docs/design.md, "Trust
 * model".
 *
 * A connection is trusted once each direction has acknowledged bytes the
 * other was seen sending: through the handshake (SYN, SYN-ACK acking isn + 1,
 * the third ACK), or, for a connection picked up mid-stream, through an
 * exchange in which seq and ack agree. The FTP layer asks tcp_trusted() and
 * tcp_handshake_seen().
 *
 * Concurrency: each direction's struct tcp_track is written only by the hook
 * that sees that direction; the checks read the other direction's.
 *
 * The __noinline functions are global BPF functions for the verifier's
 * sake: see text.h.
 */
#ifndef FTPGATE_TCP_H
#define FTPGATE_TCP_H

#include <linux/bpf.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ftpgate.h"
#include "maps.h"
#include "parsing.h"
#include "common.h"
#include "checksum.h"

/* TCP options (RFC 9293, RFC 7323) */
#define TCP_OPT_EOL 0
#define TCP_OPT_NOP 1
#define TCP_OPT_WSCALE 3
#define TCP_OPT_WSCALE_LEN 3
#define TCP_OPT_MIN_LEN 2
#define TCP_HDR_MASK (TCP_HDR_BUF - 1)
/* s->seg_wscale of a SYN without the window-scale option */
#define TCP_NO_WSCALE 0xff
/* keeps a shift provably below 32 for the verifier */
#define TCP_WSCALE_MASK 0xf

/* verdicts of tcp_track */
enum tcp_verdict {
	TCP_IGNORE = 0, /* out of window or not at its place: counted, changes nothing */
	TCP_ACCEPT = 1,
};

static __always_inline int seq_before(__u32 a, __u32 b)
{
	return (__s32)(a - b) < 0;
}

static __always_inline int seq_after(__u32 a, __u32 b)
{
	return (__s32)(b - a) < 0;
}

/* tcp_pair_trusted: each direction has acknowledged bytes the other was seen sending */
static __always_inline int tcp_pair_trusted(const struct tcp_track *a, const struct tcp_track *b)
{
	return (a->flags & TCP_ACKED) && (b->flags & TCP_ACKED);
}

/* tcp_trusted tells whether the FTP layer may believe the connection's bytes */
static __always_inline int tcp_trusted(const struct ctrl_val *cv)
{
	return tcp_pair_trusted(&cv->dir[DIR_CLIENT].tcp, &cv->dir[DIR_SERVER].tcp);
}

/*
 * tcp_resume_at_line tells whether a direction's stream resumes at a line
 * start when its connection becomes trusted: after its SYN with nothing sent,
 * or when the bytes it sent untrusted ended with LF; otherwise (picked up,
 * or mid-line) it resumes at the next line.
 */
static __always_inline int tcp_resume_at_line(const struct tcp_track *tt)
{
	if (tt->flags & TCP_DATA)
		return !!(tt->flags & TCP_LINE_END);
	return !!(tt->flags & TCP_SYN_SEEN);
}

/*
 * tcp_handshake_seen tells whether the connection was tracked from its
 * handshake, so that its streams' first bytes are known (the greeting rule
 * applies), rather than picked up mid-stream.
 */
static __always_inline int tcp_handshake_seen(const struct ctrl_val *cv)
{
	return (cv->dir[DIR_CLIENT].tcp.flags & TCP_SYN_SEEN) && (cv->dir[DIR_SERVER].tcp.flags & TCP_SYN_SEEN);
}

/* what tcp_opt_step finds at the cursor */
#define TCP_OPT_END (-1)  /* no option left */
#define TCP_OPT_SKIP 0    /* a NOP, passed over */
#define TCP_OPT_FOUND 1   /* an option: its offset and length given */

/*
 * tcp_opt_step looks at the option at s->opt_off of the header in s->hdr
 * (s->hdr_len bytes): it passes over a NOP, or gives the option's kind, its
 * offset in *at, the header length in *hlen and its length in *olen (the
 * caller moves the cursor past it). The cursor and the length are read back
 * from scratch memory in every round (volatile: clang would keep them in
 * registers): unknown to the verifier, they leave it one loop body to check
 * instead of every layout of options.
 */
static __always_inline int tcp_opt_step(struct scratch *s, __u8 *kind, __u32 *at, __u32 *hlen, __u8 *olen)
{
	__u32 len = *(volatile __u32 *)&s->hdr_len;
	__u32 i = *(volatile __u32 *)&s->opt_off;
	if (len > TCP_MAX_HDR || i >= len)
		return TCP_OPT_END;
	__u8 k = s->hdr[i & TCP_HDR_MASK];
	if (k == TCP_OPT_EOL)
		return TCP_OPT_END;
	if (k == TCP_OPT_NOP) {
		s->opt_off = i + 1;
		return TCP_OPT_SKIP;
	}
	if (i + 1 >= len)
		return TCP_OPT_END;
	__u8 ol = s->hdr[(i + 1) & TCP_HDR_MASK];
	if (ol < TCP_OPT_MIN_LEN)
		return TCP_OPT_END;
	*kind = k;
	*at = i;
	*hlen = len;
	*olen = ol;
	return TCP_OPT_FOUND;
}

/*
 * tcp_opt_seek moves the cursor s->opt_off (set it first) to the next
 * option whose kind is in kinds (a bit per kind, kinds below 32) and gives
 * it as tcp_opt_step does. Returns TCP_OPT_FOUND, or TCP_OPT_END.
 */
static __always_inline int tcp_opt_seek(struct scratch *s, __u32 kinds, __u8 *kind, __u32 *at, __u32 *hlen, __u8 *olen)
{
	for (int n = 0; n < TCP_MAX_HDR - sizeof(struct tcphdr); n++) {
		int r = tcp_opt_step(s, kind, at, hlen, olen);
		if (r == TCP_OPT_END)
			break;
		if (r == TCP_OPT_SKIP)
			continue;
		if (*kind < 32 && (kinds >> *kind) & 1)
			return TCP_OPT_FOUND;
		s->opt_off = *at + *olen;
	}
	return TCP_OPT_END;
}

/* tcp_syn_options reads the window scale a SYN announces from s->hdr into s->seg_wscale */
__noinline int tcp_syn_options(void)
{
	struct scratch *s = get_scratch();
	if (!s)
		return -1;
	s->opt_off = sizeof(struct tcphdr);
	for (int n = 0; n < TCP_MAX_HDR - sizeof(struct tcphdr); n++) {
		__u8 kind = 0, olen = 0;
		__u32 i = 0, len = 0;
		int r = tcp_opt_step(s, &kind, &i, &len, &olen);
		if (r == TCP_OPT_END)
			break;
		if (r == TCP_OPT_SKIP)
			continue;
		if (kind == TCP_OPT_WSCALE && olen == TCP_OPT_WSCALE_LEN && i + 2 < len) {
			__u8 sc = s->hdr[(i + 2) & TCP_HDR_MASK];
			/* RFC 7323 2.3: a larger shift is taken as the largest */
			s->seg_wscale = sc > TCP_MAX_WSCALE ? TCP_MAX_WSCALE : sc;
			return 0;
		}
		s->opt_off = i + olen;
	}
	return 0;
}

/*
 * tcp_header_load reads the TCP header of p into s->hdr and describes the
 * segment in s (seq, end, ack, window, window scale). Returns -1 when the
 * header cannot be read.
 */
static __always_inline int tcp_header_load(struct __sk_buff *skb, struct scratch *s, const struct pkt_info *p)
{
	__u32 hdr_len = p->payload_off - p->l4_off;
	if (hdr_len < sizeof(struct tcphdr) || hdr_len > TCP_MAX_HDR)
		return -1;
	/* the mask restates the bounds checked above in a form every verifier keeps */
	__u32 hl = ((hdr_len - 1) & TCP_HDR_MASK) + 1;
	if (bpf_skb_load_bytes(skb, p->l4_off, s->hdr, hl) != 0)
		return -1;
	struct tcphdr *th = (void *)s->hdr;
	s->l4_off = p->l4_off;
	s->hdr_len = hdr_len;
	s->tcp_len = hdr_len + p->payload_len;
	s->loaded = 0;
	s->seg_seq = p->seq;
	s->seg_ack = bpf_ntohl(th->ack_seq);
	s->seg_win = bpf_ntohs(th->window);
	s->seg_len = p->payload_len;
	s->seg_flags = p->flags;
	s->seg_end = p->seq + p->payload_len + !!(p->flags & TCPF_SYN) + !!(p->flags & TCPF_FIN);
	s->seg_wscale = TCP_NO_WSCALE;
	if (p->flags & TCPF_SYN)
		tcp_syn_options();
	return 0;
}

/*
 * tcp_in_window is conntrack's window rule for a segment of S towards R:
 * its sequence number no further than the edge R allowed, its end no older
 * than one of R's windows before what S has sent, and its acknowledgement
 * neither beyond what R sent nor older than one of S's windows. What a
 * direction has not yet shown (a pickup's first segments) is not checked.
 */
static __always_inline int tcp_in_window(const struct tcp_track *S, const struct tcp_track *R, const struct scratch *s)
{
	if ((R->flags & TCP_WINDOW) && seq_after(s->seg_seq, R->maxend))
		return 0;
	if (S->flags & TCP_SEEN) {
		__u32 win = R->maxwin ? R->maxwin : TCP_ACK_WINDOW_FALLBACK;
		if (seq_before(s->seg_end, S->end - win))
			return 0;
	}
	if ((s->seg_flags & TCPF_ACK) && (R->flags & TCP_SEEN)) {
		if (seq_after(s->seg_ack, R->end))
			return 0;
		__u32 aw = S->maxwin ? S->maxwin : TCP_ACK_WINDOW_FALLBACK;
		if (seq_before(s->seg_ack, R->end - aw))
			return 0;
	}
	return 1;
}

/*
 * tcp_window returns the segment's window in bytes: scaled as both SYNs
 * agreed, or, for a connection whose SYNs were not both seen, as
 * TCP_PICKUP_WSCALE assumes. A SYN's own window is never scaled.
 */
static __always_inline __u32 tcp_window(const struct tcp_track *S, const struct tcp_track *R, const struct scratch *s)
{
	__u32 win = s->seg_win;
	if (s->seg_flags & TCPF_SYN)
		return win;
	if ((S->flags & TCP_SYN_SEEN) && (R->flags & TCP_SYN_SEEN)) {
		if ((S->flags & TCP_WSCALE) && (R->flags & TCP_WSCALE))
			win <<= S->wscale & TCP_WSCALE_MASK;
		return win;
	}
	return win << TCP_PICKUP_WSCALE;
}

/* tcp_update takes an accepted segment of S into S's state */
static __always_inline void tcp_update(struct tcp_track *S, const struct tcp_track *R, const struct scratch *s)
{
	if (!(S->flags & TCP_SEEN)) {
		S->isn = s->seg_seq;
		S->end = s->seg_end;
		S->flags |= TCP_SEEN;
	} else if (seq_after(s->seg_end, S->end)) {
		S->end = s->seg_end;
	}
	__u32 win = tcp_window(S, R, s);
	if (win > S->maxwin)
		S->maxwin = win;
	if (!(s->seg_flags & TCPF_ACK))
		return;
	/* a zero window still lets a one-byte probe through */
	__u32 edge = s->seg_ack + (win ? win : 1);
	if (!(S->flags & TCP_WINDOW) || seq_after(edge, S->maxend))
		S->maxend = edge;
	S->flags |= TCP_WINDOW;
	if ((R->flags & TCP_SEEN) && seq_after(s->seg_ack, R->isn) && !seq_after(s->seg_ack, R->end))
		S->flags |= TCP_ACKED;
}

/*
 * tcp_syn takes a SYN of S: a first SYN starts the direction (in the
 * untrusted table a new SYN from the client restarts the connection); a SYN
 * that repeats the initial sequence number is a retransmission; a SYN
 * without ACK from the server once the client is tracked does not belong. Returns 1
 * when the SYN starts the direction (no window to check it against), 0 for
 * a retransmission, -1 for a SYN that does not belong.
 */
static __always_inline int tcp_syn(struct scratch *s, struct tcp_track *S, struct tcp_track *R)
{
	if (S->flags & TCP_SYN_SEEN)
		return s->seg_seq == S->isn ? 0 : -1;
	/*
	 * Only the client opens: a SYN without ACK from the server (simultaneous
	 * open, or forged) must not wipe the client's tracking. It may start an
	 * embryo the client has shown nothing of.
	 */
	if (s->dir != DIR_CLIENT && !(s->seg_flags & TCPF_ACK) && (R->flags & TCP_SEEN))
		return -1;
	/* a SYN-ACK must acknowledge the SYN seen, or a blind one would take its place */
	if ((s->seg_flags & TCPF_ACK) && (R->flags & TCP_SYN_SEEN) && s->seg_ack != R->isn + 1)
		return -1;
	if (S->flags & TCP_SEEN) {
		if (!s->embryo)
			return -1;
		__builtin_memset(S, 0, sizeof(*S));
	}
	if (s->embryo && !(s->seg_flags & TCPF_ACK))
		__builtin_memset(R, 0, sizeof(*R)); /* a new connection on the 5-tuple */
	S->flags = TCP_SYN_SEEN;
	if (s->seg_wscale <= TCP_MAX_WSCALE) {
		S->wscale = s->seg_wscale;
		S->flags |= TCP_WSCALE;
	}
	return 1;
}

/*
 * tcp_pair finds the TCP state of the connection in s->key, in ctrl_embryo
 * when s->embryo, else in ctrl_conns: the sender's in *S, the receiver's in *R.
 */
static __always_inline int tcp_pair(struct scratch *s, struct tcp_track **S, struct tcp_track **R)
{
	__u32 dir = s->dir == DIR_SERVER ? DIR_SERVER : DIR_CLIENT;
	if (s->embryo) {
		struct embryo_val *ev = bpf_map_lookup_elem(&ctrl_embryo, &s->key);
		if (!ev)
			return -1;
		*S = &ev->tcp[dir];
		*R = &ev->tcp[dir ^ 1];
		return 0;
	}
	struct ctrl_val *cv = bpf_map_lookup_elem(&ctrl_conns, &s->key);
	if (!cv)
		return -1;
	*S = &cv->dir[dir].tcp;
	*R = &cv->dir[dir ^ 1].tcp;
	return 0;
}

/*
 * tcp_track checks the segment described in s against the connection's TCP
 * state and, when it is accepted, takes it in. An RST is accepted only at
 * the sender's next sequence number, as the receiver itself does (RFC 5961:
 * an RST elsewhere in the window only draws a challenge ACK). Leaves the
 * sender's end before the segment in s->seg_prev_end.
 */
__noinline int tcp_track(void)
{
	struct scratch *s = get_scratch();
	if (!s)
		return TCP_IGNORE;
	struct tcp_track *S, *R;
	if (tcp_pair(s, &S, &R) < 0)
		return TCP_IGNORE;
	__u8 fl = s->seg_flags;

	int fresh = 0;
	if (fl & TCPF_SYN) {
		fresh = tcp_syn(s, S, R);
		if (fresh < 0) {
			stat_inc(STAT_TCP_OUT_OF_WINDOW);
			return TCP_IGNORE;
		}
	}
	if (!fresh && !tcp_in_window(S, R, s)) {
		stat_inc((fl & TCPF_RST) ? STAT_TCP_RST_IGNORED : STAT_TCP_OUT_OF_WINDOW);
		return TCP_IGNORE;
	}
	if ((fl & TCPF_RST) && (!(S->flags & TCP_SEEN) || s->seg_seq != S->end)) {
		stat_inc(STAT_TCP_RST_IGNORED);
		return TCP_IGNORE;
	}
	s->seg_prev_end = (S->flags & TCP_SEEN) ? S->end : s->seg_seq;
	tcp_update(S, R, s);
	return TCP_ACCEPT;
}

#endif /* FTPGATE_TCP_H */
