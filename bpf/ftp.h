/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The FTP layer of the TC parser: whether the connection is FTP at all (the
 * server greets first, the client's first line is an FTP command, no HTTP),
 * the client's outstanding commands in order and the server's replies that
 * consume them (a multi-line reply is one reply), which lines matter (PORT,
 * EPRT, PASV, EPSV from the client; 227 and 229 from the server) and what
 * each one announces. See docs/design.md, "Expectations" and "Trust model",
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

/* four-letter tokens in upper case, as read from the wire (little-endian) */
#define TOKEN(a, b, c, d) FTP_TOKEN(a, b, c, d)
#define TOKEN_LEN 4
/* the fourth byte of a token */
#define TOKEN_BYTE3_SHIFT 24
#define CMD_QUEUE_MASK (CMD_QUEUE - 1)
/* reply codes: the first digit tells preliminary (1), final (2-5) */
#define REPLY_CODE_LEN 3
#define REPLY_PRELIMINARY '1'
#define REPLY_FINAL_MAX '5'
/* the greetings of RFC 959 4.2: ready, ready in n minutes, not available */
#define TOK_220 TOKEN('2', '2', '0', ' ')
#define TOK_120 TOKEN('1', '2', '0', ' ')
#define TOK_421 TOKEN('4', '2', '1', ' ')
/* a reply line's token with its fourth byte (space or '-') taken off */
#define TOK_CODE_MASK 0x00ffffffU
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
/* what ftp_line is told about a line */
#define LINE_HEAD_KNOWN 1 /* its first bytes (up to LINE_HEAD) are in s->line */
#define LINE_END 2        /* it is complete */
#define LINE_FULL 4       /* all of it is in s->line: a relevant line to act on */
#define LINE_CRLF 8       /* it ends with CR LF */
#define TOK_PORT TOKEN('P', 'O', 'R', 'T')
#define TOK_EPRT TOKEN('E', 'P', 'R', 'T')
#define TOK_PASV TOKEN('P', 'A', 'S', 'V')
#define TOK_EPSV TOKEN('E', 'P', 'S', 'V')
#define TOK_227 TOKEN('2', '2', '7', ' ')
#define TOK_229 TOKEN('2', '2', '9', ' ')
/* upper-cases ASCII letters and leaves digits and the space alone */
#define TOKEN_UPPER_MASK 0xdfdfdfdfU

#define PORT_MAX 65535
/* EPRT: delimiter, address family, delimiter */
#define EPRT_HEAD_LEN 3
/* EPRT address families (RFC 2428: the IANA numbers) */
#define EPRT_AF_INET '1'
#define EPRT_AF_INET6 '2'
/* 229: the opening parenthesis and three delimiters */
#define EPSV_HEAD_LEN 4

/* line_token returns the first four bytes of the line */
static __always_inline __u32 line_token(struct scratch *s)
{
	return TOKEN(line_at(s, 0), line_at(s, 1), line_at(s, 2), line_at(s, 3));
}

/*
 * line_kind returns what a line starting with token t asks for in direction
 * dir (enum kind), or KIND_NONE for a line the parser does not read. Commands
 * are case-insensitive; reply codes are digits and a space.
 */
static __always_inline __u8 line_kind(__u32 t, __u32 dir)
{
	if (dir == DIR_SERVER) {
		if (t == TOK_227)
			return KIND_PASV;
		if (t == TOK_229)
			return KIND_EPSV;
		return KIND_NONE;
	}
	t &= TOKEN_UPPER_MASK;
	if (t == TOK_PORT)
		return KIND_PORT;
	if (t == TOK_EPRT)
		return KIND_EPRT;
	if (t == TOK_PASV)
		return KIND_PASV;
	if (t == TOK_EPSV)
		return KIND_EPSV;
	return KIND_NONE;
}

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

/* delim_ok tells whether d may delimit the fields of EPRT or 229 (RFC 2428) */
static __always_inline int delim_ok(__u8 d)
{
	return d >= EPRT_DELIM_MIN && d <= EPRT_DELIM_MAX && !is_digit(d);
}

/*
 * data_port_ok applies the low-port rule to a parsed port; port 0 and ports
 * above 65535 are malformed.
 */
static __always_inline int data_port_ok(struct scratch *s, int port, __u8 kind)
{
	if (port <= 0 || port > PORT_MAX) {
		reject(s, STAT_REJECT_MALFORMED, kind);
		return 0;
	}
	s->exp.dport = port;
	struct config_val *cfg = get_config();
	if (port < LOW_PORT_LIMIT && !(cfg && cfg->allow_low_data_ports)) {
		reject(s, STAT_REJECT_LOW_PORT, kind);
		return 0;
	}
	return 1;
}

/*
 * active checks and creates an active-mode expectation: from the server to
 * the address in s->addr, of the given family, at port. The address must be
 * the client's own unless config.loose (no FTP bounce).
 */
static __always_inline void active(struct scratch *s, __u8 family, int port, __u8 kind)
{
	s->exp.family = s->key.family;
	copy_addr(s->exp.src, s->key.server);
	copy_addr(s->exp.dst, s->addr);
	if (family != s->key.family) {
		reject(s, STAT_REJECT_FAMILY, kind);
		return;
	}
	if (!data_port_ok(s, port, kind))
		return;
	struct config_val *cfg = get_config();
	if (!addr_eq(s->addr, s->key.client) && !(cfg && cfg->loose)) {
		reject(s, STAT_REJECT_BOUNCE, kind);
		return;
	}
	expect_create(kind);
}

/* command_args moves the cursor to the arguments; 0 without the space before them */
static __always_inline int command_args(struct scratch *s)
{
	s->cur = TOKEN_LEN;
	if (line_at(s, s->cur) != ' ')
		return 0;
	skip_spaces(s);
	return 1;
}

/* active mode: PORT h1,h2,h3,h4,p1,p2 */
static __always_inline void cmd_port(struct scratch *s)
{
	stat_inc(STAT_CMD_PORT);
	int port = command_args(s) ? text_six() : -1;
	if (port < 0 || !at_line_end(s)) {
		reject(s, STAT_REJECT_MALFORMED, KIND_PORT);
		return;
	}
	active(s, AF_INET, port, KIND_PORT);
}

/*
 * eprt_address reads <d>af<d>addr<d>port<d> and the line end at s->cur (RFC
 * 2428): the address into s->addr, its family into *family, the port as the
 * return value; -1 when malformed.
 */
static __always_inline int eprt_address(struct scratch *s, __u8 *family)
{
	__u8 d = line_at(s, s->cur);
	__u8 af = line_at(s, s->cur + 1);
	if (!delim_ok(d) || line_at(s, s->cur + 2) != d)
		return -1;
	s->cur += EPRT_HEAD_LEN;
	int err;
	if (af == EPRT_AF_INET && d != '.') {
		*family = AF_INET;
		err = text_ipv4();
	} else if (af == EPRT_AF_INET6 && d != ':' && !is_hex_letter(d)) {
		/* a delimiter that can stand inside the address is ambiguous */
		*family = AF_INET6;
		err = text_ipv6();
	} else {
		return -1;
	}
	if (err < 0 || line_at(s, s->cur) != d)
		return -1;
	s->cur++;
	int port = text_dec(MAX_DEC_DIGITS);
	if (port < 0 || line_at(s, s->cur) != d)
		return -1;
	s->cur++;
	if (!at_line_end(s))
		return -1;
	return port;
}

/* active mode: EPRT <d>af<d>addr<d>port<d> */
static __always_inline void cmd_eprt(struct scratch *s)
{
	stat_inc(STAT_CMD_EPRT);
	__u8 family = 0;
	int port = command_args(s) ? eprt_address(s, &family) : -1;
	if (port < 0) {
		reject(s, STAT_REJECT_MALFORMED, KIND_EPRT);
		return;
	}
	active(s, family, port, KIND_EPRT);
}

/*
 * paired tells whether the reply being read is the final reply to a
 * passive request of kind want at the head of the queue (ftp_reply found it)
 */
static __always_inline int paired(struct ctrl_val *cv, __u8 want)
{
	return cv->dir[DIR_SERVER].ftp.reply_kind == want;
}

/*
 * reply_begin counts a passive-mode reply, prepares its expectation (client to
 * server), checks that it answers an outstanding request of kind, and moves
 * the cursor to the first digit (until 0) or to the first until character.
 * Returns 0 when the reply is rejected.
 */
static __always_inline int reply_begin(struct scratch *s, struct ctrl_val *cv, __u32 counter, __u8 kind, __u8 until)
{
	stat_inc(counter);
	s->exp.family = s->key.family;
	copy_addr(s->exp.src, s->key.client);
	copy_addr(s->exp.dst, s->key.server);
	s->cur = TOKEN_LEN;
	for (int i = 0; i < MAX_LINE_LEN; i++) {
		__u8 c = line_at(s, s->cur);
		if (c == 0 || (until ? c == until : is_digit(c)))
			break;
		s->cur++;
	}
	if (!ftp_verified(cv)) {
		reject(s, STAT_REJECT_UNVERIFIED, kind);
		return 0;
	}
	if (!paired(cv, kind)) {
		/*
		 * An unpaired 227 without a single digit after its code carries
		 * no address at all: not a passive reply (pure-ftpd answers QUIT
		 * with "227 Logout."), so not reported as a rejection.
		 */
		if (kind == KIND_PASV && !is_digit(line_at(s, s->cur)))
			stat_inc(STAT_REPLY_227_NO_ADDRESS);
		else
			reject(s, STAT_REJECT_UNPAIRED, kind);
		return 0;
	}
	return 1;
}

/* passive mode: 227 <text> h1,h2,h3,h4,p1,p2 <text> */
static __always_inline void reply_227(struct scratch *s, struct ctrl_val *cv)
{
	/* the numbers follow the first digit after the code (RFC 1123 4.1.2.6) */
	if (!reply_begin(s, cv, STAT_REPLY_227, KIND_PASV, 0))
		return;
	int port = text_six();
	if (port < 0) {
		reject(s, STAT_REJECT_MALFORMED, KIND_PASV);
		return;
	}
	if (s->key.family != AF_INET) {
		reject(s, STAT_REJECT_FAMILY, KIND_PASV);
		return;
	}
	if (!data_port_ok(s, port, KIND_PASV))
		return;
	if (!addr_eq(s->addr, s->key.server)) {
		/*
		 * A server behind NAT announces its private address; clients
		 * connect to the control connection's address instead.
		 */
		stat_inc(STAT_REPLY_ADDR_MISMATCH);
		struct config_val *cfg = get_config();
		if (cfg && cfg->loose)
			copy_addr(s->exp.dst, s->addr);
	}
	expect_create(KIND_PASV);
}

/* epsv_port reads (<d><d><d>port<d>) at s->cur; -1 when malformed */
static __always_inline int epsv_port(struct scratch *s)
{
	if (line_at(s, s->cur) != '(')
		return -1;
	__u8 d = line_at(s, s->cur + 1);
	if (!delim_ok(d) || line_at(s, s->cur + 2) != d || line_at(s, s->cur + 3) != d)
		return -1;
	s->cur += EPSV_HEAD_LEN;
	int port = text_dec(MAX_DEC_DIGITS);
	if (port < 0 || line_at(s, s->cur) != d || line_at(s, s->cur + 1) != ')')
		return -1;
	return port;
}

/* extended passive mode: 229 <text> (<d><d><d>port<d>) */
static __always_inline void reply_229(struct scratch *s, struct ctrl_val *cv)
{
	if (!reply_begin(s, cv, STAT_REPLY_229, KIND_EPSV, '('))
		return;
	int port = epsv_port(s);
	if (port < 0) {
		reject(s, STAT_REJECT_MALFORMED, KIND_EPSV);
		return;
	}
	if (!data_port_ok(s, port, KIND_EPSV))
		return;
	expect_create(KIND_EPSV);
}

/* a command is exactly its four letters followed by a space or the line end */
static __always_inline int command_ends(struct scratch *s)
{
	__u8 c = line_at(s, TOKEN_LEN);
	return c == ' ' || c == '\r' || c == '\n' || c == 0;
}

/* upper upper-cases an ASCII letter and leaves any other byte alone */
static __always_inline __u32 upper(__u8 c)
{
	return c >= 'a' && c <= 'z' ? c - ('a' - 'A') : c;
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
	__u8 qkind = kind == KIND_PASV || kind == KIND_EPSV ? kind : KIND_NONE;
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
		if (ftp_reply(s, cv, st, (what & LINE_CRLF) != 0) && kind != KIND_NONE && (what & LINE_FULL))
			process_line(s, cv, kind);
		return 0;
	}
	if (kind != KIND_NONE && (what & LINE_FULL) && !command_ends(s)) {
		reject(s, STAT_REJECT_MALFORMED, KIND_NONE);
		kind = KIND_NONE;
	}
	if (kind != KIND_NONE)
		kind = command_kind(s);
	int tentative = st->ftp.tentative && !st->ftp.filling;
	ftp_command_line(cv, st, kind);
	if (kind != KIND_NONE && (what & LINE_FULL) && !tentative)
		process_line(s, cv, kind);
	return 0;
}

#endif /* FTPGATE_FTP_H */
