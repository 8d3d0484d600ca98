package maps

import (
	"encoding/binary"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/ftpgate/ftpgate/bpf"
)

// A writer that read the config long before it writes (the TLS range set,
// coverSYNGate) puts back its fields, but not a SYN gate horizon lower than
// the one written in between, and not a cleared tls_seen (review of #14,
// finding 3).
func TestPutConfigKeepsRaisedHorizon(t *testing.T) {
	cfg, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: uint32(binary.Size(bpf.FtpgateConfigVal{})), MaxEntries: 1})
	if err != nil {
		if os.Getenv("FTPGATE_REQUIRE_BPF") != "" {
			t.Fatal(err)
		}
		t.Skip("no BPF maps here:", err)
	}
	defer cfg.Close()
	m := &Maps{Config: cfg}
	base := DefaultConfig()
	base.SYNGateHorizon = SYNGateHorizon(base.ExpectTimeout)
	if err := m.writeConfig(base); err != nil {
		t.Fatal(err)
	}
	stale, err := m.GetConfig()
	if err != nil {
		t.Fatal(err)
	}
	// in between: the timeout raised, and TC saw an encrypted session
	raised := base
	raised.ExpectTimeout = time.Hour
	if err := m.SetConfig(raised); err != nil {
		t.Fatal(err)
	}
	if err := m.SetTLSLookups(false, true); err != nil { // as TC sets tls_seen
		t.Fatal(err)
	}
	want, err := m.GetConfig()
	if err != nil {
		t.Fatal(err)
	}
	if want.SYNGateHorizon < time.Hour {
		t.Fatalf("SetConfig with a 1 h timeout left the horizon at %v", want.SYNGateHorizon)
	}
	stale.TLSRanges = true // what the stale writer came to change
	if err := m.putConfig(stale); err != nil {
		t.Fatal(err)
	}
	got, err := m.GetConfig()
	if err != nil {
		t.Fatal(err)
	}
	if got.SYNGateHorizon != want.SYNGateHorizon || !got.TLSSeen || !got.TLSRanges || got.ExpectTimeout != base.ExpectTimeout {
		t.Fatalf("after the stale write: horizon %v (want %v), tls_seen %v, tls_ranges %v, timeout %v", got.SYNGateHorizon, want.SYNGateHorizon, got.TLSSeen, got.TLSRanges, got.ExpectTimeout)
	}
	// off stays off: a timeout too long for a horizon turns the gate off
	off := got
	off.SYNGateHorizon = 0
	if err := m.putConfig(off); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.GetConfig(); got.SYNGateHorizon != 0 {
		t.Fatalf("a write of an off horizon left %v", got.SYNGateHorizon)
	}
}
