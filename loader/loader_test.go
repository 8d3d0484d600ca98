package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/bpf"
	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/internal/nettest"
	"github.com/ftpgate/ftpgate/maps"
)

// testEnv is a network namespace with a veth pair, a private bpffs for pins
// and a private state directory: nothing of the host is touched.
type testEnv struct {
	ns     string
	ifaces []string
	pinDir string
	states StateDir
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		bpftest.SkipOrFail(t, "loader tests need root")
	}
	if v, err := RunningKernel(); err != nil || v.Less(MinKernel) {
		t.Skipf("kernel %v below the supported minimum %s", v, MinKernel)
	}
	env := &testEnv{ifaces: []string{"fg0", "fg1"}}
	env.ns = nettest.VethNS(t, "fgl", env.ifaces[0], env.ifaces[1])
	env.pinDir = filepath.Join(nettest.BPFFS(t), "ftpgate")
	env.states = StateDir(t.TempDir())
	return env
}

func (e *testEnv) options(xdp XDPMode, tc TCMode) Options {
	return Options{
		PinDir: e.pinDir, StateDir: e.states, Ifaces: e.ifaces, NetNS: e.ns, XDPMode: xdp, TCMode: tc,
		CtrlPorts: []uint16{21}, AllowPorts: []uint16{21}, Config: maps.DefaultConfig(),
		Tables: TableSizes{CtrlConns: 1024, Expectations: 1024, DataFlows: 1024},
	}
}

// start starts a dataplane that the test's cleanup releases and detaches.
func (e *testEnv) start(t *testing.T, opts Options) *Dataplane {
	t.Helper()
	dp, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dp.Close()
		Detach(e.pinDir, e.states, "", nil)
	})
	return dp
}

func tcModes(t *testing.T) []TCMode {
	if HaveTCX() {
		return []TCMode{TCX, TCNetlink}
	}
	return []TCMode{TCNetlink}
}

