/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The FTP layer of the TC parser: the client's outstanding commands in order
 * and the server's replies that consume them (a multi-line reply is one
 * reply), commands held tentative after a gap, and ftp_line, which takes
 * each line to the conformance rules (conform.h) and to what it announces
 * (announce.h). See docs/design.md, "Expectations" and "Trust model",
 * and the Go statement of the same rules in internal/reference.
 *
 * The __noinline functions are global BPF functions for the verifier's
 * sake: see text.h.
 */
#ifndef FTPGATE_FTP_H
#define FTPGATE_FTP_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "ftpgate.h"
#include "maps.h"
#include "parsing.h"
#include "common.h"
#include "text.h"
#include "expect.h"
#include "tcp.h"
#include "token.h"
#include "conform.h"
#include "announce.h"
#include "tls.h"


#define CMD_QUEUE_MASK (CMD_QUEUE - 1)
/* what ftp_line is told about a line */
#define LINE_HEAD_KNOWN 1 /* its first bytes (up to LINE_HEAD) are in s->line */
#define LINE_END 2        /* it is complete */
#define LINE_FULL 4       /* all of it is in s->line: a relevant line to act on */
#define LINE_CRLF 8       /* it ends with CR LF */


/*
 * queue_push appends a command of kind (PASV, EPSV, or KIND_NONE for any
 * other) to the client's queue. When CMD_QUEUE commands are outstanding the
 * kind is not kept, and pairing stays refused until the server has answered
 * this one.
 */
static __always_inline void queue_push(struct ctrl_val *cv, __u8 kind)
{
	struct ftp_track *cli = &cv->dir[DIR_CLIENT].ftp;
	__u32 q = cli->queued;
	if (q - cv->dir[DIR_SERVER].ftp.answered >= CMD_QUEUE) {
		stat_inc(STAT_CMD_QUEUE_FULL);
		cli->unknown_until = q + 1;
	} else {
		cli->cmd[q & CMD_QUEUE_MASK] = kind;
	}
	cli->queued = q + 1;
}

/*
 * tentative_drop gives up the commands held after a gap: the bytes of the gap
 * hold an unknown number of commands, so the queue is unknown until it drains
 */
static __always_inline void tentative_drop(struct ftp_track *cli)
{
	if (cli->tentative)
		stat_inc(STAT_TENTATIVE_DROPPED);
	cli->tentative = 0;
	cli->filling = 0;
	cli->tent_n = 0;
	cli->lost_gen++;
}

/* tentative_confirm appends the tentative commands, in order, once the gap is filled */
static __always_inline void tentative_confirm(struct ctrl_val *cv)
{
	struct ftp_track *cli = &cv->dir[DIR_CLIENT].ftp;
	stat_inc(STAT_GAP_FILLED);
	for (__u32 i = 0; i < TENT_CMDS; i++) {
		if (i >= cli->tent_n)
			break;
		queue_push(cv, cli->tent[i & (TENT_CMDS - 1)]);
	}
	cli->tentative = 0;
	cli->filling = 0;
	cli->tent_n = 0;
}

/* command_kind returns what a command line asks for: PASV, EPSV, PORT, EPRT or KIND_NONE */
static __always_inline __u8 command_kind(struct scratch *s)
{
	__u8 kind = line_kind(line_token(s), DIR_CLIENT);
	if (kind == KIND_NONE || !command_ends(s))
		return KIND_NONE;
	if (kind == KIND_EPSV) {
		/* "EPSV ALL" announces EPSV-only use; it asks for no port */
		s->cur = TOKEN_LEN;
		skip_spaces(s);
		if ((line_at(s, s->cur) | ASCII_CASE_BIT) == 'a')
			return KIND_NONE;
	}
	return kind;
}

