// Package loader loads ftpgate's BPF programs, attaches them to the guarded
// interfaces, pins maps, programs and links under a pin directory, and on a
// restart re-opens what is pinned and swaps the programs in place, so that
// expectations, parser state, data flows and counters survive.
package loader

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netlink"

	"github.com/ftpgate/ftpgate/bpf"
	"github.com/ftpgate/ftpgate/internal/group"
	"github.com/ftpgate/ftpgate/maps"
)

// Version is stamped at build time with -ldflags -X.
var Version = "dev"

// ErrLayoutMismatch means the pinned maps were made by a build whose map
// layout differs from this one.
var ErrLayoutMismatch = errors.New("pinned maps have a different layout than this build")

// ErrNoInterface means an --iface does not exist.
var ErrNoInterface = errors.New("no such interface")

// ErrNotEthernet means an --iface carries no Ethernet header (tun,
// wireguard, ppp, ipip, gre): the programs parse Ethernet frames and would
// filter nothing there.
var ErrNotEthernet = errors.New("ftpgate parses Ethernet frames only")

// TableSizes sets the entries of the connection tables; see maps.TableSizes.
type TableSizes = maps.TableSizes

// DefaultTableSizes suits a busy gateway.
var DefaultTableSizes = maps.DefaultTableSizes

// Options is the complete configuration `run` applies.
type Options struct {
	PinDir     string
	StateDir   StateDir
	Ifaces     []string
	NetNS      string
	XDPMode    XDPMode
	TCMode     TCMode
	AdmitHook  AdmitHook        // xdp (the default) or tc
	CtrlPorts  []uint16         // towards every server
	CtrlScopes []maps.PortScope // control ports towards some servers only
	AllowPorts []uint16
	// #13 FTPS: implicit-TLS control ports (control ports too) and the
	// servers' declared passive ranges
	FTPSPorts []uint16
	TLSRanges []maps.TLSRange
	Config    maps.Config
	// NATMechanism says whether Config.NAT was forced or is auto (the
	// default): Start resolves it against the object the kernel loads
	NATMechanism NATMechanism
	Tables       TableSizes
	// Group is run's gateway group (#15); Start does not read it
	Group  group.Config
	Logger *slog.Logger

	// XDPAttach and XDPPriority: how the XDP hook is taken (see
	// ParseXDPAttach) and the run priority in a libxdp dispatcher
	XDPAttach   XDPAttach
	XDPPriority uint32
}

// Dataplane is the loaded and attached ftpgate. Close releases this
// process's handles and leaves the dataplane attached and pinned.
type Dataplane struct {
	Maps *maps.Maps
	// State is what Start attached; the link watcher (Watch) updates it
	// under mu when it re-attaches an interface: read Ifaces for a copy.
	State  State
	objs   bpf.FtpgateObjects
	lock   *pinLock
	log    *slog.Logger
	pinDir string
	states StateDir
	progs  ourPrograms
	// Object is the build of the programs the kernel loaded
	Object Object

	// libxdp: the XDP program is loaded as a component of libxdp
	// dispatchers (an extension program), not as an XDP program
	libxdp bool

	mu         sync.Mutex
	reattached map[string]uint64 // per interface name
	stopWatch  func()
}

// pinned file layout under the pin directory
const (
	linksDir = "links"
	progsDir = "progs"
)

var progPins = []string{"ftpgate_xdp", "ftpgate_tc_ingress", "ftpgate_tc_egress", "ftpgate_tc_admit"}

