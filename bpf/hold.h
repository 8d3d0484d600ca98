/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * --sync-hold (#15): the control segment that made an expectation is
 * dropped once, so that its retransmission finds the expectation on every
 * gateway of the group (docs/group.md, "Hold").
 */
#ifndef FTPGATE_HOLD_H
#define FTPGATE_HOLD_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "ftpgate.h"
#include "maps.h"
#include "parsing.h"
#include "common.h"
#include "tcp.h"
#include "tls.h"

/*
 * sync_hold tells whether to drop a segment that made an expectation
 * (s->made), with config.sync_hold (#15 --sync-hold): a 227/229 from the
 * server or a PORT/EPRT from the client. The client's data SYN (or the
 * server's) follows it within microseconds and may reach a peer gateway
 * before the expectation is replicated there; dropped, the segment comes
 * back with the sender's retransmission, one RTO (>= 200 ms) later, when
 * the peers have the expectation. The connection's state remembers the
 * segment: the parser's position (next_seq) and the tracker's end are past
 * it, so the retransmission is old bytes (ctrl_retransmit), passed and not
 * parsed again, and makes no second expectation. A segment holding bytes
 * the tracker saw before (one that starts before the sender's end,
 * seg_prev_end) is never dropped: each byte is held at most once. Never
 * with NAT: its sequence shift is not made for a dropped rewritten segment
 * (run refuses --sync-hold with --nat).
 */
static __always_inline int sync_hold(struct scratch *s, __u32 seq)
{
	if (!s->made)
		return 0;
	struct config_val *cfg = get_config();
	if (!cfg || !cfg->sync_hold || cfg->nat)
		return 0;
	if (seq_before(seq, s->seg_prev_end))
		return 0;
	stat_inc(STAT_GROUP_HOLD);
	return 1;
}

#endif /* FTPGATE_HOLD_H */
