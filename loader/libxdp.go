package loader

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/bpf/dispatcher"
)

// libxdp's multi-program dispatcher, as xdp-tools' lib/libxdp/protocol.org
// (version 2) describes it: a dispatcher XDP program with ten slots that
// components replace (freplace), its configuration in read-only data, the
// components' programs and links pinned under
// <bpffs>/xdp/dispatch-IFINDEX-DID/progN-{prog,link} while a flock on
// <bpffs>/xdp is held, and each change made by building a new dispatcher
// and swapping it in atomically over netlink (IFLA_XDP_EXPECTED_FD).
const (
	dispatcherName       = "xdp_dispatcher"
	dispatcherMagic      = 236
	dispatcherVersion    = 2
	dispatcherSlots      = 10
	dispatcherRetval     = 31 // an unreplaced slot's return value
	dispatcherConfigSize = uint32(unsafe.Sizeof(dispatcher.DispatcherXdpDispatcherConfig{}))
	// ftpgate's chain-call actions: a packet it passes goes on to the next
	// component; one it drops ends the chain
	ftpgateChainActions = 1<<xdpPass | 1<<dispatcherRetval
	xdpPass             = 2
	// libxdp's default for a program without metadata
	libxdpDefaultPriority = 50
	ftpgateXDPName        = "ftpgate_xdp"
)

// XDP netlink flags (linux/if_link.h) and the attribute the netlink
// library lacks.
const (
	xdpFlagsUpdateIfNoExist = 1 << 0
	xdpFlagsSKBMode         = 1 << 1
	xdpFlagsDrvMode         = 1 << 2
	xdpFlagsReplace         = 1 << 4
	iflaXDPExpectedFD       = 8
)

// ErrNoFreplace means the kernel refuses extension (freplace) programs,
// which joining a libxdp dispatcher needs.
var ErrNoFreplace = errors.New("this kernel refuses freplace programs (BPF_PROG_TYPE_EXT)")

// ErrDispatcherChanged means the program on the interface changed while a
// new dispatcher was built; the caller starts over.
var ErrDispatcherChanged = errors.New("the interface's XDP program changed meanwhile")

// libxdpDir is libxdp's pin directory: <bpffs>/xdp, where LIBXDP_BPFFS
// overrides the bpffs (as libxdp reads it).
func libxdpDir() string {
	root := os.Getenv("LIBXDP_BPFFS")
	if root == "" {
		root = "/sys/fs/bpf"
	}
	return filepath.Join(root, "xdp")
}

func dispatchDir(ifindex int, did ebpf.ProgramID) string {
	return filepath.Join(libxdpDir(), fmt.Sprintf("dispatch-%d-%d", ifindex, did))
}

// lockLibxdp takes libxdp's lock: flock on the xdp directory, opened with
// O_DIRECTORY. The returned function releases it.
func lockLibxdp() (func(), error) {
	dir := libxdpDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() { unix.Close(fd) }, nil
}

// component is one program of a dispatcher.
type component struct {
	prog   *ebpf.Program
	id     ebpf.ProgramID
	name   string
	tag    string
	prio   uint32
	chain  uint32 // chain-call actions, a bitmap of XDP actions
	flags  uint32 // program_flags: BPF_F_XDP_HAS_FRAGS or 0
	loaded bool   // already a component of the dispatcher being replaced
}

func newComponent(p *ebpf.Program, prio, chain, flags uint32, loaded bool) (component, error) {
	info, err := p.Info()
	if err != nil {
		return component{}, fmt.Errorf("program info: %w", err)
	}
	id, _ := info.ID()
	return component{prog: p, id: id, name: info.Name, tag: info.Tag, prio: prio, chain: chain, flags: flags, loaded: loaded}, nil
}

