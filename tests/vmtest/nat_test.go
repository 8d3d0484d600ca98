package vmtest

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/bpf"
	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/internal/nettest"
	"github.com/ftpgate/ftpgate/loader"
	"github.com/ftpgate/ftpgate/maps"
)

// TestNATMechanismPerKernel: `run --nat` on the gateway gets the mechanism
// the VM matrix measured for this kernel (bpftest.NATRefusal). Where the
// kernel takes the NAT object, a real data SYN from the client to the
// gateway's public address, admitted through an expectation carrying an
// inside end, leaves a conntrack entry whose reply comes from the inside
// end. Elsewhere run refuses in one line naming what the kernel lacks and
// the kernel helper to use instead.
func TestNATMechanismPerKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		bpftest.SkipOrFail(t, "the end-to-end test needs root")
	}
	tp := nettest.NewTopology(t, nettest.Options{Prefix: "fgn"})
	pinDir := filepath.Join(nettest.BPFFS(t), "ftpgate")
	states := loader.StateDir(t.TempDir())
	opts := loader.Options{
		PinDir: pinDir, StateDir: states, NetNS: tp.Gateway, Ifaces: []string{nettest.GwClientIf},
		XDPMode: loader.XDPAuto, TCMode: loader.TCAuto,
		CtrlPorts: []uint16{ftpPort}, AllowPorts: []uint16{ftpPort}, Config: maps.DefaultConfig(),
		Tables: loader.TableSizes{CtrlConns: 1024, Expectations: 1024, DataFlows: 1024},
	}
	opts.Config.NAT = maps.NATCT
	t.Cleanup(func() {
		if err := loader.Detach(pinDir, states, "", nil); err != nil {
			t.Errorf("detach: %v", err)
		}
	})
	dp, err := loader.Start(opts)
	release, refusal := bpftest.NATRefusal()
	if refusal != "" {
		if err == nil {
			dp.Close()
			t.Fatalf("kernel %s took --nat (object %+v); measured: refuses (%s)", release, dp.Object, refusal)
		}
		checkRefusal(t, release, err, refusal)
		return
	}
	if err != nil {
		t.Fatalf("kernel %s: run --nat: %v", release, err)
	}
	defer dp.Close()
	if dp.Object.Variant != bpf.NAT.String() {
		t.Fatalf("kernel %s: object %+v", release, dp.Object)
	}

	for _, fam := range []int{4, 6} {
		peer, public := tp.Client().Addr(fam), tp.Client().GwAddr(fam)
		inside := netip.AddrPortFrom(tp.Server().Addr(fam), 5000)
		const publicPort = 30000
		must(t, dp.Maps.AddExpectation(maps.Expectation{Kind: maps.KindPasv, Src: peer, Dst: public, DPort: publicPort, Inside: inside}, time.Hour))
		// no NAT hook runs in the gateway (no nftables here): the SYN ends
		// at the gateway, but its conntrack entry was made on the way in
		nettest.ConnectTimesOut(context.Background(), tp.Client().NS, public, publicPort, time.Second)

		lines, err := nettest.Conntrack(tp.Gateway, fam)
		must(t, err)
		want := "src=" + inside.Addr().String() + " dst=" + peer.String() + " sport=5000"
		found := false
		for _, l := range lines {
			found = found || (strings.Contains(l, "dport="+"30000") && strings.Contains(l, want))
		}
		if !found {
			t.Errorf("IPv%d: gateway conntrack entries %q; want one for the data SYN replying from %v", fam, lines, inside)
		}
	}
	c, err := dp.Maps.Counters()
	must(t, err)
	if c["nat_ct_inserted"] < 2 || c["nat_ct_alloc_failed"]+c["nat_ct_nat_failed"]+c["nat_ct_insert_failed"] != 0 {
		t.Errorf("kernel %s: %s", release, summary(c))
	}
}
