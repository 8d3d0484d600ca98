/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * XDP admission filter: decides, for every inbound packet of a guarded
 * interface, PASS or DROP before the stack sees it. Only new TCP connection
 * attempts (SYN without ACK) are ever dropped; see docs/design.md, "Admission policy".
 */
#ifndef FTPGATE_ADMIT_H
#define FTPGATE_ADMIT_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "ftpgate.h"
#include "maps.h"
#include "parsing.h"
#include "common.h"
#include "tls.h"
#include "syngate.h"

/*
 * would_drop returns the verdict for a packet the policy rejects. In dry-run
 * mode it passes; an unexpected SYN is then counted as syn_dryrun_would_drop
 * and any other reason under its own name.
 */
static __always_inline int would_drop(const struct config_val *cfg, __u32 reason)
{
	if (cfg && cfg->dry_run) {
		stat_inc(reason == STAT_SYN_DROP_UNEXPECTED ? STAT_SYN_DRYRUN_WOULD_DROP : reason);
		return XDP_PASS;
	}
	stat_inc(reason);
	return XDP_DROP;
}

/*
 * syn_drop drops (or in dry-run passes) a SYN the policy refuses for reason
 * and reports it as an event of type, within the rate limit, with the
 * reason it was counted under and its 5-tuple. Only this path pays for the
 * report. now is the SYN's time from syn_clock, read once (syngate.h): it
 * decides the rate limit; an event that passes it carries the kernel's
 * clock, read again, because syn_clock may be up to a jiffy behind and
 * monitor takes an event older than its own start for one left in the ring.
 */
static __always_inline int syn_drop(const struct config_val *cfg, const struct pkt_info *p, __u32 reason,
				    __u32 type, __u64 now)
{
	int verdict = would_drop(cfg, reason);
	now = syn_event_clock(cfg, now);
	if (!event_allowed(now))
		return verdict;
	struct expect_key k = {};
	k.family = p->family;
	k.dport = p->dport;
	copy_addr(k.src, p->src);
	copy_addr(k.dst, p->dst);
	if (reason == STAT_SYN_DROP_UNEXPECTED && verdict == XDP_PASS)
		reason = STAT_SYN_DRYRUN_WOULD_DROP;
	emit_event_port(type, reason, KIND_NONE, &k, 0, p->sport, now_ns(cfg));
	return verdict;
}

/*
 * consume_expectation admits a SYN through a live expectation, once, and
 * records its connection fk as a data flow, with the SYN's sequence number.
 */
static __always_inline int consume_expectation(const struct pkt_info *p, const struct flow_key *fk,
					       const struct config_val *cfg)
{
	struct expect_key ek = {};

	ek.family = p->family;
	ek.dport = p->dport;
	copy_addr(ek.src, p->src);
	copy_addr(ek.dst, p->dst);

	struct expect_val *ev = bpf_map_lookup_elem(&expectations, &ek);
	if (!ev)
		return 0;

	__u64 now = now_ns(cfg);
	if (now >= ev->expires_ns) {
		/* the timeout is enforced here, whatever the ager has done */
		emit_event(EV_EXPECT_EXPIRED, 0, ev->kind, &ek, &ev->ctrl, now);
		if (bpf_map_delete_elem(&expectations, &ek) == 0)
			stat_inc(STAT_EXPECT_EXPIRED);
		return 0;
	}

	struct flow_val fv = {};
	fv.created_ns = now;
	fv.last_seen_ns = now;
	fv.kind = ev->kind;
	fv.syn_seq = p->seq;
	if (cfg && cfg->accounting) {
		fv.packets = 1;
		fv.bytes = p->ip_len;
	}
	__builtin_memcpy(&fv.ctrl, &ev->ctrl, sizeof(fv.ctrl));
#ifdef FTPGATE_NAT
	/* the inside end, for the conntrack entry TC ingress makes (natct.h) */
	__builtin_memcpy(&fv.nat, &ev->nat, sizeof(fv.nat));
#endif

	/* the delete decides which of two racing SYNs wins the expectation */
	if (bpf_map_delete_elem(&expectations, &ek) != 0)
		return 0;

	/* #14 before the flow: its SYN again must find the port recent */
	syn_gate_mark(p->dport, now);
	if (bpf_map_update_elem(&data_flows, fk, &fv, BPF_ANY) != 0)
		stat_inc(STAT_FLOW_TABLE_FULL);
	stat_inc(STAT_EXPECT_CONSUMED);
	emit_event_seq(EV_EXPECT_CONSUMED, 0, fv.kind, &ek, &fv.ctrl, p->sport, p->seq, 0, now);
	return 1;
}

