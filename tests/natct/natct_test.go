// Package natct tests the data-connection half of NAT (#12) with real
// traffic: on a gateway whose forward chain drops everything but ftpgate's
// marked SYNs and established connections, a connection from an outside
// host to the gateway's public address reaches an inside listener only
// through ftpgate: the conntrack entry it made from BPF for the SYN
// (NAT_CT), or its own translation (NAT_OWN). It needs nft and conntrack
// (conntrack-tools), so it runs on the host only, not in the VM matrix.
package natct

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/bpf"
	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/internal/nettest"
	"github.com/ftpgate/ftpgate/loader"
	"github.com/ftpgate/ftpgate/maps"
)

// The gateway's ruleset: empty NAT chains (the kernel runs NAT only in a
// namespace that has NAT chains; an operator's masquerade and DNAT rules
// live there) and a forward chain that admits new connections only by
// ftpgate's fwmark. No rule names the inside end.
const gatewayRuleset = `
table inet natct {
	chain pre { type nat hook prerouting priority dstnat; }
	chain post { type nat hook postrouting priority srcnat; }
	chain forward_by_mark {
		type filter hook forward priority filter; policy drop;
		ct state invalid counter drop
		ct state established,related accept
		meta mark & 0xff00 == 0x100 accept
	}
}
`

const (
	publicPort = 30000
	insidePort = 5000
	payload    = 1 << 20
)

func run(t *testing.T, ns string, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s in %s: %v\n%s", strings.Join(args, " "), ns, err, out)
	}
	return string(out)
}

// invalid sums conntrack's per-CPU INVALID counters of namespace ns.
func invalid(t *testing.T, ns string) int {
	t.Helper()
	sum := 0
	for _, m := range regexp.MustCompile(`\binvalid=(\d+)`).FindAllStringSubmatch(run(t, ns, "", "conntrack", "-S"), -1) {
		n, _ := strconv.Atoi(m[1])
		sum += n
	}
	return sum
}

// TestDataConnectionThroughBPFConntrackEntry, IPv4 and IPv6.
func TestDataConnectionThroughBPFConntrackEntry(t *testing.T) {
	if release, refusal := bpftest.NATRefusal(); refusal != "" {
		t.Skipf("kernel %s refuses the NAT object, as measured: %s", release, refusal)
	}
	dataThroughGateway(t, maps.NATCT, loader.NATConntrack, "fgct")
}

// TestDataConnectionOwnTranslation: the same connections through
// ftpgate's own translation (--nat-mechanism own), IPv4 and IPv6.
func TestDataConnectionOwnTranslation(t *testing.T) {
	if bpftest.NATMechanism() == "" {
		_, refusal := bpftest.NATOwnRefusal()
		t.Skipf("this kernel refuses both NAT objects, as measured: %s", refusal)
	}
	dataThroughGateway(t, maps.NATOwn, loader.NATOwnTranslation, "fgon")
}

// dataThroughGateway runs ftpgate with --nat and mechanism mech on the
// gateway of a topology of its own (prefix) and moves data both ways
// through the public end, IPv4 then IPv6; conntrack's INVALID counter must
// not move.
func dataThroughGateway(t *testing.T, mode maps.NATMode, mech loader.NATMechanism, prefix string) {
	if os.Geteuid() != 0 {
		bpftest.SkipOrFail(t, "needs root")
	}
	for _, tool := range []string{"nft", "conntrack"} {
		if _, err := exec.LookPath(tool); err != nil {
			bpftest.SkipOrFail(t, "%s is not installed", tool)
		}
	}
	tp := nettest.NewTopology(t, nettest.Options{Prefix: prefix})
	run(t, tp.Gateway, gatewayRuleset, "nft", "-f", "-")

	pinDir := filepath.Join(nettest.BPFFS(t), "ftpgate")
	states := loader.StateDir(t.TempDir())
	cfg := maps.DefaultConfig()
	cfg.NAT, cfg.FwmarkValue, cfg.FwmarkMask = mode, 0x100, 0xff00
	dp, err := loader.Start(loader.Options{
		PinDir: pinDir, StateDir: states, NetNS: tp.Gateway, Ifaces: []string{nettest.GwClientIf},
		CtrlPorts: []uint16{21}, AllowPorts: []uint16{21}, Config: cfg, NATMechanism: mech,
		Tables: loader.TableSizes{CtrlConns: 1024, Expectations: 1024, DataFlows: 1024, NATOwn: 1024},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dp.Close()
		if err := loader.Detach(pinDir, states, "", nil); err != nil {
			t.Errorf("detach: %v", err)
		}
	})
	before := invalid(t, tp.Gateway)

	for i, fam := range []int{4, 6} {
		t.Run(fmt.Sprintf("ipv%d", fam), func(t *testing.T) {
			dataThroughEntry(t, tp, dp, fam, mode)
			c, err := dp.Maps.Counters()
			if err != nil {
				t.Fatal(err)
			}
			n := uint64(i + 1)
			made, failed := c["nat_ct_inserted"], c["nat_ct_alloc_failed"]+c["nat_ct_nat_failed"]+c["nat_ct_insert_failed"]
			other := c["nat_own_made"]
			if mode == maps.NATOwn {
				made, failed = c["nat_own_made"], c["nat_own_table_full"]+c["nat_own_failed"]
				other = c["nat_ct_inserted"]
				if c["nat_own_in"] == 0 || c["nat_own_out"] == 0 {
					t.Errorf("counters: translated in %d, out %d: want both", c["nat_own_in"], c["nat_own_out"])
				}
			}
			if made != n || c["syn_fwmark"] != n || failed != 0 || other != 0 {
				t.Errorf("counters: made %d, marked %d, failed %d, made by the other mechanism %d; want %d, %d, 0, 0",
					made, c["syn_fwmark"], failed, other, n, n)
			}
		})
	}
	if after := invalid(t, tp.Gateway); after != before {
		t.Errorf("conntrack INVALID went from %d to %d", before, after)
	}
}

