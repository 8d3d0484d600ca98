/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Is it FTP at all (docs/design.md, "Trust model"): after a handshake the
 * server greets first and the client's first line is an FTP command; every
 * later client line has a command's form; a picked-up connection is believed
 * once the server sends a reply line; HTTP and TLS are not FTP, for the
 * connection's lifetime.
 */
#ifndef FTPGATE_CONFORM_H
#define FTPGATE_CONFORM_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "ftpgate.h"
#include "maps.h"
#include "common.h"
#include "tcp.h"
#include "token.h"

/* HTTP: request methods (with the space after them) and the response line */
#define TOK_HTTP TOKEN('H', 'T', 'T', 'P')
#define TOK_GET TOKEN('G', 'E', 'T', ' ')
#define TOK_PUT TOKEN('P', 'U', 'T', ' ')
#define TOK_POST TOKEN('P', 'O', 'S', 'T')
#define TOK_HEAD TOKEN('H', 'E', 'A', 'D')
#define TOK_DELE TOKEN('D', 'E', 'L', 'E')
#define TOK_OPTI TOKEN('O', 'P', 'T', 'I')
#define TOK_CONN TOKEN('C', 'O', 'N', 'N')
#define TOK_PATC TOKEN('P', 'A', 'T', 'C')
#define TOK_TRAC TOKEN('T', 'R', 'A', 'C')

/* ftp_not tells whether either direction found the connection is not FTP */
static __always_inline int ftp_not(const struct ctrl_val *cv)
{
	return cv->dir[DIR_CLIENT].ftp.not_ftp || cv->dir[DIR_SERVER].ftp.not_ftp;
}

/* not_ftp marks the connection not FTP for its lifetime, counted once */
static __always_inline void not_ftp(struct ctrl_val *cv, struct dir_state *st)
{
	if (!ftp_not(cv))
		stat_inc(STAT_CTRL_NOT_FTP);
	st->ftp.not_ftp = 1;
}

/*
 * ftp_verified tells whether the lines of the connection may create
 * expectations: the server has sent a well-formed first reply line (the
 * greeting after a handshake) and nothing marked it not FTP
 */
static __always_inline int ftp_verified(const struct ctrl_val *cv)
{
	return cv->dir[DIR_SERVER].ftp.started && !ftp_not(cv);
}

/*
 * ftp_command tells whether the line is an FTP command (enum ftp_cmd): three
 * letters then a space or the line end, or four letters then the same, in
 * any case.
 */
static __always_inline int ftp_command(struct scratch *s)
{
	__u8 c3 = line_at(s, 3);
	__u32 t;
	if (c3 == ' ' || c3 == '\r' || c3 == '\n' || c3 == 0) {
		t = TOKEN(upper(line_at(s, 0)), upper(line_at(s, 1)), upper(line_at(s, 2)), 0);
	} else {
		if (!command_ends(s))
			return 0;
		t = TOKEN(upper(line_at(s, 0)), upper(line_at(s, 1)), upper(line_at(s, 2)), upper(c3));
	}
	switch (t) {
#define FTP_CMD_CASE(name, a, b, c, d) case FTP_CMD_##name:
		FTP_COMMANDS(FTP_CMD_CASE)
#undef FTP_CMD_CASE
		return 1;
	}
	return 0;
}

/*
 * http_line tells whether the line is an HTTP request line (a method and a
 * space; methods are case-sensitive) or, from the server, a status line
 */
static __always_inline int http_line(struct scratch *s, __u32 dir)
{
	__u32 t = line_token(s);
	if (dir == DIR_SERVER)
		return t == TOK_HTTP && line_at(s, TOKEN_LEN) == '/';
	if (t == TOK_GET || t == TOK_PUT)
		return 1;
	if (t == TOK_POST || t == TOK_HEAD)
		return line_at(s, 4) == ' ';
	if (t == TOK_PATC)
		return line_at(s, 4) == 'H' && line_at(s, 5) == ' ';
	if (t == TOK_TRAC)
		return line_at(s, 4) == 'E' && line_at(s, 5) == ' ';
	if (t == TOK_DELE)
		return line_at(s, 4) == 'T' && line_at(s, 5) == 'E' && line_at(s, 6) == ' ';
	if (t == TOK_OPTI)
		return line_at(s, 4) == 'O' && line_at(s, 5) == 'N' && line_at(s, 6) == 'S' && line_at(s, 7) == ' ';
	if (t == TOK_CONN)
		return line_at(s, 4) == 'E' && line_at(s, 5) == 'C' && line_at(s, 6) == 'T' && line_at(s, 7) == ' ';
	return 0;
}

