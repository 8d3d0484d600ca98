/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Text scanning for the TC parser: finding line ends in a segment and reading
 * the numbers and addresses of a line (decimal, hex groups, dotted IPv4, IPv6
 * text form, the six comma-separated numbers of PORT and 227).
 *
 * The readers are global (non-inlined) BPF functions that keep their cursor
 * in per-CPU scratch memory. The verifier checks a global function once,
 * whatever its caller passes, and treats its return value as unknown; values
 * read back from map memory are unknown too. Together this stops the verifier
 * from exploring every combination of line lengths and number widths, which
 * would exceed its limits on old kernels.
 */
#ifndef FTPGATE_TEXT_H
#define FTPGATE_TEXT_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ftpgate.h"
#include "maps.h"

#define SCAN_MASK (SCAN_BUF_SIZE - 1)
#define LINE_MASK (2 * MAX_LINE_LEN - 1)
#define WORD_BYTES 8
#define BITS_PER_BYTE 8
#define BYTE_MASK 0xff
/* the widest number read: a port; also bounds the hex digits of a group */
#define MAX_DEC_DIGITS 5
#define MAX_HEX_DIGITS 4
#define DECIMAL_BASE 10
#define HEX_BASE 16
#define HEX_LETTER_BASE 10
#define IPV6_GROUPS 8
#define IPV6_WORDS 4
#define IPV6_GROUP_BITS 16
#define IPV6_GROUP_MASK 0xffff
/* the length of "::" */
#define IPV6_GAP_LEN 2
/* a dotted IPv4 tail stands for the last two IPv6 groups */
#define IPV4_TAIL_GROUPS 2
#define IPV4_OCTETS 4
#define OCTET_DIGITS 3
#define OCTET_MAX 255
#define PORT_ARGS 6
/* the bit that tells lower-case from upper-case ASCII letters */
#define ASCII_CASE_BIT 0x20

/* SWAR constants: eight copies of LF, of 0x01 and of the high bit */
#define LF_BYTES 0x0a0a0a0a0a0a0a0aULL
#define ONE_BYTES 0x0101010101010101ULL
#define HIGH_BITS 0x8080808080808080ULL

/* line_at reads byte i of the line being parsed; 0 past its end */
static __always_inline __u8 line_at(struct scratch *s, __u32 i)
{
	if (i >= s->line_len)
		return 0;
	return s->line[i & LINE_MASK];
}

static __always_inline int is_digit(__u8 c)
{
	return c >= '0' && c <= '9';
}

static __always_inline int is_hex_letter(__u8 c)
{
	c |= ASCII_CASE_BIT;
	return c >= 'a' && c <= 'f';
}

/* digit_value returns the value of a decimal (or, with hex, hex) digit, or -1 */
static __always_inline int digit_value(__u8 c, int hex)
{
	if (is_digit(c))
		return c - '0';
	if (!hex)
		return -1;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + HEX_LETTER_BASE;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + HEX_LETTER_BASE;
	return -1;
}

/*
 * find_lf returns the index in pkt of the first LF at or after pos, or -1.
 * It tests eight bytes at a time so that the loop stays short for the verifier.
 */
__noinline int find_lf(void)
{
	struct scratch *s = get_scratch();
	if (!s)
		return -1;
	__u32 pos = s->pos;
	__u32 end = s->end;
	if (end > MAX_SCAN_BYTES)
		end = MAX_SCAN_BYTES;

	for (__u32 w = 0; w < MAX_SCAN_BYTES / WORD_BYTES; w++) {
		__u32 base = pos + w * WORD_BYTES;
		if (base >= end)
			return -1;
		__u64 x = *(__u64 *)&s->pkt[base & SCAN_MASK];
		__u64 y = x ^ LF_BYTES;
		if (((y - ONE_BYTES) & ~y & HIGH_BITS) == 0)
			continue;
#pragma unroll
		for (__u32 b = 0; b < WORD_BYTES; b++) {
			if (((x >> (b * BITS_PER_BYTE)) & BYTE_MASK) == '\n') {
				__u32 idx = base + b;
				return idx < end ? (int)idx : -1;
			}
		}
	}
	return -1;
}

/*
 * text_number reads up to max digits (decimal, or hex with hex) at s->cur;
 * -1 when there are none, and when more follow: a number wider than allowed
 * is malformed, not silently cut.
 */
static __always_inline int text_number(int max, int hex)
{
	struct scratch *s = get_scratch();
	if (!s)
		return -1;
	__u32 base = hex ? HEX_BASE : DECIMAL_BASE;
	__u32 cur = s->cur;
	__u32 v = 0;
	int n = 0;

	for (int i = 0; i < MAX_DEC_DIGITS; i++) {
		if (i >= max)
			break;
		int d = digit_value(line_at(s, cur + i), hex);
		if (d < 0)
			break;
		v = v * base + d;
		n++;
	}
	if (n == 0 || (n == max && digit_value(line_at(s, cur + n), hex) >= 0))
		return -1;
	s->cur = cur + n;
	return v;
}

/* text_dec reads up to max decimal digits at s->cur */
__noinline int text_dec(int max)
{
	return text_number(max, 0);
}

/* text_hex reads one IPv6 group (1-4 hex digits) at s->cur */
__noinline int text_hex(void)
{
	return text_number(MAX_HEX_DIGITS, 1);
}

