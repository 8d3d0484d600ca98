package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/internal/nettest"
)

// TestRunRefusesL3Interface: `run` on a tun device fails with one line that
// names the interface and says what to guard instead.
func TestRunRefusesL3Interface(t *testing.T) {
	if os.Geteuid() != 0 {
		bpftest.SkipOrFail(t, "run attaches programs: needs root")
	}
	ns := nettest.VethNS(t, "fgt", "ft0", "ft1")
	if err := nettest.Do(ns, func() error {
		return netlink.LinkAdd(&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: "fttun0"}, Mode: netlink.TUNTAP_MODE_TUN})
	}); err != nil {
		t.Fatal(err)
	}
	pinDir := filepath.Join(nettest.BPFFS(t), "ftpgate")
	r := ftpgate("run", "--netns", ns, "--iface", "fttun0", "--pin-dir", pinDir, "--state-dir", t.TempDir(),
		"--ctrl-conns", "1024", "--expectations", "1024", "--flows", "1024", "--log-level", "warn")
	oneLine(t, r)
	for _, want := range []string{`"fttun0"`, "no Ethernet header", "guard the Ethernet interface"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("error %q does not say %q", r.stderr, want)
		}
	}
}

// TestStatusSaysDaemonGone: once the `run` that attached is gone, status
// says so (the dataplane stays attached), exits 4, and --json tells it.
func TestStatusSaysDaemonGone(t *testing.T) {
	f := newFixture(t)
	if r := f.cmd([]string{"status"}); r.code != 0 || !strings.Contains(r.stdout, "run:       pid") {
		t.Fatalf("status while running: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	f.dp.Close()
	r := f.cmd([]string{"status"})
	if r.code != 4 || !strings.Contains(r.stdout, "run:       not running") || !strings.Contains(r.stdout, "stays attached") {
		t.Fatalf("status after run stopped: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var st struct {
		Attached bool `json:"attached"`
		Daemon   struct {
			Running bool `json:"running"`
		} `json:"daemon"`
	}
	if f.jsonOf(t, &st, "status"); !st.Attached || st.Daemon.Running {
		t.Fatalf("status --json after run stopped: %+v", st)
	}
}

// TestStatusShowsDeletedInterface: status asks the kernel, so a guarded
// interface deleted behind ftpgate's back shows as gone and status exits 3.
func TestStatusShowsDeletedInterface(t *testing.T) {
	f := newFixture(t)
	if err := nettest.Do(f.ns, func() error {
		lk, err := netlink.LinkByName("fc0")
		if err != nil {
			return err
		}
		return netlink.LinkDel(lk)
	}); err != nil {
		t.Fatal(err)
	}
	r := f.cmd([]string{"status"})
	if r.code != 3 || !strings.Contains(r.stdout, "NO (interface gone)") || !strings.Contains(r.stderr, `interface "fc0" is gone`) {
		t.Fatalf("status after fc0 was deleted: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
