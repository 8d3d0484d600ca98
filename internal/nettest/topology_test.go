package nettest_test

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/internal/nettest"
)

// TestTopologyExtraHostAndCleanup builds the topology with a third host, as
// the later labs extend it, and checks that everything it made (namespaces
// and a process left running in one) is gone when its test ends.
func TestTopologyExtraHostAndCleanup(t *testing.T) {
	if os.Geteuid() != 0 {
		bpftest.SkipOrFail(t, "network namespaces need root")
	}
	third := nettest.Link{Name: "oth", GwIf: "gw-o",
		GwAddrs:   []netip.Prefix{netip.MustParsePrefix("203.0.113.1/24")},
		HostAddrs: []netip.Prefix{netip.MustParsePrefix("203.0.113.2/24")}}
	var names []string
	var leftover *exec.Cmd
	t.Run("build", func(t *testing.T) {
		tp := nettest.NewTopology(t, nettest.Options{Prefix: "fgt", Links: []nettest.Link{nettest.ClientLink, nettest.ServerLink, third}})
		names = tp.Namespaces()
		// NewTopology returned: the client reaches both other hosts
		if h := tp.Host("oth"); h == nil || h.GwIndex == 0 || h.Addr(6).IsValid() || h.Addr(4) != netip.MustParseAddr("203.0.113.2") {
			t.Fatalf("third host: %+v", h)
		}
		if tp.Client().GwIndex == tp.Server().GwIndex {
			t.Fatalf("gateway ifindexes %d %d", tp.Client().GwIndex, tp.Server().GwIndex)
		}
		// a process that outlives its user keeps a namespace alive unless
		// the cleanup ends it; sleep is only ever there as a stand-in
		if _, err := exec.LookPath("sleep"); err == nil {
			err := nettest.Do(tp.Server().NS, func() error {
				leftover = exec.Command("sleep", "60")
				return leftover.Start()
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	})
	for _, n := range names {
		if _, err := os.Stat(filepath.Join("/run/netns", n)); err == nil {
			t.Errorf("namespace %s left behind", n)
		}
	}
	if leftover != nil {
		if err := leftover.Wait(); err == nil {
			t.Error("the process in the server namespace was not ended")
		}
	}
}