// eachLink runs check on every test interface, inside the namespace.
func (e *testEnv) eachLink(t *testing.T, check func(name string, lk netlink.Link) error) {
	t.Helper()
	err := inNetns(e.ns, func() error {
		for _, name := range e.ifaces {
			lk, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			if err := check(name, lk); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// nothingLeft checks that no XDP program, tc filter or pin remains.
func (e *testEnv) nothingLeft(t *testing.T) {
	t.Helper()
	e.eachLink(t, func(name string, lk netlink.Link) error {
		if x := lk.Attrs().Xdp; x != nil && x.Attached {
			return fmt.Errorf("%s still has XDP program %d", name, x.ProgId)
		}
		for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
			filters, err := netlink.FilterList(lk, parent)
			if err != nil && !errors.Is(err, unix.EINVAL) {
				return err
			}
			if len(filters) > 0 {
				return fmt.Errorf("%s still has tc filters: %v", name, filters)
			}
		}
		return nil
	})
	if _, err := os.Stat(e.pinDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pin dir %s still exists (%v)", e.pinDir, err)
	}
	if st, _ := e.states.Read(e.pinDir); st != nil {
		t.Fatalf("state file still exists: %+v", st)
	}
}

func TestAttachDetachEveryMode(t *testing.T) {
	for _, xdp := range []XDPMode{XDPGeneric, XDPNative} {
		for _, tc := range tcModes(t) {
			t.Run(fmt.Sprintf("xdp=%s,tc=%s", xdp, tc), func(t *testing.T) {
				env := newEnv(t)
				dp := env.start(t, env.options(xdp, tc))
				for _, ifc := range dp.State.Ifaces {
					if ifc.XDPMode != xdp || ifc.TCMode != tc {
						t.Errorf("%s attached xdp=%s tc=%s, want %s %s", ifc.Name, ifc.XDPMode, ifc.TCMode, xdp, tc)
					}
				}
				must(t, dp.Close())
				st, err := ReadStatus(env.pinDir, env.states, "")
				must(t, err)
				if err := st.Check(); err != nil {
					t.Fatalf("after start: %v", err)
				}
				if len(st.Programs) != len(progPins) {
					t.Fatalf("pinned programs: %+v", st.Programs)
				}
				must(t, Detach(env.pinDir, env.states, "", nil))
				env.nothingLeft(t)
			})
		}
	}
}

func TestAutoModes(t *testing.T) {
	env := newEnv(t)
	dp := env.start(t, env.options(XDPAuto, TCAuto))
	wantTC := TCNetlink
	if HaveTCX() {
		wantTC = TCX
	}
	for _, ifc := range dp.State.Ifaces {
		// veth: generic, see docs/design.md
		if ifc.Kind != "veth" || ifc.XDPMode != XDPGeneric || ifc.TCMode != wantTC {
			t.Errorf("%s (%s): xdp=%s tc=%s, want generic %s", ifc.Name, ifc.Kind, ifc.XDPMode, ifc.TCMode, wantTC)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestRestartKeepsStateAndSwapsPrograms(t *testing.T) {
	for _, tc := range tcModes(t) {
		t.Run(string(tc), func(t *testing.T) {
			env := newEnv(t)
			opts := env.options(XDPGeneric, tc)
			dp := env.start(t, opts)
			// state that must survive: an expectation, a counter, a run-time port
			ek := bpf.FtpgateExpectKey{Family: unix.AF_INET, Dport: 30000, Src: [4]uint32{0x0a0200c0}, Dst: [4]uint32{0x146433c6}}
			ev := bpf.FtpgateExpectVal{ExpiresNs: ^uint64(0) >> 1, CreatedNs: 1, Kind: uint8(maps.KindPasv)}
			must(t, dp.Maps.Expectations.Put(ek, ev))
			perCPU := make([]uint64, ebpf.MustPossibleCPU())
			perCPU[0] = 42
			must(t, dp.Maps.Stats.Put(uint32(bpf.FtpgateStatSTAT_EXPECT_CREATED), perCPU))
			oldProgs := progIDs(t, env.pinDir)
			oldLinks := linkIDs(t, env.pinDir)
			must(t, dp.Close())

			dp2 := env.start(t, opts)

			var got bpf.FtpgateExpectVal
			if err := dp2.Maps.Expectations.Lookup(ek, &got); err != nil || got.Kind != ev.Kind {
				t.Fatalf("expectation lost across restart: %v %+v", err, got)
			}
			c, err := dp2.Maps.Counters()
			must(t, err)
			if c["expect_created"] != 42 {
				t.Fatalf("expect_created = %d after restart, want 42", c["expect_created"])
			}
			newProgs := progIDs(t, env.pinDir)
			for name, id := range oldProgs {
				if newProgs[name] == id {
					t.Errorf("program %s still id %d: not swapped", name, id)
				}
			}
			// links are updated in place, not recreated
			for name, id := range linkIDs(t, env.pinDir) {
				if oldLinks[name] != id {
					t.Errorf("link %s changed id %d -> %d: recreated instead of updated", name, oldLinks[name], id)
				}
			}
			st, err := ReadStatus(env.pinDir, env.states, "")
			must(t, err)
			must(t, st.Check())
			if tc == TCNetlink {
				env.oneFilterEach(t, newProgs)
			}
		})
	}
}

// oneFilterEach checks the netlink filters were replaced, not added.
func (e *testEnv) oneFilterEach(t *testing.T, progs map[string]uint32) {
	t.Helper()
	e.eachLink(t, func(name string, lk netlink.Link) error {
		for _, h := range tcHooks {
			filters, err := netlink.FilterList(lk, h.parent)
			if err != nil {
				return err
			}
			if len(filters) != 1 {
				return fmt.Errorf("%s %s: %d filters, want 1", name, h.name, len(filters))
			}
			bf, ok := filters[0].(*netlink.BpfFilter)
			if !ok || uint32(bf.Id) != progs["ftpgate_tc_"+h.name] {
				return fmt.Errorf("%s %s: filter runs %+v, want program %d", name, h.name, filters[0], progs["ftpgate_tc_"+h.name])
			}
		}
		return nil
	})
}

func progIDs(t *testing.T, pinDir string) map[string]uint32 {
	t.Helper()
	out := map[string]uint32{}
	for _, name := range progPins {
		p, err := ebpf.LoadPinnedProgram(filepath.Join(pinDir, progsDir, name), nil)
		must(t, err)
		info, err := p.Info()
		p.Close()
		must(t, err)
		id, _ := info.ID()
		out[name] = uint32(id)
	}
	return out
}

func linkIDs(t *testing.T, pinDir string) map[string]uint32 {
	t.Helper()
	out := map[string]uint32{}
	entries, err := os.ReadDir(filepath.Join(pinDir, linksDir))
	must(t, err)
	for _, e := range entries {
		l, err := loadLink(filepath.Join(pinDir, linksDir, e.Name()))
		must(t, err)
		out[e.Name()] = l
	}
	return out
}

func TestSecondDaemonIsRefused(t *testing.T) {
	env := newEnv(t)
	env.start(t, env.options(XDPGeneric, TCNetlink))
	_, err := Start(env.options(XDPGeneric, TCNetlink))
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second start: %v, want ErrLocked", err)
	}
	if err := Detach(env.pinDir, env.states, "", nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("detach while running: %v, want ErrLocked", err)
	}
}

func TestLayoutMismatchIsRefused(t *testing.T) {
	env := newEnv(t)
	must(t, env.start(t, env.options(XDPGeneric, TCNetlink)).Close())
	// replace the config map with one of another value size, as an older
	// build with another struct layout would have left
	path := filepath.Join(env.pinDir, maps.NameConfig)
	must(t, os.Remove(path))
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	must(t, err)
	must(t, m.Pin(path))
	m.Close()
	_, err = Start(env.options(XDPGeneric, TCNetlink))
	if !errors.Is(err, ErrLayoutMismatch) {
		t.Fatalf("start over a foreign layout: %v, want ErrLayoutMismatch", err)
	}
}

// TestRestartAddsNewMaps: a pin directory left by a version without a map
// (ctrl_embryo and embryo_sources came with issue 11) gets it on restart,
// and keeps the state it had.
func TestRestartAddsNewMaps(t *testing.T) {
	env := newEnv(t)
	opts := env.options(XDPGeneric, TCNetlink)
	dp := env.start(t, opts)
	ek := bpf.FtpgateExpectKey{Family: unix.AF_INET, Dport: 30000, Src: [4]uint32{0x0a0200c0}, Dst: [4]uint32{0x146433c6}}
	must(t, dp.Maps.Expectations.Put(ek, bpf.FtpgateExpectVal{ExpiresNs: ^uint64(0) >> 1, CreatedNs: 1}))
	must(t, dp.Close())
	for _, name := range []string{maps.NameCtrlEmbryo, maps.NameEmbryoSrcs} {
		must(t, os.Remove(filepath.Join(env.pinDir, name)))
	}
	dp2 := env.start(t, opts)
	defer dp2.Close()
	for _, name := range []string{maps.NameCtrlEmbryo, maps.NameEmbryoSrcs} {
		if _, err := os.Stat(filepath.Join(env.pinDir, name)); err != nil {
			t.Errorf("%s not added: %v", name, err)
		}
	}
	var got bpf.FtpgateExpectVal
	if err := dp2.Maps.Expectations.Lookup(ek, &got); err != nil {
		t.Fatalf("expectation lost: %v", err)
	}
}

// TestUpgradeTurnsOnSYNGate (#14): pins of a version without the SYN gate
// (no syn_gate map, a config without a horizon, an expectation without a
// mark) get the map on restart, every port marked and a horizon that covers
// the pinned expectation's lifetime; the gate is on from the first start.
func TestUpgradeTurnsOnSYNGate(t *testing.T) {
	env := newEnv(t)
	opts := env.options(XDPGeneric, TCNetlink)
	dp := env.start(t, opts)
	cfg, err := dp.Maps.GetConfig()
	must(t, err)
	if cfg.SYNGateHorizon != maps.SYNGateHorizon(cfg.ExpectTimeout) {
		t.Fatalf("horizon %v after the first start, want %v", cfg.SYNGateHorizon, maps.SYNGateHorizon(cfg.ExpectTimeout))
	}
	var raw bpf.FtpgateConfigVal
	must(t, dp.Maps.Config.Lookup(uint32(0), &raw))
	raw.SynGateHorizonS = 0
	must(t, dp.Maps.Config.Put(uint32(0), raw))
	now, err := dp.Maps.Now()
	must(t, err)
	ek := bpf.FtpgateExpectKey{Family: unix.AF_INET, Dport: 30000, Src: [4]uint32{0x0a0200c0}, Dst: [4]uint32{0x146433c6}}
	must(t, dp.Maps.Expectations.Put(ek, bpf.FtpgateExpectVal{CreatedNs: now, ExpiresNs: now + uint64(time.Hour)}))
	must(t, dp.Close())
	must(t, os.Remove(filepath.Join(env.pinDir, maps.NameSYNGate)))

	dp2 := env.start(t, opts)
	defer dp2.Close()
	cfg, err = dp2.Maps.GetConfig()
	must(t, err)
	if want := maps.SYNGateHorizon(time.Hour); cfg.SYNGateHorizon != want {
		t.Fatalf("horizon %v after the upgrade, want %v (the pinned expectation's hour)", cfg.SYNGateHorizon, want)
	}
	after, err := dp2.Maps.Now()
	must(t, err)
	for _, port := range []uint32{0, 30000, 65535} {
		var m uint64
		must(t, dp2.Maps.SYNGate.Lookup(port, &m))
		if m < now || m > after {
			t.Errorf("port %d marked %d, want between %d and %d", port, m, now, after)
		}
	}
}

func TestUnknownInterfaceLeavesNothing(t *testing.T) {
	env := newEnv(t)
	opts := env.options(XDPGeneric, TCNetlink)
	opts.Ifaces = []string{"fg0", "nosuch9"}
	_, err := Start(opts)
	if !errors.Is(err, ErrNoInterface) {
		t.Fatalf("start: %v, want ErrNoInterface", err)
	}
	env.nothingLeft(t)
}

// holdXDP attaches an XDP program that is not ftpgate's, named
// "someone_else", to fg0 in generic mode over netlink (as `ip link set
// … xdp` does) and returns its id.
func (e *testEnv) holdXDP(t *testing.T) ebpf.ProgramID {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "someone_else", Type: ebpf.XDP, License: "MIT",
		Instructions: asm.Instructions{asm.LoadImm(asm.R0, 2, asm.DWord), asm.Return()},
	})
	must(t, err)
	defer prog.Close()
	must(t, inNetns(e.ns, func() error {
		lk, err := netlink.LinkByName("fg0")
		if err != nil {
			return err
		}
		return netlink.LinkSetXdpFdWithFlags(lk, prog.FD(), int(unix.XDP_FLAGS_SKB_MODE))
	}))
	info, err := prog.Info()
	must(t, err)
	id, _ := info.ID()
	return id
}

func TestXDPBusyNamesTheHolder(t *testing.T) {
	env := newEnv(t)
	id := env.holdXDP(t)
	_, err := Start(env.options(XDPGeneric, TCNetlink))
	if !errors.Is(err, ErrXDPBusy) {
		t.Fatalf("start: %v, want ErrXDPBusy", err)
	}
	if want := fmt.Sprintf("program id %d, name %q", id, "someone_else"); !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not name the holder (%s)", err, want)
	}
}

func loadLink(path string) (uint32, error) {
	l, err := link.LoadPinnedLink(path, nil)
	if err != nil {
		return 0, err
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		return 0, err
	}
	return uint32(info.ID), nil
}

func TestAgerReclaimsExpired(t *testing.T) {
	env := newEnv(t)
	dp := env.start(t, env.options(XDPGeneric, TCNetlink))
	// a VM booted seconds ago has a small monotonic clock: move ftpgate's
	// clock forward so that "two minutes ago" exists
	cfg := maps.DefaultConfig()
	cfg.ClockOffset = time.Hour
	must(t, dp.Maps.SetConfig(cfg))
	now, err := dp.Maps.Now()
	must(t, err)
	live := bpf.FtpgateExpectKey{Family: unix.AF_INET, Dport: 1}
	dead := bpf.FtpgateExpectKey{Family: unix.AF_INET, Dport: 2}
	must(t, dp.Maps.Expectations.Put(live, bpf.FtpgateExpectVal{ExpiresNs: now + uint64(time.Hour)}))
	must(t, dp.Maps.Expectations.Put(dead, bpf.FtpgateExpectVal{ExpiresNs: now - 1}))
	closed := bpf.FtpgateFlowKey{Family: unix.AF_INET, Sport: 1}
	open := bpf.FtpgateFlowKey{Family: unix.AF_INET, Sport: 2}
	must(t, dp.Maps.DataFlows.Put(closed, bpf.FtpgateFlowVal{LastSeenNs: now - uint64(2*time.Minute), Flags: 1}))
	must(t, dp.Maps.DataFlows.Put(open, bpf.FtpgateFlowVal{LastSeenNs: now - uint64(2*time.Minute)}))
	// an untrusted connection silent past EmbryoIdle, one still young; a
	// source's bucket full again, one still spending
	oldEmbryo, newEmbryo := bpf.FtpgateCtrlKey{Family: unix.AF_INET, ClientPort: 1}, bpf.FtpgateCtrlKey{Family: unix.AF_INET, ClientPort: 2}
	must(t, dp.Maps.CtrlEmbryo.Put(oldEmbryo, bpf.FtpgateEmbryoVal{LastNs: now - uint64(DefaultEmbryoIdle)}))
	must(t, dp.Maps.CtrlEmbryo.Put(newEmbryo, bpf.FtpgateEmbryoVal{LastNs: now}))
	fullSrc, busySrc := bpf.FtpgateSrcKey{Family: unix.AF_INET, Addr: [4]uint32{1}}, bpf.FtpgateSrcKey{Family: unix.AF_INET, Addr: [4]uint32{2}}
	must(t, dp.Maps.EmbryoSources.Put(fullSrc, bpf.FtpgateSrcBudget{LastNs: now - uint64(maps.EmbryoRefill)}))
	must(t, dp.Maps.EmbryoSources.Put(busySrc, bpf.FtpgateSrcBudget{LastNs: now}))

	// own translations (nat_own): closed and quiet past the linger, idle
	// past FlowIdle; closed but still carrying packets, open and quiet
	ownClosed, ownIdle := bpf.FtpgateFlowKey{Family: unix.AF_INET, Sport: 11}, bpf.FtpgateFlowKey{Family: unix.AF_INET, Sport: 12}
	ownClosing, ownQuiet := bpf.FtpgateFlowKey{Family: unix.AF_INET, Sport: 13}, bpf.FtpgateFlowKey{Family: unix.AF_INET, Sport: 14}
	must(t, dp.Maps.NATOwn.Put(ownClosed, bpf.FtpgateNatOwnVal{LastSeenNs: now - uint64(2*time.Minute), Flags: 1}))
	must(t, dp.Maps.NATOwn.Put(ownIdle, bpf.FtpgateNatOwnVal{LastSeenNs: now - uint64(DefaultFlowIdle)}))
	must(t, dp.Maps.NATOwn.Put(ownClosing, bpf.FtpgateNatOwnVal{LastSeenNs: now - uint64(time.Second), Flags: 2}))
	must(t, dp.Maps.NATOwn.Put(ownQuiet, bpf.FtpgateNatOwnVal{LastSeenNs: now - uint64(2*time.Minute)}))
	// pairs: closed by the inside end (B) and quiet both ways past the
	// linger, reclaimed both; closed by the inside end but the peer's
	// packets (A) still coming, kept both
	in, out := uint8(bpf.FtpgateNatOwnSideNAT_OWN_IN), uint8(bpf.FtpgateNatOwnSideNAT_OWN_OUT)
	pair := func(peerPort uint16, lastA, lastB uint64) (a, b bpf.FtpgateFlowKey) {
		a = bpf.FtpgateFlowKey{Family: unix.AF_INET, Src: [4]uint32{7}, Sport: peerPort, Dst: [4]uint32{1}, Dport: 30000}
		b = bpf.FtpgateFlowKey{Family: unix.AF_INET, Src: [4]uint32{2}, Sport: 5000, Dst: [4]uint32{7}, Dport: peerPort}
		must(t, dp.Maps.NATOwn.Put(a, bpf.FtpgateNatOwnVal{LastSeenNs: lastA, Addr: [4]uint32{2}, Port: 5000, Side: in}))
		must(t, dp.Maps.NATOwn.Put(b, bpf.FtpgateNatOwnVal{LastSeenNs: lastB, Addr: [4]uint32{1}, Port: 30000, Side: out, Flags: 1}))
		return a, b
	}
	goneA, goneB := pair(40001, now-uint64(2*time.Minute), now-uint64(2*time.Minute))
	keptA, keptB := pair(40002, now-uint64(time.Second), now-uint64(2*time.Minute))

	a := &Ager{Maps: dp.Maps, FlowIdle: DefaultFlowIdle, ClosedLinger: DefaultClosedLinger, CtrlIdle: DefaultCtrlIdle}
	r, err := a.Sweep()
	must(t, err)
	if r.Expectations != 1 || r.Flows != 1 || r.Embryos != 1 || r.Sources != 1 || r.NATOwn != 4 {
		t.Fatalf("reclaimed %+v, want one expectation, flow, embryo and source, and four own translation entries", r)
	}
	for _, k := range []bpf.FtpgateFlowKey{goneA, goneB} {
		var ov bpf.FtpgateNatOwnVal
		if err := dp.Maps.NATOwn.Lookup(k, &ov); err == nil {
			t.Fatalf("own translation %+v of a closed quiet pair kept", k)
		}
	}
	for _, k := range []bpf.FtpgateFlowKey{ownClosing, ownQuiet, keptA, keptB} {
		var ov bpf.FtpgateNatOwnVal
		if err := dp.Maps.NATOwn.Lookup(k, &ov); err != nil {
			t.Fatalf("own translation %+v reclaimed: %v", k, err)
		}
	}
	var v bpf.FtpgateExpectVal
	if err := dp.Maps.Expectations.Lookup(live, &v); err != nil {
		t.Fatalf("live expectation reclaimed: %v", err)
	}
	var fv bpf.FtpgateFlowVal
	if err := dp.Maps.DataFlows.Lookup(open, &fv); err != nil {
		t.Fatalf("open flow reclaimed: %v", err)
	}
}

func TestParseKernel(t *testing.T) {
	for in, want := range map[string]KernelVersion{
		"5.10.0-32-amd64": {5, 10}, "6.18.44-fc-v782": {6, 18}, "7.3.4+deb13-amd64": {7, 3}, "6.1": {6, 1},
	} {
		got, err := ParseKernel(in)
		if err != nil || got != want {
			t.Errorf("ParseKernel(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseKernel("garbage"); err == nil {
		t.Error("ParseKernel(garbage) succeeded")
	}
}

// TestTCXProbe: the probe, not the version, decides; on Debian's kernels the
// two must agree, or auto would pick the wrong mechanism.
func TestTCXProbe(t *testing.T) {
	if os.Geteuid() != 0 {
		bpftest.SkipOrFail(t, "the TCX probe loads a program: needs root")
	}
	v, err := RunningKernel()
	must(t, err)
	if want := !v.Less(KernelVersion{6, 6}); HaveTCX() != want {
		t.Fatalf("kernel %s: HaveTCX() = %v, want %v", v, HaveTCX(), want)
	}
}
