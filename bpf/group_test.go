package bpf_test

import (
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/internal/packet"
	"github.com/ftpgate/ftpgate/maps"
)

// TestConsumedEventNamesTheSYN: the consumed event carries the admitted
// SYN's source port and sequence number, what a gateway-group peer needs
// to make the data flow (#15).
func TestConsumedEventNamesTheSYN(t *testing.T) {
	r := bpftest.Shared(t)
	passive(t, r)
	events(t, r) // drain
	wantVerdict(t, r, packet.TCP{Src: ap(client4, 51234), Dst: ap(server4, 30000), Seq: 0xfeed0001, Flags: packet.SYN}.Bytes(), bpftest.XDPPass)
	var got []maps.Event
	for _, ev := range events(t, r) {
		if ev.Type == maps.EventConsumed {
			got = append(got, ev)
		}
	}
	if len(got) != 1 || got[0].SPort != 51234 || got[0].Seq != 0xfeed0001 || got[0].DPort != 30000 || got[0].Kind != maps.KindPasv {
		t.Fatalf("consumed events %+v, want one naming sport 51234 seq 0xfeed0001", got)
	}
}

// TestRemoteExpectationAndFlow: what a group peer writes through
// maps.AddExpectation and maps.AddFlow admits as the parser's own would: the
// expectation once, tagged with its origin; the flow its SYN retransmitted,
// not another connection on the same 5-tuple.
func TestRemoteExpectationAndFlow(t *testing.T) {
	r := bpftest.Shared(t)
	const origin = 0x1234abcd
	e := maps.Expectation{Kind: maps.KindEpsv, Src: client4, Dst: server4, DPort: 40100, Origin: origin,
		Control: maps.Control{Client: client4, ClientPort: 40000, Server: server4, ServerPort: 21}}
	must(t, r.Maps.AddExpectation(e, time.Minute))
	list, err := r.Maps.ListExpectations()
	must(t, err)
	found := false
	for _, x := range list {
		if x.DPort == 40100 {
			found = x.Origin == origin
		}
	}
	if !found {
		t.Fatalf("expectations %+v: want 40100 with origin %#x", list, origin)
	}
	wantVerdict(t, r, bpftest.SYN(ap(client4, 51300), ap(server4, 40100)), bpftest.XDPPass)
	wantVerdict(t, r, bpftest.SYN(ap(client4, 51301), ap(server4, 40100)), bpftest.XDPDrop)

	// a flow a peer admitted: its SYN again passes here, another ISN does not
	must(t, r.Maps.AddFlow(maps.Flow{Kind: maps.KindPasv, Src: client4, SPort: 51400, Dst: server4, DPort: 40200}, 777))
	wantVerdict(t, r, packet.TCP{Src: ap(client4, 51400), Dst: ap(server4, 40200), Seq: 777, Flags: packet.SYN}.Bytes(), bpftest.XDPPass)
	wantVerdict(t, r, packet.TCP{Src: ap(client4, 51400), Dst: ap(server4, 40200), Seq: 778, Flags: packet.SYN}.Bytes(), bpftest.XDPDrop)

	// the key's next expectation, of another control connection: a late
	// removal of the first one leaves it (a passive port comes back)
	next := e
	next.Control.ClientPort, next.Origin = 40001, 0
	must(t, r.Maps.AddExpectation(next, time.Minute))
	must(t, r.Maps.DeleteExpectation(e))
	must(t, r.Maps.DeleteExpectation(maps.Expectation{Src: e.Src, Dst: e.Dst, DPort: e.DPort, Origin: origin}))
	wantVerdict(t, r, bpftest.SYN(ap(client4, 51303), ap(server4, 40100)), bpftest.XDPPass)

	must(t, r.Maps.AddExpectation(e, time.Minute))
	must(t, r.Maps.DeleteExpectation(e))
	must(t, r.Maps.DeleteExpectation(e)) // gone already: not an error
	wantVerdict(t, r, bpftest.SYN(ap(client4, 51302), ap(server4, 40100)), bpftest.XDPDrop)
	must(t, r.Maps.AddExpectation(e, time.Minute))
	must(t, r.Maps.DeleteExpectation(maps.Expectation{Src: e.Src, Dst: e.Dst, DPort: e.DPort, Origin: origin})) // by origin
	wantVerdict(t, r, bpftest.SYN(ap(client4, 51304), ap(server4, 40100)), bpftest.XDPDrop)
}
