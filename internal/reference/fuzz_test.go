package reference_test

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/ftpgate/ftpgate/internal/bpfrun"
	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/internal/packet"
	"github.com/ftpgate/ftpgate/internal/reference"
	"github.com/ftpgate/ftpgate/maps"
)

var (
	client4 = netip.MustParseAddr("192.0.2.10")
	server4 = netip.MustParseAddr("198.51.100.20")
	client6 = netip.MustParseAddr("2001:db8:1::10")
	server6 = netip.MustParseAddr("2001:db8:2::20")
)

// maxStream bounds each direction's bytes so that one input runs quickly.
const maxStream = 4096

// every control connection gets its own client port, so inputs never share
// parser state
var nextPort atomic.Uint32

// Options byte of a fuzz input.
const (
	optLoose   = 1 << 0
	optLowPort = 1 << 1
	optIPv6    = 1 << 2
	optPickup  = 1 << 3 // no handshake: the connection is picked up mid-stream
	optNoGreet = 1 << 4 // the server's stream is sent as it is, without a greeting first
	optForge   = 1 << 5 // an off-path attacker's segment before each segment: see forge
)

// greeting opens the server's stream unless optNoGreet: after a handshake
// the server speaks first.
const greeting = "220 ready\r\n"

// plan byte: bit 0 direction (0 client, 1 server), bits 1-2 operation,
// bits 3-7 size-1 (1..32 bytes)
const (
	opSend       = 0 // the next bytes, in order
	opFill       = 1 // up to size bytes of the earliest gap, late (a reordered retransmission)
	opRetransmit = 2 // up to size old bytes again, then size new ones
	opGap        = 3 // skip size bytes: sent only if an opFill fills them
)

// segment is one data segment of a direction.
type segment struct {
	fromClient bool
	offset     int // into the direction's stream
	data       []byte
}

// schedule cuts the two streams into segments following plan, after the
// server's first greet bytes; what the plan leaves is sent in order at the
// end, in turns of 64 bytes, client first.
func schedule(client, server, plan []byte, greet int) []segment {
	streams := [2][]byte{client, server}
	sent := [2]int{0, greet}
	var gaps [2][][2]int // ranges skipped by opGap and not yet filled
	var segs []segment
	if greet > 0 {
		segs = append(segs, segment{false, 0, server[:greet]})
	}
	add := func(dir, from, to int) {
		to = min(to, len(streams[dir]))
		if from >= to {
			return
		}
		segs = append(segs, segment{dir == 0, from, streams[dir][from:to]})
	}
	for _, b := range plan {
		dir, op, size := int(b&1), int(b>>1&3), int(b>>3)+1
		switch op {
		case opSend:
			add(dir, sent[dir], sent[dir]+size)
			sent[dir] = min(sent[dir]+size, len(streams[dir]))
		case opFill:
			if len(gaps[dir]) == 0 {
				add(dir, sent[dir], sent[dir]+size)
				sent[dir] = min(sent[dir]+size, len(streams[dir]))
				break
			}
			g := &gaps[dir][0]
			n := min(size, g[1]-g[0])
			add(dir, g[0], g[0]+n)
			if g[0] += n; g[0] >= g[1] {
				gaps[dir] = gaps[dir][1:]
			}
		case opRetransmit:
			add(dir, max(0, sent[dir]-size), sent[dir]+size)
			sent[dir] = min(sent[dir]+size, len(streams[dir]))
		case opGap:
			to := min(sent[dir]+size, len(streams[dir]))
			if to > sent[dir] {
				gaps[dir] = append(gaps[dir], [2]int{sent[dir], to})
			}
			sent[dir] = to
		}
	}
	for sent[0] < len(client) || sent[1] < len(server) {
		for dir := range streams {
			add(dir, sent[dir], sent[dir]+64)
			sent[dir] = min(sent[dir]+64, len(streams[dir]))
		}
	}
	return segs
}