// Start loads, pins and attaches according to opts. On error nothing new is
// left attached: interfaces attached by this call are detached again.
func Start(opts Options) (*Dataplane, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.PinDir == "" {
		opts.PinDir = DefaultPinDir
	}
	if opts.XDPMode == "" {
		opts.XDPMode = XDPAuto
	}
	if opts.TCMode == "" {
		opts.TCMode = TCAuto
	}
	if opts.XDPAttach == "" {
		opts.XDPAttach = AttachAuto
	}
	if opts.XDPPriority == 0 {
		opts.XDPPriority = DefaultXDPPriority
	}
	if len(opts.Ifaces) == 0 {
		return nil, errors.New("no interface to guard: give at least one --iface")
	}
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	if err := CheckHost(); err != nil {
		return nil, err
	}
	// kernels before 5.11 account BPF memory against RLIMIT_MEMLOCK
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}

	ifaces, err := resolveIfaces(opts.NetNS, opts.Ifaces)
	if err != nil {
		return nil, err
	}
	if err := ensureBPFFS(opts.PinDir); err != nil {
		return nil, err
	}
	if err := removeStaleNewDirs(opts.PinDir); err != nil {
		log.Warn("leftovers of an interrupted start", "err", err)
	}

	// with the admission at TC no XDP program is attached: whatever holds
	// the XDP hook is left alone, and freplace is not needed
	attach := XDPAttach("")
	if opts.AdmitHook != AdmitTC {
		if attach, err = resolveXDPAttach(opts.NetNS, opts.XDPAttach, ifaces); err != nil {
			return nil, err
		}
	}
	for i := range ifaces {
		ifaces[i].XDPAttach = attach
		if attach == AttachLibxdp {
			ifaces[i].XDPPriority = opts.XDPPriority
		}
	}

	d := &Dataplane{log: log, pinDir: opts.PinDir, states: opts.StateDir, reattached: map[string]uint64{}, libxdp: attach == AttachLibxdp}
	if err := d.loadPinned(opts); err != nil {
		d.Close()
		return nil, err
	}
	if opts.Config.NAT, err = ResolveNAT(opts.Config.NAT, opts.NATMechanism, d.Object); err != nil {
		d.Close()
		return nil, err
	}

	if err := d.apply(opts, ifaces); err != nil {
		d.Close()
		return nil, err
	}

	prev, err := opts.StateDir.Read(opts.PinDir)
	if err != nil {
		log.Warn("ignoring unreadable state", "err", err)
		prev = nil
	}
	if err := d.attachAll(opts, ifaces, prev); err != nil {
		d.Close()
		return nil, err
	}
	// #14 every program on the maps now marks the SYN gate: turn it on
	// where it is off (new pins, or pins of an older ftpgate)
	if err := d.Maps.EnableSYNGate(); err != nil {
		d.Close()
		return nil, err
	}
	if err := d.pinPrograms(); err != nil {
		d.Close()
		return nil, err
	}
	pidStart, _ := processStart(os.Getpid())
	d.progs = programIDs(d.objs.FtpgateXdp, d.objs.FtpgateTcIngress, d.objs.FtpgateTcEgress, d.objs.FtpgateTcAdmit)
	d.State = State{PinDir: opts.PinDir, NetNS: opts.NetNS, PID: os.Getpid(), PIDStart: pidStart, Version: Version, Started: time.Now().UTC(), Ifaces: ifaces, Object: d.Object,
		NATMechanism: opts.NATMechanism}
	if err := opts.StateDir.write(&d.State); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func resolveIfaces(ns string, names []string) ([]IfaceState, error) {
	var out []IfaceState
	err := inNetns(ns, func() error {
		for _, name := range names {
			if slices.ContainsFunc(out, func(s IfaceState) bool { return s.Name == name }) {
				continue
			}
			lk, err := netlink.LinkByName(name)
			if err != nil {
				where := "this network namespace"
				if ns != "" {
					where = fmt.Sprintf("network namespace %q", ns)
				}
				return fmt.Errorf("interface %q: %w in %s (check the name with `ip link`)", name, ErrNoInterface, where)
			}
			if err := checkEthernet(lk); err != nil {
				return err
			}
			out = append(out, IfaceState{Name: name, Index: lk.Attrs().Index, Kind: lk.Type()})
		}
		return nil
	})
	return out, err
}

// carriesEthernet reports whether a link type (netlink's name of the
// ARPHRD type) puts an Ethernet header in front of IP. Loopback does: the
// stack gives its packets an all-zero Ethernet header.
func carriesEthernet(encap string) bool { return encap == "ether" || encap == "loopback" }

