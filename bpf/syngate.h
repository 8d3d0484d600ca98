/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * #14 the SYN gate: a check before any hash look-up that may say "maybe"
 * but never "no" wrongly. Every writer of something a SYN to port P could
 * need marks gate[P] with the ftpgate clock first, then writes the entry:
 * TC creating an expectation (expect.h), XDP admitting a data flow through
 * an expectation or a TLS range and passing a retransmitted SYN of one
 * (admit.h, tls.h), and the Go side's maps.AddExpectation. A SYN to a port
 * whose mark is older than config.syn_gate_horizon_s has no live
 * expectation and no flow whose SYN it could repeat: XDP skips data_flows
 * and expectations. Why that is exact under concurrency, expiry,
 * consumption, retransmission and restart: docs/design.md, "The SYN gate".
 */
#ifndef FTPGATE_SYNGATE_H
#define FTPGATE_SYNGATE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "ftpgate.h"
#include "maps.h"
#include "common.h"

/*
 * syn_gate_mark records that an entry a SYN to port may need is about to be
 * written, at now (the writer's clock, read just before). Racing writers
 * store the same form; the later store wins, older by at most the other
 * program's time between its clock read and its store (SYN_GATE_SLACK_SEC).
 */
static __always_inline void syn_gate_mark(__u16 port, __u64 now)
{
	__u32 k = port;
	__u64 *g = bpf_map_lookup_elem(&syn_gate, &k);
	if (g)
		*g = now;
}

/*
 * syn_gate_cold tells whether a SYN to port, at now, can skip the look-ups:
 * the gate is on and the port's mark is older than the horizon. A mark
 * ahead of the clock (config.clock_offset moved back) is recent.
 */
static __always_inline int syn_gate_cold(const struct config_val *cfg, __u16 port, __u64 now)
{
	if (!cfg || !cfg->syn_gate_horizon_s)
		return 0;
	__u32 k = port;
	__u64 *g = bpf_map_lookup_elem(&syn_gate, &k);
	if (!g)
		return 0;
	__s64 age = (__s64)(now - *g);
	return age > (__s64)cfg->syn_gate_horizon_s * (__s64)NSEC_PER_SEC;
}

#endif /* FTPGATE_SYNGATE_H */
