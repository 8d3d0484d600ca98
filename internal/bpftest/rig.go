// Package bpftest gives tests one shared, reset BPF rig (see bpfrun), a
// driver for control connections, and the rule that turns BPF skips into
// failures where BPF must work. It lives apart from bpfrun so that the
// shipped binary, which links bpfrun for replay, carries no test support.
package bpftest

import (
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"os"
	"runtime"
	"sync"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/ftpgate/ftpgate/bpf"
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

// The admission hooks Rig.AdmitHook selects.
const (
	HookXDP = bpfrun.HookXDP
	HookTC  = bpfrun.HookTC
)

// Load loads a fresh collection with the given LRU table sizes.
func Load(ctrlConns, expectations, flows uint32) (*Rig, error) {
	return bpfrun.Load(ctrlConns, expectations, flows)
}

// Sizes of the connection tables for tests: small, so resets are quick.
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

// VariantEnv, set to "nat", makes Shared load the NAT build of the object
// (bpf.NAT): with config.nat off, the default, every test of the plain
// object must pass on it unchanged (`make test-nat-off`).
const VariantEnv = "FTPGATE_TEST_VARIANT"

var (
	shared     *Rig
	sharedErr  error
	sharedOnce sync.Once
)

// Shared returns the process-wide rig, reset to defaults: control port 21,
// no allowed ports, default config, empty tables, zero counters, admission
// at XDP.
func Shared(tb testing.TB) *Rig {
	tb.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(tb, "BPF program tests need root")
	}
	sharedOnce.Do(func() {
		v := bpf.Plain
		if os.Getenv(VariantEnv) == bpf.NAT.String() {
			v = bpf.NAT
		}
		shared, sharedErr = bpfrun.LoadVariant(v, testCtrlConns, testExpectations, testDataFlows)
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
	shared.AdmitHook = HookXDP
	return shared
}

// OneCPU keeps the test on one CPU until it ends, for tests of
// per-CPU state (the event rate limiter): BPF_PROG_TEST_RUN runs the program
// on the calling thread's CPU.
func OneCPU(tb testing.TB) {
	tb.Helper()
	runtime.LockOSThread()
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		runtime.UnlockOSThread()
		tb.Fatalf("read CPU affinity: %v", err)
	}
	first := 0
	for !old.IsSet(first) {
		first++
	}
	var one unix.CPUSet
	one.Set(first)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		runtime.UnlockOSThread()
		tb.Fatalf("set CPU affinity: %v", err)
	}
	tb.Cleanup(func() {
		unix.SchedSetaffinity(0, &old)
		runtime.UnlockOSThread()
	})
}
