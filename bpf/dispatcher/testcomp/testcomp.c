//go:build ignore
// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * drop_udp9: a stand-in for another operator's XDP program in the tests of
 * ftpgate's libxdp mode (loader/libxdp_test.go): it drops IPv4 UDP to port 9
 * (discard) and passes everything else, and joins a dispatcher by the same
 * protocol as ftpgate. XDP, Linux >= 5.10.
 *
 * Copyright the ftpgate authors. Dual-licensed: GPL-2.0-only or
 * BSD-2-Clause, at your option.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define DISCARD_PORT 9

struct udp_ports {
	__be16 source;
	__be16 dest;
};

/* how many packets it dropped: the tests read it */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} drops SEC(".maps");

SEC("xdp")
int drop_udp9(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udp_ports *udp;
	__u32 key = 0;
	__u64 *n;

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->protocol != IPPROTO_UDP)
		return XDP_PASS;
	udp = (void *)ip + ip->ihl * 4;
	if ((void *)(udp + 1) > end || udp->dest != bpf_htons(DISCARD_PORT))
		return XDP_PASS;
	n = bpf_map_lookup_elem(&drops, &key);
	if (n)
		__sync_fetch_and_add(n, 1);
	return XDP_DROP;
}

char __license[] SEC("license") = "Dual BSD/GPL";
