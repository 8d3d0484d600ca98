package loader

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/ftpgate/ftpgate/maps"
)

// addTun creates a persistent tun device (no Ethernet header) in ns. The
// VM matrix boots without modules, so Debian's modular tun is absent there:
// skipped, while TestEthernetLinkTypes still checks the rule.
func addTun(t *testing.T, ns, name string) {
	t.Helper()
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("no tun device to test with: %v", err)
	}
	must(t, inNetns(ns, func() error {
		return netlink.LinkAdd(&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: name}, Mode: netlink.TUNTAP_MODE_TUN})
	}))
}

// TestL3InterfaceIsRefused: the programs parse Ethernet frames, so on a tun
// (wireguard, ppp, ipip, gre alike) they would filter nothing; start refuses
// and names the interface, its type and what to guard instead.
func TestL3InterfaceIsRefused(t *testing.T) {
	env := newEnv(t)
	addTun(t, env.ns, "fgtun0")
	opts := env.options(XDPGeneric, TCNetlink)
	opts.Ifaces = []string{"fg0", "fgtun0"}
	_, err := Start(opts)
	if !errors.Is(err, ErrNotEthernet) {
		t.Fatalf("start on a tun device: %v, want ErrNotEthernet", err)
	}
	for _, want := range []string{`"fgtun0"`, "tuntap", "guard the Ethernet interface"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	env.nothingLeft(t)
}

func TestEthernetLinkTypes(t *testing.T) {
	for encap, want := range map[string]bool{
		"ether": true, "loopback": true, "none": false, "ipip": false, "ipgre": false, "ppp": false, "tunnel6": false, "infiniband": false,
	} {
		if got := carriesEthernet(encap); got != want {
			t.Errorf("carriesEthernet(%q) = %v, want %v", encap, got, want)
		}
	}
}

// TestStateNamesDoNotCollide: pin dirs …/a_b and …/a/b each keep their own
// state, and detaching one leaves the other's state and filters alone.
func TestStateNamesDoNotCollide(t *testing.T) {
	env := newEnv(t)
	base := filepath.Dir(env.pinDir)
	one, other := env.options(XDPGeneric, TCNetlink), env.options(XDPGeneric, TCNetlink)
	one.PinDir, one.Ifaces = filepath.Join(base, "a_b"), []string{"fg0"}
	other.PinDir, other.Ifaces = filepath.Join(base, "a", "b"), []string{"fg1"}
	for _, o := range []Options{one, other} {
		dp, err := Start(o)
		must(t, err)
		must(t, dp.Close())
		t.Cleanup(func() { Detach(o.PinDir, o.StateDir, "", nil) })
	}
	must(t, Detach(one.PinDir, one.StateDir, "", nil))
	st, err := env.states.Read(other.PinDir)
	if err != nil || st == nil || st.PinDir != other.PinDir {
		t.Fatalf("state of %s after detaching %s: %+v, %v", other.PinDir, one.PinDir, st, err)
	}
	status, err := ReadStatus(other.PinDir, env.states, "")
	must(t, err)
	if err := status.Check(); err != nil {
		t.Fatalf("%s after detaching %s: %v", other.PinDir, one.PinDir, err)
	}
}

// TestOldStateNameIsRead: a state file written under the old name (the pin
// dir with '/' replaced by '_') is still found, so an upgrade keeps track of
// what the previous build attached; a file of another pin dir that happens
// to share the old name is not taken for it.
func TestOldStateNameIsRead(t *testing.T) {
	states := StateDir(t.TempDir())
	s := &State{PinDir: "/sys/fs/bpf/a/b", PID: 7}
	b, err := json.Marshal(s)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(string(states), "sys_fs_bpf_a_b.json"), b, 0o644))
	got, err := states.Read("/sys/fs/bpf/a/b")
	if err != nil || got == nil || got.PID != 7 {
		t.Fatalf("old-style state not read: %+v, %v", got, err)
	}
	if got, err := states.Read("/sys/fs/bpf/a_b"); err != nil || got != nil {
		t.Fatalf("state of /sys/fs/bpf/a/b taken for /sys/fs/bpf/a_b: %+v, %v", got, err)
	}
	// the next write moves it to the new name
	must(t, states.write(got))
	if _, err := os.Stat(filepath.Join(string(states), "sys_fs_bpf_a_b.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("old-style state file left after a write: %v", err)
	}
	if got, err := states.Read("/sys/fs/bpf/a/b"); err != nil || got == nil || got.PID != 7 {
		t.Fatalf("state after rewrite: %+v, %v", got, err)
	}
}

