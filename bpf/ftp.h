/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The FTP layer of the TC parser: which lines matter (PORT, EPRT, PASV, EPSV
 * from the client; 227 and 229 from the server), what each one announces,
 * and whether a reply answers an outstanding passive request. See docs/design.md,
 * "Expectations", and the Go statement of the same rules in
 * internal/reference.
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

/* four-letter tokens in upper case, as read from the wire (little-endian) */
#define TOKEN(a, b, c, d) ((__u32)(a) | ((__u32)(b) << 8) | ((__u32)(c) << 16) | ((__u32)(d) << 24))
#define TOKEN_LEN 4
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
 * paired tells whether the server's reply answers an outstanding passive
 * request of kind want from the client, and marks that request answered: one
 * reply per request. Only the server direction's half is written.
 */
static __always_inline int paired(struct ctrl_val *cv, __u8 want)
{
	struct dir_state *cli = &cv->dir[DIR_CLIENT];
	struct dir_state *srv = &cv->dir[DIR_SERVER];
	__u32 gen = cli->pasv_gen;
	__u8 kind = cli->pasv_kind;

	if (kind != want || gen == srv->pasv_gen)
		return 0;
	srv->pasv_gen = gen;
	return 1;
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

/*
 * passive_request records a PASV or EPSV as the client's outstanding request.
 * "EPSV ALL" announces EPSV-only use; it asks for no port.
 */
static __always_inline void passive_request(struct scratch *s, struct dir_state *cli, __u8 kind)
{
	if (kind == KIND_EPSV) {
		stat_inc(STAT_CMD_EPSV);
		s->cur = TOKEN_LEN;
		skip_spaces(s);
		if ((line_at(s, s->cur) | ASCII_CASE_BIT) == 'a') {
			cli->pasv_kind = KIND_NONE;
			return;
		}
	} else {
		stat_inc(STAT_CMD_PASV);
	}
	cli->pasv_kind = kind;
	cli->pasv_gen++;
}

/* process_line handles the complete line in s->line[0..line_len) */
__noinline int process_line(void)
{
	struct scratch *s;
	struct ctrl_val *cv = scratch_conn(&s);
	if (!cv)
		return -1;
	__builtin_memset(&s->exp, 0, sizeof(s->exp));
	__u8 kind = line_kind(line_token(s), s->dir);

	if (s->dir == DIR_SERVER) {
		if (kind == KIND_PASV)
			reply_227(s, cv);
		else if (kind == KIND_EPSV)
			reply_229(s, cv);
		return 0;
	}

	struct dir_state *cli = &cv->dir[DIR_CLIENT];
	if (!command_ends(s)) {
		reject(s, STAT_REJECT_MALFORMED, KIND_NONE);
		return 0;
	}
	if (kind == KIND_PASV || kind == KIND_EPSV) {
		passive_request(s, cli, kind);
	} else if (kind == KIND_PORT) {
		cli->pasv_kind = KIND_NONE;
		cmd_port(s);
	} else if (kind == KIND_EPRT) {
		cli->pasv_kind = KIND_NONE;
		cmd_eprt(s);
	}
	return 0;
}

#endif /* FTPGATE_FTP_H */
