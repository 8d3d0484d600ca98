/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The maps, shared by every program of the object. Their names are the pinned
 * file names under the pin directory: an operator interface, never renamed.
 * The loader resizes the three LRU tables from its configuration before load.
 */
#ifndef FTPGATE_MAPS_H
#define FTPGATE_MAPS_H

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PORT_ENTRIES);
	__type(key, __u32);
	__type(value, struct port_val);
} ctrl_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PORT_ENTRIES);
	__type(key, __u32);
	__type(value, struct port_val);
} allow_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DEFAULT_CTRL_CONNS);
	__type(key, struct ctrl_key);
	__type(value, struct ctrl_val);
} ctrl_conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DEFAULT_EXPECTATIONS);
	__type(key, struct expect_key);
	__type(value, struct expect_val);
} expectations SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DEFAULT_DATA_FLOWS);
	__type(key, struct flow_key);
	__type(value, struct flow_val);
} data_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config_val);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EVENTS_BYTES);
} events SEC(".maps");

/* guarded interfaces by ifindex: TC egress skips what one of them received */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_GUARDED_IFS);
	__type(key, __u32);
	__type(value, struct iface_val);
} guarded_ifs SEC(".maps");

/*
 * Per-CPU working memory of the TC parser: the segment's payload, the line
 * being parsed and the cursor. It keeps large buffers off the 512-byte stack
 * and, because values read back from map memory are unknown to the verifier,
 * it keeps the verifier from exploring every possible line length separately.
 */
struct scratch {
	struct ctrl_key key;
	struct expect_key exp;
	struct ctrl_val zero; /* template for a new control connection */
	__u32 dir;
	__u32 pos;      /* cursor in pkt */
	__u32 end;      /* bytes valid in pkt */
	__u32 line_len; /* bytes valid in line */
	__u32 cur;      /* cursor in line */
	__u32 addr[4];  /* address parsed from a line */
	__u16 group[8]; /* IPv6 groups while parsing */
	__u64 oldest;   /* creation time of the oldest live expectation */
	__u32 victim;   /* its slot index */
	__u32 l4_off;   /* offset of the TCP header in the skb */
	__u32 hdr_len;  /* TCP header length */
	__u32 tcp_len;  /* TCP header plus payload */
	__u32 loaded;   /* payload bytes in pkt */
	__u32 pad;
	__u32 pseudo[10]; /* TCP pseudo-header, for the checksum */
	__u8 hdr[64];     /* TCP header, for the checksum */
	__u8 pkt[SCAN_BUF_SIZE];
	__u8 line[2 * MAX_LINE_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch_buf SEC(".maps");

#endif /* FTPGATE_MAPS_H */
