/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * TC control-channel parser: reads FTP control segments in both directions and
 * writes expectations. See DESIGN.md, "Expectations".
 *
 * Structure, and why: the per-line work lives in global (non-inlined) BPF
 * functions that keep their cursors in per-CPU scratch memory. The verifier
 * checks a global function once, whatever its caller passes, and treats its
 * return value as unknown; values read back from map memory are unknown too.
 * Together this stops the verifier from exploring every combination of line
 * lengths and number widths, which would exceed its limits on old kernels.
 */
#ifndef FTPGATE_PARSER_H
#define FTPGATE_PARSER_H

#define SCAN_MASK (SCAN_BUF_SIZE - 1)
#define LINE_MASK (2 * MAX_LINE_LEN - 1)
#define WORD_BYTES 8
#define MAX_DEC_DIGITS 5
#define MAX_HEX_DIGITS 4
#define IPV6_GROUPS 8
#define IPV4_OCTETS 4
#define PORT_ARGS 6

#define LF_BYTES 0x0a0a0a0a0a0a0a0aULL
#define ONE_BYTES 0x0101010101010101ULL
#define HIGH_BITS 0x8080808080808080ULL

/* four-letter tokens in upper case, as read from the wire (little-endian) */
#define TOKEN(a, b, c, d) ((__u32)(a) | ((__u32)(b) << 8) | ((__u32)(c) << 16) | ((__u32)(d) << 24))
#define TOK_PORT TOKEN('P', 'O', 'R', 'T')
#define TOK_EPRT TOKEN('E', 'P', 'R', 'T')
#define TOK_PASV TOKEN('P', 'A', 'S', 'V')
#define TOK_EPSV TOKEN('E', 'P', 'S', 'V')
#define TOK_227 TOKEN('2', '2', '7', ' ')
#define TOK_229 TOKEN('2', '2', '9', ' ')
/* upper-cases ASCII letters and leaves digits and the space alone */
#define TOKEN_UPPER_MASK 0xdfdfdfdfU

static __always_inline struct scratch *get_scratch(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&scratch_buf, &zero);
}

static __always_inline struct dir_state *dir_of(struct ctrl_val *cv, __u32 dir)
{
	return dir == DIR_SERVER ? &cv->dir[DIR_SERVER] : &cv->dir[DIR_CLIENT];
}

/* line_at reads byte i of the line being parsed; 0 past its end */
static __always_inline __u8 line_at(struct scratch *s, __u32 i)
{
	if (i >= s->line_len)
		return 0;
	return s->line[i & LINE_MASK];
}

static __always_inline int is_digit(__u8 c)
{
	return c >= '0' && c <= '9';
}

static __always_inline int is_hex_letter(__u8 c)
{
	c |= 0x20;
	return c >= 'a' && c <= 'f';
}

static __always_inline void reject(struct scratch *s, __u32 reason, __u8 kind)
{
	stat_inc(reason);
	emit_event(EV_REJECT, reason, kind, &s->exp, &s->key, now_ns(get_config()));
}

/*
 * find_lf returns the index in pkt of the first LF at or after pos, or -1.
 * It tests eight bytes at a time so that the loop stays short for the verifier.
 */
__noinline int find_lf(void)
{
	struct scratch *s = get_scratch();
	if (!s)
		return -1;
	__u32 pos = s->pos;
	__u32 end = s->end;
	if (end > MAX_SCAN_BYTES)
		end = MAX_SCAN_BYTES;

	for (__u32 w = 0; w < MAX_SCAN_BYTES / WORD_BYTES; w++) {
		__u32 base = pos + w * WORD_BYTES;
		if (base >= end)
			return -1;
		__u64 x = *(__u64 *)&s->pkt[base & SCAN_MASK];
		__u64 y = x ^ LF_BYTES;
		if (((y - ONE_BYTES) & ~y & HIGH_BITS) == 0)
			continue;
#pragma unroll
		for (__u32 b = 0; b < WORD_BYTES; b++) {
			if (((x >> (b * 8)) & 0xff) == '\n') {
				__u32 idx = base + b;
				return idx < end ? (int)idx : -1;
			}
		}
	}
	return -1;
}

/* text_dec reads up to max decimal digits at s->cur; -1 when there are none */
__noinline int text_dec(int max)
{
	struct scratch *s = get_scratch();
	if (!s)
		return -1;
	__u32 cur = s->cur;
	__u32 v = 0;
	int n = 0;

	for (int i = 0; i < MAX_DEC_DIGITS; i++) {
		if (i >= max)
			break;
		__u8 c = line_at(s, cur + i);
		if (!is_digit(c))
			break;
		v = v * 10 + (c - '0');
		n++;
	}
	if (n == 0)
		return -1;
	/* a number wider than allowed is malformed, not silently cut */
	if (n == max && is_digit(line_at(s, cur + n)))
		return -1;
	s->cur = cur + n;
	return v;
}

/* text_hex reads one IPv6 group (1-4 hex digits) at s->cur; -1 when none */
__noinline int text_hex(void)
{
	struct scratch *s = get_scratch();
	if (!s)
		return -1;
	__u32 cur = s->cur;
	__u32 v = 0;
	int n = 0;

	for (int i = 0; i < MAX_HEX_DIGITS + 1; i++) {
		__u8 c = line_at(s, cur + i);
		__u32 d;
		if (is_digit(c))
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			break;
		if (i == MAX_HEX_DIGITS)
			return -1;
		v = (v << 4) | d;
		n++;
	}
	if (n == 0)
		return -1;
	s->cur = cur + n;
	return v;
}

