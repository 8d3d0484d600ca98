package attack

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/ftpgate/ftpgate/internal/packet"
	"github.com/ftpgate/ftpgate/tests/lab"
)

// floodTargets are outside addresses nobody answers for (the gateway's
// neighbour lookup fails), so only the gateway sees the flood: a server
// answering each segment with a RST would close the entries it made.
var floodTargets = []netip.Addr{
	netip.MustParseAddr("198.51.100.3"), netip.MustParseAddr("198.51.100.4"), netip.MustParseAddr("198.51.100.5"),
}

// TestTableFlood is finding 6: one host, spoofing nothing, sends `x\r\n` to
// port 21 from every source port towards a few addresses, with no
// handshake: more distinct connections than ftpgate's control-connection
// table holds. An idle session established before must still transfer,
// and the refusals or evictions must be counted.
func TestTableFlood(t *testing.T) {
	const row = "6 table flood: `x\\r\\n` to port 21 from every source port, no handshake"
	const firstPort, lastPort = 1024, 65535
	outcomes.note(row, "193,536 segments from the client's own address (3 destinations x 64,512 ports), then the next transfer on a session idle since before the flood; not run against netfilter: its conntrack table is shared with the whole host")
	sp := spec{gateOnly: "the kernel's conntrack table is host-wide: flooding it would disturb everything else on this machine"}
	forEachTarget(t, sp, func(e *env) {
		s := e.open(4)
		if err := s.passiveGet(); err != nil {
			e.t.Fatalf("transfer before the flood: %v", err)
		}
		before := e.counters()
		in := e.injectorOn(e.l.ClientNS, lab.GwClientIf)
		src := e.l.ClientAddr(4)
		sent := 0
		for _, dst := range floodTargets {
			for port := firstPort; port <= lastPort; port++ {
				seg := packet.TCP{Src: netip.AddrPortFrom(src, uint16(port)), Dst: netip.AddrPortFrom(dst, 21),
					Seq: rand.Uint32(), Ack: rand.Uint32(), Flags: packet.ACK | packet.PSH, Payload: []byte("x\r\n")}
				if err := in.send(seg, 64); err != nil {
					e.t.Fatalf("after %d segments: %v", sent, err)
				}
				sent++
			}
		}
		after := e.counters()
		e.t.Logf("sent %d segments; ftpgate counted %d control segments", sent, after["ctrl_segments"]-before["ctrl_segments"])
		e.report(row, e.sessionSurvives(s, "the flood"))
		e.wantRefusalCounted(before, countTableGuard)
	})
}
