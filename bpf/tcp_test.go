package bpf_test

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/ftpgate/ftpgate/bpf"
	"github.com/ftpgate/ftpgate/internal/bpfrun"
	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/internal/packet"
	"github.com/ftpgate/ftpgate/internal/reference"
	"github.com/ftpgate/ftpgate/maps"
)

const pasvReply = "227 Entering Passive Mode (198,51,100,20,117,48)\r\n"

// TestBlindDesync (issue 11, finding 4): spoofed bare ACKs with random
// sequence numbers, with a wrong checksum or without, must not move the
// parser: the PASV/227 that follows still makes its expectation.
func TestBlindDesync(t *testing.T) {
	r := bpftest.Shared(t)
	c := open(t, r, client4, server4)
	rng := rand.New(rand.NewPCG(11, 4))
	for _, bad := range []bool{true, true, false, false} {
		for _, fromClient := range []bool{true, false} {
			seq := c.CSeq + 1<<20 + rng.Uint32N(1<<30)
			if !fromClient {
				seq = c.SSeq + 1<<20 + rng.Uint32N(1<<30)
			}
			must(t, c.Forge(fromClient, packet.TCP{Seq: seq, Ack: rng.Uint32(), Flags: packet.ACK, BadChecksum: bad}))
		}
	}
	converse(t, c, "", "PASV\r\n", pasvReply)
	wantExpect(t, r, expect{"pasv", client4, server4, 30000})
	wantCounters(t, r, map[string]uint64{"ctrl_bad_checksum": 4, "tcp_out_of_window": 4, "parse_resync": 0})
}

// TestBareACKNeverMovesTheParser: an in-window bare ACK ahead of the stream
// (a window probe's neighbour, or a forger who guessed well) is no gap.
func TestBareACKNeverMovesTheParser(t *testing.T) {
	r := bpftest.Shared(t)
	c := open(t, r, client4, server4)
	must(t, c.ClientSends("PASV\r\n"))
	must(t, c.Forge(false, packet.TCP{Seq: c.SSeq + 1000, Ack: c.CSeq, Flags: packet.ACK}))
	must(t, c.ServerSends(pasvReply))
	wantExpect(t, r, expect{"pasv", client4, server4, 30000})
	wantCounters(t, r, map[string]uint64{"parse_resync": 0, "tcp_out_of_window": 0})
}

// TestSpoofedRSTAndFIN (issue 11, finding 5): an RST or FIN with a wrong
// checksum, out of the window, or (RST) in the window but not at the
// sender's next byte, removes nothing; the genuine RST does.
func TestSpoofedRSTAndFIN(t *testing.T) {
	r := bpftest.Shared(t)
	c := open(t, r, client4, server4)
	must(t, c.ClientSends("PORT 192,0,2,10,195,80\r\n"))
	want := expect{"port", server4, client4, 50000}
	forged := []struct {
		fromClient bool
		seg        packet.TCP
	}{
		{true, packet.TCP{Seq: c.CSeq, Ack: c.SSeq, Flags: packet.RST | packet.ACK, BadChecksum: true}},
		{false, packet.TCP{Seq: c.SSeq, Ack: c.CSeq, Flags: packet.RST | packet.ACK, BadChecksum: true}},
		{true, packet.TCP{Seq: c.CSeq + 1<<30, Flags: packet.RST}},
		{false, packet.TCP{Seq: c.SSeq - 1<<30, Flags: packet.RST}},
		{true, packet.TCP{Seq: c.CSeq + 100, Flags: packet.RST}}, // in window, not at the next byte
		{true, packet.TCP{Seq: c.CSeq, Ack: c.SSeq, Flags: packet.FIN | packet.ACK, BadChecksum: true}},
		{false, packet.TCP{Seq: c.SSeq + 1<<30, Ack: c.CSeq, Flags: packet.FIN | packet.ACK}},
	}
	for _, f := range forged {
		must(t, c.Forge(f.fromClient, f.seg))
	}
	wantExpect(t, r, want)
	wantCounters(t, r, map[string]uint64{"ctrl_bad_checksum": 3, "tcp_rst_ignored": 3, "tcp_out_of_window": 1,
		"ctrl_closed": 0, "expect_closed": 0})
	conns, err := r.Maps.ListConns()
	must(t, err)
	if len(conns) != 1 || conns[0].Closing {
		t.Fatalf("control connections %+v, want the one, open", conns)
	}
	// the genuine RST, at the client's next byte
	must(t, c.ClientFlags(packet.RST))
	wantExpect(t, r)
	wantCounters(t, r, map[string]uint64{"ctrl_closed": 1, "expect_closed": 1})
}

