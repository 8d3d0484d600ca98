package bpf_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/bpf"
	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/internal/packet"
	"github.com/ftpgate/ftpgate/maps"
)

// TestTenThousandPORTCommands: one control connection floods PORT commands;
// the expectation table holds at most the per-connection cap, and the
// counters account for every one.
func TestTenThousandPORTCommands(t *testing.T) {
	r := bpftest.Shared(t)
	c := open(t, r, client4, server4)
	const n = 10000
	for i := 0; i < n; i++ {
		port := 1024 + i
		must(t, c.ClientSends(fmt.Sprintf("PORT 192,0,2,10,%d,%d\r\n", port>>8, port&0xff)))
	}
	wantExpect(t, r, expect{"port", server4, client4, 1024 + n - 1})
	wantCounters(t, r, map[string]uint64{"cmd_port": n, "expect_created": n, "expect_evicted": n - 1})
}

// TestControlPortFloodFromOneSource (issue 11, finding 6): a flood of
// `x\r\n` without a handshake from one source, to the control port, each
// segment a new connection. Nothing of it is trusted: it never reaches
// ctrl_conns, the per-source limit refuses most of it (counted), and an
// established session's PASV still works afterwards. (One source: however
// slowly the test runs, it cannot earn tokens for more than a few hundred.)
func TestControlPortFloodFromOneSource(t *testing.T) {
	r := bpftest.Shared(t)
	est := open(t, r, client4, server4)
	const n = 60000
	for i := 0; i < n; i++ {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, 66}), uint16(1024+i))
		frame := packet.TCP{Src: src, Dst: ap(server4, 21), Seq: 1, Flags: packet.ACK, Payload: []byte("x\r\n")}.Bytes()
		if _, err := r.TC(frame, true, 0); err != nil {
			t.Fatal(err)
		}
	}
	conns, err := r.Maps.ListConns()
	must(t, err)
	if len(conns) != 1 {
		t.Fatalf("%d control connections tracked, want the established one", len(conns))
	}
	cnt, err := r.Counters()
	must(t, err)
	// the established session began as an embryo too
	if cnt["ctrl_embryo_created"]+cnt["ctrl_embryo_limited"] != n+1 || cnt["ctrl_embryo_limited"] < n/2 {
		t.Errorf("embryos created %d, limited %d: want %d together, most limited",
			cnt["ctrl_embryo_created"], cnt["ctrl_embryo_limited"], n+1)
	}
	wantCounters(t, r, map[string]uint64{"ctrl_segments": n + 4, "ctrl_conn_full": 0, "ctrl_trusted_pickup": 0})
	converse(t, est, "", "PASV\r\n", "227 Entering Passive Mode (198,51,100,20,117,48)\r\n")
	wantExpect(t, r, expect{"pasv", client4, server4, 30000})
}

// TestEstablishedSurvivesFullTable: with ctrl_conns full, a new trusted
// connection is refused and counted; the established ones are not evicted.
func TestEstablishedSurvivesFullTable(t *testing.T) {
	r := bpftest.Shared(t)
	est := open(t, r, client4, server4)
	room := int(r.Objs.CtrlConns.MaxEntries()) - 1
	for i := 0; i < room+10; i++ {
		c := bpftest.NewConn(r, ap(client4, uint16(10000+i)), ap(server4, 21))
		must(t, c.Open())
	}
	wantCounters(t, r, map[string]uint64{"ctrl_conn_full": 10, "ctrl_trusted_handshake": uint64(room + 1)})
	converse(t, est, "", "PASV\r\n", "227 Entering Passive Mode (198,51,100,20,117,48)\r\n")
	wantExpect(t, r, expect{"pasv", client4, server4, 30000})
}

// TestSYNFloodToRandomPorts: every unsolicited SYN is dropped and counted,
// and a negotiated connection in the middle of the flood still gets in.
func TestSYNFloodToRandomPorts(t *testing.T) {
	r := bpftest.Shared(t)
	must(t, r.Maps.AllowPorts().Add(21))
	passive(t, r)
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 20000
	dropped := 0
	for i := 0; i < n; i++ {
		if i == n/2 {
			wantVerdict(t, r, bpftest.SYN(ap(client4, 50000), ap(server4, 30000)), bpftest.XDPPass)
		}
		dport := uint16(1 + rng.IntN(65535))
		if dport == 21 || dport == 30000 {
			continue
		}
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(rng.IntN(256))}), uint16(rng.IntN(65536)))
		if verdict(t, r, bpftest.SYN(src, ap(server4, dport))) != bpftest.XDPDrop {
			t.Fatalf("flood SYN to %d passed", dport)
		}
		dropped++
	}
	wantCounters(t, r, map[string]uint64{"syn_drop_unexpected": uint64(dropped), "syn_pass_expected": 1})
}

// TestFullExpectationTableRefusesVisibly (issue 11, finding 6): the
// expectation table is a plain hash: when full, a new expectation is refused
// and counted, and none of the live ones is evicted to make room.
func TestFullExpectationTableRefusesVisibly(t *testing.T) {
	r := bpftest.Shared(t)
	c := open(t, r, client4, server4)
	now, err := r.Maps.Now()
	must(t, err)
	size := int(r.Objs.Expectations.MaxEntries())
	for i := range size {
		k := bpf.FtpgateExpectKey{Family: unix.AF_INET, Dport: uint16(1024 + i)}
		must(t, r.Objs.Expectations.Put(k, bpf.FtpgateExpectVal{ExpiresNs: now + uint64(time.Hour), CreatedNs: now}))
	}
	must(t, c.ClientSends("PORT 192,0,2,10,195,80\r\n"))
	wantCounters(t, r, map[string]uint64{"expect_table_full": 1, "expect_created": 0})
	if n, err := r.Maps.Fill(maps.NameExpectations); err != nil || n != size {
		t.Fatalf("%d expectations (%v), want the %d put there", n, err, size)
	}
}
