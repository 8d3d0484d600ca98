package bpf_test

import (
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/bpf"
	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/internal/packet"
	"github.com/ftpgate/ftpgate/maps"
)

// #14 the SYN gate (syngate.h): a SYN to a port nothing was written for
// lately skips the data_flows and expectations look-ups. These tests show
// that the skip never drops a SYN the look-ups would pass.

// horizon returns the gate's horizon, which must be on.
func horizon(t *testing.T, r *bpftest.Rig) time.Duration {
	t.Helper()
	c, err := r.Maps.GetConfig()
	must(t, err)
	if c.SYNGateHorizon == 0 {
		t.Fatal("the SYN gate is off")
	}
	return c.SYNGateHorizon
}

// mark reads port's mark in syn_gate.
func mark(t *testing.T, r *bpftest.Rig, port uint16) uint64 {
	t.Helper()
	var v uint64
	must(t, r.Objs.SynGate.Lookup(uint32(port), &v))
	return v
}

// wantMarkedNow fails unless port's mark is within a second of the ftpgate clock.
func wantMarkedNow(t *testing.T, r *bpftest.Rig, port uint16) {
	t.Helper()
	now, err := r.Maps.Now()
	must(t, err)
	if d := time.Duration(int64(now - mark(t, r, port))); d < 0 || d > time.Second {
		t.Fatalf("port %d marked %v before now, want within a second", port, d)
	}
}

// synSeq is a SYN with sequence number seq.
func synSeq(src, dst netip.AddrPort, seq uint32) []byte {
	return packet.TCP{Src: src, Dst: dst, Seq: seq, Flags: packet.SYN}.Bytes()
}

// TestSYNGateCold: an unsolicited SYN to a port never written is dropped
// without the look-ups, counted and reported as before.
func TestSYNGateCold(t *testing.T) {
	r := bpftest.Shared(t)
	wantVerdict(t, r, bpftest.SYN(ap(client4, 40001), ap(server4, 30000)), bpftest.XDPDrop)
	wantVerdict(t, r, bpftest.SYN(ap(client6, 40001), ap(server6, 30000)), bpftest.XDPDrop)
	wantCounters(t, r, map[string]uint64{"syn_gate_cold": 2, "syn_drop_unexpected": 2, "syn_pass_expected": 0})
	evs, err := r.Events()
	must(t, err)
	if len(evs) != 2 || evs[0].Type != maps.EventSYNDrop || evs[0].Reason != "syn_drop_unexpected" || evs[0].SPort != 40001 {
		t.Fatalf("events %+v, want two syn_drop of reason syn_drop_unexpected", evs)
	}
}

// TestSYNGateExpected: TC's expectation marks its port, cold until then:
// the expected SYN passes, another SYN to the port is looked up and dropped.
func TestSYNGateExpected(t *testing.T) {
	r := bpftest.Shared(t)
	wantVerdict(t, r, bpftest.SYN(ap(client4, 40001), ap(server4, 30000)), bpftest.XDPDrop)
	wantCounters(t, r, map[string]uint64{"syn_gate_cold": 1})
	passive(t, r)
	wantMarkedNow(t, r, 30000)
	wantVerdict(t, r, bpftest.SYN(ap(other4, 40002), ap(server4, 30000)), bpftest.XDPDrop)
	wantVerdict(t, r, bpftest.SYN(ap(client4, 40003), ap(server4, 30000)), bpftest.XDPPass)
	wantCounters(t, r, map[string]uint64{"syn_gate_cold": 1, "syn_drop_unexpected": 2, "syn_pass_expected": 1})

	// EPRT, IPv6: the same
	c := open(t, r, client6, server6)
	must(t, c.ClientSends("EPRT |2|2001:db8:1::10|40444|\r\n"))
	wantVerdict(t, r, bpftest.SYN(ap(server6, 20), ap(client6, 40444)), bpftest.XDPPass)
	wantCounters(t, r, map[string]uint64{"syn_gate_cold": 1, "syn_pass_expected": 2})
}