// TestSpoofedSegmentWithoutHandshake (issue 11, finding 1): one segment with
// a PORT, no connection behind it, is tracked but never parsed.
func TestSpoofedSegmentWithoutHandshake(t *testing.T) {
	r := bpftest.Shared(t)
	c := bpftest.NewConn(r, ap(client4, 40000), ap(server4, 21))
	must(t, c.ClientSends("\r\nPORT 192,0,2,10,195,80\r\n"))
	wantExpect(t, r)
	wantCounters(t, r, map[string]uint64{"ctrl_pickup": 1, "tcp_untrusted": 1, "cmd_port": 0})
	// nor after a SYN: the server never answered it
	c2 := bpftest.NewConn(r, ap(client4, 40001), ap(server4, 21))
	must(t, c2.Forge(true, packet.TCP{Seq: c2.CSeq, Flags: packet.SYN}))
	c2.CSeq++
	must(t, c2.ClientSends("PORT 192,0,2,10,195,81\r\n"))
	wantExpect(t, r)
	wantCounters(t, r, map[string]uint64{"tcp_untrusted": 2, "cmd_port": 0})
	embryos, err := r.Maps.ListEmbryos()
	must(t, err)
	if len(embryos) != 2 || embryos[0].SYN == embryos[1].SYN {
		t.Fatalf("untrusted connections %+v, want the pickup and the SYN", embryos)
	}
	if conns, err := r.Maps.ListConns(); err != nil || len(conns) != 0 {
		t.Fatalf("trusted connections %+v (%v), want none", conns, err)
	}
}

// TestHandshake: the third ACK makes the connection trusted, also when it
// carries the first bytes; a SYN-ACK that does not acknowledge the SYN is
// refused, and so is a SYN with another ISN on a trusted connection.
func TestHandshake(t *testing.T) {
	r := bpftest.Shared(t)
	c := bpftest.NewConn(r, ap(client4, 40000), ap(server4, 21))
	must(t, c.Forge(true, packet.TCP{Seq: c.CSeq, Flags: packet.SYN}))
	// a blind SYN-ACK acknowledging something else
	must(t, c.Forge(false, packet.TCP{Seq: 12345, Ack: c.CSeq + 7, Flags: packet.SYN | packet.ACK}))
	wantCounters(t, r, map[string]uint64{"tcp_out_of_window": 1})
	c.CSeq++
	must(t, c.Forge(false, packet.TCP{Seq: c.SSeq, Ack: c.CSeq, Flags: packet.SYN | packet.ACK}))
	c.SSeq++
	// the third ACK; the server greets first (client bytes before the
	// greeting would make the connection not FTP)
	must(t, c.ClientFlags(packet.ACK))
	must(t, c.Greet())
	must(t, c.ClientSends("PORT 192,0,2,10,195,80\r\n"))
	wantExpect(t, r, expect{"port", server4, client4, 50000})
	wantCounters(t, r, map[string]uint64{"ctrl_trusted_handshake": 1, "tcp_untrusted": 0})
	must(t, c.Forge(true, packet.TCP{Seq: 777, Flags: packet.SYN}))
	wantCounters(t, r, map[string]uint64{"tcp_out_of_window": 2})
	must(t, c.ClientSends("PORT 192,0,2,10,195,81\r\n"))
	wantExpect(t, r, expect{"port", server4, client4, 50001})
}

// TestOutOfWindowData: payload beyond the edge the peer allowed, or older
// than a window, is ignored and counted; the stream is not disturbed. The
// client's ISN lies just before the wrap, so the window spans it.
func TestOutOfWindowData(t *testing.T) {
	r := bpftest.Shared(t)
	c := bpftest.NewConn(r, ap(client4, 40000), ap(server4, 21))
	c.CSeq = 0xffffffff - 20
	must(t, c.Open())
	must(t, c.Greet())
	must(t, c.ClientSends("NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n")) // crosses zero
	if c.CSeq > 0x100 {
		t.Fatalf("client sequence %#x did not wrap", c.CSeq)
	}
	const scaledWindow = 65535 << bpftest.WScale
	must(t, c.ClientAt(c.CSeq+scaledWindow+10, "PORT 192,0,2,10,195,79\r\n"))  // beyond the edge
	must(t, c.ClientAt(c.CSeq-scaledWindow-100, "PORT 192,0,2,10,195,78\r\n")) // older than a window
	wantCounters(t, r, map[string]uint64{"tcp_out_of_window": 2, "parse_resync": 0})
	must(t, c.ClientSends("PORT 192,0,2,10,195,80\r\n"))
	wantExpect(t, r, expect{"port", server4, client4, 50000})
}

