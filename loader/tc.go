package loader

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TCMode selects how the parser attaches.
type TCMode string

// TC attach mechanisms.
const (
	TCAuto    TCMode = "auto"    // TCX where the kernel has it (6.6+), netlink below
	TCX       TCMode = "tcx"     // TCX links
	TCNetlink TCMode = "netlink" // clsact qdisc + cls_bpf direct-action filter
)

// tcMechanism is one way of putting the parser on a TC hook. Every method
// runs inside the interface's network namespace.
type tcMechanism interface {
	// replace swaps prog in place of what this mechanism already attached
	// at the hook, so that no packet goes unparsed; false when nothing is
	// attached there.
	replace(prog *ebpf.Program, ifc *IfaceState, h tcHook) (bool, error)
	// attach attaches prog at the hook.
	attach(prog *ebpf.Program, ifc *IfaceState, h tcHook) error
	// detach removes it; nothing attached is not an error.
	detach(ifc *IfaceState, h tcHook) error
	// attached asks the kernel whether program prog is on the hook of
	// ifc.Index (status and metrics report this, not the pins).
	attached(ifc *IfaceState, h tcHook, prog ebpf.ProgramID) bool
}

// tcMechanisms are the mechanisms --tc-attach can name; a third one is one
// more type and one more entry.
var tcMechanisms = map[TCMode]func(pinDir string) tcMechanism{
	TCX:       func(pinDir string) tcMechanism { return tcxLinks{pinDir} },
	TCNetlink: func(string) tcMechanism { return netlinkFilters{} },
}

// ParseTCMode validates a --tc-attach value.
func ParseTCMode(s string) (TCMode, error) {
	choices := []TCMode{TCAuto}
	for m := range tcMechanisms {
		choices = append(choices, m)
	}
	slices.Sort(choices[1:])
	return parseChoice("TC attach mechanism", s, choices...)
}

// tcHook is one of the two TC hooks with what each mechanism calls it.
type tcHook struct {
	name   string // ingress or egress; admit for the admission (admit.go)
	tcx    ebpf.AttachType
	parent uint32
	// first puts the program before ftpgate's others at the hook: at the
	// head of the TCX chain, or at a netlink priority one below theirs
	first bool
}

var tcHooks = []tcHook{
	{name: "ingress", tcx: ebpf.AttachTCXIngress, parent: netlink.HANDLE_MIN_INGRESS},
	{name: "egress", tcx: ebpf.AttachTCXEgress, parent: netlink.HANDLE_MIN_EGRESS},
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
	// switching mechanism: the old attachment stays until retireTC, after
	// the new admission is in place too; the two parsers overlap for that
	// moment (a segment parsed twice is a retransmission the second time)
	m := tcMechanisms[mode](pinDir)
	for i, h := range tcHooks {
		replaced, err := m.replace(progs[i], ifc, h)
		if err == nil && !replaced {
			err = m.attach(progs[i], ifc, h)
		}
		if err != nil {
			return err
		}
	}
	ifc.TCMode = mode
	return nil
}

// retireTC removes prev's TC attachment when ifc now uses another
// mechanism: called once the new parser and admission are attached, so no
// moment of a switch is without them (review of #14, finding 2).
func retireTC(ifc, prev *IfaceState, pinDir string) error {
	if prev == nil || prev.TCMode == "" || prev.TCMode == ifc.TCMode {
		return nil
	}
	return detachTC(prev, pinDir)
}

// detachTC removes what attachTC and attachTCAdmit put on an interface.
// Runs inside the interface's network namespace.
func detachTC(ifc *IfaceState, pinDir string) error {
	mk := tcMechanisms[ifc.TCMode]
	if mk == nil {
		return nil
	}
	m := mk(pinDir)
	var errs []error
	for _, h := range append(tcHooks, tcAdmitHook) {
		errs = append(errs, m.detach(ifc, h))
	}
	return errors.Join(errs...)
}

// tcxLinks attaches with TCX links (6.6+), pinned so they outlive the process
// and can be updated in place.
type tcxLinks struct{ pinDir string }

func (x tcxLinks) pin(ifc *IfaceState, h tcHook) string {
	return linkPin(x.pinDir, ifc.Name, "tcx-"+h.name)
}

func (x tcxLinks) replace(prog *ebpf.Program, ifc *IfaceState, h tcHook) (bool, error) {
	ok, err := updatePinnedLink(x.pin(ifc, h), ifc.Index, prog)
	if err != nil {
		return ok, fmt.Errorf("update tcx %s link on %q: %w", h.name, ifc.Name, err)
	}
	return ok, nil
}

func (x tcxLinks) attach(prog *ebpf.Program, ifc *IfaceState, h tcHook) error {
	pin := x.pin(ifc, h)
	if err := removePinnedLink(pin); err != nil {
		return err
	}
	opts := link.TCXOptions{Interface: ifc.Index, Program: prog, Attach: h.tcx}
	if h.first {
		opts.Anchor = link.Head()
	}
	l, err := link.AttachTCX(opts)
	if err != nil {
		return fmt.Errorf("attach tcx %s to %q: %w", h.name, ifc.Name, err)
	}
	if err := pinNewLink(l, pin); err != nil {
		return fmt.Errorf("pin tcx %s link of %q: %w", h.name, ifc.Name, err)
	}
	return nil
}