// deadPID returns the pid of a process that has exited: this test binary,
// run to do nothing (the VM matrix has no other binary to run).
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	must(t, cmd.Run())
	return cmd.Process.Pid
}

// leftNew makes a <pin>-new-<pid> directory with a pinned map in it, as a
// first start killed half-way leaves.
func leftNew(t *testing.T, pinDir string, pid int) string {
	t.Helper()
	dir := fmt.Sprintf("%s-new-%d", pinDir, pid)
	must(t, os.MkdirAll(dir, 0o700))
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	must(t, err)
	defer m.Close()
	must(t, m.Pin(filepath.Join(dir, maps.NameConfig)))
	return dir
}

// TestStaleNewDirsAreRemoved: start and detach remove the temporary pin
// directories of dead processes and leave a live process's alone.
func TestStaleNewDirsAreRemoved(t *testing.T) {
	env := newEnv(t)
	must(t, os.MkdirAll(filepath.Dir(env.pinDir), 0o700))
	dead := leftNew(t, env.pinDir, deadPID(t))
	live := leftNew(t, env.pinDir, 1) // init is alive
	t.Cleanup(func() { removeTree(live) })
	// after each step the dead process's dir is gone, the live one's kept
	check := func(step string) {
		t.Helper()
		if _, err := os.Stat(dead); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s left %s (%v)", step, dead, err)
		}
		if _, err := os.Stat(live); err != nil {
			t.Fatalf("%s removed a live process's %s: %v", step, live, err)
		}
	}
	must(t, env.start(t, env.options(XDPGeneric, TCNetlink)).Close())
	check("start")
	dead = leftNew(t, env.pinDir, deadPID(t))
	must(t, Detach(env.pinDir, env.states, "", nil))
	check("detach")
	// detach with nothing pinned still tidies up
	dead = leftNew(t, env.pinDir, deadPID(t))
	must(t, Detach(env.pinDir, env.states, "", nil))
	check("detach of an absent pin dir")
}

// TestStatusTellsDeadDaemon: status says whether the `run` that attached is
// still there, and if not, why: stopped, exited, or its pid taken by
// another process.
func TestStatusTellsDeadDaemon(t *testing.T) {
	env := newEnv(t)
	dp := env.start(t, env.options(XDPGeneric, TCNetlink))
	daemon := func() DaemonStatus {
		t.Helper()
		st, err := ReadStatus(env.pinDir, env.states, "")
		must(t, err)
		return st.Daemon
	}
	if d := daemon(); !d.Running || d.PID != os.Getpid() {
		t.Fatalf("while running: %+v, want running as pid %d", d, os.Getpid())
	}
	must(t, dp.Close())
	if d := daemon(); d.Running || !strings.Contains(d.Reason, "stopped") {
		t.Fatalf("after Close: %+v, want not running, stopped", d)
	}
	rewrite := func(pid int) {
		st, err := env.states.Read(env.pinDir)
		must(t, err)
		st.PID = pid
		must(t, env.states.write(st))
	}
	rewrite(deadPID(t))
	if d := daemon(); d.Running || !strings.Contains(d.Reason, "exited") {
		t.Fatalf("pid gone: %+v, want not running, exited", d)
	}
	rewrite(1) // alive, but not the process that started at the recorded time
	if d := daemon(); d.Running || !strings.Contains(d.Reason, "another process") {
		t.Fatalf("pid reused: %+v, want not running, another process", d)
	}
}