// TestWindowScaling: the window a SYN pair agreed on is scaled; without the
// option in both SYNs, it is not.
func TestWindowScaling(t *testing.T) {
	for _, scaled := range []bool{true, false} {
		r := bpftest.Shared(t)
		c := bpftest.NewConn(r, ap(client4, 40000), ap(server4, 21))
		c.NoWScale = !scaled
		must(t, c.Open())
		must(t, c.ServerFlags(packet.ACK)) // a window from the server, scaled if agreed
		// 100 000 bytes ahead: inside 65535 << 7, outside 65535
		must(t, c.ClientAt(c.CSeq+100000, "NOOP\r\n"))
		if scaled {
			wantCounters(t, r, map[string]uint64{"tcp_out_of_window": 0, "parse_resync": 1})
		} else {
			wantCounters(t, r, map[string]uint64{"tcp_out_of_window": 1, "parse_resync": 0})
		}
	}
}

// TestRetransmittedSYNNeedsSameISN (issue 11, finding 7): an admitted data
// flow lets its own SYN through again, but not another ISN on the 5-tuple,
// nor any SYN once the flow has closed.
func TestRetransmittedSYNNeedsSameISN(t *testing.T) {
	r := bpftest.Shared(t)
	passive(t, r)
	src, dst := ap(client4, 51234), ap(server4, 30000)
	syn := func(seq uint32) []byte { return packet.TCP{Src: src, Dst: dst, Seq: seq, Flags: packet.SYN}.Bytes() }
	wantVerdict(t, r, syn(1000), bpftest.XDPPass)
	wantVerdict(t, r, syn(1000), bpftest.XDPPass)
	wantVerdict(t, r, syn(2000), bpftest.XDPDrop)
	wantCounters(t, r, map[string]uint64{"syn_pass_expected": 1, "syn_pass_retransmit": 1, "syn_flow_refused": 1})
	wantVerdict(t, r, packet.TCP{Src: src, Dst: dst, Seq: 1001, Flags: packet.FIN | packet.ACK}.Bytes(), bpftest.XDPPass)
	wantVerdict(t, r, syn(1000), bpftest.XDPDrop)
	wantCounters(t, r, map[string]uint64{"syn_pass_retransmit": 1, "syn_flow_refused": 2})
	// a new expectation admits a new connection on the same 5-tuple
	c := bpftest.NewConn(r, ap(client4, 40001), ap(server4, 21))
	must(t, c.Open())
	must(t, c.Greet())
	converse(t, c, "", "PASV\r\n", pasvReply)
	wantVerdict(t, r, syn(5000), bpftest.XDPPass)
	wantCounters(t, r, map[string]uint64{"syn_pass_expected": 2})
}