func (x tcxLinks) detach(ifc *IfaceState, h tcHook) error {
	return removePinnedLink(x.pin(ifc, h))
}

func (tcxLinks) attached(ifc *IfaceState, h tcHook, prog ebpf.ProgramID) bool {
	res, err := link.QueryPrograms(link.QueryOptions{Target: ifc.Index, Attach: h.tcx})
	if err != nil {
		return false
	}
	for _, p := range res.Programs {
		if p.ID == prog {
			return true
		}
	}
	return false
}

// netlinkFilters attaches with a clsact qdisc and a cls_bpf direct-action
// filter, for kernels before TCX.
type netlinkFilters struct{}

// Netlink filter identity: the same handle and priority on every restart, so
// a restart atomically replaces the filter instead of adding a second one.
const (
	tcFilterHandle   = 0xf7
	tcFilterPriority = 0xf7
)

// filterID is the handle and priority of ftpgate's filter at h: the
// admission's one below the parser's, so that it runs first.
func (h tcHook) filterID() (handle, prio uint16) {
	if h.first {
		return tcFilterHandle - 1, tcFilterPriority - 1
	}
	return tcFilterHandle, tcFilterPriority
}

func tcFilter(ifindex int, h tcHook, prog *ebpf.Program) *netlink.BpfFilter {
	handle, prio := h.filterID()
	f := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: ifindex,
			Parent:    h.parent,
			Handle:    netlink.MakeHandle(0, handle),
			Protocol:  unix.ETH_P_ALL,
			Priority:  prio,
		},
		Name:         "ftpgate_tc_" + h.name,
		DirectAction: true,
	}
	if prog != nil {
		f.Fd = prog.FD()
	}
	return f
}

func (netlinkFilters) replace(prog *ebpf.Program, ifc *IfaceState, h tcHook) (bool, error) {
	if ourFilter(ifc, h) == nil {
		return false, nil
	}
	// the same handle and priority: the kernel swaps the program atomically
	if err := netlink.FilterReplace(tcFilter(ifc.Index, h, prog)); err != nil {
		return true, fmt.Errorf("attach tc %s filter to %q: %w", h.name, ifc.Name, err)
	}
	return true, nil
}

func (netlinkFilters) attach(prog *ebpf.Program, ifc *IfaceState, h tcHook) error {
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifc.Index, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
	if err := netlink.QdiscAdd(qdisc); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add clsact qdisc to %q: %w", ifc.Name, err)
	}
	if err := netlink.FilterReplace(tcFilter(ifc.Index, h, prog)); err != nil {
		return fmt.Errorf("attach tc %s filter to %q: %w", h.name, ifc.Name, err)
	}
	return nil
}

func (netlinkFilters) detach(ifc *IfaceState, h tcHook) error {
	err := netlink.FilterDel(tcFilter(ifc.Index, h, nil))
	if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("remove tc %s filter from %q: %w", h.name, ifc.Name, err)
	}
	return nil
}

func (netlinkFilters) attached(ifc *IfaceState, h tcHook, prog ebpf.ProgramID) bool {
	f := ourFilter(ifc, h)
	return f != nil && ebpf.ProgramID(f.Id) == prog
}

// ourFilter returns the filter of ftpgate's handle and priority at the
// hook, whatever program it runs.
func ourFilter(ifc *IfaceState, h tcHook) *netlink.BpfFilter {
	filters, err := netlink.FilterList(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: ifc.Index}}, h.parent)
	if err != nil {
		return nil
	}
	handle, prio := h.filterID()
	for _, f := range filters {
		if bf, ok := f.(*netlink.BpfFilter); ok && bf.Attrs().Priority == prio && bf.Attrs().Handle == netlink.MakeHandle(0, handle) {
			return bf
		}
	}
	return nil
}

// HaveTCX reports whether the running kernel has TCX links (Linux 6.6+). It
// asks the kernel rather than its version, so a backport counts and a
// kernel built without it does not.
func HaveTCX() bool { return haveTCX() }

// haveTCX attaches a throwaway program to an interface index that cannot
// exist: a kernel with TCX looks the interface up and says ENODEV, one
// without refuses the attach type first, which cilium/ebpf reports as
// ErrNotSupported.
var haveTCX = sync.OnceValue(func() bool {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "ftpgate_probe", Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		return false
	}
	defer prog.Close()
	l, err := link.AttachTCX(link.TCXOptions{Interface: math.MaxInt32, Program: prog, Attach: ebpf.AttachTCXIngress})
	if err == nil {
		l.Close()
		return true
	}
	return errors.Is(err, unix.ENODEV)
})