/*
 * text_octets reads count decimal octets (0-255, at most three digits)
 * separated by sep at s->cur: the first IPV4_OCTETS into s->addr[0] (network
 * order), the rest as a big-endian number, returned; -1 when malformed.
 */
static __always_inline int text_octets(struct scratch *s, __u8 sep, int count)
{
	__u32 a = 0;
	__u32 rest = 0;

	for (int i = 0; i < count; i++) {
		if (i > 0) {
			if (line_at(s, s->cur) != sep)
				return -1;
			s->cur++;
		}
		int v = text_dec(OCTET_DIGITS);
		if (v < 0 || v > OCTET_MAX)
			return -1;
		if (i < IPV4_OCTETS)
			a |= (__u32)v << (i * BITS_PER_BYTE);
		else
			rest = (rest << BITS_PER_BYTE) | v;
	}
	s->addr[0] = a;
	s->addr[1] = s->addr[2] = s->addr[3] = 0;
	return rest;
}

/* text_ipv4 reads a.b.c.d at s->cur into s->addr[0] (network order) */
__noinline int text_ipv4(void)
{
	struct scratch *s = get_scratch();
	if (!s)
		return -1;
	return text_octets(s, '.', IPV4_OCTETS);
}

/*
 * text_six reads "h1,h2,h3,h4,p1,p2" at s->cur: the address into s->addr[0]
 * and the port as the return value; -1 when malformed.
 */
__noinline int text_six(void)
{
	struct scratch *s = get_scratch();
	if (!s)
		return -1;
	return text_octets(s, ',', PORT_ARGS);
}

/* ipv6_expand writes the n groups read, with a "::" at group gap, to s->addr */
static __always_inline void ipv6_expand(struct scratch *s, __u32 n, int gap)
{
	__u32 zeros = IPV6_GROUPS - n;
	__u16 out[IPV6_GROUPS];
#pragma unroll
	for (int i = 0; i < IPV6_GROUPS; i++) {
		__u32 src;
		if (gap < 0 || i < gap)
			src = i;
		else if (i < gap + zeros)
			src = IPV6_GROUPS; /* inside the "::" */
		else
			src = i - zeros;
		out[i] = src < IPV6_GROUPS ? s->group[src & (IPV6_GROUPS - 1)] : 0;
	}
#pragma unroll
	for (int i = 0; i < IPV6_WORDS; i++)
		s->addr[i] = bpf_htonl(((__u32)out[2 * i] << IPV6_GROUP_BITS) | out[2 * i + 1]);
}

/*
 * text_ipv6 reads an IPv6 address in text form (RFC 4291 section 2.2: groups,
 * one "::", an optional dotted IPv4 tail) at s->cur into s->addr. It stops at
 * the first character that cannot continue the address; the caller checks it.
 */
__noinline int text_ipv6(void)
{
	struct scratch *s = get_scratch();
	if (!s)
		return -1;
	__u32 n = 0;  /* groups read */
	int gap = -1; /* group index where "::" stands */

	/* a leading "::" */
	if (line_at(s, s->cur) == ':') {
		if (line_at(s, s->cur + 1) != ':')
			return -1;
		gap = 0;
		s->cur += IPV6_GAP_LEN;
	}

	for (int i = 0; i < IPV6_GROUPS; i++) {
		__u32 start = s->cur;
		int v = text_hex();
		if (v < 0)
			break; /* "::" at the end, or the address ended */
		if (line_at(s, s->cur) == '.') {
			/* dotted IPv4 tail: reread the group as the first octet */
			if (n > IPV6_GROUPS - IPV4_TAIL_GROUPS)
				return -1;
			s->cur = start;
			if (text_ipv4() < 0)
				return -1;
			__u32 v4 = bpf_ntohl(s->addr[0]);
			s->group[n & (IPV6_GROUPS - 1)] = v4 >> IPV6_GROUP_BITS;
			n++;
			s->group[n & (IPV6_GROUPS - 1)] = v4 & IPV6_GROUP_MASK;
			n++;
			break;
		}
		s->group[n & (IPV6_GROUPS - 1)] = v;
		n++;
		if (n >= IPV6_GROUPS)
			break;
		if (line_at(s, s->cur) != ':')
			break;
		if (line_at(s, s->cur + 1) == ':') {
			if (gap >= 0)
				return -1; /* two "::" */
			gap = n;
			s->cur += IPV6_GAP_LEN;
		} else {
			s->cur++;
			/* a single ':' must be followed by a group */
			__u8 c = line_at(s, s->cur);
			if (!is_digit(c) && !is_hex_letter(c))
				return -1;
		}
	}

	if (gap < 0 && n != IPV6_GROUPS)
		return -1;
	if (gap >= 0 && n >= IPV6_GROUPS)
		return -1;
	ipv6_expand(s, n, gap);
	return 0;
}

/* skip_spaces moves s->cur over spaces */
static __always_inline void skip_spaces(struct scratch *s)
{
	for (int i = 0; i < MAX_LINE_LEN; i++) {
		if (line_at(s, s->cur) != ' ')
			break;
		s->cur++;
	}
}

/* at_line_end tells whether only spaces and CR/LF remain from s->cur */
static __always_inline int at_line_end(struct scratch *s)
{
	skip_spaces(s);
	__u8 c = line_at(s, s->cur);
	return c == '\r' || c == '\n' || c == 0;
}

#endif /* FTPGATE_TEXT_H */