// TestSYNGateRetransmit: the admitted SYN again passes after its
// expectation would have expired, within the longest retransmission
// interval of the last SYN of the connection; each one passed marks the
// port anew. Past the horizon nothing of the connection can come, and the
// gate drops it.
func TestSYNGateRetransmit(t *testing.T) {
	r := bpftest.Shared(t)
	setConfig(t, r, func(c *maps.Config) { c.ExpectTimeout = 10 * time.Second })
	h := horizon(t, r)
	passive(t, r)
	src, dst := ap(client4, 51000), ap(server4, 30000)
	must(t, r.SetClock(9*time.Second))
	wantVerdict(t, r, synSeq(src, dst, 77), bpftest.XDPPass)
	wantMarkedNow(t, r, 30000)
	// after the expectation's 10 s, within TCP_RTO_MAX of the last SYN
	at := 9*time.Second + maps.SYNGateRTOMax
	must(t, r.SetClock(at))
	wantVerdict(t, r, synSeq(src, dst, 77), bpftest.XDPPass)
	wantMarkedNow(t, r, 30000)
	// just within the horizon of that retransmission
	at += h - time.Second
	must(t, r.SetClock(at))
	wantVerdict(t, r, synSeq(src, dst, 77), bpftest.XDPPass)
	wantCounters(t, r, map[string]uint64{"syn_pass_expected": 1, "syn_pass_retransmit": 2, "syn_gate_cold": 0})
	// another connection on the 5-tuple is still refused
	wantVerdict(t, r, synSeq(src, dst, 78), bpftest.XDPDrop)
	wantCounters(t, r, map[string]uint64{"syn_flow_refused": 1, "syn_gate_cold": 0})
	// past the horizon
	must(t, r.SetClock(at+h+time.Second))
	wantVerdict(t, r, synSeq(src, dst, 77), bpftest.XDPDrop)
	wantCounters(t, r, map[string]uint64{"syn_pass_retransmit": 2, "syn_gate_cold": 1, "syn_drop_unexpected": 2})
}

// TestSYNGateExpiry: within the horizon an expired expectation is looked
// up, removed and counted as before; past it the SYN is dropped without a
// look-up and the expectation stays for the ager.
func TestSYNGateExpiry(t *testing.T) {
	r := bpftest.Shared(t)
	setConfig(t, r, func(c *maps.Config) { c.ExpectTimeout = 10 * time.Second })
	h := horizon(t, r)
	if h < 10*time.Second+maps.SYNGateRTOMax+maps.SYNGateSlack {
		t.Fatalf("horizon %v shorter than the timeout, TCP_RTO_MAX and the slack", h)
	}
	passive(t, r)
	must(t, r.SetClock(11*time.Second))
	wantVerdict(t, r, bpftest.SYN(ap(client4, 51000), ap(server4, 30000)), bpftest.XDPDrop)
	wantExpect(t, r)
	wantCounters(t, r, map[string]uint64{"expect_expired": 1, "syn_drop_unexpected": 1, "syn_gate_cold": 0})

	c := bpftest.NewConn(r, ap(client4, 40100), ap(server4, 21))
	must(t, c.Open())
	must(t, c.Greet())
	converse(t, c, "", "PASV\r\n", "227 Entering Passive Mode (198,51,100,20,117,49)\r\n")
	wantExpect(t, r, expect{"pasv", client4, server4, 30001})
	must(t, r.SetClock(11*time.Second+h+time.Second))
	wantVerdict(t, r, bpftest.SYN(ap(client4, 51001), ap(server4, 30001)), bpftest.XDPDrop)
	// expired, not looked up: still in the map (listings hide it)
	var ek bpf.FtpgateExpectKey
	if err := r.Objs.Expectations.NextKey(nil, &ek); err != nil || ek.Dport != 30001 {
		t.Fatalf("expectations hold %+v (%v), want the expired one to port 30001", ek, err)
	}
	wantCounters(t, r, map[string]uint64{"expect_expired": 1, "syn_drop_unexpected": 2, "syn_gate_cold": 1})
}

// TestSYNGateConsumption: the consuming SYN marks the port before it
// writes the flow, and the consumed expectation admits no second one.
func TestSYNGateConsumption(t *testing.T) {
	r := bpftest.Shared(t)
	setConfig(t, r, func(c *maps.Config) { c.ExpectTimeout = 10 * time.Second })
	h := horizon(t, r)
	passive(t, r)
	created := mark(t, r, 30000)
	must(t, r.SetClock(9*time.Second))
	wantVerdict(t, r, bpftest.SYN(ap(client4, 51000), ap(server4, 30000)), bpftest.XDPPass)
	if m := mark(t, r, 30000); m-created < uint64(9*time.Second) {
		t.Fatalf("consumption moved the mark by %v, want the 9 s the clock moved", time.Duration(m-created))
	}
	wantVerdict(t, r, bpftest.SYN(ap(client4, 51001), ap(server4, 30000)), bpftest.XDPDrop)
	// the retransmission, horizon - 1 s after the consumption, not after the 227
	must(t, r.SetClock(9*time.Second+h-time.Second))
	wantVerdict(t, r, bpftest.SYN(ap(client4, 51000), ap(server4, 30000)), bpftest.XDPPass)
	wantCounters(t, r, map[string]uint64{"syn_pass_expected": 1, "syn_pass_retransmit": 1, "syn_drop_unexpected": 1,
		"expect_consumed": 1, "syn_gate_cold": 0})
}