/*
 * text_ipv4 reads a.b.c.d at s->cur into s->addr[0] (network order).
 * Each octet is 0-255 written with at most three digits.
 */
__noinline int text_ipv4(void)
{
	struct scratch *s = get_scratch();
	if (!s)
		return -1;
	__u32 a = 0;

	for (int i = 0; i < IPV4_OCTETS; i++) {
		if (i > 0) {
			if (line_at(s, s->cur) != '.')
				return -1;
			s->cur++;
		}
		int o = text_dec(3);
		if (o < 0 || o > 255)
			return -1;
		a |= (__u32)o << (i * 8);
	}
	s->addr[0] = a;
	s->addr[1] = s->addr[2] = s->addr[3] = 0;
	return 0;
}

/*
 * text_ipv6 reads an IPv6 address in text form (RFC 4291 section 2.2: groups,
 * one "::", an optional dotted IPv4 tail) at s->cur into s->addr. It stops at
 * the first character that cannot continue the address; the caller checks it.
 */
__noinline int text_ipv6(void)
{
	struct scratch *s = get_scratch();
	if (!s)
		return -1;
	__u32 n = 0;  /* groups read */
	int gap = -1; /* group index where "::" stands */

	/* a leading "::" */
	if (line_at(s, s->cur) == ':') {
		if (line_at(s, s->cur + 1) != ':')
			return -1;
		gap = 0;
		s->cur += 2;
	}

	for (int i = 0; i < IPV6_GROUPS; i++) {
		__u32 start = s->cur;
		int v = text_hex();
		if (v < 0)
			break; /* "::" at the end, or the address ended */
		if (line_at(s, s->cur) == '.') {
			/* dotted IPv4 tail: reread the group as the first octet */
			if (n > IPV6_GROUPS - 2)
				return -1;
			s->cur = start;
			if (text_ipv4() < 0)
				return -1;
			__u32 v4 = bpf_ntohl(s->addr[0]);
			s->group[n & (IPV6_GROUPS - 1)] = v4 >> 16;
			n++;
			s->group[n & (IPV6_GROUPS - 1)] = v4 & 0xffff;
			n++;
			break;
		}
		s->group[n & (IPV6_GROUPS - 1)] = v;
		n++;
		if (n >= IPV6_GROUPS)
			break;
		if (line_at(s, s->cur) != ':')
			break;
		if (line_at(s, s->cur + 1) == ':') {
			if (gap >= 0)
				return -1; /* two "::" */
			gap = n;
			s->cur += 2;
		} else {
			s->cur++;
			/* a single ':' must be followed by a group */
			__u8 c = line_at(s, s->cur);
			if (!is_digit(c) && !is_hex_letter(c))
				return -1;
		}
	}

	if (gap < 0 && n != IPV6_GROUPS)
		return -1;
	if (gap >= 0 && n >= IPV6_GROUPS)
		return -1;

	__u32 zeros = IPV6_GROUPS - n;
	__u16 out[IPV6_GROUPS];
#pragma unroll
	for (int i = 0; i < IPV6_GROUPS; i++) {
		__u32 src;
		if (gap < 0 || i < gap)
			src = i;
		else if (i < gap + zeros)
			src = IPV6_GROUPS; /* inside the "::" */
		else
			src = i - zeros;
		out[i] = src < IPV6_GROUPS ? s->group[src & (IPV6_GROUPS - 1)] : 0;
	}
#pragma unroll
	for (int i = 0; i < 4; i++)
		s->addr[i] = bpf_htonl(((__u32)out[2 * i] << 16) | out[2 * i + 1]);
	return 0;
}

/* skip_spaces moves s->cur over spaces */
static __always_inline void skip_spaces(struct scratch *s)
{
	for (int i = 0; i < MAX_LINE_LEN; i++) {
		if (line_at(s, s->cur) != ' ')
			break;
		s->cur++;
	}
}

/* at_line_end tells whether only spaces and CR/LF remain from s->cur */
static __always_inline int at_line_end(struct scratch *s)
{
	skip_spaces(s);
	__u8 c = line_at(s, s->cur);
	return c == '\r' || c == '\n' || c == 0;
}

/* slot_key returns the key in slot i (0..2*EXPECT_SLOTS) of a connection */
static __always_inline struct expect_key *slot_key(struct ctrl_val *cv, __u32 i)
{
	struct dir_state *d = i < EXPECT_SLOTS ? &cv->dir[DIR_CLIENT] : &cv->dir[DIR_SERVER];
	return &d->slot[i & (EXPECT_SLOTS - 1)];
}

/*
 * slot_live returns the expectation slot j of d names while the map still
 * holds it, or NULL. The creation time is the nonce: the XDP filter deletes
 * the entries it consumes without touching the slots, and another
 * connection may have reused the key since.
 */
static __always_inline struct expect_val *slot_live(struct dir_state *d, __u32 j)
{
	j &= EXPECT_SLOTS - 1;
	__u64 created = d->slot_created[j];
	if (!created)
		return 0;
	struct expect_val *ev = bpf_map_lookup_elem(&expectations, &d->slot[j]);
	if (!ev || ev->created_ns != created)
		return 0;
	return ev;
}

