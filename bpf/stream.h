/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * TCP stream tracking for the TC parser: each direction of a control
 * connection follows the sequence numbers it has parsed, passes over
 * retransmitted bytes, treats missing bytes as a gap (resynchronising at the
 * next line start), and rejoins a line split across segments through its
 * carry buffer. Complete lines go to the FTP layer (ftp.h).
 *
 * The __noinline functions are global BPF functions for the verifier's
 * sake: see text.h.
 */
#ifndef FTPGATE_STREAM_H
#define FTPGATE_STREAM_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "ftpgate.h"
#include "maps.h"
#include "common.h"
#include "text.h"
#include "expect.h"
#include "ftp.h"

#define CARRY_MASK (MAX_LINE_LEN - 1)

/* stream_restart drops a partial line: the stream goes on in mode */
static __always_inline void stream_restart(struct dir_state *st, __u8 mode)
{
	st->mode = mode;
	st->carry_len = 0;
}

/*
 * stream_gap handles bytes the parser will never read: the partial line goes.
 * Client commands were lost, so the queue is unknown until it drains; server
 * replies were lost, so every outstanding command counts as answered. A
 * multi-line reply the server was in goes on: the lost bytes may not have
 * ended it, and reading its echoed text as replies is what a hostile
 * server's over-long listing (a scan limit) would want.
 */
static __always_inline void stream_gap(struct dir_state *st, struct dir_state *other, __u32 dir, __u8 mode)
{
	stream_restart(st, mode);
	if (dir == DIR_CLIENT) {
		tentative_drop(&st->ftp);
		return;
	}
	st->ftp.answered = other->ftp.queued;
	st->ftp.lost_seen = other->ftp.lost_gen;
	st->ftp.tainted = 0;
	st->ftp.greeted = 1;
}

/*
 * tentative_start handles a gap in the client stream at a line start: what
 * follows is parsed as if it started a line, but its commands are held apart
 * until the gap is filled (fill_gap). Returns 0 when the gap cannot be held
 * (inside a line, or a second gap).
 */
static __always_inline int tentative_start(struct dir_state *st, __u32 seq)
{
	if (st->ftp.tentative || st->mode != MODE_LINE_START)
		return 0;
	st->ftp.tentative = 1;
	st->ftp.filling = 0;
	st->ftp.tent_n = 0;
	st->ftp.gap_seq = st->next_seq;
	st->ftp.tent_seq = seq;
	return 1;
}

/*
 * sync_stream lines the segment up with what the direction has parsed so far.
 * Returns the offset into the payload of the first new byte; -1 if none.
 */
static __always_inline int sync_stream(struct dir_state *st, struct dir_state *other, __u32 dir, __u32 seq,
				       __u32 len)
{
	__s32 d = (__s32)(seq - st->next_seq);

	if (d > 0) {
		/* bytes were missed: hold what follows, or resynchronise at the next line start */
		stat_inc(STAT_PARSE_RESYNC);
		if (dir == DIR_CLIENT && len && tentative_start(st, seq))
			return 0;
		stream_gap(st, other, dir, MODE_SKIP);
		return 0;
	}
	if (d < 0) {
		__u32 old = -d;
		if (old >= len) {
			if (len)
				stat_inc(STAT_CTRL_RETRANSMIT);
			return -1;
		}
		return old;
	}
	return len ? 0 : -1;
}

/* copy_to_line appends n bytes of pkt from pos to s->line at offset at */
static __always_inline void copy_to_line(struct scratch *s, __u32 at, __u32 pos, __u32 n)
{
	for (__u32 k = 0; k < MAX_LINE_LEN; k++) {
		if (k >= n)
			break;
		s->line[(at + k) & LINE_MASK] = s->pkt[(pos + k) & SCAN_MASK];
	}
}

/* carry_to_line puts the first cl bytes of the line, held in carry, into s->line */
static __always_inline void carry_to_line(struct scratch *s, struct dir_state *st, __u32 cl)
{
	for (__u32 k = 0; k < MAX_LINE_LEN; k++) {
		if (k >= cl)
			break;
		s->line[k & LINE_MASK] = st->carry[k & CARRY_MASK];
	}
}

/* line_to_carry keeps the first n bytes of s->line for the next segment */
static __always_inline void line_to_carry(struct scratch *s, struct dir_state *st, __u32 n)
{
	for (__u32 k = 0; k < MAX_LINE_LEN; k++) {
		if (k >= n)
			break;
		st->carry[k & CARRY_MASK] = s->line[k & LINE_MASK];
	}
	st->carry_len = n;
	st->mode = MODE_CARRY;
}

/* head_save keeps the first LINE_HEAD bytes of s->line for the end of a skipped line */
static __always_inline void head_save(struct scratch *s, struct dir_state *st)
{
	for (__u32 k = 0; k < LINE_HEAD; k++)
		st->ftp.head[k] = s->line[k];
	st->ftp.head_len = LINE_HEAD;
	st->carry_len = 0;
	st->mode = MODE_SKIP_LINE;
}

