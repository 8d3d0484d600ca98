package bpf_test

import (
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/bpf"
	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/maps"
)

func gateOff(t *testing.T, r *bpftest.Rig) {
	var v bpf.FtpgateConfigVal
	must(t, r.Maps.Config.Lookup(uint32(0), &v))
	v.SynGateHorizonS = 0
	must(t, r.Maps.Config.Put(uint32(0), v))
}

// Review of #14: a later writer with an earlier clock (config.clock_offset
// moved back, as replay does for a capture whose timestamps go backwards)
// overwrites a newer mark; a live expectation's SYN is then dropped cold.
func markMovedBack(t *testing.T, off bool) {
	r := bpftest.Shared(t)
	if off {
		gateOff(t, r)
	}
	must(t, r.SetClock(1000*time.Second))
	must(t, r.Maps.AddExpectation(maps.Expectation{Src: client4, Dst: server4, DPort: 30000}, 300*time.Second))
	must(t, r.SetClock(0))
	must(t, r.Maps.AddExpectation(maps.Expectation{Src: other4, Dst: server4, DPort: 30000}, 300*time.Second))
	// the first lives until 1300 s; the horizon is 430 s
	must(t, r.SetClock(1250*time.Second))
	wantVerdict(t, r, synSeq(ap(client4, 40001), ap(server4, 30000), 1), bpftest.XDPPass)
}

func TestSYNGateMarkMovedBack(t *testing.T)    { markMovedBack(t, false) }
func TestSYNGateMarkMovedBackOff(t *testing.T) { markMovedBack(t, true) }

// Review of #14: the config is written read-modify-write by several Go paths
// (SetConfig, coverSYNGate, EnableSYNGate, the TLS range set). A writer that
// read the config before `config set --expect-timeout 1h` and writes it
// after TC made a 1 h expectation must not put back a horizon too short for
// it: its SYN 20 minutes on still passes.
func TestSYNGateStaleConfigWriter(t *testing.T) {
	r := bpftest.Shared(t)
	stale, err := r.Maps.GetConfig() // e.g. a `config set` of another setting
	must(t, err)
	setConfig(t, r, func(c *maps.Config) { c.ExpectTimeout = time.Hour })
	passive(t, r) // TC: an expectation living 1 h
	must(t, r.Maps.SetConfig(stale))
	must(t, r.SetClock(20*time.Minute))
	wantVerdict(t, r, synSeq(ap(client4, 40001), ap(server4, 30000), 1), bpftest.XDPPass)
}