/* expect_remove deletes an expectation, reported as event and counted as counter */
static __always_inline void expect_remove(struct expect_key *k, struct expect_val *ev, struct ctrl_key *ctrl,
					  __u32 event, __u32 counter, __u64 now)
{
	emit_event(event, 0, ev->kind, k, ctrl, now);
	if (bpf_map_delete_elem(&expectations, k) == 0)
		stat_inc(counter);
}

/*
 * expect_oldest counts the live expectations of the control connection in
 * s->key and leaves the slot index of the oldest in s->victim. A slot is live
 * while the map holds an entry with its nonce (creation time): the XDP filter
 * deletes the entries it consumes without touching the slots. The index goes
 * through scratch memory so the verifier does not track one state per slot.
 */
__noinline int expect_oldest(void)
{
	struct scratch *s = get_scratch();
	if (!s)
		return -1;
	struct ctrl_val *cv = bpf_map_lookup_elem(&ctrl_conns, &s->key);
	if (!cv)
		return -1;
	int live = 0;

	s->oldest = ~0ULL;
	s->victim = 0;
	for (int i = 0; i < 2 * EXPECT_SLOTS; i++) {
		struct dir_state *d = i < EXPECT_SLOTS ? &cv->dir[DIR_CLIENT] : &cv->dir[DIR_SERVER];
		struct expect_val *ev = slot_live(d, i);
		if (!ev)
			continue;
		live++;
		if (ev->created_ns < s->oldest) {
			s->oldest = ev->created_ns;
			s->victim = i;
		}
	}
	return live;
}

/*
 * expect_create writes the expectation in s->exp for the control connection in
 * s->key, seen in direction s->dir, enforcing the per-connection cap: the
 * oldest live expectation of the connection (either direction) is evicted.
 */
__noinline int expect_create(int kind)
{
	struct scratch *s = get_scratch();
	if (!s)
		return -1;
	struct config_val *cfg = get_config();
	if (!cfg)
		return -1;
	struct ctrl_val *cv = bpf_map_lookup_elem(&ctrl_conns, &s->key);
	if (!cv)
		return -1;
	struct dir_state *own = dir_of(cv, s->dir);

	__u64 now = now_ns(cfg);
	__u64 timeout = cfg->expect_timeout_ns ? cfg->expect_timeout_ns : DEFAULT_EXPECT_TIMEOUT_SEC * NSEC_PER_SEC;
	__u32 cap = cfg->max_expect_per_conn;
	if (cap < 1)
		cap = 1;
	if (cap > MAX_EXPECT_PER_CONN)
		cap = MAX_EXPECT_PER_CONN;

	/* evict the oldest until there is room (a lowered cap may need several) */
	for (int round = 0; round < 2 * EXPECT_SLOTS; round++) {
		int live = expect_oldest();
		if (live < (int)cap || live <= 0)
			break;
		struct expect_key *victim = slot_key(cv, s->victim);
		struct expect_val *vv = bpf_map_lookup_elem(&expectations, victim);
		if (vv)
			expect_remove(victim, vv, &s->key, EV_EXPECT_EVICTED, STAT_EXPECT_EVICTED, now);
	}

	/* the slot we overwrite may still name a live expectation */
	__u32 w = own->slot_next & (EXPECT_SLOTS - 1);
	struct expect_val *stale = slot_live(own, w);
	if (stale)
		expect_remove(&own->slot[w], stale, &s->key, EV_EXPECT_EVICTED, STAT_EXPECT_EVICTED, now);

	struct expect_val val = {};
	val.expires_ns = now + timeout;
	val.created_ns = now;
	val.kind = kind;
	val.dir = s->dir;
	__builtin_memcpy(&val.ctrl, &s->key, sizeof(val.ctrl));
	if (bpf_map_update_elem(&expectations, &s->exp, &val, BPF_ANY) != 0) {
		stat_inc(STAT_EXPECT_TABLE_FULL);
		return -1;
	}
	__builtin_memcpy(&own->slot[w], &s->exp, sizeof(s->exp));
	own->slot_created[w] = now;
	own->slot_next++;
	stat_inc(STAT_EXPECT_CREATED);
	emit_event(EV_EXPECT_CREATED, 0, kind, &s->exp, &s->key, now);
	return 0;
}

/*
 * data_port_ok applies the low-port rule to a parsed port; port 0 and ports
 * above 65535 are malformed.
 */
static __always_inline int data_port_ok(struct scratch *s, int port, __u8 kind)
{
	if (port <= 0 || port > 65535) {
		reject(s, STAT_REJECT_MALFORMED, kind);
		return 0;
	}
	s->exp.dport = port;
	struct config_val *cfg = get_config();
	if (port < LOW_PORT_LIMIT && !(cfg && cfg->allow_low_data_ports)) {
		reject(s, STAT_REJECT_LOW_PORT, kind);
		return 0;
	}
	return 1;
}

/*
 * text_six reads "h1,h2,h3,h4,p1,p2" at s->cur: the address into s->addr[0]
 * and the port as the return value; -1 when malformed.
 */
__noinline int text_six(void)
{
	struct scratch *s = get_scratch();
	if (!s)
		return -1;
	__u32 a = 0;
	__u32 port = 0;

	for (int i = 0; i < PORT_ARGS; i++) {
		if (i > 0) {
			if (line_at(s, s->cur) != ',')
				return -1;
			s->cur++;
		}
		int v = text_dec(3);
		if (v < 0 || v > 255)
			return -1;
		if (i < IPV4_OCTETS)
			a |= (__u32)v << (i * 8);
		else
			port = (port << 8) | v;
	}
	s->addr[0] = a;
	s->addr[1] = s->addr[2] = s->addr[3] = 0;
	return port;
}

