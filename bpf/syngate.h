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
	/*
	 * only forward: a clock moved back (config.clock_offset: replay of a
	 * capture whose times go back) must not age a mark another entry still
	 * needs (review of #14, finding 4); a mark ahead of the clock is recent
	 */
	if (g && (__s64)(now - *g) > 0)
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

/*
 * syn_clock is the ftpgate clock for XDP's SYN path. bpf_ktime_get_ns cost
 * 24 ns per call on this machine's kvm-clock (docs/benchmarks.md, "#14: SYN
 * drop"), more than the rest of a dropped SYN; bpf_jiffies64 costs nothing
 * measurable. So the kernel's clock is read once per jiffy per CPU and kept
 * in the CPU's event_budget; the offset is added at each use. The value is
 * never ahead of now_ns and behind it by less than a jiffy (1-10 ms): a
 * gate age read from it is never too large, a mark written from it is older
 * than the truth by less than SYN_GATE_SLACK_SEC.
 */
static __always_inline __u64 syn_clock(const struct config_val *cfg)
{
	__u32 zero = 0;
	struct event_budget *b = bpf_map_lookup_elem(&event_budget, &zero);
	if (!b)
		return now_ns(cfg);
	__u64 j = bpf_jiffies64();
	if (j != b->clock_jiffies) {
		b->clock_ns = bpf_ktime_get_ns();
		b->clock_jiffies = j;
	}
	__u64 t = b->clock_ns;
	if (cfg)
		t += cfg->clock_offset_ns;
	return t;
}

/*
 * syn_event_clock is the time to give event_allowed for a SYN seen at now
 * (syn_clock): the kernel's clock again when another path of this CPU
 * refilled the event bucket later than now, which the bucket would take for
 * the clock moving back (config.clock_offset) and refill in full.
 */
static __always_inline __u64 syn_event_clock(const struct config_val *cfg, __u64 now)
{
	__u32 zero = 0;
	struct event_budget *b = bpf_map_lookup_elem(&event_budget, &zero);
	if (b && now < b->last_ns)
		return now_ns(cfg);
	return now;
}

#endif /* FTPGATE_SYNGATE_H */
