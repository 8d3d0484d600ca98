/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * #12 NAT, the replacement text of an announcement (FTPGATE_NAT object):
 * the public address and port in the form of PORT, 227 or EPRT (nat_format).
 */
#ifndef FTPGATE_NATTEXT_H
#define FTPGATE_NATTEXT_H

#ifndef FTPGATE_NAT
#error "nattext.h is for the FTPGATE_NAT object only"
#endif

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ftpgate.h"
#include "maps.h"
#include "common.h"

#define NAT_TEXT_MASK (NAT_TEXT_BUF - 1)
#define DEC_DIGITS_MAX 5
#define HEX_GROUP_DIGITS 4
#define HEX_DIGIT_BITS 4
#define HEX_DIGIT_MASK 0xf
#define PORT_HIGH_SHIFT 8
#define PORT_LOW_MASK 0xff

/* nat_put_dec writes v in decimal at s->nat.text[i]; returns the index after it */
static __always_inline __u32 nat_put_dec(struct scratch *s, __u32 i, __u32 v)
{
	__u32 div = 1;
	for (int k = 1; k < DEC_DIGITS_MAX; k++) {
		if (v / div < DECIMAL_BASE)
			break;
		div *= DECIMAL_BASE;
	}
	for (int k = 0; k < DEC_DIGITS_MAX; k++) {
		s->nat.text[i & NAT_TEXT_MASK] = '0' + (v / div) % DECIMAL_BASE;
		i++;
		if (div == 1)
			break;
		div /= DECIMAL_BASE;
	}
	return i;
}

/* nat_put_hex writes a 16-bit group in hex, without leading zeros, at s->nat.text[i] */
static __always_inline __u32 nat_put_hex(struct scratch *s, __u32 i, __u32 v)
{
	int started = 0;
	for (int k = HEX_GROUP_DIGITS - 1; k >= 0; k--) {
		__u32 d = (v >> (k * HEX_DIGIT_BITS)) & HEX_DIGIT_MASK;
		if (!d && !started && k > 0)
			continue;
		started = 1;
		s->nat.text[i & NAT_TEXT_MASK] = d < DECIMAL_BASE ? '0' + d : 'a' + d - HEX_LETTER_BASE;
		i++;
	}
	return i;
}

/*
 * nat_format writes into s->nat.text the replacement text of the form
 * s->nat.fmt_kind for the public address (the segment's source) and port
 * s->nat.port, as the announcement spells them: "h1,h2,h3,h4,p1,p2" for
 * PORT and 227, "addr<d>port" for EPRT (an IPv6 address as eight groups).
 * Returns its length.
 */
__noinline int nat_format(void)
{
	struct scratch *s = get_scratch();
	if (!s)
		return -1;
	__u8 kind = s->nat.fmt_kind;
	__u32 port = s->nat.port;
	__u32 i = 0;
	if (kind == KIND_EPRT && s->nat.p.family == AF_INET6) {
		for (int g = 0; g < IPV6_GROUPS; g++) {
			if (g)
				s->nat.text[i++ & NAT_TEXT_MASK] = ':';
			__u32 w = bpf_ntohl(s->nat.p.src[(g / 2) & (IPV6_WORDS - 1)]);
			i = nat_put_hex(s, i, (g & 1) ? w & IPV6_GROUP_MASK : w >> IPV6_GROUP_BITS);
		}
	} else {
		__u8 sep = kind == KIND_EPRT ? '.' : ',';
		__u32 a = s->nat.p.src[0];
		for (int k = 0; k < IPV4_OCTETS; k++) {
			if (k)
				s->nat.text[i++ & NAT_TEXT_MASK] = sep;
			i = nat_put_dec(s, i, (a >> (k * BITS_PER_BYTE)) & BYTE_MASK);
		}
	}
	if (kind == KIND_EPRT) {
		s->nat.text[i++ & NAT_TEXT_MASK] = s->nat.fmt_delim;
		return nat_put_dec(s, i, port);
	}
	s->nat.text[i++ & NAT_TEXT_MASK] = ',';
	i = nat_put_dec(s, i, port >> PORT_HIGH_SHIFT);
	s->nat.text[i++ & NAT_TEXT_MASK] = ',';
	return nat_put_dec(s, i, port & PORT_LOW_MASK);
}

#endif /* FTPGATE_NATTEXT_H */