// TestTrackerMatchesReference runs random segment sequences (handshakes and
// pickups; in order, retransmitted, random, forged, RST, FIN, SYN) through the
// BPF tracker and the Go model in internal/reference (flags no receiver
// takes, a server SYN without ACK): every verdict, counted,
// and where the connection's state lives must agree.
func TestTrackerMatchesReference(t *testing.T) {
	r := bpftest.Shared(t)
	rng := rand.New(rand.NewPCG(11, 11))
	counters := []string{"tcp_out_of_window", "tcp_rst_ignored", "ctrl_bad_checksum", "tcp_bad_flags"}
	last, err := r.Counters()
	must(t, err)
	for run := range 200 {
		client := ap(netip.AddrFrom4([4]byte{10, byte(run >> 8), byte(run), 1}), uint16(1024+run))
		c := bpftest.NewConn(r, client, ap(server4, 21))
		c.CSeq, c.SSeq = rng.Uint32(), rng.Uint32()
		// the server's address starts pickups too: a full bucket each run
		must(t, bpfrun.Clear(r.Objs.EmbryoSources))
		model := reference.NewTCPTracker()
		next := [2]uint32{c.CSeq, c.SSeq}
		isn := next
		for step := range 40 {
			d := rng.IntN(2)
			fromClient := d == 0
			seg := packet.TCP{Seq: next[d], Ack: next[1-d], Flags: packet.ACK}
			n := 0
			switch k := rng.IntN(20); {
			case step == 0 && run%2 == 0, k == 0:
				fromClient, d = step == 0 || fromClient, 0
				if step > 0 && rng.IntN(2) == 0 {
					d, fromClient = 1, false
				}
				seg = packet.TCP{Seq: isn[d], Flags: packet.SYN}
				if d == 1 && rng.IntN(4) != 0 { // else a server SYN without ACK
					seg.Flags |= packet.ACK
					seg.Ack = isn[0] + 1
				}
				if rng.IntN(4) != 0 {
					seg.TCPOptions = []byte{1, 3, 3, 7}
				}
			case k < 9:
				n = 1 + rng.IntN(40)
			case k < 11:
				seg.Seq -= uint32(rng.IntN(100)) // an old or overlapping segment
				n = rng.IntN(50)
			case k < 13:
				seg.Seq = rng.Uint32()
			case k < 14:
				seg.Ack = rng.Uint32()
				n = rng.IntN(10)
			case k < 15:
				seg.BadChecksum = true
				n = rng.IntN(10)
			case k < 17:
				seg.Flags = packet.RST
				if rng.IntN(2) == 0 {
					seg.Seq += uint32(rng.IntN(3))
				}
			case k < 18:
				seg.Flags |= packet.FIN
			case k < 19:
				// flags no receiver takes
				bad := []uint8{packet.FIN, packet.PSH, 0, packet.SYN | packet.FIN, packet.SYN | packet.RST, packet.FIN | packet.RST | packet.ACK}
				seg.Flags = bad[rng.IntN(len(bad))]
				n = rng.IntN(10)
			}
			seg.Payload = make([]byte, n)
			for i := range seg.Payload {
				seg.Payload[i] = 'x'
			}
			ws := reference.NoWScale
			if len(seg.TCPOptions) == 4 {
				ws = int(seg.TCPOptions[3])
			}
			res := model.Segment(reference.TCPSegment{FromClient: fromClient, Seq: seg.Seq, Ack: seg.Ack, Flags: seg.Flags,
				Window: 65535, WScale: ws, Len: n, BadChecksum: seg.BadChecksum})
			must(t, c.Forge(fromClient, seg))
			if res.Verdict == reference.TCPAccepted && seg.Flags&(packet.SYN|packet.RST) == 0 {
				end := seg.Seq + uint32(n)
				if seg.Flags&packet.FIN != 0 {
					end++
				}
				if int32(end-next[d]) > 0 {
					next[d] = end
				}
			} else if res.Verdict == reference.TCPAccepted && seg.Flags&packet.SYN != 0 {
				next[d] = max(next[d], isn[d]+1)
			}

			now, err := r.Counters()
			must(t, err)
			for _, name := range counters {
				want := uint64(0)
				if res.Verdict.Counter() == name {
					want = 1
				}
				if got := now[name] - last[name]; got != want {
					t.Fatalf("run %d step %d: %+v from client %v: %s moved by %d, model says %+v",
						run, step, seg, fromClient, name, got, res)
				}
			}
			last = now
			key := maps.Control{Client: c.Client.Addr(), ClientPort: c.Client.Port(), Server: server4, ServerPort: 21}.Key()
			var cv bpf.FtpgateCtrlVal
			var ev bpf.FtpgateEmbryoVal
			inConns := r.Objs.CtrlConns.Lookup(&key, &cv) == nil
			inEmbryo := r.Objs.CtrlEmbryo.Lookup(&key, &ev) == nil
			if inConns != model.Trusted() || inEmbryo != (model.Tracked() && !model.Trusted()) {
				t.Fatalf("run %d step %d: %+v: ctrl_conns %v, ctrl_embryo %v, model trusted %v (%+v)",
					run, step, seg, inConns, inEmbryo, model.Trusted(), res)
			}
		}
	}
}

// TestConnCloseFreesTheTable: a test driver that closes its connections can
// open more of them than ctrl_conns holds.
func TestConnCloseFreesTheTable(t *testing.T) {
	r := bpftest.Shared(t)
	size := int(r.Objs.CtrlConns.MaxEntries())
	for i := range size + 10 {
		c := bpftest.NewConn(r, ap(client4, uint16(10000+i)), ap(server4, 21))
		must(t, c.Open())
		must(t, c.Close())
	}
	wantCounters(t, r, map[string]uint64{"ctrl_conn_full": 0, "ctrl_trusted_handshake": uint64(size + 10)})
}