// dataThroughEntry seeds the expectation the control-connection rewrite
// would write (client → gateway's public address, inside end the server),
// then connects and moves data both ways.
func dataThroughEntry(t *testing.T, tp *nettest.Topology, dp *loader.Dataplane, fam int, mode maps.NATMode) {
	client, public := tp.Client().Addr(fam), tp.Client().GwAddr(fam)
	inside := netip.AddrPortFrom(tp.Server().Addr(fam), insidePort)

	ln, err := nettest.Listen(tp.Server().NS, "tcp", inside.String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan error, 1)
	var peerSeen net.Addr
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- err
			return
		}
		defer c.Close()
		peerSeen = c.RemoteAddr()
		// echo: what the client sends comes back, then the client closes
		_, err = io.Copy(c, c)
		accepted <- err
	}()

	err = dp.Maps.AddExpectation(maps.Expectation{Kind: maps.KindPasv, Src: client, Dst: public, DPort: publicPort, Inside: inside}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := nettest.Dial(ctx, tp.Client().NS, "tcp", netip.AddrPortFrom(public, publicPort).String(), 5*time.Second)
	if err != nil {
		t.Fatalf("connect to the public end %v:%d: %v", public, publicPort, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	sent := make([]byte, payload)
	rand.Read(sent)
	go conn.Write(sent)
	got := make([]byte, payload)
	if _, err := io.ReadFull(conn, got); err != nil || !bytes.Equal(got, sent) {
		t.Fatalf("echo of %d bytes through the public end: %v (equal %v)", payload, err, bytes.Equal(got, sent))
	}

	// while it is open: conntrack made it ASSURED, replying from the inside
	// end; with NAT_CT it is ftpgate's entry (the public end, the ct mark),
	// with NAT_OWN conntrack sees a plain connection to the inside end
	fname := map[int]string{4: "ipv4", 6: "ipv6"}[fam]
	wantReply := fmt.Sprintf("src=%s dst=%s sport=%d", inside.Addr(), client, insidePort)
	want := []string{"ESTABLISHED", "[ASSURED]", wantReply, "mark=256"}
	entries := run(t, tp.Gateway, "", "conntrack", "-L", "-p", "tcp", "--dport", strconv.Itoa(publicPort), "-f", fname)
	if mode == maps.NATOwn {
		want = []string{"ESTABLISHED", "[ASSURED]", wantReply, fmt.Sprintf("dst=%s sport=", inside.Addr())}
		entries = run(t, tp.Gateway, "", "conntrack", "-L", "-p", "tcp", "--dport", strconv.Itoa(insidePort), "-f", fname)
		if n := ownEntries(t, dp, netip.MustParseAddrPort(conn.LocalAddr().String())); n != 2 {
			t.Fatalf("nat_own holds %d entries of the connection, want 2 (peer -> public end, inside end -> peer)", n)
		}
	}
	for _, w := range want {
		if !strings.Contains(entries, w) {
			t.Fatalf("gateway conntrack entry:\n%s\nwant %q", entries, want)
		}
	}

	conn.(*net.TCPConn).CloseWrite()
	if _, err := io.ReadAll(conn); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := <-accepted; err != nil {
		t.Fatalf("inside listener: %v", err)
	}
	if ap := netip.MustParseAddrPort(peerSeen.String()); ap.Addr() != client {
		t.Errorf("the inside end saw the connection from %v, want the client %v (source kept)", ap, client)
	}
}

// ownEntries counts the nat_own entries of the connection from peer: the
// one keyed by its packets to the public end and the one keyed by the
// inside end's packets to it.
func ownEntries(t *testing.T, dp *loader.Dataplane, peer netip.AddrPort) int {
	t.Helper()
	var k bpf.FtpgateFlowKey
	var v bpf.FtpgateNatOwnVal
	n := 0
	it := dp.Maps.NATOwn.Iterate()
	for it.Next(&k, &v) {
		if netip.AddrPortFrom(maps.Addr(k.Family, k.Src), k.Sport) == peer && k.Dport == publicPort && v.Side == uint8(bpf.FtpgateNatOwnSideNAT_OWN_IN) ||
			netip.AddrPortFrom(maps.Addr(k.Family, k.Dst), k.Dport) == peer && k.Sport == insidePort && v.Side == uint8(bpf.FtpgateNatOwnSideNAT_OWN_OUT) {
			n++
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}