/* active mode: PORT h1,h2,h3,h4,p1,p2 */
static __always_inline void cmd_port(struct scratch *s)
{
	stat_inc(STAT_CMD_PORT);
	s->cur = 4;
	if (line_at(s, s->cur) != ' ') {
		reject(s, STAT_REJECT_MALFORMED, KIND_PORT);
		return;
	}
	skip_spaces(s);
	int port = text_six();
	if (port < 0 || !at_line_end(s)) {
		reject(s, STAT_REJECT_MALFORMED, KIND_PORT);
		return;
	}
	s->exp.family = s->key.family;
	copy_addr(s->exp.src, s->key.server);
	copy_addr(s->exp.dst, s->addr);
	if (s->key.family != AF_INET) {
		reject(s, STAT_REJECT_FAMILY, KIND_PORT);
		return;
	}
	if (!data_port_ok(s, port, KIND_PORT))
		return;
	struct config_val *cfg = get_config();
	if (!addr_eq(s->addr, s->key.client) && !(cfg && cfg->loose)) {
		reject(s, STAT_REJECT_BOUNCE, KIND_PORT);
		return;
	}
	expect_create(KIND_PORT);
}

/* active mode: EPRT <d>af<d>addr<d>port<d> (RFC 2428) */
static __always_inline void cmd_eprt(struct scratch *s)
{
	stat_inc(STAT_CMD_EPRT);
	s->cur = 4;
	if (line_at(s, s->cur) != ' ') {
		reject(s, STAT_REJECT_MALFORMED, KIND_EPRT);
		return;
	}
	skip_spaces(s);
	__u8 d = line_at(s, s->cur);
	__u8 af = line_at(s, s->cur + 1);
	if (d < EPRT_DELIM_MIN || d > EPRT_DELIM_MAX || is_digit(d) || line_at(s, s->cur + 2) != d) {
		reject(s, STAT_REJECT_MALFORMED, KIND_EPRT);
		return;
	}
	s->cur += 3;
	__u8 family;
	int err;
	if (af == '1' && d != '.') {
		family = AF_INET;
		err = text_ipv4();
	} else if (af == '2' && d != ':' && !is_hex_letter(d)) {
		/* a delimiter that can stand inside the address is ambiguous */
		family = AF_INET6;
		err = text_ipv6();
	} else {
		reject(s, STAT_REJECT_MALFORMED, KIND_EPRT);
		return;
	}
	if (err < 0 || line_at(s, s->cur) != d) {
		reject(s, STAT_REJECT_MALFORMED, KIND_EPRT);
		return;
	}
	s->cur++;
	int port = text_dec(MAX_DEC_DIGITS);
	if (port < 0 || line_at(s, s->cur) != d) {
		reject(s, STAT_REJECT_MALFORMED, KIND_EPRT);
		return;
	}
	s->cur++;
	if (!at_line_end(s)) {
		reject(s, STAT_REJECT_MALFORMED, KIND_EPRT);
		return;
	}
	s->exp.family = s->key.family;
	copy_addr(s->exp.src, s->key.server);
	copy_addr(s->exp.dst, s->addr);
	if (family != s->key.family) {
		reject(s, STAT_REJECT_FAMILY, KIND_EPRT);
		return;
	}
	if (!data_port_ok(s, port, KIND_EPRT))
		return;
	struct config_val *cfg = get_config();
	if (!addr_eq(s->addr, s->key.client) && !(cfg && cfg->loose)) {
		reject(s, STAT_REJECT_BOUNCE, KIND_EPRT);
		return;
	}
	expect_create(KIND_EPRT);
}

/*
 * paired tells whether the server's reply answers an outstanding passive
 * request of kind want from the client, and marks that request answered: one
 * reply per request. Only the server direction's half is written.
 */
static __always_inline int paired(struct ctrl_val *cv, __u8 want)
{
	struct dir_state *cli = &cv->dir[DIR_CLIENT];
	struct dir_state *srv = &cv->dir[DIR_SERVER];
	__u32 gen = cli->pasv_gen;
	__u8 kind = cli->pasv_kind;

	if (kind != want || gen == srv->pasv_gen)
		return 0;
	srv->pasv_gen = gen;
	return 1;
}

/*
 * reply_begin counts a passive-mode reply, prepares its expectation (client to
 * server), checks that it answers an outstanding request of kind, and moves
 * the cursor to the first digit (until 0) or to the first until character.
 * Returns 0 when the reply is rejected.
 */
static __always_inline int reply_begin(struct scratch *s, struct ctrl_val *cv, __u32 counter, __u8 kind, __u8 until)
{
	stat_inc(counter);
	s->exp.family = s->key.family;
	copy_addr(s->exp.src, s->key.client);
	copy_addr(s->exp.dst, s->key.server);
	if (!paired(cv, kind)) {
		reject(s, STAT_REJECT_UNPAIRED, kind);
		return 0;
	}
	s->cur = 4;
	for (int i = 0; i < MAX_LINE_LEN; i++) {
		__u8 c = line_at(s, s->cur);
		if (c == 0 || (until ? c == until : is_digit(c)))
			break;
		s->cur++;
	}
	return 1;
}

