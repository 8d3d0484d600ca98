/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * TCP checksum of a control segment, so that a forged segment the receiver
 * will drop is neither parsed nor counted as seen. See README.md,
 * "Checksums".
 */
#ifndef FTPGATE_CHECKSUM_H
#define FTPGATE_CHECKSUM_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ftpgate.h"
#include "maps.h"
#include "parsing.h"
#include "common.h"
#include "text.h"

#define CSUM_CHUNK 512 /* the most bpf_csum_diff sums in one call */
#define CSUM_WORD 4    /* bpf_csum_diff sums whole 32-bit words */
#define CSUM_BITS 16
#define CSUM_MASK 0xffff
#define CSUM_GOOD 0xffff /* the folded sum of a segment with a right checksum */
#define TCP_MAX_HDR 60
/* the IPv4 pseudo-header word that holds the protocol above the length */
#define PSEUDO_PROTO_SHIFT 16

/* csum_fold folds a 64-bit one's-complement sum to 16 bits */
static __always_inline __u32 csum_fold(__u64 sum)
{
	sum = (sum & CSUM_MASK) + (sum >> CSUM_BITS);
	sum = (sum & CSUM_MASK) + (sum >> CSUM_BITS);
	return (sum & CSUM_MASK) + (sum >> CSUM_BITS);
}

/* pseudo_sum returns the sum of the TCP pseudo-header of the segment in scratch */
static __always_inline __s64 pseudo_sum(struct scratch *s)
{
	__u32 *src = s->dir == DIR_CLIENT ? s->key.client : s->key.server;
	__u32 *dst = s->dir == DIR_CLIENT ? s->key.server : s->key.client;

	if (s->key.family == AF_INET) {
		s->pseudo[0] = src[0];
		s->pseudo[1] = dst[0];
		s->pseudo[2] = bpf_htonl((IPPROTO_TCP << PSEUDO_PROTO_SHIFT) | s->tcp_len);
		return bpf_csum_diff(0, 0, s->pseudo, PSEUDO_WORDS_V4 * sizeof(__u32), 0);
	}
	copy_addr(&s->pseudo[0], src);
	copy_addr(&s->pseudo[IPV6_WORDS], dst);
	s->pseudo[2 * IPV6_WORDS] = bpf_htonl(s->tcp_len);
	s->pseudo[2 * IPV6_WORDS + 1] = bpf_htonl(IPPROTO_TCP);
	return bpf_csum_diff(0, 0, s->pseudo, PSEUDO_WORDS_V6 * sizeof(__u32), 0);
}

/*
 * buf_sum adds the n bytes of buf, a scratch buffer of SCAN_BUF_SIZE, to
 * sum; negative on error
 */
static __always_inline __s64 buf_sum(__u8 *buf, __u32 n, __s64 sum)
{
	/* the last word is summed with zero padding */
	if (n & (CSUM_WORD - 1)) {
		buf[n & SCAN_MASK] = 0;
		buf[(n + 1) & SCAN_MASK] = 0;
		buf[(n + 2) & SCAN_MASK] = 0;
	}
	for (__u32 off = 0; off < MAX_SCAN_BYTES; off += CSUM_CHUNK) {
		if (off >= n)
			break;
		__u32 sz = n - off;
		if (sz > CSUM_CHUNK)
			sz = CSUM_CHUNK;
		sz = (sz + CSUM_WORD - 1) & ~(CSUM_WORD - 1U);
		sum = bpf_csum_diff(0, 0, (void *)&buf[off & SCAN_MASK], sz & (2 * CSUM_CHUNK - 1), sum);
		if (sum < 0)
			return sum;
	}
	return sum;
}

/* payload_sum adds the n payload bytes in s->pkt to sum; negative on error */
static __always_inline __s64 payload_sum(struct scratch *s, __u32 n, __s64 sum)
{
	return buf_sum(s->pkt, n, sum);
}

/*
 * segment_trusted checks the TCP checksum of the control segment described
 * in scratch (header in hdr, loaded by tcp_header_load; payload in pkt), for
 * every segment that changes state, header-only ones included. A segment the
 * NIC verified is trusted; so is one whose checksum field holds only the
 * pseudo-header sum, as the stack leaves it for checksum offload
 * (CHECKSUM_PARTIAL: sent by a local process or through a veth). BPF cannot
 * tell such a segment from a forged one carrying the same value on a wire
 * whose receiver will verify it: see docs/design.md, "Checksums". A segment
 * longer than the parser reads cannot be checked here and is trusted.
 */
__noinline int segment_trusted(struct __sk_buff *skb)
{
	if (bpf_csum_level(skb, BPF_CSUM_LEVEL_QUERY) >= 0)
		return 1;
	struct scratch *s = get_scratch();
	if (!s)
		return 1;
	__u32 hdr_len = s->hdr_len;
	__u32 n = s->loaded;
	if (hdr_len < sizeof(struct tcphdr) || hdr_len > TCP_MAX_HDR || n > MAX_SCAN_BYTES)
		return 1;
	if (s->tcp_len != hdr_len + n)
		return 1;
	/* the mask restates the bounds checked above in a form every verifier keeps */
	__u32 hl = ((hdr_len - 1) & (sizeof(s->hdr) - 1)) + 1;

	__s64 sum = pseudo_sum(s);
	if (sum < 0)
		return 1;
	if (csum_fold(sum) == ((struct tcphdr *)s->hdr)->check)
		return 1; /* checksum offload: only the pseudo-header is summed */

	sum = bpf_csum_diff(0, 0, (void *)s->hdr, hl & (sizeof(s->hdr) - CSUM_WORD), sum);
	if (sum < 0)
		return 1;
	sum = payload_sum(s, n, sum);
	if (sum < 0)
		return 1;
	return csum_fold(sum) == CSUM_GOOD;
}

#endif /* FTPGATE_CHECKSUM_H */