func checkEthernet(lk netlink.Link) error {
	if a := lk.Attrs(); !carriesEthernet(a.EncapType) {
		return fmt.Errorf("interface %q is a %s link (link type %s, no Ethernet header): %w; guard the Ethernet interface the traffic crosses instead",
			a.Name, lk.Type(), a.EncapType, ErrNotEthernet)
	}
	return nil
}

// loadPinned re-opens pinned maps when there are some, creates and pins them
// otherwise, then loads the programs against them.
func (d *Dataplane) loadPinned(opts Options) error {
	spec, err := bpf.LoadFtpgate()
	if err != nil {
		return fmt.Errorf("load embedded object: %w", err)
	}
	sizes := opts.Tables
	if sizes == (TableSizes{}) {
		sizes = DefaultTableSizes
	}
	sizes.Resize(spec)

	if _, err := os.Stat(filepath.Join(opts.PinDir, maps.NameConfig)); errors.Is(err, os.ErrNotExist) {
		if err := d.createPins(spec, opts.PinDir); err != nil {
			return err
		}
	}

	lock, err := lockDir(opts.PinDir)
	if err != nil {
		return err
	}
	d.lock = lock

	if err := d.addMissingPins(spec, opts.PinDir); err != nil {
		return err
	}
	pinned, err := maps.Open(opts.PinDir)
	if err != nil {
		return err
	}
	defer pinned.Close()
	repl := map[string]*ebpf.Map{}
	for _, name := range maps.Names {
		m := pinned.ByName(name)
		ms := spec.Maps[name]
		if err := ms.Compatible(m); err != nil {
			if isSizeOnly(ms, m) {
				d.log.Warn("pinned table keeps its size; detach to resize", "map", name, "pinned", m.MaxEntries(), "requested", ms.MaxEntries)
				ms.MaxEntries = m.MaxEntries()
			} else {
				return fmt.Errorf("%s/%s: %w (%v); `ftpgate detach --pin-dir %s` removes them, losing their state", opts.PinDir, name, ErrLayoutMismatch, err, opts.PinDir)
			}
		}
		repl[name] = m
	}
	return d.loadObject(spec, repl, sizes)
}

// loadObject loads the first build of the programs the kernel accepts: the
// NAT object (both mechanisms), the own object (ftpgate's own translation
// only), the plain one; with NAT off the NAT code does nothing (config.nat
// gates it). Each refusal is kept, condensed, for status and for
// ResolveNAT (docs/nat.md). All builds have the same maps, so any runs on
// the same pins, and a restart may switch.
func (d *Dataplane) loadObject(plain *ebpf.CollectionSpec, repl map[string]*ebpf.Map, sizes TableSizes) error {
	opts := &ebpf.CollectionOptions{MapReplacements: repl}
	asComponent := func(spec *ebpf.CollectionSpec) (func(), error) {
		if !d.libxdp {
			return func() {}, nil
		}
		return extensionSpec(spec.Programs[progPins[0]])
	}
	load := func(v bpf.Variant) error {
		spec, err := natSpec(v)
		if err == nil {
			err = natProbe(spec)
		}
		if err != nil {
			return err
		}
		sizes.Resize(spec)
		for _, name := range maps.Names {
			spec.Maps[name].MaxEntries = plain.Maps[name].MaxEntries
		}
		if err := markOwnLive(spec, repl[maps.NameNATOwn]); err != nil {
			return err
		}
		release, err := asComponent(spec)
		if err != nil {
			return err
		}
		defer release()
		return spec.LoadAndAssign(&d.objs, opts)
	}
	d.Object = Object{Variant: bpf.NAT.String()}
	err := load(bpf.NAT)
	if err != nil {
		d.Object.NATRefused = NATRefusal(err)
		d.log.Info("the kernel refused the NAT object; trying the own-translation one", "reason", d.Object.NATRefused)
		d.Object.Variant = bpf.NATOwn.String()
		err = load(bpf.NATOwn)
	}
	if err != nil {
		d.Object.Variant = bpf.Plain.String()
		d.Object.NATOwnRefused = NATRefusal(err)
		d.log.Info("the kernel refused the own-translation NAT object; loading the plain one (no --nat)", "reason", d.Object.NATOwnRefused)
		release, err := asComponent(plain)
		if err != nil {
			return err
		}
		defer release()
		if err := plain.LoadAndAssign(&d.objs, opts); err != nil {
			var ve *ebpf.VerifierError
			if errors.As(err, &ve) {
				return fmt.Errorf("load programs: %+v", ve)
			}
			return fmt.Errorf("load programs: %w", err)
		}
	}
	d.Maps = maps.FromObjects(&d.objs.FtpgateMaps)
	return nil
}