// compare runs one input through the BPF parser and the reference and
// returns a description of any difference.
func compare(t *testing.T, r *bpftest.Rig, client, server, plan []byte, opts byte) string {
	t.Helper()
	if len(client) > maxStream {
		client = client[:maxStream]
	}
	if len(server) > maxStream {
		server = server[:maxStream]
	}
	cfg := reference.Config{Loose: opts&optLoose != 0, AllowLowDataPorts: opts&optLowPort != 0}
	c, s := client4, server4
	if opts&optIPv6 != 0 {
		c, s = client6, server6
	}
	mc := bpfrun.TestConfig()
	mc.Loose, mc.AllowLowDataPorts, mc.MaxExpectPerConn = cfg.Loose, cfg.AllowLowDataPorts, maps.MaxExpectPerConn
	if err := r.Maps.SetConfig(mc); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Events(); err != nil {
		t.Fatal(err)
	}
	// inputs start untrusted connections far faster than the per-source
	// limit allows, from the client's address and (pickups) the server's:
	// every input starts with full buckets
	if err := bpfrun.Clear(r.Objs.EmbryoSources); err != nil {
		t.Fatal(err)
	}

	n := nextPort.Add(1)
	if n%60000 == 0 {
		// the ports come round again: a connection an earlier input left
		// open on one (no ager runs here) would carry its state, a
		// half-received PORT, into this input (CI once saw it create an
		// expectation no input made)
		for _, m := range []*ebpf.Map{r.Objs.CtrlConns, r.Objs.CtrlEmbryo, r.Objs.Expectations, r.Objs.DataFlows} {
			if err := bpfrun.Clear(m); err != nil {
				t.Fatal(err)
			}
		}
	}
	port := uint16(1024 + n%60000)
	conn := bpftest.NewConn(r, netip.AddrPortFrom(c, port), netip.AddrPortFrom(s, 21))
	ref := reference.NewConn(c, s, cfg)
	// the reference follows every segment sent, handshake included,
	// through the TCP model: its FTP layer sees what the tracker lets
	// through, and starts both streams afresh when trust comes
	tracker := reference.NewTCPTracker()
	conn.Sent = func(seg packet.TCP, fromClient bool) {
		res := tracker.Segment(tcpSegment(seg, fromClient))
		if res.BecameTrusted {
			for i, fc := range []bool{true, false} {
				ref.Resume(fc, res.ResumeAt[i], res.SkipToLine[i], tracker.HandshakeSeen())
			}
		}
		if res.Parse {
			ref.Segment(fromClient, seg.Seq, seg.Payload)
		}
	}
	// ctrl_conns is a plain hash: every input removes its connection. The
	// closing RST is refused where a receiver would refuse it (a side never
	// seen, or not at its next sequence number), so the key goes from both
	// tables too: ports repeat after 60000 inputs, and an input must not
	// find the state an earlier one left.
	defer func() {
		if err := conn.Close(); err != nil {
			t.Fatal(err)
		}
		key := maps.Control{Client: c, ClientPort: port, Server: s, ServerPort: 21}.Key()
		for _, m := range []*ebpf.Map{r.Objs.CtrlConns, r.Objs.CtrlEmbryo} {
			if err := m.Delete(&key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				t.Fatal(err)
			}
		}
	}()
	cISN, sISN := conn.CSeq, conn.SSeq
	if opts&optPickup == 0 {
		if err := conn.Open(); err != nil {
			t.Fatal(err)
		}
	} else {
		// the handshake went by unseen
		conn.CSeq++
		conn.SSeq++
	}
	greet := 0
	if opts&optNoGreet == 0 {
		server = append([]byte(greeting), server...)
		greet = len(greeting)
	}
	// each side acknowledges what it has received in order, as a receiver
	// does: CSeq and SSeq are the acknowledgement numbers the harness sends
	got := [2][]bool{make([]bool, len(client)), make([]bool, len(server))}
	acked := [2]int{}
	for i, seg := range schedule(client, server, plan, greet) {
		if opts&optForge != 0 {
			if err := forge(conn, i, cISN+1+uint32(acked[0]), sISN+1+uint32(acked[1])); err != nil {
				t.Fatal(err)
			}
		}
		isn := sISN
		if seg.fromClient {
			isn = cISN
		}
		seq := isn + 1 + uint32(seg.offset)
		var err error
		if seg.fromClient {
			err = conn.ClientAt(seq, string(seg.data))
		} else {
			err = conn.ServerAt(seq, string(seg.data))
		}
		if err != nil {
			t.Fatal(err)
		}
		d := 1
		if seg.fromClient {
			d = 0
		}
		for i := range seg.data {
			got[d][seg.offset+i] = true
		}
		for acked[d] < len(got[d]) && got[d][acked[d]] {
			acked[d]++
		}
		if seg.fromClient {
			conn.CSeq = cISN + 1 + uint32(acked[d])
		} else {
			conn.SSeq = sISN + 1 + uint32(acked[d])
		}
	}

	events, err := r.Events()
	if err != nil {
		t.Fatal(err)
	}
	var created []reference.Expectation
	for _, ev := range events {
		if ev.Type != maps.EventCreated {
			continue
		}
		created = append(created, reference.Expectation{Kind: ev.Kind.String(), Src: ev.Src, Dst: ev.Dst, DPort: ev.DPort})
	}
	if !slices.Equal(created, ref.Created) {
		return fmt.Sprintf("BPF created %v\nreference created %v", created, ref.Created)
	}
	return ""
}

