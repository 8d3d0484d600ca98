package loader

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/bpf"
	"github.com/ftpgate/ftpgate/bpf/dispatcher/testcomp"
	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/internal/nettest"
	"github.com/ftpgate/ftpgate/internal/packet"
	"github.com/ftpgate/ftpgate/maps"
)

// libxdpEnv is a test environment whose libxdp directory is in a private
// bpffs (LIBXDP_BPFFS, as libxdp reads it).
func libxdpEnv(t *testing.T) *testEnv {
	env := newEnv(t)
	t.Setenv("LIBXDP_BPFFS", nettest.BPFFS(t))
	return env
}

// needFreplace skips where the kernel refuses extension programs by policy
// (this project's 6.18 host): the dispatcher mode is proven in the VMs.
func needFreplace(t *testing.T) {
	t.Helper()
	if err := probeFreplace(); err != nil {
		v, _ := RunningKernel()
		t.Skipf("kernel %v: %v (the VM matrix runs these tests)", v, err)
	}
}

func ifindex(t *testing.T, env *testEnv, name string) int {
	t.Helper()
	var idx int
	must(t, inNetns(env.ns, func() error {
		lk, err := netlink.LinkByName(name)
		if err == nil {
			idx = lk.Attrs().Index
		}
		return err
	}))
	return idx
}

func holderOf(t *testing.T, env *testEnv, idx int) xdpHolder {
	t.Helper()
	var h xdpHolder
	must(t, inNetns(env.ns, func() error {
		var err error
		h, err = findXDPHolder(idx)
		return err
	}))
	return h
}

// verdict runs pkt through what holds the interface's XDP hook (the
// dispatcher and its components), with BPF_PROG_TEST_RUN.
func verdict(t *testing.T, env *testEnv, idx int, pkt []byte) uint32 {
	t.Helper()
	h := holderOf(t, env, idx)
	if h.progID == 0 {
		t.Fatalf("nothing holds the XDP hook of ifindex %d", idx)
	}
	p, err := ebpf.NewProgramFromID(h.progID)
	must(t, err)
	defer p.Close()
	ret, err := p.Run(&ebpf.RunOptions{Data: pkt})
	must(t, err)
	return ret
}

var (
	outside = netip.MustParseAddr("203.0.113.7")
	inside  = netip.MustParseAddr("198.51.100.2")
	udp9    = packet.UDP(netip.AddrPortFrom(outside, 4000), netip.AddrPortFrom(inside, 9), []byte("x"))
	udp53   = packet.UDP(netip.AddrPortFrom(outside, 4000), netip.AddrPortFrom(inside, 53), []byte("x"))
	synTo   = func(port uint16) []byte {
		return packet.TCP{Src: netip.AddrPortFrom(outside, 40000), Dst: netip.AddrPortFrom(inside, port), Seq: 1, Flags: packet.SYN}.Bytes()
	}
)

// otherComponent is another operator's program joining by the protocol.
type otherComponent struct {
	objs testcomp.TestcompObjects
}

func loadOther(t *testing.T) *otherComponent {
	t.Helper()
	spec, err := testcomp.LoadTestcomp()
	must(t, err)
	release, err := extensionSpec(spec.Programs["drop_udp9"])
	must(t, err)
	defer release()
	o := &otherComponent{}
	must(t, spec.LoadAndAssign(&o.objs, nil))
	t.Cleanup(func() { o.objs.Close() })
	return o
}

func (o *otherComponent) join(t *testing.T, env *testEnv, idx int, prio uint32) {
	t.Helper()
	must(t, inNetns(env.ns, func() error {
		return joinDispatcher(idx, o.objs.DropUdp9, prio, 0, XDPGeneric)
	}))
}

func (o *otherComponent) leave(t *testing.T, env *testEnv, idx int) {
	t.Helper()
	must(t, inNetns(env.ns, func() error {
		return joinDispatcher(idx, nil, 0, programID(o.objs.DropUdp9), XDPGeneric)
	}))
}

