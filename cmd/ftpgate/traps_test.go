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
