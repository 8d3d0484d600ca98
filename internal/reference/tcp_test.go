package reference

import "testing"

// handshake plays SYN, SYN-ACK and the third ACK, both sides announcing
// window scale 7, and returns the next sequence number of each side.
func handshake(t *testing.T, tr *TCPTracker, cisn, sisn uint32) (cseq, sseq uint32) {
	t.Helper()
	steps := []TCPSegment{
		{FromClient: true, Seq: cisn, Flags: TCPSyn, Window: 65535, WScale: 7},
		{Seq: sisn, Ack: cisn + 1, Flags: TCPSyn | TCPAck, Window: 65535, WScale: 7},
		{FromClient: true, Seq: cisn + 1, Ack: sisn + 1, Flags: TCPAck, Window: 65535, WScale: NoWScale},
	}
	for i, s := range steps {
		if r := tr.Segment(s); r.Verdict != TCPAccepted {
			t.Fatalf("handshake step %d: %+v", i, r)
		}
	}
	if !tr.Trusted() || !tr.HandshakeSeen() {
		t.Fatal("not trusted after the handshake")
	}
	return cisn + 1, sisn + 1
}

func TestTCPHandshakeTrust(t *testing.T) {
	tr := NewTCPTracker()
	c, s := handshake(t, tr, 0xfffffff0, 100)
	r := tr.Segment(TCPSegment{FromClient: true, Seq: c, Ack: s, Flags: TCPAck, Window: 500, WScale: NoWScale, Len: 30})
	if r.Verdict != TCPAccepted || !r.Parse {
		t.Fatalf("data after the handshake: %+v", r)
	}
}

func TestTCPSynAckMustAckTheSyn(t *testing.T) {
	tr := NewTCPTracker()
	tr.Segment(TCPSegment{FromClient: true, Seq: 1000, Flags: TCPSyn, Window: 65535, WScale: NoWScale})
	if r := tr.Segment(TCPSegment{Seq: 5, Ack: 1003, Flags: TCPSyn | TCPAck, WScale: NoWScale}); r.Verdict != TCPOutOfWindow {
		t.Fatalf("blind SYN-ACK: %+v", r)
	}
}

func TestTCPPickupTrust(t *testing.T) {
	tr := NewTCPTracker()
	steps := []struct {
		seg   TCPSegment
		parse bool
	}{
		{TCPSegment{FromClient: true, Seq: 5000, Ack: 9000, Flags: TCPAck, Window: 100, WScale: NoWScale, Len: 10}, false},
		{TCPSegment{Seq: 9000, Ack: 5010, Flags: TCPAck, Window: 100, WScale: NoWScale, Len: 20}, false},
		{TCPSegment{FromClient: true, Seq: 5010, Ack: 9020, Flags: TCPAck, Window: 100, WScale: NoWScale, Len: 10}, true},
	}
	for i, st := range steps {
		r := tr.Segment(st.seg)
		if r.Verdict != TCPAccepted || r.Parse != st.parse {
			t.Fatalf("step %d: %+v, want parse %v", i, r, st.parse)
		}
		if i == 2 && (!r.BecameTrusted || r.SkipToLine != [2]bool{true, true}) {
			t.Fatalf("trust: %+v", r)
		}
	}
	if tr.HandshakeSeen() {
		t.Fatal("a pickup has no handshake")
	}
}

