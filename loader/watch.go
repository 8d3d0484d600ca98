package loader

import (
	"context"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/bpf"
	"github.com/ftpgate/ftpgate/maps"
)

// Watch follows link events in the guarded network namespace until ctx ends
// or Close is called. Deleting an interface takes ftpgate's programs with
// it: a guarded interface that disappears is logged (status and
// ftpgate_attach_info, which ask the kernel, show it missing), and one that
// appears again under its name gets the programs back in the modes it had,
// its new ifindex in guarded_ifs and in the state file, and a log line and
// a count in ftpgate_reattach_total. It returns once subscribed.
func (d *Dataplane) Watch(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	opts := netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) {
			// closing the subscription on the way out reads as an error too
			if ctx.Err() == nil {
				d.log.Warn("link events", "err", err)
			}
		},
	}
	if ns := d.State.NetNS; ns != "" {
		h, err := netns.GetFromName(ns)
		if err != nil {
			cancel()
			return fmt.Errorf("watch links: open network namespace %q: %w", ns, err)
		}
		defer h.Close() // only used to open the socket
		opts.Namespace = &h
	}
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	if err := netlink.LinkSubscribeWithOptions(updates, done, opts); err != nil {
		cancel()
		return fmt.Errorf("watch links: %w", err)
	}
	finished := make(chan struct{})
	d.stopWatch = func() { cancel(); <-finished }
	go func() {
		defer close(finished)
		defer func() {
			close(done)
			go func() { // let the subscription's reader finish
				for range updates {
				}
			}()
		}()
		// what changed between attaching and subscribing
		d.reconcile()
		for {
			select {
			case <-ctx.Done():
				return
			case u, ok := <-updates:
				if !ok {
					d.log.Error("link events stopped: a re-created interface is no longer re-attached; restart `ftpgate run`")
					return
				}
				d.onLink(u)
			}
		}
	}()
	return nil
}

// reconcile compares every guarded interface with the kernel once.
func (d *Dataplane) reconcile() {
	for _, ifc := range d.Ifaces() {
		var lk netlink.Link
		err := inNetns(d.State.NetNS, func() error {
			var err error
			lk, err = netlink.LinkByName(ifc.Name)
			return err
		})
		switch {
		case err != nil:
			d.gone(ifc)
		case lk.Attrs().Index != ifc.Index:
			d.reattach(lk)
		}
	}
}

func (d *Dataplane) onLink(u netlink.LinkUpdate) {
	a := u.Link.Attrs()
	for _, ifc := range d.Ifaces() {
		switch {
		case u.Header.Type == unix.RTM_DELLINK && a.Index == ifc.Index:
			d.gone(ifc)
		case u.Header.Type == unix.RTM_NEWLINK && a.Name == ifc.Name && a.Index != ifc.Index:
			d.reattach(u.Link)
		}
	}
}

// gone handles a guarded interface that no longer exists.
func (d *Dataplane) gone(ifc IfaceState) {
	d.log.Warn("guarded interface disappeared, and ftpgate's programs with it; they are re-attached when it is created again",
		"iface", ifc.Name, "ifindex", ifc.Index)
	if err := d.Maps.GuardedIfs.Delete(uint32(ifc.Index)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		d.log.Warn("update "+maps.NameGuardedIfs, "iface", ifc.Name, "err", err)
	}
}

// reattach puts the programs on lk, which took the name of a guarded
// interface, in the modes that interface had.
func (d *Dataplane) reattach(lk netlink.Link) {
	a := lk.Attrs()
	d.mu.Lock()
	defer d.mu.Unlock()
	i := -1
	for j := range d.State.Ifaces {
		if d.State.Ifaces[j].Name == a.Name {
			i = j
		}
	}
	if i < 0 || d.State.Ifaces[i].Index == a.Index {
		return
	}
	old := d.State.Ifaces[i]
	if err := checkEthernet(lk); err != nil {
		d.log.Error("not re-attaching", "iface", a.Name, "err", err)
		return
	}
	ifc := IfaceState{Name: a.Name, Index: a.Index, Kind: lk.Type(), XDPAttach: old.XDPAttach, XDPPriority: old.XDPPriority}
	err := inNetns(d.State.NetNS, func() error {
		// nothing of ours is on the new interface: attach afresh (the pins of
		// the old one's links are stale and replaced)
		if old.AdmitHook.orXDP() == AdmitXDP {
			if err := attachXDP(d.objs.FtpgateXdp, &ifc, old.XDPMode, nil, d.pinDir); err != nil {
				return err
			}
		}
		if err := attachTC([2]*ebpf.Program{d.objs.FtpgateTcIngress, d.objs.FtpgateTcEgress}, &ifc, old.TCMode, nil, d.pinDir); err != nil {
			return err
		}
		return settleAdmission(d.objs.FtpgateTcAdmit, &ifc, old.AdmitHook, nil, d.pinDir)
	})
	if err != nil {
		d.log.Error("re-attach guarded interface", "iface", a.Name, "ifindex", a.Index, "err", err)
		return
	}
	if err := d.Maps.GuardedIfs.Delete(uint32(old.Index)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		d.log.Warn("update "+maps.NameGuardedIfs, "iface", a.Name, "err", err)
	}
	if err := d.Maps.GuardedIfs.Put(uint32(ifc.Index), bpf.FtpgateIfaceVal{Enabled: 1}); err != nil {
		d.log.Warn("update "+maps.NameGuardedIfs, "iface", a.Name, "err", err)
	}
	d.State.Ifaces[i] = ifc
	if err := d.states.write(&d.State); err != nil {
		d.log.Warn("record re-attached interface", "err", err)
	}
	d.reattached[a.Name]++
	d.log.Info("re-attached guarded interface", "iface", a.Name, "ifindex", ifc.Index, "old_ifindex", old.Index,
		"admit", ifc.AdmitHook, "xdp", ifc.XDPMode, "tc", ifc.TCMode)
}
