// Package nettest makes throwaway network namespaces with a veth pair and
// private bpffs mounts for privileged tests, and removes them afterwards.
// It runs no external binary, so it works inside the VM matrix too.
package nettest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// VethNS creates a named network namespace (prefix plus a random suffix)
// holding an up veth pair named a and b, and deletes it when the test ends.
func VethNS(t testing.TB, prefix, a, b string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%06d", prefix, rand.IntN(1000000))
	errc := make(chan error, 1)
	go func() {
		// never unlocked: the thread dies with the goroutine instead of
		// being reused in the wrong namespace
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		ns, err := netns.NewNamed(name)
		if err != nil {
			errc <- fmt.Errorf("create netns %s: %w", name, err)
			return
		}
		defer ns.Close()
		err = netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a}, PeerName: b})
		for _, n := range []string{a, b} {
			if err != nil {
				break
			}
			var lk netlink.Link
			if lk, err = netlink.LinkByName(n); err == nil {
				err = netlink.LinkSetUp(lk)
			}
		}
		errc <- errors.Join(err, netns.Set(orig))
	}()
	if err := <-errc; err != nil {
		netns.DeleteNamed(name)
		t.Fatalf("set up %s: %v", name, err)
	}
	t.Cleanup(func() { netns.DeleteNamed(name) })
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

// Do runs fn on an OS thread inside the named network namespace. Sockets
// fn creates stay in that namespace; goroutines fn starts do not.
func Do(name string, fn func() error) error {
	target, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", name, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: see VethNS
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", name, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
