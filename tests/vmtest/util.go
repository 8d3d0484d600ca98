package vmtest

import (
	"net"
	"net/netip"
	"runtime"
)

func prefixNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}

// lockThread pins the goroutine to its thread for good: a thread whose
// namespace was changed must never run other goroutines.
func lockThread() { runtime.LockOSThread() }
