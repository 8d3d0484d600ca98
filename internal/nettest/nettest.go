// Package nettest makes throwaway network namespaces for privileged tests:
// a single one with a veth pair, the client — gateway — server topology
// every lab builds on (see Topology), and private bpffs mounts; it removes
// them afterwards. It runs no external binary, so it works inside the VM
// matrix too.
package nettest

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/internal/nsrun"
)

// NS creates the named network namespace and deletes it when the test ends.
func NS(t testing.TB, name string) {
	t.Helper()
	if err := nsrun.Create(name, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeNS(t, name) })
}

// VethNS creates a named network namespace (prefix plus a random suffix)
// holding an up veth pair named a and b, and deletes it when the test ends.
func VethNS(t testing.TB, prefix, a, b string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%06d", prefix, rand.IntN(1000000))
	err := nsrun.Create(name, func() error {
		err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a}, PeerName: b})
		for _, n := range []string{a, b} {
			if err != nil {
				break
			}
			var lk netlink.Link
			if lk, err = netlink.LinkByName(n); err == nil {
				err = netlink.LinkSetUp(lk)
			}
		}
		return err
	})
	if err != nil {
		netns.DeleteNamed(name)
		t.Fatalf("set up %s: %v", name, err)
	}
	t.Cleanup(func() { removeNS(t, name) })
	return name
}

// BPFFS mounts a private bpffs on a temporary directory and returns it.
func BPFFS(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, ""); err != nil {
		t.Fatalf("mount bpffs on %s: %v", dir, err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// Do runs fn on an OS thread inside the named network namespace; see nsrun.
func Do(name string, fn func() error) error { return nsrun.Do(name, fn) }
