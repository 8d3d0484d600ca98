//go:build ignore
// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * ctread: a test-only program (never in ftpgate's objects) that reads a
 * conntrack entry back with bpf_skb_ct_lookup, as the NAT object sees
 * conntrack: the tests put a tuple in ctread_query, run ctread on any frame
 * with BPF_PROG_TEST_RUN in the namespace whose table they want, and read
 * what the kernel holds for it from ctread_seen. TC, Linux >= 6.1 (the
 * conntrack kfuncs, ct.h).
 *
 * Copyright the ftpgate authors. Dual-licensed: GPL-2.0-only (required to use
 * GPL-only helpers) or BSD-2-Clause, at your option.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "../ct.h"

char __license[] SEC("license") = "Dual BSD/GPL";

/* the tuple to look up, in the direction it was seen (network order) */
struct ct_query {
	__u32 saddr[4];
	__u32 daddr[4];
	__u16 sport;
	__u16 dport;
	__u8 version; /* IP version: 4 or 6 */
	__u8 pad[3];
};

/* one direction of an entry (network order) */
struct ct_tuple {
	__u32 src[4];
	__u32 dst[4];
	__u16 sport;
	__u16 dport;
};

/* what the lookup found */
struct ct_seen {
	__u64 status; /* nf_conn.status: IPS_* bits */
	__u32 mark;
	__s32 error;  /* bpf_ct_opts.error when nothing was found */
	__u8 found;
	__u8 dir;     /* the direction the query matched (bpf_ct_opts.dir) */
	__u8 pad[6];
	struct ct_tuple orig;
	struct ct_tuple reply;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ct_query);
} ctread_query SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ct_seen);
} ctread_seen SEC(".maps");

/* copy_dir copies direction d of ct; constant indexes, for CO-RE */
#define copy_dir(out, ct, d)                                                   \
	do {                                                                   \
		for (int i = 0; i < 4; i++) {                                  \
			(out)->src[i] = (ct)->tuplehash[d].tuple.src.u3.all[i]; \
			(out)->dst[i] = (ct)->tuplehash[d].tuple.dst.u3.all[i]; \
		}                                                              \
		(out)->sport = (ct)->tuplehash[d].tuple.src.u.all;             \
		(out)->dport = (ct)->tuplehash[d].tuple.dst.u.all;             \
	} while (0)

SEC("tc")
int ctread(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct ct_query *q = bpf_map_lookup_elem(&ctread_query, &zero);
	struct ct_seen *out = bpf_map_lookup_elem(&ctread_seen, &zero);
	if (!q || !out)
		return TC_ACT_SHOT;
	__builtin_memset(out, 0, sizeof(*out));
	struct bpf_sock_tuple t = {};
	__u32 tsz;
	if (q->version == 4) {
		t.ipv4.saddr = q->saddr[0];
		t.ipv4.daddr = q->daddr[0];
		t.ipv4.sport = q->sport;
		t.ipv4.dport = q->dport;
		tsz = sizeof(t.ipv4);
	} else {
		__builtin_memcpy(t.ipv6.saddr, q->saddr, sizeof(t.ipv6.saddr));
		__builtin_memcpy(t.ipv6.daddr, q->daddr, sizeof(t.ipv6.daddr));
		t.ipv6.sport = q->sport;
		t.ipv6.dport = q->dport;
		tsz = sizeof(t.ipv6);
	}
	struct bpf_ct_opts o = {.netns_id = CT_NETNS_SELF, .l4proto = IPPROTO_TCP};
	struct nf_conn *ct = bpf_skb_ct_lookup(skb, &t, tsz, &o, CT_OPTS_SIZE);
	if (!ct) {
		out->error = o.error;
		return TC_ACT_OK;
	}
	out->found = 1;
	out->dir = o.dir;
	out->status = ct->status;
	out->mark = ct->mark;
	copy_dir(&out->orig, ct, CT_DIR_ORIGINAL);
	copy_dir(&out->reply, ct, CT_DIR_REPLY);
	bpf_ct_release(ct);
	return TC_ACT_OK;
}
