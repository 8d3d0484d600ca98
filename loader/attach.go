package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// XDPMode selects how the admission filter attaches.
type XDPMode string

// XDP attach modes.
const (
	XDPAuto    XDPMode = "auto"    // native, except generic on veth (see DESIGN.md)
	XDPNative  XDPMode = "native"  // in the driver
	XDPGeneric XDPMode = "generic" // in the stack (skb mode)
)

// TCMode selects how the parser attaches.
type TCMode string

// TC attach mechanisms.
const (
	TCAuto    TCMode = "auto"    // TCX where the kernel has it (6.6+), netlink below
	TCX       TCMode = "tcx"     // TCX links
	TCNetlink TCMode = "netlink" // clsact qdisc + cls_bpf direct-action filter
)

// ParseXDPMode validates a --xdp-mode value.
func ParseXDPMode(s string) (XDPMode, error) {
	switch m := XDPMode(s); m {
	case XDPAuto, XDPNative, XDPGeneric:
		return m, nil
	}
	return "", fmt.Errorf("unknown XDP mode %q: use auto, native or generic", s)
}

// ParseTCMode validates a --tc-attach value.
func ParseTCMode(s string) (TCMode, error) {
	switch m := TCMode(s); m {
	case TCAuto, TCX, TCNetlink:
		return m, nil
	}
	return "", fmt.Errorf("unknown TC attach mechanism %q: use auto, tcx or netlink", s)
}

// ErrXDPBusy means another XDP program holds the interface.
var ErrXDPBusy = errors.New("another XDP program is attached")

// Netlink filter identity: the same handle and priority on every restart, so
// a restart atomically replaces the filter instead of adding a second one.
const (
	tcFilterHandle   = 0xf7
	tcFilterPriority = 0xf7
)

// IfaceState records how one interface is guarded; it is kept in the state
// file so that status, restart and detach find what run attached.
type IfaceState struct {
	Name    string  `json:"name"`
	Index   int     `json:"ifindex"`
	Kind    string  `json:"kind"` // veth, ...
	XDPMode XDPMode `json:"xdp_mode"`
	TCMode  TCMode  `json:"tc_mode"`
}

// linkPin names a link's pin. bpffs refuses names with a dot, and interface
// names may have one (eth0.100): it becomes a colon, which interface names
// cannot contain.
func linkPin(pinDir, iface, what string) string {
	return filepath.Join(pinDir, "links", strings.ReplaceAll(iface, ".", ":")+"-"+what)
}

// attachXDP attaches (or, when a link is already pinned, swaps in place) the
// admission filter. Runs inside the target network namespace.
func attachXDP(prog *ebpf.Program, ifc *IfaceState, want XDPMode, prev *IfaceState, pinDir string) error {
	mode := want
	if mode == XDPAuto {
		// native XDP on a veth turns off TSO on its peer: a third of bulk
		// throughput in our measurements
		mode = XDPNative
		if ifc.Kind == "veth" {
			mode = XDPGeneric
		}
	}
	pin := linkPin(pinDir, ifc.Name, "xdp")

	if prev != nil && prev.XDPMode == mode {
		if l, err := link.LoadPinnedLink(pin, nil); err == nil {
			defer l.Close()
			if err := l.Update(prog); err != nil {
				return fmt.Errorf("update xdp link on %q: %w", ifc.Name, err)
			}
			ifc.XDPMode = mode
			return nil
		}
	}
	// a pinned link of another mode (or a stale pin): replace it
	if err := removePinnedLink(pin); err != nil {
		return err
	}

	l, err := tryAttachXDP(prog, ifc, mode)
	if err != nil && want == XDPAuto && mode == XDPNative && errors.Is(err, unix.EOPNOTSUPP) {
		mode = XDPGeneric
		l, err = tryAttachXDP(prog, ifc, mode)
	}
	if err != nil {
		return err
	}
	defer l.Close()
	if err := l.Pin(pin); err != nil {
		l.Close()
		return fmt.Errorf("pin xdp link of %q: %w", ifc.Name, err)
	}
	ifc.XDPMode = mode
	return nil
}

