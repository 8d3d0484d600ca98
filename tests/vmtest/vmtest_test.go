package vmtest

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/internal/nettest"
	"github.com/ftpgate/ftpgate/loader"
	"github.com/ftpgate/ftpgate/maps"
	"github.com/ftpgate/ftpgate/tests/ftpmini"
)

const ftpPort = 21

// gatewayLab is the topology with ftpmini on the server and ftpgate on both
// gateway interfaces.
type gatewayLab struct {
	*nettest.Topology
	dp   *loader.Dataplane
	file []byte
}

func newGatewayLab(t *testing.T, tc loader.TCMode, hook loader.AdmitHook) *gatewayLab {
	t.Helper()
	if os.Geteuid() != 0 {
		bpftest.SkipOrFail(t, "the end-to-end test needs root")
	}
	g := &gatewayLab{Topology: nettest.NewTopology(t, nettest.Options{Prefix: "fgv"}), file: bytes.Repeat([]byte("ftpgate in a VM\n"), 16384)}

	server := g.Server().NS
	for _, fam := range []int{4, 6} {
		ln, err := nettest.Listen(server, "tcp", netip.AddrPortFrom(g.Server().Addr(fam), ftpPort).String())
		must(t, err)
		srv := ftpmini.NewServer(map[string][]byte{"file": g.file})
		srv.WrapDataSocket = func(create func() error) error { return nettest.Do(server, create) }
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}

	pinDir := filepath.Join(nettest.BPFFS(t), "ftpgate")
	states := loader.StateDir(t.TempDir())
	dp, err := loader.Start(loader.Options{
		PinDir: pinDir, StateDir: states, NetNS: g.Gateway, Ifaces: []string{nettest.GwClientIf, nettest.GwServerIf},
		XDPMode: loader.XDPAuto, TCMode: tc, AdmitHook: hook,
		CtrlPorts: []uint16{ftpPort}, AllowPorts: []uint16{ftpPort}, Config: maps.DefaultConfig(),
		Tables: loader.TableSizes{CtrlConns: 1024, Expectations: 1024, DataFlows: 1024},
	})
	if err != nil {
		t.Fatal(err)
	}
	g.dp = dp
	t.Cleanup(func() {
		dp.Close()
		if err := loader.Detach(pinDir, states, "", nil); err != nil {
			t.Errorf("detach: %v", err)
		}
	})
	return g
}

func (g *gatewayLab) get(family int, mode ftpmini.Mode) ([]byte, error) {
	srv := g.Server().Addr(family)
	var got []byte
	err := nettest.Do(g.Client().NS, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var err error
		got, err = ftpmini.Get(ctx, netip.AddrPortFrom(srv, ftpPort).String(), "file", mode, ftpmini.Config{Timeout: 5 * time.Second})
		return err
	})
	return got, err
}

// dropped tries a TCP connection from namespace ns and reports whether it
// timed out (the SYN was dropped), as opposed to connecting or being refused.
func dropped(t *testing.T, ns string, to netip.AddrPort) bool {
	t.Helper()
	out, err := nettest.ConnectTimesOut(context.Background(), ns, to.Addr(), int(to.Port()), 2*time.Second)
	if err != nil {
		t.Logf("connect %s from %s: %v", to, ns, err)
	}
	return err == nil && out == nettest.TimedOut
}

func tcModes() []loader.TCMode {
	if !loader.HaveTCX() {
		return []loader.TCMode{loader.TCNetlink}
	}
	return []loader.TCMode{loader.TCX, loader.TCNetlink}
}

// TestFTPThroughGuardedGateway: FTP in both families and all four modes
// through the gateway, unsolicited SYNs dropped, with each TC mechanism and
// the admission at XDP or at TC ingress (--admit-hook tc).
func TestFTPThroughGuardedGateway(t *testing.T) {
	for _, tc := range tcModes() {
		for _, hook := range []loader.AdmitHook{loader.AdmitXDP, loader.AdmitTC} {
			t.Run(string(tc)+"/admit-"+string(hook), func(t *testing.T) {
				g := newGatewayLab(t, tc, hook)
				type run struct {
					family int
					mode   ftpmini.Mode
				}
				runs := []run{{4, ftpmini.PASV}, {4, ftpmini.EPSV}, {4, ftpmini.PORT}, {4, ftpmini.EPRT}, {6, ftpmini.EPSV}, {6, ftpmini.EPRT}}
				for _, r := range runs {
					got, err := g.get(r.family, r.mode)
					if err != nil || !bytes.Equal(got, g.file) {
						t.Fatalf("IPv%d %s: %d bytes, %v", r.family, r.mode, len(got), err)
					}
				}

				// unsolicited, both directions: dropped, so the connect times out
				if !dropped(t, g.Client().NS, netip.AddrPortFrom(g.Server().Addr(4), 40000)) {
					t.Error("client -> server:40000 was not dropped")
				}
				if !dropped(t, g.Server().NS, netip.AddrPortFrom(g.Client().Addr(6), 40000)) {
					t.Error("server -> client:40000 was not dropped")
				}

				c, err := g.dp.Maps.Counters()
				must(t, err)
				n := uint64(len(runs))
				// the gateway guards both sides: every control segment is parsed
				// once (at ingress) and skipped at egress, so each command and
				// reply is counted exactly once
				if c["expect_created"] != n || c["syn_pass_expected"] != n || c["expect_consumed"] != n {
					t.Errorf("expectations: %s", summary(c))
				}
				if c["cmd_pasv"] != 1 || c["cmd_epsv"] != 2 || c["cmd_port"] != 1 || c["cmd_eprt"] != 2 {
					t.Errorf("each command must be parsed once: %s", summary(c))
				}
				if c["ctrl_skip_forwarded"] == 0 || c["ctrl_skip_forwarded"] != c["ctrl_segments"] {
					t.Errorf("forwarded segments: %s", summary(c))
				}
				if c["syn_drop_unexpected"] < 2 {
					t.Errorf("drops: %s", summary(c))
				}
			})
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func summary(c map[string]uint64) string {
	var parts []string
	for k, v := range c {
		if v != 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", k, v))
		}
	}
	return strings.Join(parts, " ")
}
