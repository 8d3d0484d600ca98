/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The admission filter at TC ingress (--admit-hook tc): admit() on an skb,
 * for interfaces whose XDP hook another program holds. It runs first at
 * ingress, before the control parser (ftpgate_tc_ingress), with the same
 * counters and events as at XDP. See docs/design.md, "Admission hook".
 */
#ifndef FTPGATE_ADMIT_TC_H
#define FTPGATE_ADMIT_TC_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "admit.h"

/*
 * The bytes admit() reads at most: headers up to MAX_L4_OFFSET, then the
 * fixed TCP header.
 */
#define ADMIT_PULL_LEN (MAX_L4_OFFSET + sizeof(struct tcphdr))

/*
 * admit_skb runs admit() on the linear part of an skb. A driver may leave
 * headers in paged fragments, beyond data_end: only when the headers do not
 * parse and the skb has more bytes than its linear part are the first
 * ADMIT_PULL_LEN (or all) pulled in, so the common packet pays one parse
 * more and no copy. Returns TC_ACT_SHOT where XDP drops, otherwise
 * TC_ACT_UNSPEC (TCX_NEXT): the next program, the parser, still runs.
 */
static __always_inline int admit_skb(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct pkt_info p;

	__u32 linear = data_end - data;
	if (linear < skb->len && parse_packet(data, data_end, &p) == PARSE_UNPARSED) {
		__u32 want = skb->len < ADMIT_PULL_LEN ? skb->len : ADMIT_PULL_LEN;
		/* a failed pull leaves the skb as it was: admit() counts it unparsed */
		bpf_skb_pull_data(skb, want);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
	}
	return admit(data, data_end) == XDP_DROP ? TC_ACT_SHOT : TC_ACT_UNSPEC;
}

#endif /* FTPGATE_ADMIT_TC_H */
