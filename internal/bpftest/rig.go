// Package bpftest gives tests one shared, reset BPF rig (see bpfrun), a
// driver for control connections, and the rule that turns BPF skips into
// failures where BPF must work. It lives apart from bpfrun so that the
// shipped binary, which links bpfrun for replay, carries no test support.
package bpftest

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/ftpgate/ftpgate/internal/bpfrun"
)

// Rig is a loaded, unattached collection.
type Rig = bpfrun.Rig

// SkbCtx is the test-run context of the TC programs.
type SkbCtx = bpfrun.SkbCtx

// Verdicts and return codes.
const (
	XDPDrop = bpfrun.XDPDrop
	XDPPass = bpfrun.XDPPass
	TCOK    = bpfrun.TCOK
)

// Load loads a fresh collection with the given LRU table sizes.
func Load(ctrlConns, expectations, flows uint32) (*Rig, error) {
	return bpfrun.Load(ctrlConns, expectations, flows)
}

// Sizes of the LRU tables for tests: small, so resets are quick.
const (
	testCtrlConns    = 1024
	testExpectations = 1024
	testDataFlows    = 1024
)

// RequireEnv, when set to 1, turns every BPF skip into a failure. CI and the
// VM matrix set it: on a kernel that should run the programs, not running
// them is a bug.
const RequireEnv = "FTPGATE_REQUIRE_BPF"

// SkipOrFail skips the test for a reason outside the code (not root, no BPF),
// or fails it when RequireEnv is set.
func SkipOrFail(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(RequireEnv) == "1" {
		tb.Fatalf("%s (%s=1: skipping is not allowed)", msg, RequireEnv)
	}
	tb.Skip(msg)
}

var (
	shared     *Rig
	sharedErr  error
	sharedOnce sync.Once
)

// Shared returns the process-wide rig, reset to defaults: control port 21,
// no allowed ports, default config, empty tables, zero counters.
func Shared(tb testing.TB) *Rig {
	tb.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(tb, "BPF program tests need root")
	}
	sharedOnce.Do(func() {
		shared, sharedErr = bpfrun.Load(testCtrlConns, testExpectations, testDataFlows)
	})
	if sharedErr != nil {
		if errors.Is(sharedErr, ebpf.ErrNotSupported) {
			SkipOrFail(tb, "kernel lacks a BPF feature: %v", sharedErr)
		}
		tb.Fatalf("%v", sharedErr)
	}
	if err := shared.Reset(); err != nil {
		tb.Fatalf("reset: %v", err)
	}
	return shared
}