/* ftp_command_line takes a complete client line: into the queue, or held as tentative */
static __always_inline void ftp_command_line(struct ctrl_val *cv, struct dir_state *st, __u8 kind)
{
	__u8 qkind = kind == KIND_PASV || kind == KIND_EPSV || kind == KIND_AUTH ? kind : KIND_NONE;
	if (st->ftp.tentative && !st->ftp.filling) {
		if (st->ftp.tent_n >= TENT_CMDS) {
			tentative_drop(&st->ftp);
			return;
		}
		stat_inc(STAT_CMD_TENTATIVE);
		st->ftp.tent[st->ftp.tent_n & (TENT_CMDS - 1)] = qkind;
		st->ftp.tent_n++;
		return;
	}
	queue_push(cv, qkind);
}

/*
 * ftp_reply takes a complete reply line of the server: a multi-line reply
 * ends only at its code and a space, and its inner lines are text; a final
 * reply (2xx-5xx) consumes the command at the head of the queue and notes its
 * kind in reply_kind when the queue is known. The first final reply after a
 * handshake is the greeting: it answers the connection, not a command.
 * A multi-line reply that answers a command while more are outstanding
 * taints the queue until it drains: a server that echoes attacker-chosen
 * text could have ended it early with an echoed line (vsftpd keeps a CR
 * inside a name and turns a NUL into LF, so "213 End" CRLF can be forged),
 * and what follows it might be forged replies to the pipelined commands.
 * Returns 1 for a reply line that ends a reply.
 */
static __always_inline int ftp_reply(struct scratch *s, struct ctrl_val *cv, struct dir_state *st, int crlf)
{
	struct ftp_track *srv = &st->ftp;
	struct ftp_track *cli = &cv->dir[DIR_CLIENT].ftp;
	srv->reply_kind = KIND_NONE;
	__u32 t = line_token(s);
	int multi = srv->multi;
	if (multi) {
		/*
		 * text inside the reply; a server that ends its lines with CRLF
		 * ends the reply with one too: an echoed name cut by a bare LF
		 * (vsftpd turns a NUL into one) cannot end it early
		 */
		if (t != srv->multi_code || (srv->multi_crlf && !crlf))
			return 0;
		srv->multi = 0;
	} else if (!reply_line(s)) {
		return 0; /* text outside any reply */
	} else if (line_at(s, REPLY_CODE_LEN) == '-') {
		srv->multi = 1;
		srv->multi_crlf = crlf;
		srv->multi_code = (t & TOK_CODE_MASK) | ((__u32)' ' << TOKEN_BYTE3_SHIFT);
		return 0;
	}
	if (line_at(s, 0) == REPLY_PRELIMINARY)
		return 1;
	if (!srv->greeted) {
		srv->greeted = 1;
		return 1;
	}
	__u32 h = srv->answered;
	__u32 q = cli->queued;
	if (h == q) {
		stat_inc(STAT_REPLY_UNSOLICITED);
		srv->lost_seen = cli->lost_gen; /* drained */
		srv->tainted = 0;
		return 1;
	}
	int known = h >= cli->unknown_until && srv->lost_seen == cli->lost_gen && !srv->tainted;
	__u8 kind = cli->cmd[h & CMD_QUEUE_MASK];
	srv->answered = h + 1;
	if (h + 1 == q) {
		srv->lost_seen = cli->lost_gen; /* drained */
		srv->tainted = 0;
	} else if (multi) {
		srv->tainted = 1;
	}
	if (known)
		srv->reply_kind = kind;
	return 1;
}

/*
 * auth_234 takes a final 234 that is not the reply to an AUTH at the head of
 * a known queue (a multi-line reply tainted it, a gap lost commands, or it
 * answers an earlier command): TLS starts when an AUTH is among the
 * commands that were outstanding when it came, from head h. 234 answers
 * only AUTH, and TLS opens only this server's ranges to this client.
 * Otherwise the 234 is counted and ignored.
 */
