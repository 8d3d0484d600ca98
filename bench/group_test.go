package bench

import (
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/internal/group"
	"github.com/ftpgate/ftpgate/internal/group/grouptest"
	"github.com/ftpgate/ftpgate/maps"
)

// arrivals records when each expectation reached a peer's table.
type arrivals struct {
	mu   sync.Mutex
	when map[uint16]time.Time // by data port
}

func (a *arrivals) AddExpectation(e maps.Expectation, _ time.Duration) error {
	now := time.Now()
	a.mu.Lock()
	if _, ok := a.when[e.DPort]; !ok {
		a.when[e.DPort] = now
	}
	a.mu.Unlock()
	return nil
}
func (a *arrivals) DeleteExpectation(maps.Expectation) error { return nil }
func (a *arrivals) AddFlow(maps.Flow, uint32) error          { return nil }

func cpuTime() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkGroupSync: three group nodes with mutual-TLS routes on loopback
// in this process (the embedded servers and engines of three daemons, not
// their dataplanes). One publishes 1000 created expectations a second for
// 10 s, each with its segment held (--sync-hold, the default in a group);
// measured: the time from its HandleEvent (where run hands it the ring's
// record) to the peer's map write (AddExpectation), the time until both
// peers acknowledged it (when run would send the held segment on), and the
// CPU the whole process spent, both ends of every entry and the acks.
func BenchmarkGroupSync(b *testing.B) {
	const rate, seconds = 1000, 10
	p := grouptest.NewPKI(b, "bench")
	lo := netip.MustParseAddr("127.0.0.1")
	addrs := []string{grouptest.FreeAddr(b), grouptest.FreeAddr(b), grouptest.FreeAddr(b)}
	var nodes []*group.Node
	tables := []*arrivals{{when: map[uint16]time.Time{}}, {when: map[uint16]time.Time{}}, {when: map[uint16]time.Time{}}}
	for i, name := range []string{"a", "b", "c"} {
		cert, key := p.Issue(b, name, lo)
		var peers []string
		for j, a := range addrs {
			if j != i {
				peers = append(peers, a)
			}
		}
		n, err := group.Start(group.Config{Group: "bench", NodeID: name, Listen: addrs[i], Peers: peers, CA: p.CA, Cert: cert, Key: key},
			tables[i], func() group.Policy { return group.Policy{ExpectTimeout: maps.DefaultExpectTimeout, SyncHold: true} }, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer n.Close()
		nodes = append(nodes, n)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range nodes {
		// routes, and a digest from each peer: a hold waits for peers heard from
		for len(n.Status().Routes) < 2 || len(n.Peers()) < 2 {
			if time.Now().After(deadline) {
				b.Fatal("routes did not form")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	var relMu sync.Mutex
	released := map[uint16]time.Time{}
	client, server := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("198.51.100.20")
	ctrl := maps.Control{Client: client, ClientPort: 40000, Server: server, ServerPort: 21}
	sent := map[uint16]time.Time{}
	total := rate * seconds
	cpu0, wall0 := cpuTime(), time.Now()
	tick := time.NewTicker(time.Second / rate)
	for i := range total {
		<-tick.C
		port := uint16(1024 + i)
		sent[port] = time.Now()
		nodes[0].HandleEvent(maps.Event{Type: maps.EventCreated, Kind: maps.KindPasv, Src: client, Dst: server, DPort: port, Control: ctrl})
		nodes[0].Hold(group.Key{Src: client, Dst: server, DPort: port}, func() error {
			relMu.Lock()
			released[port] = time.Now()
			relMu.Unlock()
			return nil
		})
	}
	tick.Stop()
	// let the last ones arrive
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		tables[1].mu.Lock()
		n := len(tables[1].when)
		tables[1].mu.Unlock()
		if n == total {
			break
		}
	}
	cpu, wall := cpuTime()-cpu0, time.Since(wall0)
	var lat []time.Duration
	for _, t := range tables[1:] {
		t.mu.Lock()
		for port, at := range t.when {
			lat = append(lat, at.Sub(sent[port]))
		}
		t.mu.Unlock()
	}
	slices.Sort(lat)
	if len(lat) < 2*total {
		b.Errorf("%d of %d expectations arrived", len(lat), 2*total)
	}
	pct := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))] }
	var waits []time.Duration
	for end := time.Now().Add(2 * group.HoldWait); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		relMu.Lock()
		n := len(released)
		relMu.Unlock()
		if n == total {
			break
		}
	}
	relMu.Lock()
	for port, at := range released {
		waits = append(waits, at.Sub(sent[port]))
	}
	relMu.Unlock()
	slices.Sort(waits)
	if len(waits) < total {
		b.Errorf("%d of %d held segments sent on", len(waits), total)
	}
	by, _, _ := nodes[0].C.Holds()
	us := func(d time.Duration) float64 { return float64(d.Microseconds()) }
	addRow(Row{Section: "group", Case: "replication latency p50 (event to peer map write, TLS routes, loopback)", Value: us(pct(0.5)), Unit: "µs"})
	addRow(Row{Section: "group", Case: "replication latency p99", Value: us(pct(0.99)), Unit: "µs"})
	wait := func(q float64) time.Duration { return waits[int(q*float64(len(waits)-1))] }
	addRow(Row{Section: "group", Case: "hold wait p50 (event to both peers' acknowledgements: a held segment sent on)", Value: us(wait(0.5)), Unit: "µs"})
	addRow(Row{Section: "group", Case: "hold wait p99", Value: us(wait(0.99)), Unit: "µs"})
	addRow(Row{Section: "group", Case: "CPU of a 3-node group at 1000 expectations/s (one publishes, two apply and acknowledge)", Value: 100 * cpu.Seconds() / wall.Seconds(), Unit: "% of a core"})
	addNote("group", "%d expectations at %d/s from node a; %d arrivals at b and c; held segments sent on %v; process CPU %v over %v", total, rate, len(lat), by, cpu.Round(time.Millisecond), wall.Round(time.Millisecond))
	b.ReportMetric(us(pct(0.5)), "p50-µs")
	b.ReportMetric(us(pct(0.99)), "p99-µs")
	b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "cpu-%")
}
