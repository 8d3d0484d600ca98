/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Header parsing shared by the XDP filter and the TC parser: Ethernet (with up
 * to MAX_VLAN_TAGS tags), IPv4 and IPv6 (following up to MAX_IPV6_EXT extension
 * headers), TCP. Every access is bounds-checked against data_end; variable
 * lengths (ihl, doff, extension lengths) are checked separately.
 */
#ifndef FTPGATE_PARSING_H
#define FTPGATE_PARSING_H

#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ftpgate.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

#define ETH_P_8021Q_BE bpf_htons(0x8100)
#define ETH_P_8021AD_BE bpf_htons(0x88A8)
#define IPV4_FRAG_OFFSET_MASK 0x1fff
#define IPV4_MIN_IHL 5
#define TCP_MIN_DOFF 5
#define IPV6_FRAG_OFFSET_MASK 0xfff8
/* the byte of the TCP header that holds the flags, after doff */
#define TCP_FLAGS_OFFSET 13
/* header lengths in units: doff and ihl in words, IPv6 extensions (RFC 8200) */
#define TCP_DOFF_UNIT 4
#define IPV4_IHL_UNIT 4
#define IPV6_EXT_UNIT 8
/* the AH length counts 4-octet words minus two (RFC 4302) */
#define AH_LEN_UNIT 4
#define AH_LEN_BIAS 2
/* beyond any real header chain; keeps the offset provably small for the verifier */
#define MAX_L4_OFFSET 1024

#define TCPF_FIN 0x01
#define TCPF_SYN 0x02
#define TCPF_RST 0x04
#define TCPF_ACK 0x10

enum parse_result {
	PARSE_TCP = 0,      /* a TCP segment with its header in reach */
	PARSE_OTHER = 1,    /* not TCP, or a non-first fragment: nothing to decide */
	PARSE_UNPARSED = 2, /* may be TCP but its flags are out of reach */
};

struct vlan_tag {
	__be16 tci;
	__be16 proto;
};

struct ipv6_ext {
	__u8 nexthdr;
	__u8 len;
};

/* what the programs need to know of one packet */
struct pkt_info {
	__u8 family;
	__u8 flags; /* TCP flags byte */
	__u16 sport;
	__u16 dport;
	__u16 pad;
	__u32 src[4];
	__u32 dst[4];
	__u32 seq;
	__u32 l3_off;      /* offset of the IP header from data */
	__u32 l4_off;      /* offset of the TCP header from data */
	__u32 payload_off; /* offset of the TCP payload from data */
	__u32 payload_len; /* from the IP header's length fields */
	__u32 ip_len;      /* IP header plus payload, for accounting */
};

static __always_inline int parse_eth(void *data, void *data_end, __u32 *off, __be16 *proto)
{
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return -1;
	*proto = eth->h_proto;
	*off = sizeof(*eth);

#pragma unroll
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		if (*proto != ETH_P_8021Q_BE && *proto != ETH_P_8021AD_BE)
			return 0;
		struct vlan_tag *tag = data + *off;
		if ((void *)(tag + 1) > data_end)
			return -1;
		*proto = tag->proto;
		*off += sizeof(*tag);
	}
	/* more tags than we follow: the payload may be anything, TCP included */
	if (*proto == ETH_P_8021Q_BE || *proto == ETH_P_8021AD_BE)
		return -1;
	return 0;
}

static __always_inline int parse_tcp(void *data, void *data_end, __u32 off, struct pkt_info *p)
{
	struct tcphdr *tcp = data + off;

	/* a TCP header shorter than its fixed part hides its flags */
	if ((void *)(tcp + 1) > data_end)
		return PARSE_UNPARSED;
	/* keep clang from re-deriving tcp after the check, which the verifier rejects */
	barrier_var(tcp);
	if (tcp->doff < TCP_MIN_DOFF)
		return PARSE_UNPARSED;
	p->sport = bpf_ntohs(tcp->source);
	p->dport = bpf_ntohs(tcp->dest);
	p->seq = bpf_ntohl(tcp->seq);
	p->flags = ((__u8 *)tcp)[TCP_FLAGS_OFFSET];
	p->l4_off = off;
	p->payload_off = off + tcp->doff * TCP_DOFF_UNIT;
	return PARSE_TCP;
}