func tryAttachXDP(prog *ebpf.Program, ifc *IfaceState, mode XDPMode) (link.Link, error) {
	flags := link.XDPDriverMode
	if mode == XDPGeneric {
		flags = link.XDPGenericMode
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifc.Index, Flags: flags})
	if err == nil {
		return l, nil
	}
	if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("attach xdp to %q: %w: %s; remove it first (ip link set dev %s xdp off)", ifc.Name, ErrXDPBusy, describeXDP(ifc.Index), ifc.Name)
	}
	return nil, fmt.Errorf("attach xdp (%s) to %q: %w", mode, ifc.Name, err)
}

// describeXDP names the XDP program already attached to an interface.
func describeXDP(ifindex int) string {
	lk, err := netlink.LinkByIndex(ifindex)
	if err != nil || lk.Attrs().Xdp == nil || lk.Attrs().Xdp.ProgId == 0 {
		return "program unknown"
	}
	id := lk.Attrs().Xdp.ProgId
	p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
	if err != nil {
		return fmt.Sprintf("program id %d", id)
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil {
		return fmt.Sprintf("program id %d", id)
	}
	return fmt.Sprintf("program id %d, name %q", id, info.Name)
}

func removePinnedLink(pin string) error {
	l, err := link.LoadPinnedLink(pin, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		// not a link (or unreadable): drop the pin itself
		if rerr := os.Remove(pin); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			return fmt.Errorf("remove stale pin %s: %w", pin, rerr)
		}
		return nil
	}
	defer l.Close()
	if err := l.Unpin(); err != nil {
		return fmt.Errorf("unpin %s: %w", pin, err)
	}
	return nil
}

// tcDirs are the two TC hooks with their program and names.
type tcHook struct {
	name   string // ingress or egress
	tcx    ebpf.AttachType
	parent uint32
}

var tcHooks = []tcHook{
	{"ingress", ebpf.AttachTCXIngress, netlink.HANDLE_MIN_INGRESS},
	{"egress", ebpf.AttachTCXEgress, netlink.HANDLE_MIN_EGRESS},
}

// attachTC attaches (or swaps in place) the parser at ingress and egress.
// Runs inside the target network namespace.
func attachTC(progs [2]*ebpf.Program, ifc *IfaceState, want TCMode, prev *IfaceState, pinDir string) error {
	mode := want
	if mode == TCAuto {
		mode = TCX
		if !HaveTCX() {
			mode = TCNetlink
		}
	}
	if prev != nil && prev.TCMode != "" && prev.TCMode != mode {
		// switching mechanism: remove the old attachment first
		if err := detachTC(prev, pinDir); err != nil {
			return err
		}
	}
	for i, h := range tcHooks {
		var err error
		if mode == TCX {
			err = attachTCX(progs[i], ifc, h, pinDir)
		} else {
			err = attachNetlinkFilter(progs[i], ifc, h)
		}
		if err != nil {
			return err
		}
	}
	ifc.TCMode = mode
	return nil
}

func attachTCX(prog *ebpf.Program, ifc *IfaceState, h tcHook, pinDir string) error {
	pin := linkPin(pinDir, ifc.Name, "tcx-"+h.name)
	if l, err := link.LoadPinnedLink(pin, nil); err == nil {
		defer l.Close()
		if err := l.Update(prog); err != nil {
			return fmt.Errorf("update tcx %s link on %q: %w", h.name, ifc.Name, err)
		}
		return nil
	}
	if err := removePinnedLink(pin); err != nil {
		return err
	}
	l, err := link.AttachTCX(link.TCXOptions{Interface: ifc.Index, Program: prog, Attach: h.tcx})
	if err != nil {
		return fmt.Errorf("attach tcx %s to %q: %w", h.name, ifc.Name, err)
	}
	defer l.Close()
	if err := l.Pin(pin); err != nil {
		return fmt.Errorf("pin tcx %s link of %q: %w", h.name, ifc.Name, err)
	}
	return nil
}