// checkPins: the dispatcher's directory holds progN-prog and progN-link of
// each component, in run order, and the configuration says so.
func checkPins(t *testing.T, env *testEnv, idx int, wantPrios []uint32) {
	t.Helper()
	h := holderOf(t, env, idx)
	if h.kind != holderDispatcher {
		t.Fatalf("ifindex %d held by %s, want a dispatcher", idx, h.describe())
	}
	if h.conf.Magic != dispatcherMagic || h.conf.DispatcherVersion != dispatcherVersion || int(h.conf.NumProgsEnabled) != len(wantPrios) {
		t.Fatalf("config %+v, want magic 236, version 2, %d programs", h.conf, len(wantPrios))
	}
	if got := h.conf.RunPrios[:len(wantPrios)]; !slices.Equal(got, wantPrios) {
		t.Fatalf("run priorities %v, want %v", got, wantPrios)
	}
	dir := dispatchDir(idx, h.progID)
	entries, err := os.ReadDir(dir)
	must(t, err)
	var names, want []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	for i := range wantPrios {
		want = append(want, slotName(i)+"-link", slotName(i)+"-prog")
	}
	slices.Sort(names)
	if !slices.Equal(names, want) {
		t.Fatalf("%s holds %v, want %v", dir, names, want)
	}
	// only this dispatcher's directory is left
	all, err := os.ReadDir(libxdpDir())
	must(t, err)
	if len(all) != 1 {
		t.Fatalf("%s holds %d dispatcher directories, want 1", libxdpDir(), len(all))
	}
	for i := range wantPrios {
		l, err := link.LoadPinnedLink(filepath.Join(dir, slotName(i)+"-link"), nil)
		must(t, err)
		l.Close()
	}
}

// bothPolicies: the other program drops UDP to port 9, ftpgate drops an
// unsolicited SYN and counts it, and passes a SYN to an allowed port and
// other traffic.
func bothPolicies(t *testing.T, env *testEnv, idx int, dp *Dataplane) {
	t.Helper()
	before := counter(t, dp, "syn_drop_unexpected")
	for _, c := range []struct {
		what string
		pkt  []byte
		want uint32
	}{
		{"UDP to port 9 (the other program)", udp9, 1},
		{"UDP to port 53", udp53, 2},
		{"unsolicited SYN to 80 (ftpgate)", synTo(80), 1},
		{"SYN to the allowed port 21", synTo(21), 2},
	} {
		if got := verdict(t, env, idx, c.pkt); got != c.want {
			t.Errorf("%s: verdict %d, want %d", c.what, got, c.want)
		}
	}
	if after := counter(t, dp, "syn_drop_unexpected"); after != before+1 {
		t.Errorf("syn_drop_unexpected %d -> %d, want one more", before, after)
	}
}

func libxdpOptions(env *testEnv, attach XDPAttach) Options {
	o := env.options(XDPGeneric, TCNetlink)
	o.Ifaces = env.ifaces[:1]
	o.XDPAttach = attach
	return o
}