// TestFINWithoutACKIsIgnored (issue 11, review R5): a FIN without ACK, which
// the receiver drops (RFC 9293; conntrack's tcp_valid_flags), in the window
// with a garbage ack field, closes nothing: it is counted under
// tcp_bad_flags. So are the other flag combinations no receiver takes.
func TestFINWithoutACKIsIgnored(t *testing.T) {
	r := bpftest.Shared(t)
	c := open(t, r, client4, server4)
	must(t, c.ClientSends("PASV\r\n"))
	must(t, c.ServerSends(pasvReply))
	want := expect{"pasv", client4, server4, 30000}
	wantExpect(t, r, want)
	must(t, c.Forge(false, packet.TCP{Seq: c.SSeq + 5000, Ack: 0xdeadbeef, Flags: packet.FIN}))
	for _, fl := range []uint8{0, packet.SYN | packet.FIN, packet.SYN | packet.RST | packet.ACK, packet.FIN | packet.RST | packet.ACK} {
		must(t, c.Forge(false, packet.TCP{Seq: c.SSeq, Ack: c.CSeq, Flags: fl}))
	}
	wantExpect(t, r, want)
	wantCounters(t, r, map[string]uint64{"tcp_bad_flags": 5, "ctrl_closed": 0, "expect_closed": 0})
}

// TestDataWithoutACKIsIgnored (issue 11, review R5): payload without ACK is
// not parsed: a forged reply the client drops does not consume the PASV.
func TestDataWithoutACKIsIgnored(t *testing.T) {
	r := bpftest.Shared(t)
	c := open(t, r, client4, server4)
	must(t, c.ClientSends("PASV\r\n"))
	must(t, c.Forge(false, packet.TCP{Seq: c.SSeq, Ack: 0x12345678, Flags: packet.PSH, Payload: []byte("200 x\r\n")}))
	must(t, c.ServerSends(pasvReply))
	wantExpect(t, r, expect{"pasv", client4, server4, 30000})
	wantCounters(t, r, map[string]uint64{"tcp_bad_flags": 1})
}

// TestServerSYNKeepsClientTracking (issue 11, review R7): a SYN without ACK
// from the server side after the client's SYN is refused; it does not wipe
// the client's tracking, and the handshake that follows is seen as one.
func TestServerSYNKeepsClientTracking(t *testing.T) {
	r := bpftest.Shared(t)
	c := bpftest.NewConn(r, ap(client4, 40000), ap(server4, 21))
	must(t, c.ClientFlags(packet.SYN))
	c.CSeq++
	must(t, c.Forge(false, packet.TCP{Seq: c.SSeq, Flags: packet.SYN}))
	wantCounters(t, r, map[string]uint64{"tcp_out_of_window": 1})
	must(t, c.ServerFlags(packet.SYN|packet.ACK))
	c.SSeq++
	must(t, c.ClientFlags(packet.ACK))
	wantCounters(t, r, map[string]uint64{"ctrl_trusted_handshake": 1, "ctrl_trusted_pickup": 0})
}

// TestTruncatedSegmentIsRefused (issue 11, review R9): a frame shorter than
// its IPv4 total length, whose payload cannot be loaded nor its checksum
// checked, is refused (ctrl_truncated): its FIN closes nothing. The
// receiver's IP layer drops it (ip_rcv_core: skb->len < tot_len).
func TestTruncatedSegmentIsRefused(t *testing.T) {
	r := bpftest.Shared(t)
	c := open(t, r, client4, server4)
	must(t, c.ClientSends("PASV\r\n"))
	must(t, c.ServerSends(pasvReply))
	want := expect{"pasv", client4, server4, 30000}
	wantExpect(t, r, want)
	f := packet.TCP{Src: c.Server, Dst: c.Client, Seq: c.SSeq, Ack: c.CSeq, Flags: packet.FIN | packet.ACK, BadChecksum: true}.Bytes()
	// claim 100 bytes more than the frame holds, with a right IP header checksum
	binary.BigEndian.PutUint16(f[16:], binary.BigEndian.Uint16(f[16:])+100)
	binary.BigEndian.PutUint16(f[24:], 0)
	var sum uint32
	for i := 14; i < 34; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(f[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(f[24:], ^uint16(sum))
	_, err := r.TC(f, false, 0)
	must(t, err)
	wantExpect(t, r, want)
	wantCounters(t, r, map[string]uint64{"ctrl_truncated": 1, "ctrl_closed": 0, "expect_closed": 0})
}
