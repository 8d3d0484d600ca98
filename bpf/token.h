/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The words of the FTP control channel as the parser reads them: a line's
 * first four bytes as one token, the tokens of the commands and replies the
 * parser acts on, reply codes, and what a line asks for (line_kind).
 */
#ifndef FTPGATE_TOKEN_H
#define FTPGATE_TOKEN_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "ftpgate.h"
#include "maps.h"
#include "text.h"

/* four-letter tokens in upper case, as read from the wire (little-endian) */
#define TOKEN(a, b, c, d) FTP_TOKEN(a, b, c, d)
#define TOKEN_LEN 4
/* the fourth byte of a token */
#define TOKEN_BYTE3_SHIFT 24
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
#define TOK_PORT TOKEN('P', 'O', 'R', 'T')
#define TOK_EPRT TOKEN('E', 'P', 'R', 'T')
#define TOK_PASV TOKEN('P', 'A', 'S', 'V')
#define TOK_EPSV TOKEN('E', 'P', 'S', 'V')
#define TOK_227 TOKEN('2', '2', '7', ' ')
#define TOK_229 TOKEN('2', '2', '9', ' ')
/* upper-cases ASCII letters and leaves digits and the space alone */
#define TOKEN_UPPER_MASK 0xdfdfdfdfU

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

#endif /* FTPGATE_TOKEN_H */