// TestLibxdpOtherFirst: another program made the dispatcher; ftpgate (auto)
// joins it after it (priority 10 < 40), both policies hold, a restart swaps
// ftpgate's component keeping an expectation, and each side's unload leaves
// the other working.
func TestLibxdpOtherFirst(t *testing.T) {
	env := libxdpEnv(t)
	needFreplace(t)
	idx := ifindex(t, env, env.ifaces[0])
	other := loadOther(t)
	other.join(t, env, idx, 10)
	checkPins(t, env, idx, []uint32{10})

	dp, err := Start(libxdpOptions(env, AttachAuto))
	must(t, err)
	t.Cleanup(func() { Detach(env.pinDir, env.states, "", nil) })
	if dp.State.Ifaces[0].XDPAttach != AttachLibxdp || dp.State.Ifaces[0].XDPPriority != DefaultXDPPriority {
		t.Fatalf("auto on a dispatcher: %+v, want libxdp at %d", dp.State.Ifaces[0], DefaultXDPPriority)
	}
	checkPins(t, env, idx, []uint32{10, DefaultXDPPriority})
	bothPolicies(t, env, idx, dp)
	st, err := ReadStatus(env.pinDir, env.states, "")
	must(t, err)
	must(t, st.Check())

	// restart: a new dispatcher with the new program; the expectation stays
	ek := bpf.FtpgateExpectKey{Family: unix.AF_INET, Dport: 30000, Src: [4]uint32{0x0a0200c0}, Dst: [4]uint32{0x146433c6}}
	must(t, dp.Maps.Expectations.Put(ek, bpf.FtpgateExpectVal{ExpiresNs: ^uint64(0) >> 1, CreatedNs: 1, Kind: uint8(maps.KindPasv)}))
	oldDisp := holderOf(t, env, idx).progID
	must(t, dp.Close())
	dp, err = Start(libxdpOptions(env, AttachAuto))
	must(t, err)
	if h := holderOf(t, env, idx); h.progID == oldDisp {
		t.Fatalf("restart kept dispatcher %d: not rebuilt", oldDisp)
	}
	var ev bpf.FtpgateExpectVal
	if err := dp.Maps.Expectations.Lookup(ek, &ev); err != nil {
		t.Fatalf("expectation lost across a restart in libxdp mode: %v", err)
	}
	checkPins(t, env, idx, []uint32{10, DefaultXDPPriority})
	bothPolicies(t, env, idx, dp)

	// the other program leaves: ftpgate alone still admits
	other.leave(t, env, idx)
	checkPins(t, env, idx, []uint32{DefaultXDPPriority})
	if got := verdict(t, env, idx, udp9); got != 2 {
		t.Errorf("UDP to port 9 after the other program left: %d, want pass", got)
	}
	if got := verdict(t, env, idx, synTo(80)); got != 1 {
		t.Errorf("unsolicited SYN after the other program left: %d, want drop", got)
	}
	// ftpgate leaves last: the dispatcher goes
	must(t, dp.Close())
	must(t, Detach(env.pinDir, env.states, "", nil))
	if h := holderOf(t, env, idx); h.kind != holderNone {
		t.Fatalf("after the last component left the hook is held by %s", h.describe())
	}
}

// TestLibxdpFtpgateFirst: ftpgate makes a dispatcher (--xdp-attach
// libxdp), another program joins before it (priority 10), and ftpgate's
// detach leaves the other running.
func TestLibxdpFtpgateFirst(t *testing.T) {
	env := libxdpEnv(t)
	needFreplace(t)
	idx := ifindex(t, env, env.ifaces[0])
	opts := libxdpOptions(env, AttachLibxdp)
	opts.XDPPriority = 60
	dp, err := Start(opts)
	must(t, err)
	t.Cleanup(func() { Detach(env.pinDir, env.states, "", nil) })
	checkPins(t, env, idx, []uint32{60})

	other := loadOther(t)
	other.join(t, env, idx, 10)
	checkPins(t, env, idx, []uint32{10, 60})
	bothPolicies(t, env, idx, dp)

	// a restart asking for a plain link is refused while another program
	// shares the dispatcher, and changes nothing
	must(t, dp.Close())
	linkOpts := opts
	linkOpts.XDPAttach = AttachLink
	if _, err := Start(linkOpts); !errors.Is(err, ErrXDPBusy) || !strings.Contains(err.Error(), "beside other programs") {
		t.Fatalf("restart with --xdp-attach link beside another component: %v", err)
	}
	checkPins(t, env, idx, []uint32{10, 60})
	dp, err = Start(opts)
	must(t, err)
	bothPolicies(t, env, idx, dp)

	must(t, dp.Close())
	must(t, Detach(env.pinDir, env.states, "", nil))
	checkPins(t, env, idx, []uint32{10})
	if got := verdict(t, env, idx, udp9); got != 1 {
		t.Errorf("UDP to port 9 after ftpgate left: %d, want drop", got)
	}
	if got := verdict(t, env, idx, synTo(80)); got != 2 {
		t.Errorf("SYN to 80 after ftpgate left: %d, want pass", got)
	}
	other.leave(t, env, idx)
	if h := holderOf(t, env, idx); h.kind != holderNone {
		t.Fatalf("after the last component left the hook is held by %s", h.describe())
	}
}