/* passive mode: 227 <text> h1,h2,h3,h4,p1,p2 <text> */
static __always_inline void reply_227(struct scratch *s, struct ctrl_val *cv)
{
	/* the numbers follow the first digit after the code (RFC 1123 4.1.2.6) */
	if (!reply_begin(s, cv, STAT_REPLY_227, KIND_PASV, 0))
		return;
	int port = text_six();
	if (port < 0) {
		reject(s, STAT_REJECT_MALFORMED, KIND_PASV);
		return;
	}
	if (s->key.family != AF_INET) {
		reject(s, STAT_REJECT_FAMILY, KIND_PASV);
		return;
	}
	if (!data_port_ok(s, port, KIND_PASV))
		return;
	if (!addr_eq(s->addr, s->key.server)) {
		/*
		 * A server behind NAT announces its private address; clients
		 * connect to the control connection's address instead.
		 */
		stat_inc(STAT_REPLY_ADDR_MISMATCH);
		struct config_val *cfg = get_config();
		if (cfg && cfg->loose)
			copy_addr(s->exp.dst, s->addr);
	}
	expect_create(KIND_PASV);
}

/* extended passive mode: 229 <text> (<d><d><d>port<d>) */
static __always_inline void reply_229(struct scratch *s, struct ctrl_val *cv)
{
	if (!reply_begin(s, cv, STAT_REPLY_229, KIND_EPSV, '('))
		return;
	if (line_at(s, s->cur) != '(') {
		reject(s, STAT_REJECT_MALFORMED, KIND_EPSV);
		return;
	}
	__u8 d = line_at(s, s->cur + 1);
	if (d < EPRT_DELIM_MIN || d > EPRT_DELIM_MAX || is_digit(d) || line_at(s, s->cur + 2) != d ||
	    line_at(s, s->cur + 3) != d) {
		reject(s, STAT_REJECT_MALFORMED, KIND_EPSV);
		return;
	}
	s->cur += 4;
	int port = text_dec(MAX_DEC_DIGITS);
	if (port < 0 || line_at(s, s->cur) != d || line_at(s, s->cur + 1) != ')') {
		reject(s, STAT_REJECT_MALFORMED, KIND_EPSV);
		return;
	}
	if (!data_port_ok(s, port, KIND_EPSV))
		return;
	expect_create(KIND_EPSV);
}

/* line_token returns the first four bytes of the line, letters upper-cased */
static __always_inline __u32 line_token(struct scratch *s)
{
	__u32 t = (__u32)line_at(s, 0) | ((__u32)line_at(s, 1) << 8) | ((__u32)line_at(s, 2) << 16) |
		  ((__u32)line_at(s, 3) << 24);
	return t;
}

/* relevant tells whether a line starting with token t is one we parse */
static __always_inline int relevant(__u32 t, __u32 dir)
{
	if (dir == DIR_SERVER)
		return t == TOK_227 || t == TOK_229;
	t &= TOKEN_UPPER_MASK;
	return t == TOK_PORT || t == TOK_EPRT || t == TOK_PASV || t == TOK_EPSV;
}

/* a command is exactly its four letters followed by a space or the line end */
static __always_inline int command_ends(struct scratch *s)
{
	__u8 c = line_at(s, 4);
	return c == ' ' || c == '\r' || c == '\n' || c == 0;
}

/* process_line handles the complete line in s->line[0..line_len) */
__noinline int process_line(void)
{
	struct scratch *s = get_scratch();
	if (!s)
		return -1;
	struct ctrl_val *cv = bpf_map_lookup_elem(&ctrl_conns, &s->key);
	if (!cv)
		return -1;
	__builtin_memset(&s->exp, 0, sizeof(s->exp));
	__u32 t = line_token(s);

	if (s->dir == DIR_SERVER) {
		if (t == TOK_227)
			reply_227(s, cv);
		else if (t == TOK_229)
			reply_229(s, cv);
		return 0;
	}

	struct dir_state *cli = &cv->dir[DIR_CLIENT];
	t &= TOKEN_UPPER_MASK;
	if (!command_ends(s)) {
		reject(s, STAT_REJECT_MALFORMED, KIND_NONE);
		return 0;
	}
	if (t == TOK_PASV) {
		stat_inc(STAT_CMD_PASV);
		cli->pasv_kind = KIND_PASV;
		cli->pasv_gen++;
	} else if (t == TOK_EPSV) {
		stat_inc(STAT_CMD_EPSV);
		/* "EPSV ALL" announces EPSV-only use; it asks for no port */
		s->cur = 4;
		skip_spaces(s);
		if ((line_at(s, s->cur) | 0x20) == 'a') {
			cli->pasv_kind = KIND_NONE;
		} else {
			cli->pasv_kind = KIND_EPSV;
			cli->pasv_gen++;
		}
	} else if (t == TOK_PORT) {
		cli->pasv_kind = KIND_NONE;
		cmd_port(s);
	} else if (t == TOK_EPRT) {
		cli->pasv_kind = KIND_NONE;
		cmd_eprt(s);
	}
	return 0;
}

/* copy_to_line appends n bytes of pkt from pos to s->line at offset at */
static __always_inline void copy_to_line(struct scratch *s, __u32 at, __u32 pos, __u32 n)
{
	for (__u32 k = 0; k < MAX_LINE_LEN; k++) {
		if (k >= n)
			break;
		s->line[(at + k) & LINE_MASK] = s->pkt[(pos + k) & SCAN_MASK];
	}
}