// TestSYNGateAddExpectation: the Go side's one writer of expectations
// marks the port, and a ttl longer than the horizon covers raises it.
func TestSYNGateAddExpectation(t *testing.T) {
	r := bpftest.Shared(t)
	h := horizon(t, r)
	e := maps.Expectation{Kind: maps.KindPasv, Src: client4, Dst: server4, DPort: 30000}
	must(t, r.Maps.AddExpectation(e, time.Minute))
	wantMarkedNow(t, r, 30000)
	if got := horizon(t, r); got != h {
		t.Fatalf("horizon %v after a ttl within it, want %v kept", got, h)
	}
	wantVerdict(t, r, bpftest.SYN(ap(client4, 51000), ap(server4, 30000)), bpftest.XDPPass)

	// two hours: the horizon rises with it, and stays
	e.DPort = 30001
	must(t, r.Maps.AddExpectation(e, 2*time.Hour))
	if got, want := horizon(t, r), maps.SYNGateHorizon(2*time.Hour); got != want {
		t.Fatalf("horizon %v after a ttl of 2h, want %v", got, want)
	}
	setConfig(t, r, func(c *maps.Config) { c.ExpectTimeout = time.Second })
	if got, want := horizon(t, r), maps.SYNGateHorizon(2*time.Hour); got != want {
		t.Fatalf("horizon %v after a shorter timeout, want %v kept", got, want)
	}
	must(t, r.SetClock(110*time.Minute))
	wantVerdict(t, r, bpftest.SYN(ap(client4, 51001), ap(server4, 30001)), bpftest.XDPPass)
	wantCounters(t, r, map[string]uint64{"syn_pass_expected": 2, "syn_gate_cold": 0})
}

// TestSYNGateUpgrade: pins an older ftpgate wrote hold expectations and
// flows but no marks, and a config whose horizon is zero: the gate is off
// until EnableSYNGate, which the loader calls once its programs run, and
// then nothing of the older state is refused.
func TestSYNGateUpgrade(t *testing.T) {
	r := bpftest.Shared(t)
	// what an older build leaves: the config without a horizon (it wrote
	// the struct without the field), entries without marks, an expectation
	// of a 2-hour timeout, a flow whose SYN may come again
	cfg, err := r.Maps.GetConfig()
	must(t, err)
	var raw bpf.FtpgateConfigVal
	must(t, r.Objs.Config.Lookup(uint32(0), &raw))
	raw.SynGateHorizonS = 0
	must(t, r.Objs.Config.Put(uint32(0), raw))
	now, err := r.Maps.Now()
	must(t, err)
	k := bpf.FtpgateExpectKey{Dport: 30000}
	k.Family, k.Src = maps.Words(client4)
	_, k.Dst = maps.Words(server4)
	must(t, r.Objs.Expectations.Put(k, bpf.FtpgateExpectVal{CreatedNs: now, ExpiresNs: now + uint64(2*time.Hour), Kind: uint8(maps.KindPasv)}))
	fk := bpf.FtpgateFlowKey{Family: k.Family, Sport: 51000, Dport: 30001, Src: k.Src, Dst: k.Dst}
	must(t, r.Objs.DataFlows.Put(fk, bpf.FtpgateFlowVal{CreatedNs: now, LastSeenNs: now, SynSeq: 1, Kind: uint8(maps.KindPasv)}))

	// off: every SYN is looked up
	wantVerdict(t, r, bpftest.SYN(ap(client4, 51000), ap(server4, 30001)), bpftest.XDPPass)
	wantVerdict(t, r, bpftest.SYN(ap(client4, 40000), ap(server4, 5555)), bpftest.XDPDrop)
	wantCounters(t, r, map[string]uint64{"syn_pass_retransmit": 1, "syn_gate_cold": 0})

	must(t, r.Maps.EnableSYNGate())
	got, err := r.Maps.GetConfig()
	must(t, err)
	if want := maps.SYNGateHorizon(2 * time.Hour); got.SYNGateHorizon != want {
		t.Fatalf("horizon %v after the upgrade, want %v (the pinned expectation's lifetime)", got.SYNGateHorizon, want)
	}
	if got.ExpectTimeout != cfg.ExpectTimeout {
		t.Fatalf("EnableSYNGate changed the timeout to %v", got.ExpectTimeout)
	}
	// a second call changes nothing
	must(t, r.Maps.EnableSYNGate())
	again, err := r.Maps.GetConfig()
	must(t, err)
	if again != got {
		t.Fatalf("EnableSYNGate again: %+v, want %+v", again, got)
	}
	// the flow's SYN again within TCP_RTO_MAX, the expectation's SYN before its expiry
	must(t, r.SetClock(maps.SYNGateRTOMax))
	wantVerdict(t, r, bpftest.SYN(ap(client4, 51000), ap(server4, 30001)), bpftest.XDPPass)
	must(t, r.SetClock(110*time.Minute))
	wantVerdict(t, r, bpftest.SYN(ap(client4, 51001), ap(server4, 30000)), bpftest.XDPPass)
	// and an unwritten port is cold once the marks have aged
	must(t, r.SetClock(got.SYNGateHorizon+time.Second))
	wantVerdict(t, r, bpftest.SYN(ap(client4, 40000), ap(server4, 5555)), bpftest.XDPDrop)
	wantCounters(t, r, map[string]uint64{"syn_pass_retransmit": 2, "syn_pass_expected": 1, "syn_gate_cold": 1})
}

