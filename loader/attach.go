package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// XDPMode selects how the admission filter attaches.
type XDPMode string

// XDP attach modes.
const (
	XDPAuto    XDPMode = "auto"    // native, except generic on veth (see docs/design.md)
	XDPNative  XDPMode = "native"  // in the driver
	XDPGeneric XDPMode = "generic" // in the stack (skb mode)
)

// ParseXDPMode validates a --xdp-mode value.
func ParseXDPMode(s string) (XDPMode, error) {
	return parseChoice("XDP mode", s, XDPAuto, XDPNative, XDPGeneric)
}

// ErrXDPBusy means another XDP program holds the interface.
var ErrXDPBusy = errors.New("another XDP program is attached")

// IfaceState records how one interface is guarded; it is kept in the state
// file so that status, restart and detach find what run attached.
type IfaceState struct {
	Name    string  `json:"name"`
	Index   int     `json:"ifindex"`
	Kind    string  `json:"kind"` // veth, ...
	XDPMode XDPMode `json:"xdp_mode"`
	TCMode  TCMode  `json:"tc_mode"`
	// AdmitHook is where the admission runs; empty in state files written
	// before --admit-hook: XDP
	AdmitHook AdmitHook `json:"admit_hook,omitempty"`
	// how the XDP hook is taken (link or libxdp; empty in a state file of
	// an older version: link) and, in a libxdp dispatcher, at which run
	// priority
	XDPAttach   XDPAttach `json:"xdp_attach,omitempty"`
	XDPPriority uint32    `json:"xdp_priority,omitempty"`
	// XDPComponent is the id of ftpgate's program in the dispatcher, which
	// leaving it takes out
	XDPComponent ebpf.ProgramID `json:"xdp_component,omitempty"`
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

	if ifc.XDPAttach == AttachLibxdp {
		// a plain link of the previous run gives the hook up first
		if err := removePinnedLink(pin); err != nil {
			return err
		}
		old := pinnedXDPProgram(pinDir)
		if prev != nil && prev.XDPComponent != 0 {
			old = prev.XDPComponent
		}
		if err := joinDispatcher(ifc.Index, prog, ifc.XDPPriority, old, mode); err != nil {
			return fmt.Errorf("join the libxdp dispatcher on %q: %w", ifc.Name, err)
		}
		ifc.XDPMode = mode
		ifc.XDPComponent = programID(prog)
		return nil
	}
	if prev != nil && prev.XDPAttach == AttachLibxdp {
		// a plain link needs the hook to itself: refuse before leaving
		// when other programs share the dispatcher
		if h, err := findXDPHolder(ifc.Index); err == nil && h.kind == holderDispatcher && h.conf.NumProgsEnabled > 1 {
			return fmt.Errorf("attach xdp to %q: %w: ftpgate runs in %s beside other programs; a plain link would take the hook from them", ifc.Name, ErrXDPBusy, h.describe())
		}
		if err := leaveDispatcher(prev, pinDir); err != nil {
			return err
		}
		prev = nil
	}
	if prev != nil && prev.XDPMode == mode {
		ok, err := updatePinnedLink(pin, ifc.Index, prog)
		if err != nil {
			return fmt.Errorf("update xdp link on %q: %w", ifc.Name, err)
		}
		if ok {
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
	if err := pinNewLink(l, pin); err != nil {
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
		return nil, fmt.Errorf("attach xdp to %q: %w: %s", ifc.Name, ErrXDPBusy, describeXDP(ifc.Index))
	}
	return nil, fmt.Errorf("attach xdp (%s) to %q: %w", mode, ifc.Name, err)
}

// describeXDP says what holds an interface's XDP hook and which option
// fits.
func describeXDP(ifindex int) string {
	h, err := findXDPHolder(ifindex)
	if err != nil || h.kind == holderNone {
		return "program unknown"
	}
	return "held by " + h.describe()
}

// updatePinnedLink swaps prog into the link pinned at pin; false when no
// link is pinned there, or the pinned one is no longer attached to ifindex
// (its interface was deleted, or it was detached behind ftpgate's back):
// the caller then attaches afresh.
func updatePinnedLink(pin string, ifindex int, prog *ebpf.Program) (bool, error) {
	l, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		return false, nil
	}
	defer l.Close()
	if linkIfindex(l) != ifindex {
		return false, nil
	}
	return true, l.Update(prog)
}

// linkIfindex is the interface an XDP or TCX link is attached to; 0 when
// it is attached to none any more.
func linkIfindex(l link.Link) int {
	info, err := l.Info()
	if err != nil {
		return 0
	}
	if x := info.XDP(); x != nil {
		return int(x.Ifindex)
	}
	if x := info.TCX(); x != nil {
		return int(x.Ifindex)
	}
	return 0
}

// pinNewLink pins a link that attach just made and drops this process's
// handle; when the pin fails, dropping the handle detaches it again.
func pinNewLink(l link.Link, pin string) error {
	defer l.Close()
	return l.Pin(pin)
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

// detachIface removes everything ftpgate attached to one interface.
func detachIface(ifc *IfaceState, pinDir string) error {
	var leave error
	if ifc.XDPAttach == AttachLibxdp {
		leave = leaveDispatcher(ifc, pinDir)
	}
	return errors.Join(
		leave,
		removePinnedLink(linkPin(pinDir, ifc.Name, "xdp")),
		detachTC(ifc, pinDir),
	)
}