// markOwnLive sets the NAT objects' nat_own_live (bpf/natown.h) when the
// pinned nat_own table holds translations, made by the object a restart
// replaces: the new programs translate them whatever config.nat says.
func markOwnLive(spec *ebpf.CollectionSpec, own *ebpf.Map) error {
	if own == nil {
		return nil
	}
	var k bpf.FtpgateFlowKey
	if err := own.NextKey(nil, &k); errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("read %s: %w", maps.NameNATOwn, err)
	}
	v := spec.Variables["nat_own_live"]
	if v == nil {
		return errors.New("the NAT object has no variable nat_own_live")
	}
	return v.Set(uint32(1))
}

// addMissingPins creates and pins the maps an older version did not have, so
// that an upgrade adds its new tables beside the state it keeps. Maps whose
// layout changed are refused later, by the compatibility check.
func (d *Dataplane) addMissingPins(spec *ebpf.CollectionSpec, pinDir string) error {
	for _, name := range maps.Names {
		path := filepath.Join(pinDir, name)
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			continue
		}
		m, err := ebpf.NewMap(spec.Maps[name])
		if err != nil {
			return fmt.Errorf("create map %s: %w", name, err)
		}
		err = m.Pin(path)
		m.Close()
		if err != nil {
			return fmt.Errorf("pin map %s: %w", name, err)
		}
		d.log.Info("added a map the pinned state lacked", "map", name, "pin_dir", pinDir)
	}
	return nil
}

func isSizeOnly(ms *ebpf.MapSpec, m *ebpf.Map) bool {
	c := ms.Copy()
	c.MaxEntries = m.MaxEntries()
	return c.Compatible(m) == nil
}

// createPins creates the maps and pins them in a temporary directory that is
// renamed into place, so a pin directory is either complete or absent. A
// concurrent creator that wins the rename is fine: its maps are used.
func (d *Dataplane) createPins(spec *ebpf.CollectionSpec, pinDir string) error {
	tmp := newDir(pinDir, os.Getpid())
	if err := removeTree(tmp); err != nil {
		return fmt.Errorf("clear %s: %w", tmp, err)
	}
	for _, sub := range []string{tmp, filepath.Join(tmp, linksDir), filepath.Join(tmp, progsDir)} {
		if err := os.Mkdir(sub, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", sub, err)
		}
	}
	defer removeTree(tmp)

	for _, name := range maps.Names {
		m, err := ebpf.NewMap(spec.Maps[name])
		if err != nil {
			return fmt.Errorf("create map %s: %w", name, err)
		}
		err = m.Pin(filepath.Join(tmp, name))
		m.Close()
		if err != nil {
			return fmt.Errorf("pin map %s: %w", name, err)
		}
	}
	// defaults until apply writes the real configuration
	m, err := maps.Open(tmp)
	if err != nil {
		return err
	}
	err = m.SetConfig(maps.DefaultConfig())
	m.Close()
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, pinDir); err != nil {
		if _, serr := os.Stat(filepath.Join(pinDir, maps.NameConfig)); serr == nil {
			return nil // another process created it first
		}
		return fmt.Errorf("move %s into place: %w", pinDir, err)
	}
	d.log.Info("created pinned maps", "pin_dir", pinDir)
	return nil
}