// tcpSegment is seg as the TCP model reads it.
func tcpSegment(seg packet.TCP, fromClient bool) reference.TCPSegment {
	ws := reference.NoWScale
	for o := seg.TCPOptions; len(o) > 0; {
		switch {
		case o[0] == 0:
			o = nil
		case o[0] == 1:
			o = o[1:]
		case len(o) < 2 || int(o[1]) < 2 || int(o[1]) > len(o):
			o = nil
		default:
			if o[0] == 3 && o[1] == 3 {
				ws = int(o[2])
			}
			o = o[o[1]:]
		}
	}
	return reference.TCPSegment{FromClient: fromClient, Seq: seg.Seq, Ack: seg.Ack, Flags: seg.Flags,
		Window: packet.DefaultWindow, WScale: ws, Len: len(seg.Payload), BadChecksum: seg.BadChecksum,
		EndsLine: len(seg.Payload) > 0 && seg.Payload[len(seg.Payload)-1] == '\n'}
}

// forgedLines is what an off-path attacker would like either parser to read
const forgedLines = "\r\nPORT 192,0,2,10,195,99\r\n227 Entering Passive Mode (198,51,100,20,195,99)\r\n"

// forge sends the i-th forged segment of an input, alternately as the
// client and as the server, given each side's next sequence number: the
// forged lines at the right place with a bad checksum, the same far out of
// the window with a good one, a bare ACK with a random sequence number and
// a bad checksum, and an RST in the window but not at the next sequence
// number. The TCP tracker must refuse them all, and both parsers see that.
func forge(conn *bpftest.Conn, i int, cNext, sNext uint32) error {
	fromClient := i%2 == 0
	next, ack := cNext, sNext
	if !fromClient {
		next, ack = sNext, cNext
	}
	seg := packet.TCP{Seq: next, Ack: ack, Flags: packet.ACK | packet.PSH, Payload: []byte(forgedLines)}
	switch i / 2 % 4 {
	case 0:
		seg.BadChecksum = true
	case 1:
		seg.Seq = next + 1<<30
	case 2:
		seg.Seq, seg.Flags, seg.Payload, seg.BadChecksum = next+0x9e3779b9*uint32(i+1), packet.ACK, nil, true
	case 3:
		seg.Seq, seg.Flags, seg.Payload = next+1000, packet.RST|packet.ACK, nil
	}
	return conn.Forge(fromClient, seg)
}

