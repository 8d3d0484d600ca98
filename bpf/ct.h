/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Conntrack from BPF (#12, NAT_CT): the kfuncs of net/netfilter/
 * nf_conntrack_bpf.c and the few fields of struct nf_conn ftpgate reads.
 * Only the FTPGATE_NAT build of the object (FtpgateNat in gen.go) includes
 * this: a kernel without the kfuncs (no conntrack BTF, as in Debian's 5.10)
 * refuses that object at load, and the loader falls back to the plain one.
 *
 * The struct definitions are CO-RE: field offsets come from the running
 * kernel's BTF at load, so only the names and kinds below must match.
 */
#ifndef FTPGATE_CT_H
#define FTPGATE_CT_H

#ifndef FTPGATE_NAT
#error "ct.h is for the FTPGATE_NAT object only"
#endif

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* the options every ct kfunc takes; 6.1 accepts only this 12-byte size */
struct bpf_ct_opts {
	__s32 netns_id;
	__s32 error;
	__u8 l4proto;
	__u8 dir;
	__u8 reserved[2];
};
#define CT_OPTS_SIZE 12
/* netns_id: the netns of the skb's device */
#define CT_NETNS_SELF (-1)

union nf_inet_addr {
	__u32 all[4];
	__be32 ip;
	__be32 ip6[4];
} __attribute__((preserve_access_index));

union nf_conntrack_man_proto {
	__be16 all;
} __attribute__((preserve_access_index));

struct nf_conntrack_man {
	union nf_inet_addr u3;
	union nf_conntrack_man_proto u;
	__u16 l3num;
} __attribute__((preserve_access_index));

struct nf_conntrack_tuple {
	struct nf_conntrack_man src;
	struct {
		union nf_inet_addr u3;
		union {
			__be16 all;
		} u;
		__u8 protonum;
		__u8 dir;
	} dst;
} __attribute__((preserve_access_index));

struct nf_conntrack_tuple_hash {
	struct nf_conntrack_tuple tuple;
} __attribute__((preserve_access_index));

struct nf_conn {
	struct nf_conntrack_tuple_hash tuplehash[2];
	unsigned long status;
	__u32 mark;
} __attribute__((preserve_access_index));

/* what bpf_skb_ct_alloc returns until bpf_ct_insert_entry */
struct nf_conn___init {
	struct nf_conn ct;
} __attribute__((preserve_access_index));

enum nf_nat_manip_type {
	NF_NAT_MANIP_SRC = 0,
	NF_NAT_MANIP_DST = 1,
};

/* nf_conn.status: a helper was attached explicitly (an nft `ct helper` rule) */
#define CT_IPS_HELPER (1UL << 13)

/* the conntrack directions, indexes of nf_conn.tuplehash */
enum { CT_DIR_ORIGINAL = 0, CT_DIR_REPLY = 1 };

extern struct nf_conn *bpf_skb_ct_lookup(struct __sk_buff *skb, struct bpf_sock_tuple *tuple, __u32 tuple__sz,
					 struct bpf_ct_opts *opts, __u32 opts__sz) __ksym;
extern void bpf_ct_release(struct nf_conn *ct) __ksym;
#ifndef FTPGATE_NAT_OWN_ONLY
/*
 * the kfuncs that make entries: not in the own object (FTPGATE_NAT_OWN_ONLY,
 * FtpgateNatOwn in gen.go), for kernels that refuse them (natown.h)
 */
extern struct nf_conn___init *bpf_skb_ct_alloc(struct __sk_buff *skb, struct bpf_sock_tuple *tuple, __u32 tuple__sz,
					       struct bpf_ct_opts *opts, __u32 opts__sz) __ksym;
extern struct nf_conn *bpf_ct_insert_entry(struct nf_conn___init *ct) __ksym;
extern void bpf_ct_set_timeout(struct nf_conn___init *ct, __u32 timeout_ms) __ksym;
extern int bpf_ct_set_nat_info(struct nf_conn___init *ct, union nf_inet_addr *addr, int port,
			       enum nf_nat_manip_type manip) __ksym;
#endif

#endif /* FTPGATE_CT_H */
