package bpf_test

import (
	"strings"
	"testing"

	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/internal/nettest"
	"github.com/ftpgate/ftpgate/maps"

	"github.com/ftpgate/ftpgate/internal/packet"
)

// The review of #12 found these; each test failed before its fix.
//
// The client's FIN (the connection's second) leaves shifted, and the
// server's ACK of it is shifted back: a connection whose announcements were
// rewritten keeps its state, correction log included, past the close
// (ctrl_forget) instead of losing it before nat_egress runs.
func TestNATReviewFinAfterServerFinUnshifted(t *testing.T) {
	e, c, out := masqueraded(t)
	must(t, c.ClientSends("PORT 192,0,2,2,200,10\r\n")) // +3
	must(t, c.ClientSends("QUIT\r\n"))
	must(t, c.ServerSends("221 Goodbye.\r\n"))
	must(t, c.ServerFlags(packet.FIN|packet.ACK)) // server closes first (vsftpd after QUIT)
	finSeq := c.CSeq
	must(t, c.ClientFlags(packet.FIN|packet.ACK)) // the client's FIN at egress
	got := last(t, out)
	t.Logf("client FIN left at seq %#x, inside seq %#x, want %#x", got.Seq, finSeq, finSeq+3)
	if got.Seq != finSeq+3 {
		t.Errorf("R1 reproduced: client FIN not shifted (seq %#x, want %#x)", got.Seq, finSeq+3)
	}
	// the server's retransmitted FIN / dup ACK now arrives at ingress: ack not shifted back
	e.manualAck = true
	must(t, c.Forge(false, packet.TCP{Seq: c.SSeq - 1, Ack: finSeq + 3 + 1, Flags: packet.ACK | packet.FIN}))
	got = last(t, out)
	t.Logf("server's FIN retransmission ack left as %#x, client's end (inside numbering) %#x", got.Ack, finSeq+1)
	if got.Ack != finSeq+1 {
		t.Errorf("R1b reproduced: ack %#x not shifted back (want %#x): conntrack sees an ack beyond the client's end", got.Ack, finSeq+1)
	}
}

// A client RST after a rewrite goes out shifted: the RST keeps the log too.
func TestNATReviewRstUnshifted(t *testing.T) {
	_, c, out := masqueraded(t)
	must(t, c.ClientSends("PORT 192,0,2,2,200,10\r\n")) // +3
	s := c.CSeq
	must(t, c.ClientFlags(packet.RST|packet.ACK))
	got := last(t, out)
	if got.Seq != s+3 {
		t.Errorf("R1c reproduced: client RST left at %#x, want %#x (out of the server's window)", got.Seq, s+3)
	}
}

// One forged ACK from outside with a bad TCP checksum must not move
// nat_dir.acked (only a segment the tracker accepted does, nat_ack_commit):
// otherwise the next egress segment folds the unacknowledged fix and its
// retransmission goes out with the inside address and the wrong shift.
func TestNATReviewForgedAckFoldsLog(t *testing.T) {
	e, c, out := masqueraded(t)
	portSeq := c.CSeq
	e.manualAck = true
	must(t, c.ClientSends("PORT 192,0,2,2,200,10\r\n")) // +3, not acknowledged yet
	// blind forgery: server's 4-tuple, any seq, ack far ahead, bad checksum
	forged := packet.TCP{Src: c.Server, Dst: c.Client, Seq: 0x12345678, Ack: portSeq + 0x40000000, Flags: packet.ACK, BadChecksum: true}
	e.run(forged.Bytes(), true)
	wantCounters(t, e.r, map[string]uint64{"ctrl_bad_checksum": 1})
	must(t, c.ClientSends("NOOP\r\n")) // any egress segment folds
	// the PORT segment is lost and retransmitted
	must(t, c.ClientAt(portSeq, "PORT 192,0,2,2,200,10\r\n"))
	got := last(t, out)
	t.Logf("retransmission left as %q at %#x (original seq %#x)", got.Payload, got.Seq, portSeq)
	if got.Payload != "PORT 198,51,100,1,200,10\r\n" || got.Seq != portSeq {
		t.Errorf("R2 reproduced: retransmitted PORT left as %q at seq %#x, want the rewritten text at %#x", got.Payload, got.Seq, portSeq)
	}
	// and real ACKs of the PORT (shifted numbering) are now shifted by the wrong amount?
	must(t, c.Forge(false, packet.TCP{Seq: c.SSeq, Ack: portSeq + 10, Flags: packet.ACK}))
	got = last(t, out)
	t.Logf("peer ACK of a byte before the field end: %#x -> %#x (want %#x)", portSeq+10, got.Ack, portSeq+10)
}