// apply writes the complete run-time configuration: config, both port sets
// and the guarded interfaces.
func (d *Dataplane) apply(opts Options, ifaces []IfaceState) error {
	if err := d.Maps.SetConfig(opts.Config); err != nil {
		return err
	}
	ctrl := opts.CtrlPorts
	if len(ctrl) == 0 && len(opts.CtrlScopes) == 0 {
		ctrl = []uint16{21}
	}
	for _, p := range opts.FTPSPorts {
		if !slices.Contains(ctrl, p) {
			ctrl = append(slices.Clone(ctrl), p)
		}
	}
	if err := d.Maps.CtrlPorts().Replace(ctrl); err != nil {
		return err
	}
	if err := d.Maps.FTPSPorts().Replace(opts.FTPSPorts); err != nil {
		return err
	}
	if err := d.Maps.TLSRanges().Replace(opts.TLSRanges); err != nil {
		return err
	}
	if err := d.Maps.CtrlScopes().Replace(opts.CtrlScopes); err != nil {
		return err
	}
	if err := d.Maps.AllowPorts().Replace(opts.AllowPorts); err != nil {
		return err
	}
	var idx []uint32
	for _, ifc := range ifaces {
		idx = append(idx, uint32(ifc.Index))
	}
	return replaceGuarded(d.Maps, idx)
}

func replaceGuarded(m *maps.Maps, idx []uint32) error {
	var key uint32
	var val bpf.FtpgateIfaceVal
	var stale []uint32
	it := m.GuardedIfs.Iterate()
	for it.Next(&key, &val) {
		if !slices.Contains(idx, key) {
			stale = append(stale, key)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read %s: %w", maps.NameGuardedIfs, err)
	}
	for _, k := range stale {
		if err := m.GuardedIfs.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("update %s: %w", maps.NameGuardedIfs, err)
		}
	}
	for _, k := range idx {
		if err := m.GuardedIfs.Put(k, bpf.FtpgateIfaceVal{Enabled: 1}); err != nil {
			return fmt.Errorf("update %s: %w", maps.NameGuardedIfs, err)
		}
	}
	return nil
}

// attachAll attaches every interface, swapping programs in place where a
// previous run attached them, and detaches interfaces the previous run
// guarded that this one does not. On failure it undoes its new attachments.
func (d *Dataplane) attachAll(opts Options, ifaces []IfaceState, prev *State) error {
	prevOf := func(name string) *IfaceState {
		if prev == nil || prev.NetNS != opts.NetNS {
			return nil
		}
		for i := range prev.Ifaces {
			if prev.Ifaces[i].Name == name {
				return &prev.Ifaces[i]
			}
		}
		return nil
	}
	return inNetns(opts.NetNS, func() error {
		var done []IfaceState
		for i := range ifaces {
			ifc := &ifaces[i]
			p := prevOf(ifc.Name)
			var err error
			if opts.AdmitHook != AdmitTC {
				err = attachXDP(d.objs.FtpgateXdp, ifc, opts.XDPMode, p, d.pinDir)
			}
			if err == nil {
				err = attachTC([2]*ebpf.Program{d.objs.FtpgateTcIngress, d.objs.FtpgateTcEgress}, ifc, opts.TCMode, p, d.pinDir)
			}
			if err == nil {
				err = settleAdmission(d.objs.FtpgateTcAdmit, ifc, opts.AdmitHook, p, d.pinDir)
			}
			if err == nil {
				err = retireTC(ifc, p, d.pinDir)
			}
			if err != nil {
				if p == nil {
					detachIface(ifc, d.pinDir)
				}
				for j := range done {
					if prevOf(done[j].Name) == nil {
						detachIface(&done[j], d.pinDir)
					}
				}
				return err
			}
			verb := "attached"
			if p != nil {
				verb = "replaced programs"
			}
			d.log.Info(verb, "iface", ifc.Name, "ifindex", ifc.Index, "admit", ifc.AdmitHook, "xdp", ifc.XDPMode, "tc", ifc.TCMode)
			done = append(done, *ifc)
		}
		if prev != nil && prev.NetNS == opts.NetNS {
			for i := range prev.Ifaces {
				old := &prev.Ifaces[i]
				if !slices.ContainsFunc(ifaces, func(s IfaceState) bool { return s.Name == old.Name }) {
					if err := detachIface(old, d.pinDir); err != nil {
						d.log.Warn("detach interface no longer guarded", "iface", old.Name, "err", err)
					} else {
						d.log.Info("detached interface no longer guarded", "iface", old.Name)
					}
				}
			}
		}
		return nil
	})
}