static __always_inline int parse_ipv4(void *data, void *data_end, __u32 off, struct pkt_info *p)
{
	struct iphdr *ip = data + off;

	if ((void *)(ip + 1) > data_end)
		return PARSE_UNPARSED;
	if (ip->ihl < IPV4_MIN_IHL)
		return PARSE_UNPARSED;
	if (ip->protocol != IPPROTO_TCP)
		return PARSE_OTHER;
	/* non-first fragments carry no TCP header: nothing to decide on */
	if (bpf_ntohs(ip->frag_off) & IPV4_FRAG_OFFSET_MASK)
		return PARSE_OTHER;

	p->family = AF_INET;
	p->src[0] = ip->saddr;
	p->dst[0] = ip->daddr;
	p->src[1] = p->src[2] = p->src[3] = 0;
	p->dst[1] = p->dst[2] = p->dst[3] = 0;
	p->l3_off = off;

	__u32 ihl = ip->ihl * IPV4_IHL_UNIT;
	__u32 tot = bpf_ntohs(ip->tot_len);
	int ret = parse_tcp(data, data_end, off + ihl, p);
	if (ret != PARSE_TCP)
		return ret;
	__u32 hdrs = p->payload_off - off;
	p->ip_len = tot;
	p->payload_len = tot > hdrs ? tot - hdrs : 0;
	return PARSE_TCP;
}

static __always_inline int ipv6_is_ext(__u8 nh)
{
	return nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_FRAGMENT ||
	       nh == IPPROTO_DSTOPTS || nh == IPPROTO_AH || nh == IPPROTO_MH;
}

static __always_inline int parse_ipv6(void *data, void *data_end, __u32 off, struct pkt_info *p)
{
	struct ipv6hdr *ip6 = data + off;

	if ((void *)(ip6 + 1) > data_end)
		return PARSE_UNPARSED;

	__u8 nh = ip6->nexthdr;
	__u32 hoff = off + sizeof(*ip6);
	__u32 ext_len = 0;

#pragma unroll
	for (int i = 0; i < MAX_IPV6_EXT; i++) {
		if (!ipv6_is_ext(nh))
			break;
		struct ipv6_ext *ext = data + hoff;
		if ((void *)(ext + 1) > data_end)
			return PARSE_UNPARSED;
		__u32 len;
		if (nh == IPPROTO_FRAGMENT) {
			struct frag_hdr {
				__u8 nexthdr;
				__u8 reserved;
				__be16 frag_off;
				__be32 id;
			} *fh = (void *)ext;
			if ((void *)(fh + 1) > data_end)
				return PARSE_UNPARSED;
			if (bpf_ntohs(fh->frag_off) & IPV6_FRAG_OFFSET_MASK)
				return PARSE_OTHER;
			len = sizeof(*fh);
		} else if (nh == IPPROTO_AH) {
			len = (ext->len + AH_LEN_BIAS) * AH_LEN_UNIT;
		} else {
			len = (ext->len + 1) * IPV6_EXT_UNIT;
		}
		nh = ext->nexthdr;
		hoff += len;
		ext_len += len;
	}
	if (ipv6_is_ext(nh))
		return PARSE_UNPARSED; /* deeper than we follow: may hide TCP */
	if (nh != IPPROTO_TCP)
		return PARSE_OTHER;

	p->family = AF_INET6;
	__builtin_memcpy(p->src, &ip6->saddr, sizeof(ip6->saddr));
	__builtin_memcpy(p->dst, &ip6->daddr, sizeof(ip6->daddr));
	p->l3_off = off;

	if (hoff > MAX_L4_OFFSET)
		return PARSE_UNPARSED;
	int ret = parse_tcp(data, data_end, hoff, p);
	if (ret != PARSE_TCP)
		return ret;
	__u32 plen = bpf_ntohs(ip6->payload_len);
	__u32 hdrs = p->payload_off - hoff + ext_len;
	p->ip_len = plen + sizeof(*ip6);
	p->payload_len = plen > hdrs ? plen - hdrs : 0;
	return PARSE_TCP;
}

/* parse_packet fills p for a TCP packet; see enum parse_result */
static __always_inline int parse_packet(void *data, void *data_end, struct pkt_info *p)
{
	__u32 off = 0;
	__be16 proto;

	if (parse_eth(data, data_end, &off, &proto) < 0) {
		/* a frame too short for Ethernet, or too many tags */
		return PARSE_UNPARSED;
	}
	if (proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(data, data_end, off, p);
	if (proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(data, data_end, off, p);
	return PARSE_OTHER;
}

#endif /* FTPGATE_PARSING_H */