// sortComponents orders components as libxdp does: by run priority, then
// by name, loaded ones before new ones, then by tag. (libxdp goes on to the
// program size for new programs and to the load time; a tie that far down
// is a component added twice.)
func sortComponents(cs []component) {
	slices.SortStableFunc(cs, func(a, b component) int {
		if c := cmp.Compare(a.prio, b.prio); c != 0 {
			return c
		}
		if c := cmp.Compare(a.name, b.name); c != 0 {
			return c
		}
		if a.loaded != b.loaded {
			if a.loaded {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.tag, b.tag)
	})
}

// dispatcherConfig is the configuration of a dispatcher running cs.
func dispatcherConfig(cs []component) dispatcher.DispatcherXdpDispatcherConfig {
	conf := dispatcher.DispatcherXdpDispatcherConfig{
		Magic: dispatcherMagic, DispatcherVersion: dispatcherVersion, NumProgsEnabled: uint8(len(cs)),
	}
	for i, c := range cs {
		conf.ChainCallActions[i] = c.chain | 1<<dispatcherRetval
		conf.RunPrios[i] = c.prio
		conf.ProgramFlags[i] = c.flags
	}
	return conf
}

// loadDispatcher loads a dispatcher with the given configuration, not yet
// attached anywhere. It is loaded without BPF_F_XDP_HAS_FRAGS
// (is_xdp_frags 0): ftpgate's filter reads packets directly and does not
// take frags.
func loadDispatcher(conf dispatcher.DispatcherXdpDispatcherConfig) (*ebpf.Program, error) {
	spec, err := dispatcher.LoadDispatcher()
	if err != nil {
		return nil, fmt.Errorf("load embedded dispatcher: %w", err)
	}
	if err := spec.Variables["conf"].Set(conf); err != nil {
		return nil, fmt.Errorf("configure dispatcher: %w", err)
	}
	var objs dispatcher.DispatcherObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return nil, fmt.Errorf("load dispatcher: %w", err)
	}
	return objs.XdpDispatcher, nil
}

// slotName is the function component i replaces.
func slotName(i int) string { return fmt.Sprintf("prog%d", i) }

// extensionSpec turns the XDP program's spec into a component of a
// dispatcher: an extension of slot prog0 of a throwaway dispatcher, which
// joinDispatcher then attaches to the real one (re-attaching an extension
// to another target needs Linux 5.10). The returned function releases the
// throwaway dispatcher once the program is loaded.
func extensionSpec(ps *ebpf.ProgramSpec) (func(), error) {
	tmpl, err := loadDispatcher(dispatcherConfig([]component{{prio: 0, chain: ftpgateChainActions}}))
	if err != nil {
		return nil, err
	}
	ps.Type = ebpf.Extension
	ps.AttachType = ebpf.AttachNone
	ps.AttachTarget = tmpl
	ps.AttachTo = slotName(0)
	return func() { tmpl.Close() }, nil
}

// probeFreplace loads an extension of a dispatcher slot (the dispatcher's
// own program, whose signature is a slot's): nil where the kernel takes
// freplace programs, ErrNoFreplace with the kernel's answer where it
// refuses them (Linux 6.18 answers EPERM before its verifier runs).
func probeFreplace() error {
	spec, err := dispatcher.LoadDispatcher()
	if err != nil {
		return err
	}
	release, err := extensionSpec(spec.Programs[dispatcherName])
	if err != nil {
		return err
	}
	defer release()
	var objs dispatcher.DispatcherObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return freplaceRefused(err)
	}
	return objs.Close()
}

// joinDispatcher makes ifindex run the dispatcher's components without the
// ftpgate component old (0: none) and, when ours is not nil, with ours at
// run priority prio. It starts over when the interface's program changes
// meanwhile, as libxdp does. mode is the attach mode for a new dispatcher
// (an existing one keeps its own). Runs inside the interface's network
// namespace; takes libxdp's lock.
func joinDispatcher(ifindex int, ours *ebpf.Program, prio uint32, old ebpf.ProgramID, mode XDPMode) error {
	unlock, err := lockLibxdp()
	if err != nil {
		return err
	}
	defer unlock()
	for try := 0; ; try++ {
		err := rebuildDispatcher(ifindex, ours, prio, old, mode)
		if !errors.Is(err, ErrDispatcherChanged) || try == 3 {
			return err
		}
	}
}

