/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The dispatcher's configuration, as libxdp's protocol (version 2) lays it
 * out; loader/libxdp.go writes and reads it through the generated Go type.
 */
#ifndef FTPGATE_DISPATCHER_H
#define FTPGATE_DISPATCHER_H

#include <linux/types.h>

#define XDP_DISPATCHER_VERSION 2
#define XDP_DISPATCHER_MAGIC 236
/* what an unreplaced slot returns: the top bit of a chain-call bitmap */
#define XDP_DISPATCHER_RETVAL 31
#define MAX_DISPATCHER_ACTIONS 10

struct xdp_dispatcher_config {
	__u8 magic;              /* XDP_DISPATCHER_MAGIC */
	__u8 dispatcher_version; /* XDP_DISPATCHER_VERSION */
	__u8 num_progs_enabled;  /* slots in use, from prog0 */
	__u8 is_xdp_frags;       /* loaded with BPF_F_XDP_HAS_FRAGS */
	/* per slot: bit N set = action N lets the chain go on */
	__u32 chain_call_actions[MAX_DISPATCHER_ACTIONS];
	__u32 run_prios[MAX_DISPATCHER_ACTIONS];
	/* per slot: BPF_F_XDP_HAS_FRAGS when the component had it */
	__u32 program_flags[MAX_DISPATCHER_ACTIONS];
};

#endif