/*
 * reply_line tells whether the line starts a reply: three digits, the first
 * 1-5, then a space or '-' (RFC 959 4.2)
 */
static __always_inline int reply_line(struct scratch *s)
{
	__u8 c0 = line_at(s, 0);
	__u8 c3 = line_at(s, REPLY_CODE_LEN);
	return c0 >= REPLY_PRELIMINARY && c0 <= REPLY_FINAL_MAX && is_digit(line_at(s, 1)) &&
	       is_digit(line_at(s, 2)) && (c3 == ' ' || c3 == '-');
}

static __always_inline int is_letter(__u8 c)
{
	return (c | ASCII_CASE_BIT) >= 'a' && (c | ASCII_CASE_BIT) <= 'z';
}

/*
 * command_form tells whether the line has the form of a command: three or
 * four letters, then a space or the line end. Commands outside enum ftp_cmd
 * have it too (CLNT, SITE's cousins, vendor commands); HTTP header lines
 * ("Host: ...", "User-Agent: ...") and status lines ("HTTP/1.1 ...") do not.
 */
static __always_inline int command_form(struct scratch *s)
{
	if (!is_letter(line_at(s, 0)) || !is_letter(line_at(s, 1)) || !is_letter(line_at(s, 2)))
		return 0;
	__u8 c3 = line_at(s, 3);
	if (c3 == ' ' || c3 == '\r' || c3 == '\n' || c3 == 0)
		return 1;
	return is_letter(c3) && command_ends(s);
}

/*
 * client_line_ok tells whether a client line may stand in an FTP control
 * connection. The first line after a handshake must be an FTP command
 * (enum ftp_cmd); every later one must have a command's form, or be empty,
 * or start with Telnet IAC (IP and Synch before ABOR). An HTTP request's
 * header lines have none of these, so a request whose method is an FTP
 * command, or one that reaches a picked-up connection, is caught before its
 * body.
 */
static __always_inline int client_line_ok(struct scratch *s, int first)
{
	if (first)
		return ftp_command(s);
	__u8 c0 = line_at(s, 0);
	return command_form(s) || c0 == TELNET_IAC || c0 == '\r' || c0 == '\n';
}

/*
 * ftp_head checks a line's first bytes against the conformance rules: after
 * a handshake the server's first line is a greeting (220, 120 or 421); every
 * client line is an FTP command (client_line_ok); on a picked-up connection
 * the server's first reply line verifies it and an HTTP status line marks
 * it not FTP.
 */
static __always_inline void ftp_head(struct scratch *s, struct ctrl_val *cv, struct dir_state *st)
{
	int hs = tcp_handshake_seen(cv);
	if (s->dir == DIR_CLIENT) {
		/* a tentative line may be framed wrongly: its gap decides */
		if (st->ftp.tentative && !st->ftp.filling)
			return;
		if (!client_line_ok(s, hs && !st->ftp.started))
			not_ftp(cv, st);
		else if (hs)
			st->ftp.started = 1;
		return;
	}
	if (st->ftp.started)
		return;
	if (hs) {
		__u32 t = line_token(s) & TOK_CODE_MASK;
		if (reply_line(s) && (t == (TOK_220 & TOK_CODE_MASK) || t == (TOK_120 & TOK_CODE_MASK) ||
				      t == (TOK_421 & TOK_CODE_MASK)))
			st->ftp.started = 1;
		else
			not_ftp(cv, st);
		return;
	}
	if (reply_line(s)) {
		st->ftp.started = 1;
		st->ftp.greeted = 1; /* a pickup has no greeting to wait for */
	} else if (http_line(s, DIR_SERVER)) {
		not_ftp(cv, st);
	}
}

#endif /* FTPGATE_CONFORM_H */