/* head_restore puts the kept first bytes of a skipped line back into s->line */
static __always_inline void head_restore(struct scratch *s, struct dir_state *st)
{
	for (__u32 k = 0; k < LINE_HEAD; k++)
		s->line[k] = st->ftp.head[k];
	s->line_len = st->ftp.head_len > LINE_HEAD ? LINE_HEAD : st->ftp.head_len;
}

/*
 * parse_step handles what stands at s->pos in the segment: the rest of a
 * skipped line, or one line (completed from the carry buffer if needed).
 * Every line goes to the FTP layer (ftp_line): its first bytes once known,
 * then its end; only a relevant line is kept whole.
 * Returns 1 when the segment is used up, 0 when there is more to do.
 */
__noinline int parse_step(void)
{
	struct scratch *s;
	struct ctrl_val *cv = scratch_conn(&s);
	if (!cv)
		return 1;
	struct dir_state *st = dir_of(cv, s->dir);

	__u32 pos = s->pos;
	__u32 end = s->end;
	if (end > MAX_SCAN_BYTES || pos >= end || ftp_not(cv) || tls_encrypted(cv))
		return 1;

	int lf = find_lf();
	if (lf < 0 || lf >= end)
		lf = -1;
	/* whether the line ends with CR LF: the CR may end the previous segment */
	int crlf = 0;
	if (lf > 0)
		crlf = s->pkt[(lf - 1) & SCAN_MASK] == '\r';
	else if (lf == 0)
		crlf = st->ftp.cr;
	st->ftp.cr = s->pkt[(end - 1) & SCAN_MASK] == '\r';

	if (st->mode == MODE_SKIP || st->mode == MODE_SKIP_LINE) {
		if (lf < 0) {
			s->pos = end;
			return 1;
		}
		s->pos = lf + 1;
		if (st->mode == MODE_SKIP_LINE) {
			head_restore(s, st);
			st->lines++;
			ftp_line(LINE_END | (crlf ? LINE_CRLF : 0));
		}
		st->mode = MODE_LINE_START;
		return 0;
	}

	/* the line is carry[0..cl) + pkt[pos..seg_end) */
	__u32 cl = st->carry_len;
	if (cl > MAX_LINE_LEN)
		cl = MAX_LINE_LEN;
	__u32 seg_end = lf < 0 ? end : (__u32)lf + 1;
	__u32 seg = seg_end - pos;
	__u32 total = cl + seg;
	__u32 keep = total > MAX_LINE_LEN ? MAX_LINE_LEN : total;

	carry_to_line(s, st, cl);
	nat_line(s, pos, cl);
	__u32 take = keep > cl ? keep - cl : 0;
	if (take > MAX_LINE_LEN)
		take = MAX_LINE_LEN;
	copy_to_line(s, cl, pos, take);
	s->line_len = keep;
	login_line(s, cl);

	int rel = line_kind(line_token(s), s->dir) != KIND_NONE;

	if (lf < 0) {
		/* the line goes on in the next segment */
		s->pos = end;
		if (total < LINE_HEAD) {
			/* a line too short to tell is kept */
			line_to_carry(s, st, keep);
			return 1;
		}
		ftp_line(LINE_HEAD_KNOWN);
		if (rel && total > MAX_LINE_LEN)
			reject(s, STAT_REJECT_OVERLONG, KIND_NONE);
		if (!rel || total > MAX_LINE_LEN) {
			head_save(s, st);
			return 1;
		}
		line_to_carry(s, st, keep);
		return 1;
	}

	s->pos = seg_end;
	stream_restart(st, MODE_LINE_START);
	st->lines++;
	int what = LINE_HEAD_KNOWN | LINE_END | (crlf ? LINE_CRLF : 0);
	if (rel && total > MAX_LINE_LEN)
		reject(s, STAT_REJECT_OVERLONG, KIND_NONE);
	else if (rel)
		what |= LINE_FULL;
	if (rel && cl > 0 && total <= MAX_LINE_LEN)
		stat_inc(STAT_LINE_REASSEMBLED);
	ftp_line(what);
	return 0;
}

/* scan_bytes returns how many of a segment's len payload bytes the parser reads */
static __always_inline __u32 scan_bytes(__u32 len)
{
	return len > MAX_SCAN_BYTES ? MAX_SCAN_BYTES : len;
}

/* parse_lines runs parse_step over s->pkt[start..end); returns 1 when it stopped at MAX_LINES */
static __always_inline int parse_lines(struct scratch *s, __u32 start, __u32 end)
{
	s->pos = start;
	s->end = end;
	int i;
	for (i = 0; i < MAX_LINES; i++) {
		if (parse_step())
			break;
	}
	return i == MAX_LINES && s->pos < s->end;
}