// TestSYNGateDryRun: in dry-run a SYN the gate rejects passes and counts
// as it did without the gate.
func TestSYNGateDryRun(t *testing.T) {
	r := bpftest.Shared(t)
	setConfig(t, r, func(c *maps.Config) { c.DryRun = true })
	wantVerdict(t, r, bpftest.SYN(ap(client4, 40000), ap(server4, 30000)), bpftest.XDPPass)
	wantCounters(t, r, map[string]uint64{"syn_gate_cold": 1, "syn_dryrun_would_drop": 1, "syn_drop_unexpected": 0})
	evs, err := r.Events()
	must(t, err)
	if len(evs) != 1 || evs[0].Reason != "syn_dryrun_would_drop" {
		t.Fatalf("events %+v, want one dropped-SYN event of reason syn_dryrun_would_drop", evs)
	}
}

// TestSYNGateConcurrent: writers on one CPU create expectations (TC's
// parser and the Go side) on ports that were cold, and the expected SYNs
// run on another CPU as soon as each is written, while a third goroutine
// floods the same ports with unsolicited SYNs: no expected SYN is dropped.
func TestSYNGateConcurrent(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs two CPUs")
	}
	r := bpftest.Shared(t)
	const perWriter = 300
	type job struct{ src, dst netip.AddrPort }
	jobs := make(chan job, 16)
	onCPU := func(cpu int) {
		runtime.LockOSThread()
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			t.Errorf("pin to CPU %d: %v", cpu, err)
		}
	}
	var writers, flood sync.WaitGroup
	// TC: one control connection per PASV, each 227 a new cold port
	writers.Add(2)
	go func() {
		defer writers.Done()
		onCPU(0)
		for i := range perWriter {
			port := uint16(40000 + i)
			c := bpftest.NewConn(r, ap(client4, uint16(20000+i)), ap(server4, 21))
			err := c.Open()
			if err == nil {
				err = c.Greet()
			}
			if err == nil {
				err = c.ClientSends("PASV\r\n")
			}
			if err == nil {
				err = c.ServerSends(fmt.Sprintf("227 Entering Passive Mode (198,51,100,20,%d,%d)\r\n", port>>8, port&0xff))
			}
			if err != nil {
				t.Errorf("PASV %d: %v", i, err)
				return
			}
			jobs <- job{ap(client4, uint16(50000+i)), ap(server4, port)}
		}
	}()
	// the Go side
	go func() {
		defer writers.Done()
		onCPU(0)
		for i := range perWriter {
			port := uint16(41000 + i)
			e := maps.Expectation{Kind: maps.KindPasv, Src: other4, Dst: server4, DPort: port}
			if err := r.Maps.AddExpectation(e, time.Minute); err != nil {
				t.Errorf("AddExpectation %d: %v", i, err)
				return
			}
			jobs <- job{ap(other4, uint16(50000+i)), ap(server4, port)}
		}
	}()
	go func() { writers.Wait(); close(jobs) }()
	stop := make(chan struct{})
	flood.Add(1)
	go func() {
		defer flood.Done()
		onCPU(0)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := r.XDP(bpftest.SYN(ap(client6, 1024), ap(server4, uint16(40000+i%1300)))); err != nil {
				t.Errorf("flood: %v", err)
				return
			}
		}
	}()
	onCPU(1)
	defer runtime.UnlockOSThread()
	n := 0
	for j := range jobs {
		v, err := r.XDP(bpftest.SYN(j.src, j.dst))
		must(t, err)
		if v != bpftest.XDPPass {
			t.Errorf("expected SYN %v -> %v dropped", j.src, j.dst)
		}
		n++
	}
	close(stop)
	flood.Wait()
	if n != 2*perWriter {
		t.Fatalf("%d expected SYNs sent, want %d", n, 2*perWriter)
	}
	cs, err := r.Counters()
	must(t, err)
	if cs["syn_pass_expected"] != 2*perWriter || cs["syn_gate_cold"] == 0 {
		t.Fatalf("syn_pass_expected %d (want %d), syn_gate_cold %d (want some: the flood ran on cold ports)",
			cs["syn_pass_expected"], 2*perWriter, cs["syn_gate_cold"])
	}
}