// seedTranscripts are the control-channel exchanges of the dataplane tests.
var seedTranscripts = []struct{ client, server string }{
	{"PORT 192,0,2,10,195,80\r\n", "200 ok\r\n"},
	{"port 192,0,2,10,195,80\r\nEPRT |1|192.0.2.10|50001|\r\n", ""},
	{"Eprt !1!192.0.2.10!50001!\r\n", ""},
	{"EPRT |2|2001:db8:1::10|50002|\r\nEPRT |2|2001:0db8:0001:0000:0000:0000:0000:0010|50003|\r\n", ""},
	{"EPRT |2|::ffff:192.0.2.10|50004|\r\nEPRT |2|2001:db8:::1|5|\r\nEPRT |2|2001::db8::1|5|\r\n", ""},
	{"PASV\r\n", "227 Entering Passive Mode (198,51,100,20,117,48).\r\n"},
	{"QUIT\r\n", "227 Logout.\r\n"},
	{"PASV\r\nQUIT\r\n", "227 Entering Passive Mode (198,51,100,20,117,48)\r\n227 Logout.\r\n"},
	{"pasv\r\n", "227 =198,51,100,20,117,49\r\n"},
	{"EPSV\r\n", "229 Entering Extended Passive Mode (|||30002|)\r\n"},
	{"epsv\r\nEPSV ALL\r\n", "229 ok (!!!30003!)\r\n200 ok\r\n"},
	{"USER anonymous\r\nPASS x\r\nTYPE I\r\nPASV\r\n", "220-Welcome\r\n220 ready\r\n331 ok\r\n230 ok\r\n200 ok\r\n227 Entering Passive Mode (198,51,100,20,117,50)\r\n"},
	{"PASV\r\n", "550 No such file: 227 Entering Passive Mode (198,51,100,20,0,22)\r\n"},
	{"PASV\r\n", "550 unknown command xxxxxxxx227 Entering Passive Mode (198,51,100,20,117,48)\r\n"},
	{"PORT 203,0,113,30,195,80\r\nPORT 192,0,2,10,0,22\r\nPORT 192,0,2,256,195,80\r\nPORT 192,0,2,0010,195,80\r\n", ""},
	{"PORT 192,0,2,10,195\r\nPORT 192,0,2,10,195,80x\r\nPORT 192,0,2,10,0,0\r\nEPRT |1|192.0.2.10|65536|\r\n", ""},
	{"EPRT |1|192.0.2.10|050000|\r\nEPRT 111192.0.2.101500001\r\nEPRT |3|192.0.2.10|50000|\r\n", ""},
	{"EPSV\r\n", "229 ok (|!|30000|)\r\n229 ok (|||0|)\r\n"},
	{"PASV\r\n", "227 (198,51,100\x00,20,117,48)\r\n"},
	{"PORT 192,0,2,10,195,80" + strings.Repeat(" ", 200) + "\r\nPORT 192,0,2,10,195,81\r\n", ""},
	{strings.Repeat("NOOP\r\n", 70) + "PORT 192,0,2,10,195,80\r\n", ""},
	{"PASV\r\nLIST\r\n", "227 Entering Passive Mode (10,0,0,5,117,48)\r\n"},
	// #11: pipelining, multi-line replies, echoes, openings that are not FTP
	{"USER a\r\nPASS b\r\nTYPE I\r\nPASV\r\nRETR x\r\n", "331 ok\r\n230 ok\r\n200 ok\r\n227 Entering Passive Mode (198,51,100,20,117,48)\r\n150 ok\r\n226 ok\r\n"},
	{"STAT .\r\nPASV\r\n", "213-Status follows:\r\n227 Entering Passive Mode (198,51,100,20,12,234)\r\n213 End\r\n227 Entering Passive Mode (198,51,100,20,117,48)\r\n"},
	{"STAT .\r\nPASV\r\n", "213-Status follows:\r\nx\n213 x\n227 Entering Passive Mode (198,51,100,20,12,234)\r\n213 End\r\n227 Entering Passive Mode (198,51,100,20,117,48)\r\n"},
	{"STAT .\nPASV\n", "213-Status follows:\nx\n213 x\n227 Entering Passive Mode (198,51,100,20,12,234)\n213 End\n227 Entering Passive Mode (198,51,100,20,117,48)\n"},
	{"FEAT\r\nEPSV\r\n", "211-Features:\r\n EPSV\r\n229 (|||30000|)\r\n211 End\r\n229 Entering Extended Passive Mode (|||30001|)\r\n"},
	{"RETR x\r\nEPSV\r\n", "150 opening\r\n226 done\r\n229 ok (|||30002|)\r\n"},
	{"POST / HTTP/1.1\r\nHost: x\r\n\r\nPORT 192,0,2,10,195,80\r\n", "HTTP/1.1 200 OK\r\n"},
	{"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\nPORT 192,0,2,10,195,80\r\n", ""},
	{"xyz\r\nPORT 192,0,2,10,195,80\r\n", "200 ok\r\n"},
	{"\xff\xf4\xff\xf2ABOR\r\nPASV\r\n", "226 aborted\r\n227 Entering Passive Mode (198,51,100,20,117,48)\r\n"},
	{strings.Repeat("NOOP\r\n", 17) + "PASV\r\n", strings.Repeat("200 ok\r\n", 17) + "227 Entering Passive Mode (198,51,100,20,117,48)\r\n"},
	// #13: AUTH answered 234 ends parsing; answered otherwise, or a 234 to another command, does not
	{"AUTH TLS\r\nPASV\r\n", "234 Proceed\r\n227 Entering Passive Mode (198,51,100,20,117,48)\r\n"},
	{"AUTH TLS\r\nPASV\r\n", "534 No\r\n227 Entering Passive Mode (198,51,100,20,117,48)\r\n"},
	{"NOOP\r\nAUTH SSL\r\nPASV\r\n", "234 x\r\n500 no\r\n227 Entering Passive Mode (198,51,100,20,117,48)\r\n"},
}