func TestTCPRefusals(t *testing.T) {
	tr := NewTCPTracker()
	c, s := handshake(t, tr, 1<<31, 7)
	cases := []struct {
		name string
		seg  TCPSegment
		want TCPVerdict
	}{
		{"bad checksum", TCPSegment{FromClient: true, Seq: c, Ack: s, Flags: TCPAck | TCPRst, BadChecksum: true}, TCPBadChecksum},
		{"bare ACK far ahead", TCPSegment{FromClient: true, Seq: c + 1<<30, Ack: s, Flags: TCPAck}, TCPOutOfWindow},
		{"ack of unsent bytes", TCPSegment{Seq: s, Ack: c + 10, Flags: TCPAck}, TCPOutOfWindow},
		{"RST out of window", TCPSegment{FromClient: true, Seq: c - 1<<30, Flags: TCPRst}, TCPRSTIgnored},
		{"RST in window, not at the next byte", TCPSegment{FromClient: true, Seq: c + 1, Flags: TCPRst}, TCPRSTIgnored},
		{"FIN out of window", TCPSegment{Seq: s + 1<<30, Ack: c, Flags: TCPFin | TCPAck}, TCPOutOfWindow},
		{"SYN with another ISN", TCPSegment{FromClient: true, Seq: 42, Flags: TCPSyn, WScale: NoWScale}, TCPOutOfWindow},
		{"FIN without ACK", TCPSegment{Seq: s, Ack: c, Flags: TCPFin}, TCPBadFlags},
		{"data without ACK", TCPSegment{Seq: s, Flags: 0, Len: 10}, TCPBadFlags},
		{"SYN|FIN", TCPSegment{FromClient: true, Seq: c, Flags: TCPSyn | TCPFin, WScale: NoWScale}, TCPBadFlags},
		{"FIN|RST", TCPSegment{FromClient: true, Seq: c, Ack: s, Flags: TCPFin | TCPRst | TCPAck}, TCPBadFlags},
	}
	for _, tc := range cases {
		if r := tr.Segment(tc.seg); r.Verdict != tc.want || r.Closed {
			t.Errorf("%s: %+v, want verdict %d", tc.name, r, tc.want)
		}
	}
	if r := tr.Segment(TCPSegment{FromClient: true, Seq: c, Flags: TCPRst}); r.Verdict != TCPAccepted || !r.Closed {
		t.Fatalf("the genuine RST: %+v", r)
	}
	if r := tr.Segment(TCPSegment{FromClient: true, Seq: c, Ack: s, Flags: TCPAck}); r.Verdict != TCPNotTracked {
		t.Fatalf("ACK after the RST: %+v", r)
	}
}

func TestTCPWindowScale(t *testing.T) {
	for _, scale := range []int{7, NoWScale} {
		tr := NewTCPTracker()
		tr.Segment(TCPSegment{FromClient: true, Seq: 1, Flags: TCPSyn, Window: 65535, WScale: scale})
		tr.Segment(TCPSegment{Seq: 1, Ack: 2, Flags: TCPSyn | TCPAck, Window: 65535, WScale: scale})
		tr.Segment(TCPSegment{FromClient: true, Seq: 2, Ack: 2, Flags: TCPAck, Window: 65535})
		tr.Segment(TCPSegment{Seq: 2, Ack: 2, Flags: TCPAck, Window: 65535})
		r := tr.Segment(TCPSegment{FromClient: true, Seq: 2 + 100000, Ack: 2, Flags: TCPAck, Window: 65535, Len: 6})
		if want := scale != NoWScale; (r.Verdict == TCPAccepted) != want {
			t.Errorf("scale %d: %+v, want accepted %v", scale, r, want)
		}
	}
}

// TestServerSYNKeepsClient: a SYN without ACK from the server does not wipe
// the client's SYN: the real SYN-ACK completes a handshake.
func TestServerSYNKeepsClient(t *testing.T) {
	tr := NewTCPTracker()
	tr.Segment(TCPSegment{FromClient: true, Seq: 1000, Flags: TCPSyn, Window: 65535, WScale: NoWScale})
	if r := tr.Segment(TCPSegment{Seq: 5000, Flags: TCPSyn, Window: 65535, WScale: NoWScale}); r.Verdict != TCPOutOfWindow {
		t.Fatalf("a server SYN without ACK: %+v", r)
	}
	if r := tr.Segment(TCPSegment{Seq: 5000, Ack: 1001, Flags: TCPSyn | TCPAck, Window: 65535, WScale: NoWScale}); r.Verdict != TCPAccepted {
		t.Fatalf("the SYN-ACK: %+v", r)
	}
	if r := tr.Segment(TCPSegment{FromClient: true, Seq: 1001, Ack: 5001, Flags: TCPAck, Window: 65535, WScale: NoWScale}); !r.BecameTrusted {
		t.Fatalf("the third ACK: %+v", r)
	}
	if !tr.HandshakeSeen() {
		t.Fatal("the handshake was not seen")
	}
}