// pinPrograms pins the running programs, replacing the previous run's pins.
func (d *Dataplane) pinPrograms() error {
	for i, p := range []*ebpf.Program{d.objs.FtpgateXdp, d.objs.FtpgateTcIngress, d.objs.FtpgateTcEgress, d.objs.FtpgateTcAdmit} {
		path := filepath.Join(d.pinDir, progsDir, progPins[i])
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("replace pin %s: %w", path, err)
		}
		if err := p.Pin(path); err != nil {
			return fmt.Errorf("pin program %s: %w", path, err)
		}
	}
	return nil
}

// Close releases this process's handles and the pin directory lock, leaving
// the dataplane attached and pinned: a restart picks it up without loss.
// Start calls it too when it fails half-way.
func (d *Dataplane) Close() error {
	if d.stopWatch != nil {
		d.stopWatch()
	}
	return errors.Join(d.objs.Close(), d.lock.Close())
}

// Ifaces returns the guarded interfaces as last attached.
func (d *Dataplane) Ifaces() []IfaceState {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.State.Ifaces)
}

// Observe asks the kernel what of this dataplane's programs is on each
// guarded interface now.
func (d *Dataplane) Observe() ([]IfaceStatus, error) {
	ifaces := d.Ifaces()
	var out []IfaceStatus
	err := inNetns(d.State.NetNS, func() error {
		for _, ifc := range ifaces {
			out = append(out, observe(ifc, d.progs))
		}
		return nil
	})
	return out, err
}

// Reattached returns how often the watcher re-attached each guarded interface.
func (d *Dataplane) Reattached() map[string]uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]uint64{}
	for _, ifc := range d.State.Ifaces {
		out[ifc.Name] = d.reattached[ifc.Name]
	}
	return out
}

// PinDir returns the pin directory.
func (d *Dataplane) PinDir() string { return d.pinDir }

// Detach removes every attachment and pin under pinDir and its state file in
// states, leaving nothing behind. It refuses while a running ftpgate holds
// the lock.
func Detach(pinDir string, states StateDir, netnsName string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := CheckHost(); err != nil {
		return err
	}
	st, err := states.Read(pinDir)
	if err != nil {
		return err
	}
	if err := removeStaleNewDirs(pinDir); err != nil {
		return err
	}
	if _, err := os.Stat(pinDir); errors.Is(err, os.ErrNotExist) {
		// idempotent, so that scripts and unit files can always call it
		log.Info("nothing pinned; nothing to detach", "pin_dir", pinDir)
		return states.remove(pinDir)
	}
	lock, err := lockDir(pinDir)
	if err != nil {
		if errors.Is(err, ErrLocked) {
			pid := "?"
			if st != nil {
				pid = fmt.Sprint(st.PID)
			}
			return fmt.Errorf("%w (pid %s): stop it first, or start it with --detach-on-exit", err, pid)
		}
		return err
	}
	defer lock.Close()

	var errs []error
	if st != nil {
		ns := st.NetNS
		if netnsName != "" {
			ns = netnsName
		}
		errs = append(errs, inNetns(ns, func() error {
			var e []error
			for i := range st.Ifaces {
				e = append(e, detachIface(&st.Ifaces[i], pinDir))
				log.Info("detached", "iface", st.Ifaces[i].Name)
			}
			return errors.Join(e...)
		}))
	}
	// links pinned for interfaces the state file does not know (a crashed
	// first run): unpinning a link detaches it
	entries, _ := os.ReadDir(filepath.Join(pinDir, linksDir))
	for _, e := range entries {
		errs = append(errs, removePinnedLink(filepath.Join(pinDir, linksDir, e.Name())))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := removeTree(pinDir); err != nil {
		return fmt.Errorf("remove %s: %w", pinDir, err)
	}
	return states.remove(pinDir)
}
