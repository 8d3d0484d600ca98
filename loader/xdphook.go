package loader

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/ftpgate/ftpgate/bpf/dispatcher"
)

// XDPAttach selects how the admission filter takes an interface's XDP hook.
type XDPAttach string

// XDP attach mechanisms.
const (
	// AttachAuto joins a libxdp dispatcher where one holds an interface,
	// and attaches a plain XDP link otherwise
	AttachAuto XDPAttach = "auto"
	// AttachLink is a plain XDP link: the hook must be free
	AttachLink XDPAttach = "link"
	// AttachLibxdp runs the filter as a component of a libxdp dispatcher,
	// the existing one or a new one (docs/design.md, "Beside other XDP
	// programs")
	AttachLibxdp XDPAttach = "libxdp"
)

// ParseXDPAttach validates an --xdp-attach value.
func ParseXDPAttach(s string) (XDPAttach, error) {
	return parseChoice("XDP attach", s, AttachAuto, AttachLink, AttachLibxdp)
}

// DefaultXDPPriority is ftpgate's run priority in a libxdp dispatcher
// (lower runs first). DDoS filters use 10-20 and should drop a flood before
// ftpgate reads it; programs loaded with libxdp's default priority, 50, may
// end the chain with XDP_TX or XDP_REDIRECT (load balancers), which would
// take new connections past the admission, so ftpgate runs before them.
const DefaultXDPPriority = 40

// MaxXDPPriority bounds --xdp-priority: a run priority is a u32 in the
// dispatcher's config, but libxdp and xdp-loader print and take an int.
const MaxXDPPriority = 1<<31 - 1

// Who holds an interface's XDP hook.
const (
	holderNone       = ""
	holderDispatcher = "libxdp dispatcher"
	holderLink       = "bpf_link"
	holderNetlink    = "netlink attach"
)

// xdpHolder is what holds an interface's XDP hook.
type xdpHolder struct {
	kind   string // one of the holder* constants
	progID ebpf.ProgramID
	name   string // the program's name, as the kernel keeps it (15 characters)
	linkID link.ID
	mode   uint32 // IFLA_XDP_ATTACHED: xdpAttachedDriver, ...
	// for a dispatcher: its configuration and components
	conf *dispatcher.DispatcherXdpDispatcherConfig
}

// describe says in words what holds the hook and which ftpgate option fits.
func (h xdpHolder) describe() string {
	switch h.kind {
	case holderDispatcher:
		var comps []string
		for i := 0; i < int(h.conf.NumProgsEnabled) && i < len(h.conf.RunPrios); i++ {
			comps = append(comps, fmt.Sprintf("priority %d", h.conf.RunPrios[i]))
		}
		return fmt.Sprintf("a libxdp dispatcher (program id %d, %d component(s): %s); join it with --xdp-attach libxdp",
			h.progID, h.conf.NumProgsEnabled, strings.Join(comps, ", "))
	case holderLink:
		return fmt.Sprintf("a bpf_link (link id %d, program id %d, name %q), which does not speak libxdp; admit at TC instead with --admit-hook tc",
			h.linkID, h.progID, h.name)
	case holderNetlink:
		return fmt.Sprintf("a netlink attach (program id %d, name %q), which does not speak libxdp; admit at TC instead with --admit-hook tc",
			h.progID, h.name)
	}
	return "nothing"
}

// findXDPHolder asks the kernel what holds ifindex's XDP hook. Runs inside
// the interface's network namespace.
func findXDPHolder(ifindex int) (xdpHolder, error) {
	lk, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return xdpHolder{}, fmt.Errorf("interface %d: %w", ifindex, err)
	}
	x := lk.Attrs().Xdp
	if x == nil || !x.Attached || x.ProgId == 0 {
		return xdpHolder{}, nil
	}
	h := xdpHolder{kind: holderNetlink, progID: ebpf.ProgramID(x.ProgId), mode: uint32(x.AttachMode)}
	if p, err := ebpf.NewProgramFromID(h.progID); err == nil {
		if info, err := p.Info(); err == nil {
			h.name = info.Name
			if h.name == dispatcherName {
				if conf, err := readDispatcherConfig(info); err == nil {
					h.kind, h.conf = holderDispatcher, conf
				}
			}
		}
		p.Close()
	}
	if h.kind == holderNetlink {
		if id, ok := xdpLinkOf(ifindex, h.progID); ok {
			h.kind, h.linkID = holderLink, id
		}
	}
	return h, nil
}

// xdpLinkOf finds the XDP link that attaches prog to ifindex, if any.
func xdpLinkOf(ifindex int, prog ebpf.ProgramID) (link.ID, bool) {
	var it link.Iterator
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info()
		if err != nil || info.Type != link.XDPType || info.Program != prog {
			continue
		}
		if x := info.XDP(); x != nil && int(x.Ifindex) == ifindex {
			return it.ID, true
		}
	}
	return 0, false
}

// errNotDispatcher means a program named like a dispatcher has no
// dispatcher configuration.
var errNotDispatcher = errors.New("not a libxdp dispatcher")

// readDispatcherConfig reads a dispatcher's configuration from its
// read-only data: the program's one map whose value is the size of the
// configuration, with the magic in its first byte.
func readDispatcherConfig(info *ebpf.ProgramInfo) (*dispatcher.DispatcherXdpDispatcherConfig, error) {
	ids, _ := info.MapIDs()
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			continue
		}
		var conf dispatcher.DispatcherXdpDispatcherConfig
		if m.Type() == ebpf.Array && m.ValueSize() == dispatcherConfigSize && m.MaxEntries() == 1 {
			err = m.Lookup(uint32(0), &conf)
			m.Close()
			if err == nil && conf.Magic == dispatcherMagic {
				return &conf, nil
			}
			continue
		}
		m.Close()
	}
	return nil, errNotDispatcher
}