// TestXDPHolderNamed: a refusal names a netlink attach and a bpf_link by
// ids and name and points to the TC hook; a dispatcher, on a kernel that
// refuses freplace, is named and the TC hook suggested, in one line.
func TestXDPHolderNamed(t *testing.T) {
	env := libxdpEnv(t)
	idx := ifindex(t, env, env.ifaces[0])
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "someone_else", Type: ebpf.XDP, License: "MIT",
		Instructions: asm.Instructions{asm.LoadImm(asm.R0, 2, asm.DWord), asm.Return()},
	})
	must(t, err)
	defer prog.Close()
	id := programID(prog)
	opts := libxdpOptions(env, AttachAuto)

	must(t, inNetns(env.ns, func() error { return setXDP(idx, prog.FD(), -1, xdpFlagsSKBMode) }))
	_, err = Start(opts)
	want := fmt.Sprintf("a netlink attach (program id %d, name %q), which does not speak libxdp; admit at TC instead with --admit-hook tc", id, "someone_else")
	if !errors.Is(err, ErrXDPBusy) || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("start beside a netlink attach: %v\nwant one line with %q", err, want)
	}
	must(t, inNetns(env.ns, func() error { return setXDP(idx, -1, -1, xdpFlagsSKBMode) }))

	var l link.Link
	must(t, inNetns(env.ns, func() error {
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: idx, Flags: link.XDPGenericMode})
		return err
	}))
	info, err := l.Info()
	must(t, err)
	_, err = Start(opts)
	want = fmt.Sprintf("a bpf_link (link id %d, program id %d, name %q)", info.ID, id, "someone_else")
	if !errors.Is(err, ErrXDPBusy) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "--admit-hook tc") {
		t.Fatalf("start beside an XDP link: %v\nwant %q", err, want)
	}
	l.Close()

	// a dispatcher with no component, attached as libxdp attaches one
	disp, err := loadDispatcher(dispatcherConfig(nil))
	must(t, err)
	defer disp.Close()
	must(t, inNetns(env.ns, func() error { return setXDP(idx, disp.FD(), -1, xdpFlagsSKBMode|xdpFlagsUpdateIfNoExist) }))
	if h := holderOf(t, env, idx); h.kind != holderDispatcher || h.progID != programID(disp) {
		t.Fatalf("a dispatcher seen as %s", h.describe())
	}
	if probeFreplace() == nil {
		return // joining is tested by TestLibxdpOtherFirst
	}
	_, err = Start(opts)
	want = fmt.Sprintf("xdp on %q is held by a libxdp dispatcher (program id %d): joining a dispatcher needs freplace, and this kernel refuses freplace programs (BPF_PROG_TYPE_EXT)", env.ifaces[0], programID(disp))
	if !errors.Is(err, ErrNoFreplace) || !strings.Contains(err.Error(), want) || !strings.HasSuffix(err.Error(), "admit at TC instead with --admit-hook tc") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("start beside a dispatcher without freplace: %v\nwant one line with %q", err, want)
	}
	// nothing of ftpgate is left on the interface
	if h := holderOf(t, env, idx); h.progID != programID(disp) {
		t.Fatalf("the dispatcher was replaced by %s", h.describe())
	}
}