/*
 * stream_parse parses the n payload bytes in s->pkt from start. What it does
 * not reach (lines beyond MAX_LINES, bytes beyond MAX_SCAN_BYTES) is a gap,
 * and the next segment starts a line only if this one, whose last byte is at
 * last_off in the skb, ends one.
 */
static __always_inline void stream_parse(struct __sk_buff *skb, struct scratch *s, struct dir_state *st,
					 struct dir_state *other, __u32 start, __u32 len, __u32 last_off)
{
	if (parse_lines(s, start, scan_bytes(len)) || len > MAX_SCAN_BYTES) {
		stat_inc(STAT_SCAN_LIMIT);
		login_unscanned(s);
		__u8 last = 0;
		bpf_skb_load_bytes(skb, last_off, &last, sizeof(last));
		stream_gap(st, other, s->dir, last == '\n' ? MODE_LINE_START : MODE_SKIP);
	}
}

/*
 * fill_gap parses the bytes of a client segment that fill the gap before
 * tentative commands: they must start at or before the gap, be loaded, and
 * end with a LF at tent_seq or earlier (the parser is at a line start after
 * them). Their commands join the queue; once the gap is closed up to
 * tent_seq, the tentative commands follow them. Anything else that touches
 * the gap gives the tentative commands up.
 */
static __always_inline void fill_gap(struct scratch *s, struct dir_state *st, __u32 seq, __u32 len)
{
	struct ftp_track *f = &st->ftp;
	__s32 from = (__s32)(f->gap_seq - seq);
	__s32 upto = (__s32)(f->tent_seq - seq);
	if (from < 0) {
		/* starts inside the gap: only its end could be told apart */
		if (upto > 0)
			tentative_drop(f);
		return;
	}
	if ((__u32)from >= len)
		return; /* all before the gap: old bytes */
	__u32 stop = (__u32)upto < len ? (__u32)upto : len;
	if (stop > s->loaded || stop == 0 || stop > MAX_SCAN_BYTES || s->pkt[(stop - 1) & SCAN_MASK] != '\n') {
		tentative_drop(f);
		return;
	}
	__u8 mode = st->mode;
	__u8 cr = f->cr;
	__u16 carry = st->carry_len;
	st->mode = MODE_LINE_START;
	st->carry_len = 0;
	f->filling = 1;
	int cut = parse_lines(s, from, stop);
	f->filling = 0;
	st->mode = mode;
	st->carry_len = carry;
	f->cr = cr;
	if (cut || !f->tentative) {
		tentative_drop(f);
		return;
	}
	f->gap_seq = seq + stop;
	if (f->gap_seq == f->tent_seq) {
		struct scratch *sc;
		struct ctrl_val *cv = scratch_conn(&sc);
		if (cv)
			tentative_confirm(cv);
	}
}

/*
 * stream_segment takes a segment of len payload bytes from seq into the
 * stream; loaded tells whether its first bytes are in s->pkt. Nothing of a
 * connection that is not FTP is parsed; after a handshake, client bytes
 * before the server's greeting mark it not FTP.
 */
static __always_inline void stream_segment(struct __sk_buff *skb, struct scratch *s, struct dir_state *st,
					   struct dir_state *other, __u32 dir, __u32 seq, __u32 len,
					   __u32 payload_off, int loaded)
{
	struct ctrl_val *cv = scratch_conn(&s);
	if (cv && tls_encrypted(cv)) {
		/* #13: TLS records, tracked by sequence number only */
		stat_inc(STAT_TLS_SEGMENT);
		goto out;
	}
	if (!cv || ftp_not(cv))
		goto out;
	if (dir == DIR_CLIENT && st->ftp.tentative && loaded > 0)
		fill_gap(s, st, seq, len);
	int start = sync_stream(st, other, dir, seq, len);
	if (start < 0)
		return;
	if (dir == DIR_CLIENT && len > 0 && tcp_handshake_seen(cv) && !other->ftp.started) {
		not_ftp(cv, st);
		goto out;
	}
	if (len > 0 && !loaded) {
		/* bytes the parser cannot read count as a gap */
		stat_inc(STAT_SCAN_LIMIT);
		login_unscanned(s);
		stream_gap(st, other, dir, MODE_SKIP);
	} else if (len > 0) {
		/* old bytes of a partial retransmission are passed over */
		stream_parse(skb, s, st, other, start, len, payload_off + len - 1);
	}
out:
	if (dir == DIR_CLIENT && len > 0 && cv && ftp_not(cv) && !tls_encrypted(cv))
		login_not_ftp(s);
	if ((__s32)(seq + len - st->next_seq) > 0)
		st->next_seq = seq + len;
}

#endif /* FTPGATE_STREAM_H */