/*
 * parse_step handles what stands at s->pos in the segment: the rest of a
 * skipped line, or one line (completed from the carry buffer if needed).
 * Returns 1 when the segment is used up, 0 when there is more to do.
 */
__noinline int parse_step(void)
{
	struct scratch *s = get_scratch();
	if (!s)
		return 1;
	struct ctrl_val *cv = bpf_map_lookup_elem(&ctrl_conns, &s->key);
	if (!cv)
		return 1;
	struct dir_state *st = dir_of(cv, s->dir);

	__u32 pos = s->pos;
	__u32 end = s->end;
	if (end > MAX_SCAN_BYTES || pos >= end)
		return 1;

	int lf = find_lf();
	if (lf < 0 || lf >= end)
		lf = -1;

	if (st->mode == MODE_SKIP) {
		if (lf < 0) {
			s->pos = end;
			return 1;
		}
		s->pos = lf + 1;
		st->mode = MODE_LINE_START;
		return 0;
	}

	/* the line is carry[0..cl) + pkt[pos..seg_end) */
	__u32 cl = st->carry_len;
	if (cl > MAX_LINE_LEN)
		cl = MAX_LINE_LEN;
	__u32 seg_end = lf < 0 ? end : (__u32)lf + 1;
	__u32 seg = seg_end - pos;
	__u32 total = cl + seg;
	__u32 keep = total > MAX_LINE_LEN ? MAX_LINE_LEN : total;

	for (__u32 k = 0; k < MAX_LINE_LEN; k++) {
		if (k >= cl)
			break;
		s->line[k & LINE_MASK] = st->carry[k & (MAX_LINE_LEN - 1)];
	}
	__u32 take = keep > cl ? keep - cl : 0;
	if (take > MAX_LINE_LEN)
		take = MAX_LINE_LEN;
	copy_to_line(s, cl, pos, take);
	s->line_len = keep;

	__u32 t = line_token(s);
	int rel = relevant(t, s->dir);

	if (lf < 0) {
		/* the line goes on in the next segment */
		s->pos = end;
		if (total < 4) {
			/* too short to tell: keep it */
		} else if (!rel) {
			st->mode = MODE_SKIP;
			st->carry_len = 0;
			return 1;
		}
		if (total > MAX_LINE_LEN) {
			reject(s, STAT_REJECT_OVERLONG, KIND_NONE);
			st->mode = MODE_SKIP;
			st->carry_len = 0;
			return 1;
		}
		for (__u32 k = 0; k < MAX_LINE_LEN; k++) {
			if (k >= keep)
				break;
			st->carry[k & (MAX_LINE_LEN - 1)] = s->line[k & LINE_MASK];
		}
		st->carry_len = keep;
		st->mode = MODE_CARRY;
		return 1;
	}

	s->pos = seg_end;
	st->mode = MODE_LINE_START;
	st->carry_len = 0;
	st->lines++;
	if (!rel)
		return 0;
	if (total > MAX_LINE_LEN) {
		reject(s, STAT_REJECT_OVERLONG, KIND_NONE);
		return 0;
	}
	if (cl > 0)
		stat_inc(STAT_LINE_REASSEMBLED);
	process_line();
	return 0;
}

/* ctrl_close removes the pending expectations of a closing control connection */
__noinline int ctrl_close(void)
{
	struct scratch *s = get_scratch();
	if (!s)
		return -1;
	struct ctrl_val *cv = bpf_map_lookup_elem(&ctrl_conns, &s->key);
	if (!cv)
		return -1;
	__u64 now = now_ns(get_config());

	for (int i = 0; i < 2 * EXPECT_SLOTS; i++) {
		struct dir_state *d = i < EXPECT_SLOTS ? &cv->dir[DIR_CLIENT] : &cv->dir[DIR_SERVER];
		struct expect_val *ev = slot_live(d, i);
		if (ev)
			expect_remove(&d->slot[i & (EXPECT_SLOTS - 1)], ev, &s->key, EV_EXPECT_CLOSED, STAT_EXPECT_CLOSED, now);
	}
	return 0;
}

#define CSUM_CHUNK 512 /* the most bpf_csum_diff sums in one call */
#define TCP_MAX_HDR 60

static __always_inline __u32 csum_fold(__u64 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (sum & 0xffff) + (sum >> 16);
}

/*
 * segment_trusted checks the TCP checksum of the control segment described
 * in scratch (header offset and length, payload in pkt). A segment the NIC
 * verified is trusted; so is one whose checksum field holds only the
 * pseudo-header sum, as the stack leaves it for checksum offload
 * (CHECKSUM_PARTIAL: sent by a local process or through a veth). A segment
 * longer than the parser reads cannot be checked here and is trusted.
 */