// TestXDPFilterHolderNamed: Debian's xdp-filter holds the hook. Where the
// kernel refuses freplace (this project's 6.18 host) libxdp falls back to a
// netlink attach, and ftpgate's refusal names it in one line with the TC
// hook; where freplace loads (the VMs) xdp-filter makes a dispatcher and
// ftpgate joins it.
func TestXDPFilterHolderNamed(t *testing.T) {
	env := libxdpEnv(t)
	filter, err := exec.LookPath("xdp-filter")
	if err != nil {
		filter = "/usr/sbin/xdp-filter"
		if _, err := os.Stat(filter); err != nil {
			bpftest.SkipOrFail(t, "xdp-filter not installed (Debian's xdp-tools: make deps installs it, make vmtest gives it to the VMs)")
		}
	}
	run := func(args ...string) {
		t.Helper()
		var out []byte
		err := inNetns(env.ns, func() error {
			var err error
			out, err = exec.Command(filter, args...).CombinedOutput()
			return err
		})
		if err != nil {
			t.Fatalf("xdp-filter %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	idx := ifindex(t, env, env.ifaces[0])
	run("load", "--mode", "skb", env.ifaces[0])
	t.Cleanup(func() { run("unload", "--all", env.ifaces[0]) })
	h := holderOf(t, env, idx)
	dp, err := Start(libxdpOptions(env, AttachAuto))
	t.Logf("holder %s; start: %v", h.describe(), err)
	switch {
	case h.kind == holderNetlink:
		want := fmt.Sprintf("a netlink attach (program id %d, name %q), which does not speak libxdp; admit at TC instead with --admit-hook tc", h.progID, h.name)
		if !errors.Is(err, ErrXDPBusy) || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") || !strings.HasPrefix(h.name, "xdpfilt") {
			t.Fatalf("start beside xdp-filter: %v\nwant one line with %q (an xdpfilt program)", err, want)
		}
	case h.kind == holderDispatcher && probeFreplace() != nil:
		if !errors.Is(err, ErrNoFreplace) || !strings.Contains(err.Error(), "--admit-hook tc") || strings.Contains(err.Error(), "\n") {
			t.Fatalf("start beside xdp-filter's dispatcher: %v", err)
		}
	case h.kind == holderDispatcher:
		if err != nil {
			t.Fatalf("joining xdp-filter's dispatcher: %v", err)
		}
		t.Cleanup(func() {
			dp.Close()
			Detach(env.pinDir, env.states, "", nil)
		})
		if got := holderOf(t, env, idx); got.kind != holderDispatcher || got.conf.NumProgsEnabled != 2 {
			t.Fatalf("after the join the hook is held by %s, want a dispatcher of 2", got.describe())
		}
		// xdp-filter's default policy passes; ftpgate's drops
		if got := verdict(t, env, idx, udp53); got != 2 {
			t.Errorf("UDP beside xdp-filter: %d, want pass", got)
		}
		if got := verdict(t, env, idx, synTo(80)); got != 1 {
			t.Errorf("unsolicited SYN beside xdp-filter: %d, want drop", got)
		}
	default:
		t.Fatalf("xdp-filter's hook seen as %s", h.describe())
	}
}

// xdpLoaderPath is Debian's xdp-loader: on PATH on a host with xdp-tools,
// at its Debian path in a VM given it with --host-files.
func xdpLoaderPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("xdp-loader"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/xdp-loader"); err == nil {
		return "/usr/sbin/xdp-loader"
	}
	t.Skip("xdp-loader is not here (make vmtest gives it to the VMs with --host-files)")
	return ""
}

// xdpLoader runs xdp-loader inside the test's network namespace.
func xdpLoader(t *testing.T, env *testEnv, args ...string) string {
	t.Helper()
	var out []byte
	err := inNetns(env.ns, func() error {
		var err error
		out, err = exec.Command(xdpLoaderPath(t), args...).CombinedOutput()
		return err
	})
	if err != nil {
		t.Fatalf("xdp-loader %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// componentID is the id of the dispatcher component named name, from the
// dispatcher's pins; 0 when there is none.
func componentID(t *testing.T, env *testEnv, idx int, name string) ebpf.ProgramID {
	t.Helper()
	h := holderOf(t, env, idx)
	if h.kind != holderDispatcher {
		t.Fatalf("ifindex %d held by %s, want a dispatcher", idx, h.describe())
	}
	for i := 0; i < int(h.conf.NumProgsEnabled); i++ {
		p, err := ebpf.LoadPinnedProgram(filepath.Join(dispatchDir(idx, h.progID), slotName(i)+"-prog"), nil)
		must(t, err)
		info, err := p.Info()
		p.Close()
		must(t, err)
		if info.Name == name {
			id, _ := info.ID()
			return id
		}
	}
	return 0
}

// statusLine is the line of `xdp-loader status` that names prog.
func statusLine(status, prog string) string {
	for _, l := range strings.Split(status, "\n") {
		if strings.Contains(l, prog) {
			return l
		}
	}
	return ""
}

// TestXDPLoaderInterop: Debian's xdp-loader and ftpgate share an interface
// both ways. xdp-loader makes a dispatcher, ftpgate joins it and
// `xdp-loader status` lists ftpgate at its priority; xdp-loader removes its
// program from ftpgate's dispatcher and adds it again; each side's removal
// leaves the other enforcing its policy.
func TestXDPLoaderInterop(t *testing.T) {
	env := libxdpEnv(t)
	xdpLoaderPath(t)
	needFreplace(t)
	idx := ifindex(t, env, env.ifaces[0])
	obj := filepath.Join(t.TempDir(), "drop_udp9.o")
	must(t, os.WriteFile(obj, testcomp.Object(), 0o644))
	load := func() {
		xdpLoader(t, env, "load", "--mode", "skb", "--prio", "10", env.ifaces[0], obj)
	}
	load()
	checkPins(t, env, idx, []uint32{10})

	dp, err := Start(libxdpOptions(env, AttachAuto))
	must(t, err)
	t.Cleanup(func() { Detach(env.pinDir, env.states, "", nil) })
	checkPins(t, env, idx, []uint32{10, DefaultXDPPriority})
	bothPolicies(t, env, idx, dp)
	status := xdpLoader(t, env, "status", env.ifaces[0])
	t.Logf("xdp-loader status:\n%s", status)
	if l := statusLine(status, "ftpgate_xdp"); !slices.Contains(strings.Fields(l), fmt.Sprint(DefaultXDPPriority)) {
		t.Fatalf("xdp-loader status does not list ftpgate_xdp at priority %d:\n%s", DefaultXDPPriority, status)
	}
	if l := statusLine(status, "drop_udp9"); !slices.Contains(strings.Fields(l), "10") {
		t.Fatalf("xdp-loader status does not list drop_udp9 at priority 10:\n%s", status)
	}

	// xdp-loader takes its program out of the dispatcher ftpgate built
	id := componentID(t, env, idx, "drop_udp9")
	xdpLoader(t, env, "unload", "--id", fmt.Sprint(id), env.ifaces[0])
	checkPins(t, env, idx, []uint32{DefaultXDPPriority})
	if got := verdict(t, env, idx, synTo(80)); got != 1 {
		t.Errorf("unsolicited SYN after xdp-loader unloaded its program: %d, want drop", got)
	}
	// and adds it again beside ftpgate
	load()
	checkPins(t, env, idx, []uint32{10, DefaultXDPPriority})
	bothPolicies(t, env, idx, dp)

	// ftpgate leaves; xdp-loader's program keeps dropping
	must(t, dp.Close())
	must(t, Detach(env.pinDir, env.states, "", nil))
	checkPins(t, env, idx, []uint32{10})
	if got := verdict(t, env, idx, udp9); got != 1 {
		t.Errorf("UDP to port 9 after ftpgate left: %d, want drop", got)
	}
	if got := verdict(t, env, idx, synTo(80)); got != 2 {
		t.Errorf("SYN to 80 after ftpgate left: %d, want pass", got)
	}
	xdpLoader(t, env, "unload", "--all", env.ifaces[0])
	if h := holderOf(t, env, idx); h.kind != holderNone {
		t.Fatalf("after xdp-loader unload --all the hook is held by %s", h.describe())
	}
}

// TestLeaveTouchesNothingElse: leaving, when ftpgate is not in a dispatcher
// on the interface (the hook is free, held by another program, or by a
// dispatcher without ftpgate), changes nothing and is no error: detach
// must work after someone else took the hook.
func TestLeaveTouchesNothingElse(t *testing.T) {
	env := libxdpEnv(t)
	idx := ifindex(t, env, env.ifaces[0])
	leave := func() {
		t.Helper()
		must(t, inNetns(env.ns, func() error { return joinDispatcher(idx, nil, 0, 12345, XDPGeneric) }))
	}
	leave()
	if h := holderOf(t, env, idx); h.kind != holderNone {
		t.Fatalf("leaving a free hook: held by %s", h.describe())
	}

	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "someone_else", Type: ebpf.XDP, License: "MIT",
		Instructions: asm.Instructions{asm.LoadImm(asm.R0, 2, asm.DWord), asm.Return()},
	})
	must(t, err)
	defer prog.Close()
	must(t, inNetns(env.ns, func() error { return setXDP(idx, prog.FD(), -1, xdpFlagsSKBMode) }))
	leave()
	if h := holderOf(t, env, idx); h.progID != programID(prog) {
		t.Fatalf("leaving beside another program: held by %s", h.describe())
	}
	must(t, inNetns(env.ns, func() error { return setXDP(idx, -1, -1, xdpFlagsSKBMode) }))

	disp, err := loadDispatcher(dispatcherConfig(nil))
	must(t, err)
	defer disp.Close()
	must(t, inNetns(env.ns, func() error { return setXDP(idx, disp.FD(), -1, xdpFlagsSKBMode|xdpFlagsUpdateIfNoExist) }))
	leave()
	if h := holderOf(t, env, idx); h.progID != programID(disp) {
		t.Fatalf("leaving a dispatcher without ftpgate rebuilt it: held by %s", h.describe())
	}
	// the expected-fd swap refuses a stale expectation: the dispatcher
	// stays when the program named as the one to replace is not attached
	err = inNetns(env.ns, func() error { return setXDP(idx, -1, prog.FD(), xdpFlagsSKBMode|xdpFlagsReplace) })
	if !errors.Is(replaceError(err), ErrDispatcherChanged) {
		t.Fatalf("detach expecting another program: %v, want a refusal read as ErrDispatcherChanged", err)
	}
	if h := holderOf(t, env, idx); h.progID != programID(disp) {
		t.Fatalf("a stale expected fd detached the dispatcher: held by %s", h.describe())
	}
	must(t, inNetns(env.ns, func() error { return setXDP(idx, -1, disp.FD(), xdpFlagsSKBMode|xdpFlagsReplace) }))
	if h := holderOf(t, env, idx); h.kind != holderNone {
		t.Fatalf("detach expecting the dispatcher: held by %s", h.describe())
	}
}

// TestLibxdpRefusedWithoutFreplace: --xdp-attach libxdp on a kernel that
// refuses freplace (this project's 6.18 host) says so in one line, points
// to the TC hook, and leaves nothing behind.
func TestLibxdpRefusedWithoutFreplace(t *testing.T) {
	env := libxdpEnv(t)
	if probeFreplace() == nil {
		t.Skip("this kernel takes freplace: TestLibxdpFtpgateFirst covers --xdp-attach libxdp")
	}
	_, err := Start(libxdpOptions(env, AttachLibxdp))
	want := "--xdp-attach libxdp: joining a dispatcher needs freplace, and this kernel refuses freplace programs (BPF_PROG_TYPE_EXT): operation not permitted; admit at TC instead with --admit-hook tc"
	if !errors.Is(err, ErrNoFreplace) || err.Error() != want {
		t.Fatalf("start: %v\nwant %q", err, want)
	}
	if h := holderOf(t, env, ifindex(t, env, env.ifaces[0])); h.kind != holderNone {
		t.Fatalf("after the refusal the hook is held by %s", h.describe())
	}
	if _, err := os.Stat(env.pinDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after the refusal %s exists (%v)", env.pinDir, err)
	}
}