// rebuildDispatcher is one try of joinDispatcher.
func rebuildDispatcher(ifindex int, ours *ebpf.Program, prio uint32, old ebpf.ProgramID, mode XDPMode) error {
	h, err := findXDPHolder(ifindex)
	if err != nil {
		return err
	}
	var (
		comps   []component
		oldDisp *ebpf.Program
		oldDir  string
	)
	if ours == nil && h.kind != holderDispatcher {
		return nil // leaving: no dispatcher holds the hook, so none holds ftpgate
	}
	removed := false
	switch h.kind {
	case holderLink, holderNetlink:
		return fmt.Errorf("%w: %s", ErrXDPBusy, h.describe())
	case holderDispatcher:
		if h.conf.DispatcherVersion != dispatcherVersion {
			return fmt.Errorf("%w: a libxdp dispatcher of version %d (program id %d); ftpgate speaks version %d", ErrXDPBusy, h.conf.DispatcherVersion, h.progID, dispatcherVersion)
		}
		oldDisp, err = ebpf.NewProgramFromID(h.progID)
		if err != nil {
			return fmt.Errorf("open dispatcher %d: %w", h.progID, err)
		}
		defer oldDisp.Close()
		oldDir = dispatchDir(ifindex, h.progID)
		for i := 0; i < int(h.conf.NumProgsEnabled); i++ {
			pin := filepath.Join(oldDir, slotName(i)+"-prog")
			p, err := ebpf.LoadPinnedProgram(pin, nil)
			if err != nil {
				return fmt.Errorf("component %d of dispatcher %d: %w", i, h.progID, err)
			}
			defer p.Close()
			c, err := newComponent(p, h.conf.RunPrios[i], h.conf.ChainCallActions[i]&^(1<<dispatcherRetval), h.conf.ProgramFlags[i], true)
			if err != nil {
				return err
			}
			if (old != 0 && c.id == old) || (ours != nil && c.id == programID(ours)) {
				removed = true
				continue // ftpgate's own, replaced or removed
			}
			comps = append(comps, c)
		}
		switch h.mode {
		case xdpAttachedDriver:
			mode = XDPNative
		case xdpAttachedGeneric:
			mode = XDPGeneric
		}
	}
	if ours == nil && !removed {
		return nil // leaving a dispatcher that does not hold ftpgate
	}
	if ours != nil {
		c, err := newComponent(ours, prio, ftpgateChainActions, 0, false)
		if err != nil {
			return err
		}
		comps = append(comps, c)
	}
	sortComponents(comps)
	if len(comps) > dispatcherSlots {
		return fmt.Errorf("%w: the libxdp dispatcher (program id %d) already runs %d programs, its most", ErrXDPBusy, h.progID, dispatcherSlots)
	}
	flags := uint32(xdpFlagsDrvMode)
	if mode == XDPGeneric {
		flags = xdpFlagsSKBMode
	}

	if len(comps) == 0 {
		if oldDisp == nil {
			return nil
		}
		// ftpgate was alone: remove the dispatcher
		if err := setXDP(ifindex, -1, oldDisp.FD(), flags|xdpFlagsReplace); err != nil {
			return replaceError(err)
		}
		return removeDispatchDir(oldDir)
	}

	disp, err := loadDispatcher(dispatcherConfig(comps))
	if err != nil {
		return err
	}
	defer disp.Close()
	did := programID(disp)
	dir := dispatchDir(ifindex, did)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	for i, c := range comps {
		l, err := link.AttachFreplace(disp, slotName(i), c.prog)
		if err == nil {
			err = l.Pin(filepath.Join(dir, slotName(i)+"-link"))
			l.Close()
		}
		if err == nil {
			// pin a handle of its own: pinning a program object that is
			// already pinned (ftpgate's, in its pin directory) moves the pin
			err = pinCopy(c.prog, filepath.Join(dir, slotName(i)+"-prog"))
		}
		if err != nil {
			removeDispatchDir(dir)
			if errors.Is(err, unix.EPERM) {
				err = freplaceRefused(err)
			}
			return fmt.Errorf("attach %q to slot %d of a new dispatcher: %w", c.name, i, err)
		}
	}
	if oldDisp != nil {
		err = setXDP(ifindex, disp.FD(), oldDisp.FD(), flags|xdpFlagsReplace)
	} else {
		err = setXDP(ifindex, disp.FD(), -1, flags|xdpFlagsUpdateIfNoExist)
	}
	if err != nil {
		removeDispatchDir(dir)
		return replaceError(err)
	}
	if oldDir != "" {
		return removeDispatchDir(oldDir)
	}
	return nil
}

// replaceError tells a lost race (the expected program is no longer
// there, or one appeared) from a failure.
func replaceError(err error) error {
	if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("%w: %v", ErrDispatcherChanged, err)
	}
	return fmt.Errorf("replace dispatcher: %w", err)
}

