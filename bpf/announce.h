/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What a line announces: PORT and EPRT from the client, 227 and 229 from the
 * server (a 227/229 only as the final reply to the PASV/EPSV at the head of
 * the command queue), checked (bounce, low ports, family) and written as an
 * expectation. See docs/design.md, "Expectations".
 */
#ifndef FTPGATE_ANNOUNCE_H
#define FTPGATE_ANNOUNCE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "ftpgate.h"
#include "maps.h"
#include "parsing.h"
#include "common.h"
#include "text.h"
#include "expect.h"
#include "token.h"
#include "conform.h"
#include "natparse.h"


#define PORT_MAX 65535
/* EPRT: delimiter, address family, delimiter */
#define EPRT_HEAD_LEN 3
/* EPRT address families (RFC 2428: the IANA numbers) */
#define EPRT_AF_INET '1'
#define EPRT_AF_INET6 '2'
/* 229: the opening parenthesis and three delimiters */
#define EPSV_HEAD_LEN 4

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
 * active_finish creates the active-mode expectation in s->exp for the
 * address in s->addr: it must be the client's own unless config.loose (no
 * FTP bounce).
 */
static __always_inline void active_finish(struct scratch *s, __u8 kind)
{
	struct config_val *cfg = get_config();
	if (!addr_eq(s->addr, s->key.client) && !(cfg && cfg->loose)) {
		reject(s, STAT_REJECT_BOUNCE, kind);
		return;
	}
	expect_create(kind);
}

/*
 * active checks and creates an active-mode expectation: from the server to
 * the address in s->addr, of the given family, at port (with config.nat at
 * egress, an address not the client's is decided by nat_egress).
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
	if (nat_defer(s, kind, family, port))
		return;
	active_finish(s, kind);
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
	int port = command_args(s) ? nat_six(s) : -1;
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
	NAT_FROM(s);
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
	NAT_TO(s);
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

/*
 * pasv_finish creates the passive-mode expectation in s->exp for a 227 that
 * announced s->addr
 */
static __always_inline void pasv_finish(struct scratch *s)
{
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

/* passive mode: 227 <text> h1,h2,h3,h4,p1,p2 <text> */
static __always_inline void reply_227(struct scratch *s, struct ctrl_val *cv)
{
	/* the numbers follow the first digit after the code (RFC 1123 4.1.2.6) */
	if (!reply_begin(s, cv, STAT_REPLY_227, KIND_PASV, 0))
		return;
	int port = nat_six(s);
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
	if (nat_defer(s, KIND_PASV, AF_INET, port))
		return;
	pasv_finish(s);
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
	if (nat_defer(s, KIND_EPSV, s->key.family, port))
		return;
	expect_create(KIND_EPSV);
}

#endif /* FTPGATE_ANNOUNCE_H */
