package reference_test

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ftpgate/ftpgate/internal/bpftest"
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
)

// plan byte: bit 0 direction (0 client, 1 server), bits 1-2 operation,
// bits 3-7 size-1 (1..32 bytes)
const (
	opSend       = 0 // the next bytes, in order
	opSend2      = 1 // the same (sends are the common case)
	opRetransmit = 2 // up to size old bytes again, then size new ones
	opGap        = 3 // skip size bytes: they are never sent
)

// segment is one data segment of a direction.
type segment struct {
	fromClient bool
	offset     int // into the direction's stream
	data       []byte
}

// schedule cuts the two streams into segments following plan; what the plan
// leaves is sent in order at the end, client first.
func schedule(client, server, plan []byte) []segment {
	streams := [2][]byte{client, server}
	var sent [2]int
	var segs []segment
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
		case opSend, opSend2:
			add(dir, sent[dir], sent[dir]+size)
			sent[dir] = min(sent[dir]+size, len(streams[dir]))
		case opRetransmit:
			add(dir, max(0, sent[dir]-size), sent[dir]+size)
			sent[dir] = min(sent[dir]+size, len(streams[dir]))
		case opGap:
			sent[dir] = min(sent[dir]+size, len(streams[dir]))
		}
	}
	for dir := range streams {
		for sent[dir] < len(streams[dir]) {
			add(dir, sent[dir], sent[dir]+64)
			sent[dir] += 64
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
	mc := maps.DefaultConfig()
	mc.Loose, mc.AllowLowDataPorts, mc.MaxExpectPerConn = cfg.Loose, cfg.AllowLowDataPorts, maps.MaxExpectPerConn
	if err := r.Maps.SetConfig(mc); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Events(); err != nil {
		t.Fatal(err)
	}

	port := uint16(1024 + nextPort.Add(1)%60000)
	conn := bpftest.NewConn(r, netip.AddrPortFrom(c, port), netip.AddrPortFrom(s, 21))
	ref := reference.NewConn(c, s, cfg)
	cISN, sISN := conn.CSeq, conn.SSeq
	if err := conn.Open(); err != nil {
		t.Fatal(err)
	}
	ref.SYN(true, cISN)
	ref.SYN(false, sISN)
	for _, seg := range schedule(client, server, plan) {
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
		ref.Segment(seg.fromClient, seq, seg.data)
	}

	events, err := r.Events()
	if err != nil {
		t.Fatal(err)
	}
	var got []reference.Expectation
	for _, ev := range events {
		if ev.Type != maps.EventCreated {
			continue
		}
		got = append(got, reference.Expectation{Kind: ev.Kind.String(), Src: ev.Src, Dst: ev.Dst, DPort: ev.DPort})
	}
	if !slices.Equal(got, ref.Created) {
		return fmt.Sprintf("BPF created %v\nreference created %v", got, ref.Created)
	}
	return ""
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
}

func FuzzParserMatchesReference(f *testing.F) {
	r := bpftest.Shared(f)
	for i, s := range seedTranscripts {
		// in order, in small pieces, with a retransmission and with a gap
		f.Add([]byte(s.client), []byte(s.server), []byte{}, byte(0))
		f.Add([]byte(s.client), []byte(s.server), []byte{0x30, 0x31, 0x14, 0x15, 0x18}, byte(i&3))
		f.Add([]byte(s.client), []byte(s.server), []byte{0x10, 0x06, 0x11, 0x07}, byte(0))
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
			for _, opts := range []byte{0, optLoose | optLowPort} {
				if diff := compare(t, r, []byte(s.client), []byte(s.server), plan, opts); diff != "" {
					t.Fatalf("client %q server %q plan %x opts %x:\n%s", s.client, s.server, plan, opts, diff)
				}
			}
		}
	}
}