// removeDispatchDir unpins a dispatcher's components: unpinning a link
// detaches the component from that dispatcher.
func removeDispatchDir(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

func programID(p *ebpf.Program) ebpf.ProgramID {
	info, err := p.Info()
	if err != nil {
		return 0
	}
	id, _ := info.ID()
	return id
}

// setXDP attaches fd (-1: detaches) as ifindex's XDP program over netlink,
// with IFLA_XDP_EXPECTED_FD when expected >= 0 (and XDP_FLAGS_REPLACE in
// flags): the kernel swaps only if expected's program is the one attached.
// The netlink library has no expected-fd attribute, so the message is built
// here.
func setXDP(ifindex, fd, expected int, flags uint32) error {
	req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(ifindex)
	req.AddData(msg)
	attr := nl.NewRtAttr(unix.IFLA_XDP|unix.NLA_F_NESTED, nil)
	attr.AddRtAttr(nl.IFLA_XDP_FD, nl.Uint32Attr(uint32(int32(fd))))
	attr.AddRtAttr(nl.IFLA_XDP_FLAGS, nl.Uint32Attr(flags))
	if expected >= 0 {
		attr.AddRtAttr(iflaXDPExpectedFD, nl.Uint32Attr(uint32(int32(expected))))
	}
	req.AddData(attr)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// leaveDispatcher takes ftpgate's component (the one recorded in ifc, or
// else the program pinned in pinDir) out of the dispatcher on ifc: the dispatcher is rebuilt without it, or
// removed when ftpgate was alone in it.
func leaveDispatcher(ifc *IfaceState, pinDir string) error {
	old := ifc.XDPComponent
	if old == 0 {
		old = pinnedXDPProgram(pinDir)
	}
	if old == 0 {
		return nil
	}
	if _, err := netlink.LinkByIndex(ifc.Index); err != nil {
		return nil // the interface is gone, and its dispatcher with it
	}
	if err := joinDispatcher(ifc.Index, nil, 0, old, ifc.XDPMode); err != nil {
		return fmt.Errorf("leave the libxdp dispatcher on %q: %w", ifc.Name, err)
	}
	return nil
}

// pinnedXDPProgram is the id of the XDP program pinned in pinDir by the
// last run; 0 when none is.
func pinnedXDPProgram(pinDir string) ebpf.ProgramID {
	p, err := ebpf.LoadPinnedProgram(filepath.Join(pinDir, progsDir, progPins[0]), nil)
	if err != nil {
		return 0
	}
	defer p.Close()
	return programID(p)
}

// resolveXDPAttach decides how the XDP hook of every interface is taken:
// libxdp when asked, or (auto) when a libxdp dispatcher holds any of them
// (then ftpgate makes a dispatcher of its own on the others, which other
// libxdp programs can join); otherwise a plain link. One mechanism for all
// interfaces, because the XDP program is loaded either as an XDP program or
// as a dispatcher component. Where the kernel refuses freplace it says so,
// in one line, with the option that fits.
func resolveXDPAttach(ns string, want XDPAttach, ifaces []IfaceState) (XDPAttach, error) {
	if want == AttachLink {
		return AttachLink, nil
	}
	why := "--xdp-attach libxdp"
	if want == AttachAuto {
		var held *xdpHolder
		var on string
		err := inNetns(ns, func() error {
			for _, ifc := range ifaces {
				h, err := findXDPHolder(ifc.Index)
				if err != nil {
					return err
				}
				if h.kind == holderDispatcher {
					held, on = &h, ifc.Name
					return nil
				}
			}
			return nil
		})
		if err != nil {
			return "", err
		}
		if held == nil {
			return AttachLink, nil
		}
		why = fmt.Sprintf("xdp on %q is held by a libxdp dispatcher (program id %d)", on, held.progID)
	}
	if err := probeFreplace(); err != nil {
		return "", fmt.Errorf("%s: joining a dispatcher needs freplace, and %w; admit at TC instead with --admit-hook tc", why, err)
	}
	return AttachLibxdp, nil
}

// inDispatcher reports whether prog is a component of the libxdp
// dispatcher on ifindex, as its pins say.
func inDispatcher(ifindex int, prog ebpf.ProgramID) bool {
	h, err := findXDPHolder(ifindex)
	if err != nil || h.kind != holderDispatcher {
		return false
	}
	dir := dispatchDir(ifindex, h.progID)
	for i := 0; i < int(h.conf.NumProgsEnabled); i++ {
		p, err := ebpf.LoadPinnedProgram(filepath.Join(dir, slotName(i)+"-prog"), nil)
		if err != nil {
			continue
		}
		id := programID(p)
		p.Close()
		if id == prog {
			return true
		}
	}
	return false
}

// freplaceRefused is ErrNoFreplace with the kernel's answer, in one line.
func freplaceRefused(err error) error {
	for _, e := range []unix.Errno{unix.EPERM, unix.EINVAL, unix.EOPNOTSUPP} {
		if errors.Is(err, e) {
			return fmt.Errorf("%w: %s", ErrNoFreplace, e.Error())
		}
	}
	return fmt.Errorf("%w: %v", ErrNoFreplace, err)
}

func pinCopy(p *ebpf.Program, path string) error {
	c, err := p.Clone()
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Pin(path)
}
