package loader

import (
	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
)

// ourPrograms are the ids of the programs ftpgate puts on an interface, in
// the order of progPins (XDP, TC ingress, TC egress, TC admission); 0 when
// unknown.
type ourPrograms [4]ebpf.ProgramID

// tcAdmitProg is the TC admission's index in ourPrograms.
const tcAdmitProg = 3

func programIDs(progs ...*ebpf.Program) ourPrograms {
	var ids ourPrograms
	for i, p := range progs {
		if p == nil {
			continue
		}
		if info, err := p.Info(); err == nil {
			ids[i], _ = info.ID()
		}
	}
	return ids
}

// XDP attach modes as the kernel reports them (IFLA_XDP_ATTACHED).
const (
	xdpAttachedDriver  = 1
	xdpAttachedGeneric = 2
	xdpAttachedHW      = 3
)

func xdpModeSeen(attachMode uint32) XDPMode {
	switch attachMode {
	case xdpAttachedDriver:
		return XDPNative
	case xdpAttachedGeneric:
		return XDPGeneric
	case xdpAttachedHW:
		return "offload"
	}
	return ""
}

// observe asks the kernel what of ftpgate is on the interface now called
// ifc.Name: whether it exists, which of ftpgate's programs are on it and in
// which mode. Runs inside the interface's network namespace.
func observe(ifc IfaceState, progs ourPrograms) IfaceStatus {
	is := IfaceStatus{IfaceState: ifc}
	lk, err := netlink.LinkByName(ifc.Name)
	if err != nil {
		return is
	}
	is.Present = true
	is.IndexSeen = lk.Attrs().Index
	if x := lk.Attrs().Xdp; x != nil && x.Attached && progs[0] != 0 && ebpf.ProgramID(x.ProgId) == progs[0] {
		is.XDPAttached = true
		is.XDPSeen = xdpModeSeen(x.AttachMode)
	} else if x != nil && x.Attached && progs[0] != 0 && inDispatcher(is.IndexSeen, progs[0]) {
		is.XDPAttached = true
		is.XDPSeen = xdpModeSeen(x.AttachMode)
	}
	seen := ifc
	seen.Index = is.IndexSeen
	for _, mode := range []TCMode{TCX, TCNetlink} {
		m := tcMechanisms[mode]("")
		all := true
		for i, h := range tcHooks {
			all = all && progs[1+i] != 0 && m.attached(&seen, h, progs[1+i])
		}
		if all {
			is.TCAttached = true
			is.TCSeen = mode
			is.TCAdmitAttached = progs[tcAdmitProg] != 0 && m.attached(&seen, tcAdmitHook, progs[tcAdmitProg])
			break
		}
	}
	return is
}
