package loader

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
)

// AdmitHook selects where the admission filter runs (--admit-hook).
type AdmitHook string

// Admission hooks.
const (
	// AdmitXDP runs the admission as the interface's XDP program (the
	// default): a dropped SYN never becomes an skb.
	AdmitXDP AdmitHook = "xdp"
	// AdmitTC runs it first at TC ingress (TCX head on 6.6+, a clsact
	// filter before the parser's below) and attaches no XDP program: the
	// interface's XDP hook may belong to another program. See
	// docs/design.md, "Admission hook".
	AdmitTC AdmitHook = "tc"
)

// ParseAdmitHook validates an --admit-hook value.
func ParseAdmitHook(s string) (AdmitHook, error) {
	return parseChoice("admission hook", s, AdmitXDP, AdmitTC)
}

// orXDP is the hook a state file records; files written before
// --admit-hook record none: XDP.
func (h AdmitHook) orXDP() AdmitHook {
	if h == "" {
		return AdmitXDP
	}
	return h
}

// tcAdmitHook is TC ingress for the admission program: before the parser.
var tcAdmitHook = tcHook{name: "admit", tcx: ebpf.AttachTCXIngress, parent: netlink.HANDLE_MIN_INGRESS, first: true}

// settleAdmission finishes the admission of one interface once attachXDP
// (XDP hook only) and attachTC (the parser, which resolves the TC
// mechanism) ran: with the TC hook it attaches prog first at TC ingress, or
// swaps it in place, then removes an XDP program a previous run attached;
// with the XDP hook it removes a TC admission a previous run attached. The
// new hook is in place before the old one goes, so no SYN passes unchecked
// while a restart switches. Runs inside the interface's network namespace.
func settleAdmission(prog *ebpf.Program, ifc *IfaceState, hook AdmitHook, prev *IfaceState, pinDir string) error {
	hook = hook.orXDP()
	ifc.AdmitHook = hook
	if hook == AdmitXDP {
		if prev == nil || prev.AdmitHook.orXDP() != AdmitTC {
			return nil
		}
		return detachTCAdmit(ifc, pinDir)
	}
	if err := attachTCAdmit(prog, ifc, pinDir); err != nil {
		return err
	}
	ifc.XDPMode = ""
	if prev == nil {
		return nil
	}
	// a previous run's XDP program, in the XDP hook's mode of attach: its
	// component in a libxdp dispatcher, or its link
	ifc.XDPAttach, ifc.XDPPriority, ifc.XDPComponent = "", 0, 0
	if prev.XDPAttach == AttachLibxdp {
		if err := leaveDispatcher(prev, pinDir); err != nil {
			return err
		}
	}
	if err := removePinnedLink(linkPin(pinDir, ifc.Name, "xdp")); err != nil {
		return fmt.Errorf("remove the XDP admission of %q: %w", ifc.Name, err)
	}
	return nil
}

// attachTCAdmit attaches prog first at TC ingress with the mechanism the
// parser uses (ifc.TCMode), or swaps it in place.
func attachTCAdmit(prog *ebpf.Program, ifc *IfaceState, pinDir string) error {
	mk := tcMechanisms[ifc.TCMode]
	if mk == nil {
		return fmt.Errorf("admission at tc on %q: no TC mechanism resolved", ifc.Name)
	}
	m := mk(pinDir)
	replaced, err := m.replace(prog, ifc, tcAdmitHook)
	if err == nil && !replaced {
		err = m.attach(prog, ifc, tcAdmitHook)
	}
	return err
}

// detachTCAdmit removes the TC admission alone.
func detachTCAdmit(ifc *IfaceState, pinDir string) error {
	mk := tcMechanisms[ifc.TCMode]
	if mk == nil {
		return nil
	}
	return mk(pinDir).detach(ifc, tcAdmitHook)
}