// Two backends behind one VIP answer one client address with the same 229
// port: the second must not replace the first's expectation (nat_epsv_clash),
// or the first session's data connection would be DNATed to the other
// backend (whose vsftpd accepts it: same client address).
func TestNATReviewEPSVClashHijacks(t *testing.T) {
	e := newNATEnv(t)
	vip := ap(addr("198.51.100.10"), 21)
	s1 := ap(addr("192.0.2.66"), 21)
	s2 := ap(addr("192.0.2.130"), 21)
	cA := ap(addr("203.0.113.9"), 40001) // victim's session, behind CGNAT address 203.0.113.9
	cB := ap(addr("203.0.113.9"), 40002) // attacker's session, same public address
	e.dnat(cA, vip, s1)
	e.dnat(cB, vip, s2)
	a, _ := e.conn(cA, vip, false)
	b, _ := e.conn(cB, vip, false)
	must(t, a.ClientSends("EPSV\r\n"))
	must(t, a.ServerSends("229 Entering Extended Passive Mode (|||30042|)\r\n"))
	t.Logf("after A's 229: %v", natExpectations(t, e.r))
	must(t, b.ClientSends("EPSV\r\n"))
	must(t, b.ServerSends("229 Entering Extended Passive Mode (|||30042|)\r\n"))
	got := natExpectations(t, e.r)
	t.Logf("after B's 229: %v", got)
	for _, x := range got {
		if x.Dst.Port() == 30042 && x.Inside.Addr() == s2.Addr() && len(got) == 1 {
			t.Errorf("R3 reproduced: A's expectation (client %s -> %s) now leads to %s (B's backend)", x.Src, x.Dst, x.Inside)
		}
	}
	// A's client now opens its data connection to VIP:30042 (from any port)
	syn := bpftest.SYN(ap(addr("203.0.113.9"), 55555), ap(vip.Addr(), 30042))
	v, err := e.r.XDP(syn)
	must(t, err)
	t.Logf("XDP verdict %d", v)
	must(t, nettest.Do(e.ns, func() error { _, err := e.r.TC(syn, true, 0); return err }))
	lines, err := nettest.Conntrack(e.ns, 4)
	must(t, err)
	for _, l := range lines {
		if strings.Contains(l, "sport=55555") {
			t.Logf("data connection's conntrack entry: %s", l)
		}
	}
	// the same with 227: remapped, both kept
	must(t, a.ClientSends("PASV\r\n"))
	must(t, a.ServerSends("227 Entering Passive Mode (192,0,2,66,117,50).\r\n"))
	must(t, b.ClientSends("PASV\r\n"))
	must(t, b.ServerSends("227 Entering Passive Mode (192,0,2,130,117,50).\r\n"))
	t.Logf("227 for comparison: %v", natExpectations(t, e.r))
}

// Another inside client behind the same masquerade announcing the public
// address itself (PORT 198,51,100,1,...) must not replace the victim's NAT
// expectation for the same server and port (nat_public_announced).
func TestNATReviewPublicAddressPortReplaces(t *testing.T) {
	e, b, outB := twoMasqueraded(t)
	must(t, b.ClientSends("PORT 198,51,100,1,200,10\r\n"))
	t.Logf("attacker's PORT left as %q", last(t, outB).Payload)
	got := natExpectations(t, e.r)
	t.Logf("after: %v", got)
	if len(got) == 1 && !got[0].Inside.IsValid() {
		t.Errorf("R4 reproduced: victim's expectation to %s replaced by one without NAT (the data SYN reaches the gateway itself)", got[0].Dst)
	}
	wantCounters(t, e.r, map[string]uint64{"reject_bounce": 0})
}