__noinline int segment_trusted(struct __sk_buff *skb)
{
	if (bpf_csum_level(skb, BPF_CSUM_LEVEL_QUERY) >= 0)
		return 1;
	struct scratch *s = get_scratch();
	if (!s)
		return 1;
	__u32 hdr_len = s->hdr_len;
	__u32 n = s->loaded;
	if (hdr_len < sizeof(struct tcphdr) || hdr_len > TCP_MAX_HDR || n > MAX_SCAN_BYTES)
		return 1;
	if (s->tcp_len != hdr_len + n)
		return 1;
	/* the mask restates the bounds checked above in a form every verifier keeps */
	__u32 hl = ((hdr_len - 1) & (sizeof(s->hdr) - 1)) + 1;
	if (bpf_skb_load_bytes(skb, s->l4_off, s->hdr, hl) != 0)
		return 1;

	/* the pseudo-header: addresses, protocol, TCP length */
	__u32 *src = s->dir == DIR_CLIENT ? s->key.client : s->key.server;
	__u32 *dst = s->dir == DIR_CLIENT ? s->key.server : s->key.client;
	__s64 sum;
	if (s->key.family == AF_INET) {
		s->pseudo[0] = src[0];
		s->pseudo[1] = dst[0];
		s->pseudo[2] = bpf_htonl((IPPROTO_TCP << 16) | s->tcp_len);
		sum = bpf_csum_diff(0, 0, s->pseudo, 3 * sizeof(__u32), 0);
	} else {
		copy_addr(&s->pseudo[0], src);
		copy_addr(&s->pseudo[4], dst);
		s->pseudo[8] = bpf_htonl(s->tcp_len);
		s->pseudo[9] = bpf_htonl(IPPROTO_TCP);
		sum = bpf_csum_diff(0, 0, s->pseudo, 10 * sizeof(__u32), 0);
	}
	if (sum < 0)
		return 1;
	__u16 field = *(__u16 *)&s->hdr[16];
	if (csum_fold(sum) == field)
		return 1; /* checksum offload: only the pseudo-header is summed */

	sum = bpf_csum_diff(0, 0, (void *)s->hdr, hl & (sizeof(s->hdr) - 4), sum);
	if (sum < 0)
		return 1;
	/* the last word of the payload is summed with zero padding */
	if (n & 3) {
		s->pkt[n & SCAN_MASK] = 0;
		s->pkt[(n + 1) & SCAN_MASK] = 0;
		s->pkt[(n + 2) & SCAN_MASK] = 0;
	}
	for (__u32 off = 0; off < MAX_SCAN_BYTES; off += CSUM_CHUNK) {
		if (off >= n)
			break;
		__u32 sz = n - off;
		if (sz > CSUM_CHUNK)
			sz = CSUM_CHUNK;
		sz = (sz + 3) & ~3U;
		sum = bpf_csum_diff(0, 0, (void *)&s->pkt[off & SCAN_MASK], sz & (2 * CSUM_CHUNK - 1), sum);
		if (sum < 0)
			return 1;
	}
	return csum_fold(sum) == 0xffff;
}

/* mark_data_syn puts the configured fwmark on an admitted data connection's SYN */
static __always_inline void mark_data_syn(struct __sk_buff *skb, const struct pkt_info *p)
{
	struct config_val *cfg = get_config();
	if (!cfg || !(cfg->fwmark_value | cfg->fwmark_mask))
		return;
	struct flow_key fk;
	flow_key_from(&fk, p, 0);
	if (!bpf_map_lookup_elem(&data_flows, &fk))
		return;
	__u32 mask = cfg->fwmark_mask ? cfg->fwmark_mask : ~0U;
	skb->mark = (skb->mark & ~mask) | (cfg->fwmark_value & mask);
	stat_inc(STAT_SYN_FWMARK);
}

/*
 * forget_pending drops the outstanding passive request after a gap: the lost
 * bytes may have held a new request or the reply that answered it.
 */
static __always_inline void forget_pending(struct dir_state *st, struct dir_state *other, __u32 dir)
{
	if (dir == DIR_CLIENT)
		st->pasv_kind = KIND_NONE;
	else
		st->pasv_gen = other->pasv_gen;
}

/*
 * sync_stream lines the segment up with what the direction has parsed so far.
 * Returns the offset into the payload of the first new byte; -1 if none.
 */
static __always_inline int sync_stream(struct dir_state *st, struct dir_state *other, __u32 dir, __u32 seq,
				       __u32 len)
{
	__s32 d = (__s32)(seq - st->next_seq);

	if (d > 0) {
		/* bytes were missed: resynchronise at the next line start */
		stat_inc(STAT_PARSE_RESYNC);
		st->mode = MODE_SKIP;
		st->carry_len = 0;
		forget_pending(st, other, dir);
		return 0;
	}
	if (d < 0) {
		__u32 old = -d;
		if (old >= len) {
			if (len)
				stat_inc(STAT_CTRL_RETRANSMIT);
			return -1;
		}
		return old;
	}
	return len ? 0 : -1;
}