func FuzzParserMatchesReference(f *testing.F) {
	r := bpftest.Shared(f)
	for i, s := range seedTranscripts {
		// in order, in small pieces, with a retransmission and with a gap
		f.Add([]byte(s.client), []byte(s.server), []byte{}, byte(0))
		f.Add([]byte(s.client), []byte(s.server), []byte{0x30, 0x31, 0x14, 0x15, 0x18}, byte(i&3))
		f.Add([]byte(s.client), []byte(s.server), []byte{0x10, 0x06, 0x11, 0x07}, byte(0))
		// a pickup; a client segment lost and retransmitted after the next one
		f.Add([]byte(s.client), []byte(s.server), []byte{0x19, 0x18, 0x06, 0x30}, byte(optPickup))
		f.Add([]byte(s.client), []byte(s.server), []byte{0x3e, 0x28, 0x3a, 0x3a}, byte(0))
		// an off-path attacker's segments between the genuine ones
		f.Add([]byte(s.client), []byte(s.server), []byte{0x10, 0x11, 0x18, 0x19}, byte(optForge|i&optPickup))
	}
	f.Fuzz(func(t *testing.T, client, server, plan []byte, opts byte) {
		if diff := compare(t, r, client, server, plan, opts); diff != "" {
			t.Fatalf("client %q\nserver %q\nplan %x opts %x\n%s", client, server, plan, opts, diff)
		}
	})
}

// TestSeedsAgree runs the seeds (and a few cuts of each) as a plain test, so
// `go test` alone checks that the two parsers agree on them.
func TestSeedsAgree(t *testing.T) {
	r := bpftest.Shared(t)
	for _, s := range seedTranscripts {
		for cut := byte(0); cut < 32; cut += 3 {
			plan := []byte{cut << 3, cut<<3 | 1, 0x04, 0x05, cut << 3, cut<<3 | 1}
			if cut%2 == 1 {
				// a client gap of cut+1 bytes, the next 8 bytes, then the gap late
				plan = []byte{cut<<3 | opGap<<1, 7 << 3, cut<<3 | opFill<<1, 0x05}
			}
			for _, opts := range []byte{0, optLoose | optLowPort, optPickup, optNoGreet, optForge, optForge | optPickup} {
				if diff := compare(t, r, []byte(s.client), []byte(s.server), plan, opts); diff != "" {
					t.Fatalf("client %q server %q plan %x opts %x:\n%s", s.client, s.server, plan, opts, diff)
				}
			}
		}
	}
}

// TestPickupCreates keeps the pickup inputs from agreeing vacuously: a
// picked-up connection whose sides acknowledge each other becomes trusted
// as real traffic does, and both parsers create the expectation that a
// command and its reply, both after trust, negotiate.
func TestPickupCreates(t *testing.T) {
	r := bpftest.Shared(t)
	client := "NOOP\r\nNOOP\r\nNOOP\r\nPASV\r\n"
	server := "200 ok\r\n200 ok\r\n200 ok\r\n227 Entering Passive Mode (198,51,100,20,117,48)\r\n"
	// a command, then its reply, by turns
	plan := []byte{5 << 3, 7<<3 | 1, 5 << 3, 7<<3 | 1, 5 << 3, 7<<3 | 1, 5 << 3, 31<<3 | 1, 31<<3 | 1}
	before, err := r.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if diff := compare(t, r, []byte(client), []byte(server), plan, optPickup); diff != "" {
		t.Fatal(diff)
	}
	after, err := r.Counters()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]uint64{"ctrl_trusted_pickup": 1, "expect_created": 1} {
		if got := after[name] - before[name]; got != want {
			t.Errorf("%s moved by %d, want %d", name, got, want)
		}
	}
}

// TestForgedSegmentsRefused keeps the optForge inputs from agreeing
// vacuously: the forged segments reach the BPF tracker and are refused under
// their counters, and only the genuine exchange creates an expectation.
func TestForgedSegmentsRefused(t *testing.T) {
	r := bpftest.Shared(t)
	client := "USER a\r\nPASS b\r\nPASV\r\n"
	server := "331 ok\r\n230 ok\r\n227 Entering Passive Mode (198,51,100,20,117,48)\r\n"
	plan := []byte{7 << 3, 7<<3 | 1, 7 << 3, 7<<3 | 1, 7 << 3, 7<<3 | 1, 7 << 3, 7<<3 | 1}
	before, err := r.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if diff := compare(t, r, []byte(client), []byte(server), plan, optForge); diff != "" {
		t.Fatal(diff)
	}
	after, err := r.Counters()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ctrl_bad_checksum", "tcp_out_of_window", "tcp_rst_ignored"} {
		if after[name] == before[name] {
			t.Errorf("%s did not move: the forged segments did not reach the tracker", name)
		}
	}
	if got := after["expect_created"] - before["expect_created"]; got != 1 {
		t.Errorf("expect_created moved by %d, want 1 (the genuine PASV)", got)
	}
}
