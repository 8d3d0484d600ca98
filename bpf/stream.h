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
 * stream_gap handles bytes the parser will never read: the partial line goes,
 * and so does the outstanding passive request, because the lost bytes may
 * have held a new request or the reply that answered it.
 */
static __always_inline void stream_gap(struct dir_state *st, struct dir_state *other, __u32 dir, __u8 mode)
{
	stream_restart(st, mode);
	if (dir == DIR_CLIENT)
		st->pasv_kind = KIND_NONE;
	else
		st->pasv_gen = other->pasv_gen;
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
		/* bytes were missed: resynchronise at the next line start */
		stat_inc(STAT_PARSE_RESYNC);
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

/*
 * parse_step handles what stands at s->pos in the segment: the rest of a
 * skipped line, or one line (completed from the carry buffer if needed).
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
	if (end > MAX_SCAN_BYTES || pos >= end)
		return 1;

	int lf = find_lf();
	if (lf < 0 || lf >= end)
		lf = -1;

	if (st->mode == MODE_SKIP) {
		if (lf < 0) {
			s->pos = end;
			return 1;
		}
		s->pos = lf + 1;
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
	__u32 take = keep > cl ? keep - cl : 0;
	if (take > MAX_LINE_LEN)
		take = MAX_LINE_LEN;
	copy_to_line(s, cl, pos, take);
	s->line_len = keep;

	int rel = line_kind(line_token(s), s->dir) != KIND_NONE;

	if (lf < 0) {
		/* the line goes on in the next segment */
		s->pos = end;
		if (total >= TOKEN_LEN && !rel) {
			stream_restart(st, MODE_SKIP);
			return 1;
		}
		/* a line too short to tell is kept */
		if (total > MAX_LINE_LEN) {
			reject(s, STAT_REJECT_OVERLONG, KIND_NONE);
			stream_restart(st, MODE_SKIP);
			return 1;
		}
		line_to_carry(s, st, keep);
		return 1;
	}

	s->pos = seg_end;
	stream_restart(st, MODE_LINE_START);
	st->lines++;
	if (!rel)
		return 0;
	if (total > MAX_LINE_LEN) {
		reject(s, STAT_REJECT_OVERLONG, KIND_NONE);
		return 0;
	}
	if (cl > 0)
		stat_inc(STAT_LINE_REASSEMBLED);
	process_line();
	return 0;
}

/* scan_bytes returns how many of a segment's len payload bytes the parser reads */
static __always_inline __u32 scan_bytes(__u32 len)
{
	return len > MAX_SCAN_BYTES ? MAX_SCAN_BYTES : len;
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
	s->pos = start;
	s->end = scan_bytes(len);
	int i;
	for (i = 0; i < MAX_LINES; i++) {
		if (parse_step())
			break;
	}
	if ((i == MAX_LINES && s->pos < s->end) || len > MAX_SCAN_BYTES) {
		stat_inc(STAT_SCAN_LIMIT);
		__u8 last = 0;
		bpf_skb_load_bytes(skb, last_off, &last, sizeof(last));
		stream_gap(st, other, s->dir, last == '\n' ? MODE_LINE_START : MODE_SKIP);
	}
}

/*
 * stream_segment takes a segment of len payload bytes from seq into the
 * stream; loaded tells whether its first bytes are in s->pkt.
 */
static __always_inline void stream_segment(struct __sk_buff *skb, struct scratch *s, struct dir_state *st,
					   struct dir_state *other, __u32 dir, __u32 seq, __u32 len,
					   __u32 payload_off, int loaded)
{
	int start = sync_stream(st, other, dir, seq, len);
	if (start < 0)
		return;
	if (len > 0 && !loaded) {
		/* bytes the parser cannot read count as a gap */
		stat_inc(STAT_SCAN_LIMIT);
		stream_gap(st, other, dir, MODE_SKIP);
	} else if (len > 0) {
		/* old bytes of a partial retransmission are passed over */
		stream_parse(skb, s, st, other, start, len, payload_off + len - 1);
	}
	st->next_seq = seq + len;
}

#endif /* FTPGATE_STREAM_H */