// An inside client naming the gateway's public address and a port of a
// service on the gateway itself (8443) must not make XDP, which drops SYNs
// to 8443, admit the server's SYN to it.
func TestNATReviewPublicAddressOpensGatewayPort(t *testing.T) {
	e, c, out := masqueraded(t)
	setConfig(t, e.r, func(cfg *maps.Config) { cfg.FwmarkValue, cfg.FwmarkMask = 0x100, 0x100 })
	must(t, c.ClientSends("PORT 198,51,100,1,32,251\r\n"))
	t.Logf("PORT left as %q; expectations %v", last(t, out).Payload, natExpectations(t, e.r))
	syn := bpftest.SYN(ap(natServer.Addr(), 20), ap(natPublic.Addr(), 8443))
	v, err := e.r.XDP(syn)
	must(t, err)
	var mark uint32
	must(t, nettest.Do(e.ns, func() error { var err error; mark, err = e.r.TC(syn, true, 0); return err }))
	t.Logf("XDP verdict %d (2 = pass), TC mark %#x", v, mark)
	if v == bpftest.XDPPass {
		t.Errorf("R4b reproduced: SYN %v -> gateway's own %v admitted (mark %#x)", natServer.Addr(), ap(natPublic.Addr(), 8443), mark)
	}
}

// A retransmission longer than the parser reads (MAX_SCAN_BYTES; GRO and
// TSO make such skbs) that holds a rewritten field cannot be rebuilt:
// unchanged, its field would leave with the old length and every byte
// after it with the wrong shift. It is dropped (nat_retrans_too_long) and
// TCP sends it again. BPF_PROG_TEST_RUN takes no skb longer than a page, so
// the test sends the start of such a segment, whose IP length claims the
// whole: the same case for nat_egress, a logged field inside a payload that
// is not in the parser's buffer.
func TestNATReviewLongRetransmissionDropped(t *testing.T) {
	e, c, out := masqueraded(t)
	start := c.CSeq
	port := "PORT 192,0,2,2,200,10\r\n" // +3
	must(t, c.ClientSends(port))
	wantPayload(t, out, "PORT 198,51,100,1,200,10\r\n")
	// the PORT and what followed it, resent as one skb
	rest := strings.Repeat("NOOP\r\n", (maps.MaxScanBytes+900)/6)
	frame := packet.TCP{Src: natPublic, Dst: natServer, Seq: start, Ack: c.SSeq, Flags: packet.ACK | packet.PSH, Payload: []byte(port + rest)}.Bytes()
	frame = frame[:3000]
	o, ret := e.run(frame, false)
	if ret != tcActShot {
		t.Errorf("%d-byte retransmission holding the rewritten PORT: tc returned %d, left starting %q, want TC_ACT_SHOT",
			len(port+rest), ret, o[14+20+20:14+20+20+len(port)+3])
	}
	wantCounters(t, e.r, map[string]uint64{"nat_retrans_too_long": 1, "nat_rewrite": 1})
}