static __always_inline void auth_234(struct ctrl_val *cv, __u32 h)
{
	struct ftp_track *cli = &cv->dir[DIR_CLIENT].ftp;
	__u32 n = cli->queued - h;
	for (int i = 0; i < CMD_QUEUE; i++) {
		if (i >= n)
			break;
		if (cli->cmd[(h + i) & CMD_QUEUE_MASK] == KIND_AUTH) {
			stat_inc(STAT_TLS_AUTH_UNPAIRED);
			tls_begin(TLS_AUTH);
			return;
		}
	}
	stat_inc(STAT_TLS_234_UNATTRIBUTED);
}

/* process_line acts on a relevant line (PORT, EPRT, 227, 229) in s->line[0..line_len) */
static __always_inline void process_line(struct scratch *s, struct ctrl_val *cv, __u8 kind)
{
	__builtin_memset(&s->exp, 0, sizeof(s->exp));
	if (s->dir == DIR_SERVER) {
		if (kind == KIND_PASV)
			reply_227(s, cv);
		else if (kind == KIND_EPSV)
			reply_229(s, cv);
		return;
	}
	if (kind == KIND_PASV) {
		stat_inc(STAT_CMD_PASV);
		return;
	}
	if (kind == KIND_EPSV) {
		stat_inc(STAT_CMD_EPSV);
		return;
	}
	if (kind != KIND_PORT && kind != KIND_EPRT)
		return;
	if (!ftp_verified(cv)) {
		reject(s, STAT_REJECT_UNVERIFIED, kind);
		return;
	}
	if (kind == KIND_PORT)
		cmd_port(s);
	else
		cmd_eprt(s);
}

/*
 * ftp_line handles what the parser knows of a line (LINE_HEAD_KNOWN,
 * LINE_END, LINE_FULL): the conformance rules on its first bytes, the
 * queue at its end, and the expectation a relevant complete line announces.
 */
__noinline int ftp_line(int what)
{
	struct scratch *s;
	struct ctrl_val *cv = scratch_conn(&s);
	if (!cv)
		return -1;
	struct dir_state *st = dir_of(cv, s->dir);
	if (ftp_not(cv))
		return 0;
	if (what & LINE_HEAD_KNOWN)
		ftp_head(s, cv, st);
	if (!(what & LINE_END) || ftp_not(cv))
		return 0;

	__u8 kind = line_kind(line_token(s), s->dir);
	if (s->dir == DIR_SERVER) {
		__u32 head = st->ftp.answered;
		if (!ftp_reply(s, cv, st, (what & LINE_CRLF) != 0))
			return 0;
		int is234 = (line_token(s) & TOK_CODE_MASK) == (TOK_234 & TOK_CODE_MASK);
		if (st->ftp.reply_kind == KIND_AUTH) {
			/* #13: the reply to AUTH at the head of the queue; after a 234 the bytes are TLS */
			if (is234)
				tls_begin(TLS_AUTH);
			else
				stat_inc(STAT_TLS_AUTH_REFUSED);
			return 0;
		}
		if (is234) {
			auth_234(cv, head);
			return 0;
		}
		if (kind != KIND_NONE && (what & LINE_FULL))
			process_line(s, cv, kind);
		return 0;
	}
	if (kind != KIND_NONE && (what & LINE_FULL) && !command_ends(s)) {
		reject(s, STAT_REJECT_MALFORMED, KIND_NONE);
		kind = KIND_NONE;
	}
	if (kind != KIND_NONE)
		kind = command_kind(s);
	else if ((line_token(s) & TOKEN_UPPER_MASK) == TOK_AUTH && command_ends(s))
		kind = KIND_AUTH; /* #13: queued, so that its reply is known (a 234 starts TLS) */
	int tentative = st->ftp.tentative && !st->ftp.filling;
	ftp_command_line(cv, st, kind);
	if (kind != KIND_NONE && (what & LINE_FULL) && !tentative)
		process_line(s, cv, kind);
	return 0;
}

#endif /* FTPGATE_FTP_H */
