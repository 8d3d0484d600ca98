// Package nsrun runs code inside a named network namespace. Only the
// network namespace changes: bpffs pins stay in the caller's mount
// namespace. Interface indexes given to the kernel (XDP and TCX links) and
// sockets are resolved in the calling thread's namespace, which is why such
// work must happen on the thread this package switches.
package nsrun

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs fn on an OS thread that has joined the network namespace name
// (as under /var/run/netns); an empty name runs fn where the caller is.
// Sockets fn creates stay in that namespace; goroutines fn starts do not.
func Do(name string, fn func() error) error {
	if name == "" {
		return fn()
	}
	target, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("open network namespace %q: %w (list them with `ip netns list`)", name, err)
	}
	defer target.Close()
	return onFreshThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return fmt.Errorf("get current network namespace: %w", err)
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			return fmt.Errorf("enter network namespace %q: %w", name, err)
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// the thread stays locked and dies with its goroutine
			return errors.Join(ferr, fmt.Errorf("leave network namespace %q: %w", name, err))
		}
		runtime.UnlockOSThread()
		return ferr
	})
}

// Create makes the named network namespace (bound under /var/run/netns)
// and runs setup inside it, without moving the caller.
func Create(name string, setup func() error) error {
	return onFreshThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return fmt.Errorf("get current network namespace: %w", err)
		}
		defer orig.Close()
		ns, err := netns.NewNamed(name) // also switches this thread into it
		if err != nil {
			return fmt.Errorf("create network namespace %q: %w", name, err)
		}
		defer ns.Close()
		var serr error
		if setup != nil {
			serr = setup()
		}
		if err := netns.Set(orig); err != nil {
			return errors.Join(serr, fmt.Errorf("leave network namespace %q: %w", name, err))
		}
		runtime.UnlockOSThread()
		return serr
	})
}

// onFreshThread runs fn on a new goroutine locked to its thread. fn unlocks
// the thread only once it is back in its original namespace; a thread left
// locked is discarded by the runtime instead of being reused elsewhere.
func onFreshThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- fn()
	}()
	return <-errc
}