// A rewrite that would grow a plain (non-GSO) segment past the egress
// device's MTU (and L2 header) is not made: the segment would be lost after
// TC, and its retransmission, the same size, too. The announcement passes
// unchanged (nat_mtu_unchanged) and nothing is logged, so later segments
// are not shifted. A retransmission that grows past the MTU re-applying a
// logged field is dropped (nat_mtu_drop): unchanged it would corrupt the
// stream.
func TestNATReviewGrowthPastMTU(t *testing.T) {
	e, c, out := masqueraded(t)
	const mtu = 94
	ifindex := uint32(e.smallMTU(mtu))
	// 93 bytes of IP, 96 after the rewrite
	payload := strings.Repeat("NOOP\r\n", 5) + "PORT 192,0,2,2,200,10\r\n"
	frame := packet.TCP{Src: natPublic, Dst: natServer, Seq: c.CSeq, Ack: c.SSeq, Flags: packet.ACK | packet.PSH, Payload: []byte(payload)}.Bytes()
	got, ret := e.egressOn(frame, ifindex, 0, 0)
	if ret != bpftest.TCOK || got.Payload != payload || got.IPLen != mtu-1 {
		t.Fatalf("full-size segment: tc %d, left %d bytes of IP with %q; want it unchanged", ret, got.IPLen, got.Payload)
	}
	wantCounters(t, e.r, map[string]uint64{"nat_mtu_unchanged": 1, "nat_rewrite": 0, "reject_bounce": 1})
	c.CSeq += uint32(len(payload))
	must(t, c.ClientSends("NOOP\r\n"))
	if s := last(t, out); s.Seq != c.CSeq-6 {
		t.Errorf("next segment left at %#x, want %#x: shifted by a rewrite never made", s.Seq, c.CSeq-6)
	}

	// a short PORT is rewritten; its retransmission collapsed with the
	// bytes after it to the full size would grow past the MTU
	start := c.CSeq
	must(t, c.ClientSends("PORT 192,0,2,2,200,11\r\n"))
	wantPayload(t, out, "PORT 198,51,100,1,200,11\r\n")
	must(t, c.ClientSends(strings.Repeat("NOOP\r\n", 5)))
	frame = packet.TCP{Src: natPublic, Dst: natServer, Seq: start, Ack: c.SSeq, Flags: packet.ACK | packet.PSH,
		Payload: []byte("PORT 192,0,2,2,200,11\r\n" + strings.Repeat("NOOP\r\n", 5))}.Bytes()
	if _, ret := e.egressOn(frame, ifindex, 0, 0); ret != tcActShot {
		t.Errorf("retransmission grown past the MTU: tc returned %d, want TC_ACT_SHOT", ret)
	}
	wantCounters(t, e.r, map[string]uint64{"nat_mtu_unchanged": 1, "nat_rewrite": 1, "nat_mtu_drop": 1})
}

// A GSO skb longer than the MTU loses its GSO state to any rewrite
// (bpf_skb_change_tail), a shrinking one too: it would leave as one packet
// past the MTU. It leaves unchanged (nat_mtu_unchanged), nothing logged, and
// its retransmission in gso_size pieces on the small-MTU device too.
func TestNATReviewGSOShrinkPastMTU(t *testing.T) {
	e := newNATEnv(t)
	long := ap(addr("203.0.113.200"), 40000) // 203,0,113,200 -> 198,51,100,1: one byte shorter
	e.masquerade(long, natPublic, natServer)
	c, _ := e.conn(natPublic, natServer, true)
	ifindex := uint32(e.smallMTU(94))
	payload := strings.Repeat("NOOP\r\n", 5) + "PORT 203,0,113,200,200,10\r\n" // 97 bytes of IP
	e.gsoUnchanged(c, ifindex, payload, 50)
	wantCounters(t, e.r, map[string]uint64{"nat_mtu_unchanged": 1, "nat_gso_drop": 0, "nat_mtu_drop": 0, "nat_retrans_reapplied": 0, "nat_rewrite": 0})
}

// Segments with TCP-MD5 (19), TCP-AO (29) or MPTCP (30) options are never
// rewritten: a rewrite breaks the signature only the endpoints can make, or
// the DSS mapping's lengths. The announcement passes unchanged
// (nat_tcp_option), and so does every later one of that direction: an
// MPTCP mapping may cover segments that carry no option.
func TestNATReviewSignedOptionsKept(t *testing.T) {
	opts := map[string][]byte{
		"md5":   append([]byte{19, 18}, append(make([]byte, 16), 1, 1)...),
		"ao":    append([]byte{29, 16, 1, 1}, make([]byte, 12)...),
		"mptcp": {30, 8, 0x20, 0x01, 0, 0, 0, 0},
	}
	for name, opt := range opts {
		t.Run(name, func(t *testing.T) {
			e, c, out := masqueraded(t)
			port := "PORT 192,0,2,2,200,10\r\n"
			must(t, c.Forge(true, packet.TCP{Seq: c.CSeq, Ack: c.SSeq, Flags: packet.ACK | packet.PSH, TCPOptions: opt, Payload: []byte(port)}))
			c.CSeq += uint32(len(port))
			if got := last(t, out); got.Payload != port {
				t.Errorf("PORT with option %d left as %q, want it unchanged", opt[0], got.Payload)
			}
			// the next one, without the option
			must(t, c.ClientSends("PORT 192,0,2,2,200,11\r\n"))
			wantPayload(t, out, "PORT 192,0,2,2,200,11\r\n")
			wantCounters(t, e.r, map[string]uint64{"nat_tcp_option": 2, "nat_rewrite": 0})
		})
	}
}