/* flow_lookup finds the data flow a packet belongs to, in either direction */
static __always_inline struct flow_val *flow_lookup(const struct pkt_info *p)
{
	struct flow_key fk;

	flow_key_from(&fk, p, 0);
	struct flow_val *fv = bpf_map_lookup_elem(&data_flows, &fk);
	if (fv)
		return fv;
	flow_key_from(&fk, p, 1);
	return bpf_map_lookup_elem(&data_flows, &fk);
}

/*
 * admit decides on the frame between data and data_end (from its Ethernet
 * header on) and returns the verdict in XDP's terms, XDP_PASS or XDP_DROP:
 * the XDP entry point returns it as it is, the TC one (admit_skb) turns it
 * into TC's codes. Every counter and event is the same at either hook.
 */
static __always_inline int admit(void *data, void *data_end)
{
	struct pkt_info p;

	int res = parse_packet(data, data_end, &p);
	if (res == PARSE_OTHER)
		return XDP_PASS;
	if (res == PARSE_UNPARSED)
		return would_drop(get_config(), STAT_DROP_UNPARSED);

	__u8 fl = p.flags;
	/* an array lookup the JIT inlines: the only one on the fast path */
	struct config_val *cfg = get_config();
	if (!(fl & (TCPF_SYN | TCPF_FIN | TCPF_RST)) && !(cfg && cfg->accounting))
		return XDP_PASS;

	if ((fl & TCPF_SYN) && !(fl & TCPF_ACK)) {
		if (port_enabled(&allow_ports, p.dport)) {
			stat_inc(STAT_SYN_PASS_ALLOWED);
			return XDP_PASS;
		}
		/* #14 the kernel's clock at most once a jiffy (syngate.h) */
		__u64 now = syn_clock(cfg);
		struct flow_key fk;
		flow_key_from(&fk, &p, 0);
		/* #14 no hash look-up for a port nothing was admitted to lately */
		struct flow_val *fv = 0;
		int cold = syn_gate_cold(cfg, p.dport, now);
		if (cold)
			stat_inc(STAT_SYN_GATE_COLD);
		else
			fv = bpf_map_lookup_elem(&data_flows, &fk);
		if (fv) {
			/*
			 * An admitted flow is one connection: its SYN again (same
			 * ISN, not closed) passes; another connection on the same
			 * 5-tuple needs an expectation of its own.
			 */
			if (fv->syn_seq == p.seq && !(fv->flags & (FLOW_FIN | FLOW_RST))) {
				syn_gate_mark(p.dport, now);
				fv->last_seen_ns = now;
				stat_inc(STAT_SYN_PASS_RETRANSMIT);
				return XDP_PASS;
			}
			stat_inc(STAT_SYN_FLOW_REFUSED);
		}
		if (!cold && consume_expectation(&p, &fk, cfg)) {
			stat_inc(STAT_SYN_PASS_EXPECTED);
			return XDP_PASS;
		}
		/*
		 * #13: a server's TLS range, open to clients with a live encrypted
		 * session; both look-ups only once a range is declared and an
		 * encrypted session was seen (config.tls_ranges, config.tls_seen)
		 */
		int tls = cfg && cfg->tls_ranges ? tls_range_admit(&p, &fk, cfg) : 0;
		if (tls > 0)
			return XDP_PASS;
		if (tls == -2)
			return syn_drop(cfg, &p, STAT_TLS_RANGE_LIMITED, EV_TLS_RANGE_DROP, now);
		if (tls < 0)
			return syn_drop(cfg, &p, STAT_TLS_RANGE_NO_SESSION, EV_TLS_RANGE_DROP, now);
		/* active-mode FTPS: the PORT inside TLS is unreadable, nothing expects it */
		if (cfg && cfg->tls_seen && tls_session_live(p.family, p.dst, p.src))
			return syn_drop(cfg, &p, STAT_TLS_ACTIVE_REFUSED, EV_SYN_DROP, now);
		return syn_drop(cfg, &p, STAT_SYN_DROP_UNEXPECTED, EV_SYN_DROP, now);
	}

	if ((fl & (TCPF_FIN | TCPF_RST)) || (cfg && cfg->accounting)) {
		struct flow_val *fv = flow_lookup(&p);
		if (!fv)
			return XDP_PASS;
		if (fl & (TCPF_FIN | TCPF_RST)) {
			fv->last_seen_ns = now_ns(cfg);
			fv->flags |= (fl & TCPF_FIN) ? FLOW_FIN : FLOW_RST;
		}
		if (cfg && cfg->accounting) {
			__sync_fetch_and_add(&fv->packets, 1);
			__sync_fetch_and_add(&fv->bytes, p.ip_len);
		}
	}
	return XDP_PASS;
}

#endif /* FTPGATE_ADMIT_H */
