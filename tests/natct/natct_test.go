// Package natct tests the data-connection half of NAT (#12, NAT_CT) with
// real traffic: on a gateway whose forward chain drops everything but
// ftpgate's marked SYNs and established connections, a connection from an
// outside host to the gateway's public address reaches an inside listener
// only through the conntrack entry ftpgate made from BPF for its SYN. It
// needs nft and conntrack (conntrack-tools), so it runs on the host only,
// not in the VM matrix.
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
	if os.Geteuid() != 0 {
		bpftest.SkipOrFail(t, "needs root")
	}
	for _, tool := range []string{"nft", "conntrack"} {
		if _, err := exec.LookPath(tool); err != nil {
			bpftest.SkipOrFail(t, "%s is not installed", tool)
		}
	}
	if release, refusal := bpftest.NATRefusal(); refusal != "" {
		t.Skipf("kernel %s refuses the NAT object, as measured: %s", release, refusal)
	}
	tp := nettest.NewTopology(t, nettest.Options{Prefix: "fgct"})
	run(t, tp.Gateway, gatewayRuleset, "nft", "-f", "-")

	pinDir := filepath.Join(nettest.BPFFS(t), "ftpgate")
	states := loader.StateDir(t.TempDir())
	cfg := maps.DefaultConfig()
	cfg.NAT, cfg.FwmarkValue, cfg.FwmarkMask = maps.NATCT, 0x100, 0xff00
	dp, err := loader.Start(loader.Options{
		PinDir: pinDir, StateDir: states, NetNS: tp.Gateway, Ifaces: []string{nettest.GwClientIf},
		CtrlPorts: []uint16{21}, AllowPorts: []uint16{21}, Config: cfg,
		Tables: loader.TableSizes{CtrlConns: 1024, Expectations: 1024, DataFlows: 1024},
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
			dataThroughEntry(t, tp, dp, fam)
			c, err := dp.Maps.Counters()
			if err != nil {
				t.Fatal(err)
			}
			if c["nat_ct_inserted"] != uint64(i+1) || c["syn_fwmark"] != uint64(i+1) ||
				c["nat_ct_alloc_failed"]+c["nat_ct_nat_failed"]+c["nat_ct_insert_failed"] != 0 {
				t.Errorf("counters: inserted %d, marked %d, failed %d/%d/%d", c["nat_ct_inserted"], c["syn_fwmark"],
					c["nat_ct_alloc_failed"], c["nat_ct_nat_failed"], c["nat_ct_insert_failed"])
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
func dataThroughEntry(t *testing.T, tp *nettest.Topology, dp *loader.Dataplane, fam int) {
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

	// while it is open: conntrack made it ASSURED, replying from the inside end
	entries := run(t, tp.Gateway, "", "conntrack", "-L", "-p", "tcp", "--dport", strconv.Itoa(publicPort), "-f", map[int]string{4: "ipv4", 6: "ipv6"}[fam])
	wantReply := fmt.Sprintf("src=%s dst=%s sport=%d", inside.Addr(), client, insidePort)
	if !strings.Contains(entries, "ESTABLISHED") || !strings.Contains(entries, "[ASSURED]") || !strings.Contains(entries, wantReply) ||
		!strings.Contains(entries, "mark=256") {
		t.Fatalf("gateway conntrack entry:\n%s\nwant ESTABLISHED, [ASSURED], %q, mark=256", entries, wantReply)
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
