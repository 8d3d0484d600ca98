//go:build ignore
// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xdp_dispatcher: an XDP program that runs up to ten component XDP programs
 * in turn, as libxdp's multi-program dispatcher does (xdp-tools'
 * lib/libxdp/protocol.org, dispatcher version 2). Written from the protocol
 * text, not from libxdp's source.
 *
 * The slots prog0..prog9 are global functions that components replace
 * (BPF_PROG_TYPE_EXT, freplace); a slot nobody replaced returns
 * XDP_DISPATCHER_RETVAL, which every slot's chain-call bitmap holds, so the
 * chain goes on past it. The configuration is read-only data, set before the
 * load: the verifier then drops the calls to the slots past
 * num_progs_enabled. XDP, Linux >= 5.10 (re-attaching a component to a new
 * dispatcher needs 5.10).
 *
 * Copyright the ftpgate authors. Dual-licensed: GPL-2.0-only or
 * BSD-2-Clause, at your option.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "dispatcher.h"

/* Filled in by the loader before the load (loader/libxdp.go); const puts it
 * in .rodata, which is frozen at load, and volatile keeps the compiler from
 * folding its zero initial values. It is the only read-only data of this
 * object: libxdp finds it as the program's one map, by its size. */
volatile const struct xdp_dispatcher_config conf = {};

__attribute__((noinline)) int prog0(struct xdp_md *ctx)
{
	volatile int ret = XDP_DISPATCHER_RETVAL;

	if (!ctx)
		return XDP_ABORTED;
	return ret;
}

__attribute__((noinline)) int prog1(struct xdp_md *ctx)
{
	volatile int ret = XDP_DISPATCHER_RETVAL;

	if (!ctx)
		return XDP_ABORTED;
	return ret;
}

__attribute__((noinline)) int prog2(struct xdp_md *ctx)
{
	volatile int ret = XDP_DISPATCHER_RETVAL;

	if (!ctx)
		return XDP_ABORTED;
	return ret;
}

__attribute__((noinline)) int prog3(struct xdp_md *ctx)
{
	volatile int ret = XDP_DISPATCHER_RETVAL;

	if (!ctx)
		return XDP_ABORTED;
	return ret;
}

__attribute__((noinline)) int prog4(struct xdp_md *ctx)
{
	volatile int ret = XDP_DISPATCHER_RETVAL;

	if (!ctx)
		return XDP_ABORTED;
	return ret;
}

__attribute__((noinline)) int prog5(struct xdp_md *ctx)
{
	volatile int ret = XDP_DISPATCHER_RETVAL;

	if (!ctx)
		return XDP_ABORTED;
	return ret;
}

__attribute__((noinline)) int prog6(struct xdp_md *ctx)
{
	volatile int ret = XDP_DISPATCHER_RETVAL;

	if (!ctx)
		return XDP_ABORTED;
	return ret;
}

__attribute__((noinline)) int prog7(struct xdp_md *ctx)
{
	volatile int ret = XDP_DISPATCHER_RETVAL;

	if (!ctx)
		return XDP_ABORTED;
	return ret;
}

__attribute__((noinline)) int prog8(struct xdp_md *ctx)
{
	volatile int ret = XDP_DISPATCHER_RETVAL;

	if (!ctx)
		return XDP_ABORTED;
	return ret;
}

__attribute__((noinline)) int prog9(struct xdp_md *ctx)
{
	volatile int ret = XDP_DISPATCHER_RETVAL;

	if (!ctx)
		return XDP_ABORTED;
	return ret;
}

SEC("xdp")
int xdp_dispatcher(struct xdp_md *ctx)
{
	__u8 n = conf.num_progs_enabled;
	int ret;

	if (n < 1)
		goto out;
	ret = prog0(ctx);
	if (!((1U << ret) & conf.chain_call_actions[0]))
		return ret;
	if (n < 2)
		goto out;
	ret = prog1(ctx);
	if (!((1U << ret) & conf.chain_call_actions[1]))
		return ret;
	if (n < 3)
		goto out;
	ret = prog2(ctx);
	if (!((1U << ret) & conf.chain_call_actions[2]))
		return ret;
	if (n < 4)
		goto out;
	ret = prog3(ctx);
	if (!((1U << ret) & conf.chain_call_actions[3]))
		return ret;
	if (n < 5)
		goto out;
	ret = prog4(ctx);
	if (!((1U << ret) & conf.chain_call_actions[4]))
		return ret;
	if (n < 6)
		goto out;
	ret = prog5(ctx);
	if (!((1U << ret) & conf.chain_call_actions[5]))
		return ret;
	if (n < 7)
		goto out;
	ret = prog6(ctx);
	if (!((1U << ret) & conf.chain_call_actions[6]))
		return ret;
	if (n < 8)
		goto out;
	ret = prog7(ctx);
	if (!((1U << ret) & conf.chain_call_actions[7]))
		return ret;
	if (n < 9)
		goto out;
	ret = prog8(ctx);
	if (!((1U << ret) & conf.chain_call_actions[8]))
		return ret;
	if (n < 10)
		goto out;
	ret = prog9(ctx);
	if (!((1U << ret) & conf.chain_call_actions[9]))
		return ret;
out:
	return XDP_PASS;
}

/* The protocol's version in BTF, as libxdp marks its dispatcher. cilium/ebpf
 * hands the kernel only the BTF its programs reach, so this stays in the
 * object; the config's magic and version are what is read at run time
 * (docs/design.md, "Beside other XDP programs"). */
__uint(dispatcher_version, XDP_DISPATCHER_VERSION) SEC("xdp_metadata");

char __license[] SEC("license") = "Dual BSD/GPL";
