package vmtest

import (
	"bytes"
	"context"
	"errors"
	"io"
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
// the VM matrix measured for this kernel (bpftest.NATMechanism). Where the
// kernel takes the NAT object, a real data SYN from the client to the
// gateway's public address, admitted through an expectation carrying an
// inside end, leaves a conntrack entry whose reply comes from the inside
// end. Where it takes only the own object (7.3.4), and with --nat-mechanism
// own wherever it takes either, the connection reaches a listener at the
// inside end through ftpgate's own translation and carries data both ways.
// Where it takes neither (5.10), run refuses in one line naming what the
// kernel lacks and the kernel helper to use instead.
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
		Tables: loader.TableSizes{CtrlConns: 1024, Expectations: 1024, DataFlows: 1024, NATOwn: 1024},
	}
	opts.Config.NAT = maps.NATCT
	t.Cleanup(func() {
		if err := loader.Detach(pinDir, states, "", nil); err != nil {
			t.Errorf("detach: %v", err)
		}
	})
	dp, err := loader.Start(opts)
	release, refusal := bpftest.NATRefusal()
	_, ownRefusal := bpftest.NATOwnRefusal()
	mech := bpftest.NATMechanism()
	if mech == "" {
		if err == nil {
			dp.Close()
			t.Fatalf("kernel %s took --nat (object %+v); measured: refuses (%s; own object: %s)", release, dp.Object, refusal, ownRefusal)
		}
		t.Logf("kernel %s: %v", release, err)
		if !errors.Is(err, loader.ErrNATUnavailable) || !strings.Contains(err.Error(), refusal) || !strings.Contains(err.Error(), ownRefusal) ||
			!strings.Contains(err.Error(), "nf_nat_ftp") || strings.Contains(err.Error(), "\n") {
			t.Fatalf("kernel %s: run --nat says %q; want one line with %q, %q and the kernel helper", release, err, refusal, ownRefusal)
		}
		return
	}
	if err != nil {
		t.Fatalf("kernel %s: run --nat: %v", release, err)
	}
	t.Logf("kernel %s: object %+v", release, dp.Object)
	if mech == "own" {
		if dp.Object.Variant != bpf.NATOwn.String() || !strings.Contains(dp.Object.NATRefused, refusal) {
			dp.Close()
			t.Fatalf("kernel %s: object %+v, want nat-own after the refusal %q", release, dp.Object, refusal)
		}
		ownEcho(t, tp, dp, release)
		dp.Close()
		return
	}
	if dp.Object.Variant != bpf.NAT.String() {
		dp.Close()
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
	dp.Close()

	// the NAT object serves the own mechanism too, forced
	opts.NATMechanism = loader.NATOwnTranslation
	opts.Config.NAT = maps.NATOwn
	dp, err = loader.Start(opts)
	if err != nil {
		t.Fatalf("kernel %s: run --nat --nat-mechanism own: %v", release, err)
	}
	defer dp.Close()
	ownEcho(t, tp, dp, release)
}

// ownEcho connects from the client to the gateway's public address, through
// an expectation whose inside end is an echo listener on the server, IPv4
// and IPv6: only ftpgate's own translation takes the connection there (no
// nftables in the gateway). Data must come back whole.
func ownEcho(t *testing.T, tp *nettest.Topology, dp *loader.Dataplane, release string) {
	t.Helper()
	if cfg, err := dp.Maps.GetConfig(); err != nil || cfg.NAT != maps.NATOwn {
		t.Fatalf("kernel %s: config.nat = %v (%v), want own", release, cfg.NAT, err)
	}
	for i, fam := range []int{4, 6} {
		peer, public := tp.Client().Addr(fam), tp.Client().GwAddr(fam)
		inside := netip.AddrPortFrom(tp.Server().Addr(fam), 5001)
		publicPort := uint16(30100 + i)
		ln, err := nettest.Listen(tp.Server().NS, "tcp", inside.String())
		must(t, err)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			io.Copy(c, c)
		}()
		must(t, dp.Maps.AddExpectation(maps.Expectation{Kind: maps.KindPasv, Src: peer, Dst: public, DPort: publicPort, Inside: inside}, time.Hour))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		conn, err := nettest.Dial(ctx, tp.Client().NS, "tcp", netip.AddrPortFrom(public, publicPort).String(), 5*time.Second)
		cancel()
		if err != nil {
			ln.Close()
			t.Fatalf("kernel %s, IPv%d: connect to the public end through the own translation: %v", release, fam, err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		sent := bytes.Repeat([]byte("ftpgate own translation\n"), 4096)
		go conn.Write(sent)
		got := make([]byte, len(sent))
		_, err = io.ReadFull(conn, got)
		conn.Close()
		ln.Close()
		if err != nil || !bytes.Equal(got, sent) {
			t.Fatalf("kernel %s, IPv%d: echo of %d bytes: %v", release, fam, len(sent), err)
		}
	}
	c, err := dp.Maps.Counters()
	must(t, err)
	if c["nat_own_made"] != 2 || c["nat_own_in"] == 0 || c["nat_own_out"] == 0 || c["nat_own_table_full"]+c["nat_own_failed"] != 0 {
		t.Errorf("kernel %s: %s", release, summary(c))
	}
}