static __always_inline int parse_control(struct __sk_buff *skb, int ingress)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct pkt_info p;

	if (parse_packet(data, data_end, &p) != PARSE_TCP)
		return TC_ACT_OK;

	__u8 fl = p.flags;
	if (ingress && (fl & TCPF_SYN) && !(fl & TCPF_ACK))
		mark_data_syn(skb, &p);

	__u32 dir;
	if (port_enabled(&ctrl_ports, p.dport))
		dir = DIR_CLIENT;
	else if (port_enabled(&ctrl_ports, p.sport))
		dir = DIR_SERVER;
	else
		return TC_ACT_OK;

	if (!ingress && skb->ingress_ifindex) {
		__u32 ifx = skb->ingress_ifindex;
		if (bpf_map_lookup_elem(&guarded_ifs, &ifx)) {
			stat_inc(STAT_CTRL_SKIP_FORWARDED);
			return TC_ACT_OK;
		}
	}
	stat_inc(STAT_CTRL_SEGMENTS);

	struct scratch *s = get_scratch();
	if (!s)
		return TC_ACT_OK;
	__builtin_memset(&s->key, 0, sizeof(s->key));
	s->key.family = p.family;
	if (dir == DIR_CLIENT) {
		s->key.client_port = p.sport;
		s->key.server_port = p.dport;
		copy_addr(s->key.client, p.src);
		copy_addr(s->key.server, p.dst);
	} else {
		s->key.client_port = p.dport;
		s->key.server_port = p.sport;
		copy_addr(s->key.client, p.dst);
		copy_addr(s->key.server, p.src);
	}
	s->dir = dir;

	struct config_val *cfg = get_config();
	__u64 now = now_ns(cfg);

	struct ctrl_val *cv = bpf_map_lookup_elem(&ctrl_conns, &s->key);
	if (!cv) {
		/*
		 * Only a SYN or data start tracking: the last ACK after both
		 * FINs (or an RST) must not bring a closed connection back.
		 */
		if ((fl & TCPF_RST) || (!(fl & TCPF_SYN) && !p.payload_len))
			return TC_ACT_OK;
		s->zero.created_ns = now;
		int err = bpf_map_update_elem(&ctrl_conns, &s->key, &s->zero, BPF_NOEXIST);
		if (err && err != -17 /* EEXIST: the other direction won */) {
			stat_inc(STAT_CTRL_CONN_FULL);
			return TC_ACT_OK;
		}
		cv = bpf_map_lookup_elem(&ctrl_conns, &s->key);
		if (!cv)
			return TC_ACT_OK;
	}
	struct dir_state *st = dir_of(cv, dir);
	struct dir_state *other = dir_of(cv, dir ^ 1);

	__u32 seq = p.seq;
	__u32 len = p.payload_len;
	if (fl & TCPF_SYN) {
		/* a new stream: its first byte starts a line */
		st->seen = 1;
		st->mode = MODE_LINE_START;
		st->carry_len = 0;
		st->fin = 0;
		seq += 1;
		st->next_seq = seq;
	} else if (!st->seen) {
		/* picked up mid-stream: the first byte is not known to start a line */
		stat_inc(STAT_CTRL_PICKUP);
		st->seen = 1;
		st->mode = MODE_SKIP;
		st->carry_len = 0;
		st->next_seq = seq;
	}
	st->last_ns = now;

	if (fl & TCPF_RST) {
		stat_inc(STAT_CTRL_CLOSED);
		ctrl_close();
		bpf_map_delete_elem(&ctrl_conns, &s->key);
		return TC_ACT_OK;
	}

	/*
	 * Load the segment's payload (its first MAX_SCAN_BYTES) and check its
	 * TCP checksum before anything changes: a forged segment the receiver
	 * will drop must be neither parsed nor counted as seen, or the genuine
	 * retransmission that follows would be skipped as old bytes.
	 */
	__u32 n = len > MAX_SCAN_BYTES ? MAX_SCAN_BYTES : len;
	int loaded = 0;
	if (n > 0) {
		/*
		 * Verifiers before 6.x do not learn n >= 1 from a test against
		 * zero; this form carries the range [1, MAX_SCAN_BYTES] in the
		 * arithmetic itself.
		 */
		__u32 load = ((n - 1) & (SCAN_BUF_SIZE - 1)) + 1;
		loaded = bpf_skb_load_bytes(skb, p.payload_off, s->pkt, load) == 0;
		s->loaded = loaded ? n : 0;
		s->l4_off = p.l4_off;
		s->hdr_len = p.payload_off - p.l4_off;
		s->tcp_len = s->hdr_len + len;
		if (loaded && !segment_trusted(skb)) {
			stat_inc(STAT_CTRL_BAD_CHECKSUM);
			return TC_ACT_OK;
		}
	}

	int start = sync_stream(st, other, dir, seq, len);
	if (start >= 0) {
		if (n > 0 && !loaded) {
			/* bytes the parser cannot read count as a gap */
			stat_inc(STAT_SCAN_LIMIT);
			st->mode = MODE_SKIP;
			st->carry_len = 0;
			forget_pending(st, other, dir);
		} else if (n > 0) {
			/* old bytes of a partial retransmission are passed over */
			s->pos = start;
			s->end = n;
			int i;
			for (i = 0; i < MAX_LINES; i++) {
				if (parse_step())
					break;
			}
			if ((i == MAX_LINES && s->pos < s->end) || len > MAX_SCAN_BYTES) {
				/*
				 * The rest of the segment is not parsed: a gap. The
				 * next segment starts a line only if this one ends one.
				 */
				stat_inc(STAT_SCAN_LIMIT);
				__u8 last = 0;
				bpf_skb_load_bytes(skb, p.payload_off + len - 1, &last, 1);
				st->mode = last == '\n' ? MODE_LINE_START : MODE_SKIP;
				st->carry_len = 0;
				forget_pending(st, other, dir);
			}
		}
		st->next_seq = seq + len;
	}

	if (fl & TCPF_FIN) {
		if (st->next_seq == seq + len)
			st->next_seq++;
		if (!st->fin) {
			st->fin = 1;
			stat_inc(STAT_CTRL_CLOSED);
			ctrl_close();
		}
		if (other->fin)
			bpf_map_delete_elem(&ctrl_conns, &s->key);
	}
	return TC_ACT_OK;
}

#endif /* FTPGATE_PARSER_H */