func clsact(ifindex int) *netlink.GenericQdisc {
	return &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: ifindex,
			Handle:    netlink.MakeHandle(0xffff, 0),
			Parent:    netlink.HANDLE_CLSACT,
		},
		QdiscType: "clsact",
	}
}

func tcFilter(ifindex int, h tcHook, prog *ebpf.Program) *netlink.BpfFilter {
	f := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: ifindex,
			Parent:    h.parent,
			Handle:    netlink.MakeHandle(0, tcFilterHandle),
			Protocol:  unix.ETH_P_ALL,
			Priority:  tcFilterPriority,
		},
		Name:         "ftpgate_tc_" + h.name,
		DirectAction: true,
	}
	if prog != nil {
		f.Fd = prog.FD()
	}
	return f
}

// attachNetlinkFilter adds the clsact qdisc if needed and adds or atomically
// replaces ftpgate's cls_bpf filter (same handle and priority).
func attachNetlinkFilter(prog *ebpf.Program, ifc *IfaceState, h tcHook) error {
	if err := netlink.QdiscAdd(clsact(ifc.Index)); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add clsact qdisc to %q: %w", ifc.Name, err)
	}
	if err := netlink.FilterReplace(tcFilter(ifc.Index, h, prog)); err != nil {
		return fmt.Errorf("attach tc %s filter to %q: %w", h.name, ifc.Name, err)
	}
	return nil
}

// detachTC removes what attachTC put on an interface. Runs inside the
// interface's network namespace.
func detachTC(ifc *IfaceState, pinDir string) error {
	var errs []error
	for _, h := range tcHooks {
		switch ifc.TCMode {
		case TCX:
			errs = append(errs, removePinnedLink(linkPin(pinDir, ifc.Name, "tcx-"+h.name)))
		case TCNetlink:
			err := netlink.FilterDel(tcFilter(ifc.Index, h, nil))
			if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) {
				errs = append(errs, fmt.Errorf("remove tc %s filter from %q: %w", h.name, ifc.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// detachIface removes everything ftpgate attached to one interface.
func detachIface(ifc *IfaceState, pinDir string) error {
	return errors.Join(
		removePinnedLink(linkPin(pinDir, ifc.Name, "xdp")),
		detachTC(ifc, pinDir),
	)
}

// HaveTCX reports whether the running kernel has TCX links (Linux 6.6+).
func HaveTCX() bool {
	v, err := RunningKernel()
	if err != nil {
		return false
	}
	return !v.Less(KernelVersion{6, 6})
}

// tcAttached reports whether ftpgate's TC programs are attached to ifc.
func tcAttached(ifc *IfaceState, pinDir string) bool {
	for _, h := range tcHooks {
		switch ifc.TCMode {
		case TCX:
			l, err := link.LoadPinnedLink(linkPin(pinDir, ifc.Name, "tcx-"+h.name), nil)
			if err != nil {
				return false
			}
			l.Close()
		case TCNetlink:
			filters, err := netlink.FilterList(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: ifc.Index}}, h.parent)
			if err != nil {
				return false
			}
			found := false
			for _, f := range filters {
				if bf, ok := f.(*netlink.BpfFilter); ok && bf.Attrs().Priority == tcFilterPriority && bf.Attrs().Handle == netlink.MakeHandle(0, tcFilterHandle) {
					found = true
				}
			}
			if !found {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// xdpAttached reports whether the pinned XDP link is live.
func xdpAttached(ifc *IfaceState, pinDir string) bool {
	l, err := link.LoadPinnedLink(linkPin(pinDir, ifc.Name, "xdp"), nil)
	if err != nil {
		return false
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		return false
	}
	if x := info.XDP(); x != nil {
		return x.Ifindex == uint32(ifc.Index)
	}
	return true
}
