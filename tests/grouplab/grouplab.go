// Package grouplab is the gateway-group lab (#15): a client behind a
// router that spreads flows over three gateways by an L4 ECMP hash, a
// router behind them with the same hash and seed (so both directions of a
// flow cross one gateway), a vsftpd behind that, and a sync network between
// the gateways. Each gateway runs its own `ftpgate run` (own pin dir, own
// state dir), started in the gateway's namespace with nsenter --net, so
// its sync listener lives there.
//
// Addresses are documentation ranges only: the client LAN 192.0.2.0/28,
// router-to-gateway links 192.0.2.16/28 (client side) and 203.0.113.16/28
// (server side) in /30s, the sync network 203.0.113.64/27, the server LAN
// 198.51.100.0/28. Every namespace, pin and process is removed in cleanup.
package grouplab

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/group/grouptest"
	"github.com/ftpgate/ftpgate/internal/nettest"
	"github.com/ftpgate/ftpgate/tests/lab"
)

// Gateways is the size of the group.
const Gateways = 3

// HashSeed is fib_multipath_hash_seed on both routers: the same seed and
// nexthop order on both makes the (symmetric) L4 hash pick one gateway for
// both directions of a flow.
const HashSeed = 20261130

// SyncPort is where each gateway's sync listener listens.
const SyncPort = 7422

var (
	ClientAddr = netip.MustParseAddr("192.0.2.2")
	ServerAddr = netip.MustParseAddr("198.51.100.2")
)

// syncAddr is gateway i's (from 0) address on the sync network.
func syncAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{203, 0, 113, byte(65 + i)}) }

// linkAddr is the address on gateway i's /30 to a router: the router's
// (.1 of the /30) or the gateway's (.2); base is 192.0.2.16 or 203.0.113.16.
func linkAddr(base [4]byte, i int, gw bool) netip.Addr {
	base[3] += byte(4*i + 1)
	if gw {
		base[3]++
	}
	return netip.AddrFrom4(base)
}

var (
	clientSide = [4]byte{192, 0, 2, 16}
	serverSide = [4]byte{203, 0, 113, 16}
)

// Lab is the group lab's namespaces and processes.
type Lab struct {
	t                          testing.TB
	Client, RtC, RtS, Srv, Syn string
	GW                         [Gateways]*Gateway
	Bin                        string
	Dir                        string
	pki                        *grouptest.PKI
	bpffs                      string
	hold                       bool // --sync-hold with sync (Options.Hold)
}

// Gateway is one gateway namespace and its daemon.
type Gateway struct {
	I      int
	NS     string
	PinDir string
	States string
	cmd    *exec.Cmd
	done   chan struct{}
	log    bytes.Buffer
	mu     sync.Mutex
}

// New builds the topology and starts vsftpd; the gateways' daemons are
// started by Start.
func New(t testing.TB) *Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the group lab needs root")
	}
	for _, tool := range []string{"vsftpd", "curl", "nsenter", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the group lab needs %s", tool)
		}
	}
	p := fmt.Sprintf("fgg-%04d", rand.IntN(10000))
	l := &Lab{t: t, Client: p + "-cli", RtC: p + "-rtc", RtS: p + "-rts", Srv: p + "-srv", Syn: p + "-syn",
		Bin: lab.FtpgateBinary(t), Dir: t.TempDir(), bpffs: nettest.BPFFS(t), pki: grouptest.NewPKI(t, "grouplab")}
	all := []string{l.Client, l.RtC, l.RtS, l.Srv, l.Syn}
	for i := range Gateways {
		g := &Gateway{I: i, NS: fmt.Sprintf("%s-gw%d", p, i+1)}
		g.PinDir = filepath.Join(l.bpffs, g.NS)
		g.States = filepath.Join(l.Dir, g.NS)
		l.GW[i] = g
		all = append(all, g.NS)
	}
	for _, ns := range all {
		nettest.NS(t, ns)
		l.ip(ns, "link", "set", "lo", "up")
	}
	// client LAN
	l.veth(l.Client, "c0", l.RtC, "r0")
	l.addr(l.Client, "c0", "192.0.2.2/28")
	l.addr(l.RtC, "r0", "192.0.2.1/28")
	l.ip(l.Client, "route", "add", "default", "via", "192.0.2.1")
	// server LAN
	l.veth(l.Srv, "s0", l.RtS, "r0")
	l.addr(l.Srv, "s0", "198.51.100.2/28")
	l.addr(l.RtS, "r0", "198.51.100.1/28")
	l.ip(l.Srv, "route", "add", "default", "via", "198.51.100.1")
	// sync network: a bridge
	l.ip(l.Syn, "link", "add", "br0", "type", "bridge")
	l.ip(l.Syn, "link", "set", "br0", "up")
	for i, g := range l.GW {
		n := strconv.Itoa(i + 1)
		l.veth(l.RtC, "g"+n, g.NS, "gc")
		l.addr(l.RtC, "g"+n, linkAddr(clientSide, i, false).String()+"/30")
		l.addr(g.NS, "gc", linkAddr(clientSide, i, true).String()+"/30")
		l.veth(l.RtS, "g"+n, g.NS, "gs")
		l.addr(l.RtS, "g"+n, linkAddr(serverSide, i, false).String()+"/30")
		l.addr(g.NS, "gs", linkAddr(serverSide, i, true).String()+"/30")
		l.veth(l.Syn, "y"+n, g.NS, "gy")
		l.ip(l.Syn, "link", "set", "y"+n, "master", "br0")
		l.addr(g.NS, "gy", syncAddr(i).String()+"/27")
		l.ip(g.NS, "route", "add", "192.0.2.0/28", "via", linkAddr(clientSide, i, false).String())
		l.ip(g.NS, "route", "add", "198.51.100.0/28", "via", linkAddr(serverSide, i, false).String())
		l.sysctl(g.NS, "net.ipv4.ip_forward", "1")
	}
	for _, rt := range []string{l.RtC, l.RtS} {
		l.sysctl(rt, "net.ipv4.ip_forward", "1")
		l.sysctl(rt, "net.ipv4.fib_multipath_hash_policy", "1")
		l.sysctl(rt, "net.ipv4.fib_multipath_hash_seed", strconv.Itoa(HashSeed))
	}
	l.SetRoutes([]int{0, 1, 2})
	rehash(t, l.RtC, "r0")
	rehash(t, l.RtS, "r0")
	l.startVsftpd()
	return l
}

// SetRoutes makes the routers spread flows over the gateways named (from
// 0), in that order on both.
func (l *Lab) SetRoutes(gws []int) {
	for _, side := range []struct {
		ns, dst string
		base    [4]byte
	}{{l.RtC, "198.51.100.0/28", clientSide}, {l.RtS, "192.0.2.0/28", serverSide}} {
		args := []string{"route", "replace", side.dst}
		for _, i := range gws {
			args = append(args, "nexthop", "via", linkAddr(side.base, i, true).String(), "dev", "g"+strconv.Itoa(i+1))
		}
		l.ip(side.ns, args...)
	}
}

func (l *Lab) ip(ns string, args ...string) {
	l.t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("ip -n %s %s: %v: %s", ns, strings.Join(args, " "), err, out)
	}
}

// veth makes a veth pair between two namespaces, both ends up (it is born
// in nsA, never in the host's namespace).
func (l *Lab) veth(nsA, a, nsB, b string) {
	l.t.Helper()
	l.ip(nsA, "link", "add", a, "type", "veth", "peer", "name", b, "netns", nsB)
	l.ip(nsA, "link", "set", a, "up")
	l.ip(nsB, "link", "set", b, "up")
}

func (l *Lab) addr(ns, dev, cidr string) { l.t.Helper(); l.ip(ns, "addr", "add", cidr, "dev", dev) }

func (l *Lab) sysctl(ns, key, val string) {
	l.t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "sysctl", "-qw", key+"="+val).CombinedOutput()
	if err != nil {
		l.t.Fatalf("sysctl %s=%s in %s: %v: %s", key, val, ns, err, out)
	}
}

func (l *Lab) startVsftpd() {
	root := filepath.Join(l.Dir, "ftproot")
	if err := os.MkdirAll(root, 0o755); err != nil {
		l.t.Fatal(err)
	}
	for _, d := range []string{filepath.Dir(l.Dir), l.Dir} {
		os.Chmod(d, 0o711)
	}
	if err := os.WriteFile(filepath.Join(root, "f"), bytes.Repeat([]byte("x"), 4096), 0o644); err != nil {
		l.t.Fatal(err)
	}
	v := lab.Vsftpd{NS: l.Srv, Port: 21, ListenAddr: ServerAddr, Root: root, Dir: l.Dir, Name: "vsftpd",
		PasvMinPort: 30000, PasvMaxPort: 39999,
		Extra: []string{"max_clients=1000", "max_per_ip=1000"}}
	if err := lab.StartVsftpd(l.t, v, l.Client, netip.AddrPortFrom(ServerAddr, 21)); err != nil {
		l.t.Fatal(err)
	}
}

// Options are how the gateways run.
type Options struct {
	Sync bool
	// Hold keeps --sync-hold on with Sync (its default in a group,
	// docs/group.md "Hold"), else --sync-hold=false; the gateways started
	// later keep it
	Hold bool
	// Only starts these gateways (from 0); all when nil
	Only []int
}

// Start starts the daemon of every gateway (or those named).
func (l *Lab) Start(o Options) {
	l.t.Helper()
	l.hold = o.Sync && o.Hold
	which := o.Only
	if which == nil {
		which = []int{0, 1, 2}
	}
	for _, i := range which {
		l.StartGateway(i, o.Sync)
	}
}

// StartGateway starts gateway i's daemon and waits until it is attached.
func (l *Lab) StartGateway(i int, sync bool) { l.startGateway(i, sync, l.pki) }

// StartRogue starts gateway i's daemon in the group with a certificate
// another CA signed (it trusts the group's CA: only its own certificate is
// wrong).
func (l *Lab) StartRogue(i int) {
	rogue := grouptest.NewPKI(l.t, "rogue")
	rogue.CA = rogue.Trusting(l.t, l.pki)
	l.startGateway(i, true, rogue)
}

func (l *Lab) startGateway(i int, sync bool, pki *grouptest.PKI) {
	l.t.Helper()
	g := l.GW[i]
	ready := filepath.Join(l.Dir, g.NS+".ready")
	os.Remove(ready)
	args := []string{"--net=/run/netns/" + g.NS, l.Bin, "run", "--iface", "gc", "--iface", "gs", "--pin-dir", g.PinDir,
		"--state-dir", g.States, "--ready-file", ready, "--log-level", "info", "--xdp-mode", "generic"}
	if sync {
		node := fmt.Sprintf("gw%d", i+1)
		cert, key := pki.Issue(l.t, node, syncAddr(i))
		args = append(args, "--group", "lab", "--node-id", node,
			"--sync-listen", netip.AddrPortFrom(syncAddr(i), SyncPort).String(),
			"--sync-ca", pki.CA, "--sync-cert", cert, "--sync-key", key)
		if !l.hold {
			args = append(args, "--sync-hold=false") // on by default in a group
		}
		for j := range Gateways {
			if j != i {
				args = append(args, "--peer", netip.AddrPortFrom(syncAddr(j), SyncPort).String())
			}
		}
	}
	g.mu.Lock()
	g.log.Reset()
	g.cmd = exec.Command("nsenter", args...)
	g.cmd.Stdout, g.cmd.Stderr = &lockedWriter{g}, &lockedWriter{g}
	g.done = make(chan struct{})
	if err := g.cmd.Start(); err != nil {
		g.mu.Unlock()
		l.t.Fatalf("start ftpgate in %s: %v", g.NS, err)
	}
	done := g.done
	cmd := g.cmd
	g.mu.Unlock()
	go func() { _ = cmd.Wait(); close(done) }()
	// cleanups run last first: the daemon stops, then its pins go
	l.t.Cleanup(func() { l.CLI(i, "detach") })
	l.t.Cleanup(func() {
		lab.Terminate(cmd.Process, syscall.SIGTERM, done, 10*time.Second)
	})
	if err := lab.WaitReady(ready, done, 60*time.Second); err != nil {
		l.t.Fatalf("ftpgate in %s: %v\n%s", g.NS, err, g.Log())
	}
}

type lockedWriter struct{ g *Gateway }

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.g.mu.Lock()
	defer w.g.mu.Unlock()
	return w.g.log.Write(b)
}

// Log returns what gateway's daemon wrote.
func (g *Gateway) Log() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.log.String()
}

// StopGateway stops gateway i's daemon (SIGTERM to its PID): its dataplane
// stays attached.
func (l *Lab) StopGateway(i int) {
	g := l.GW[i]
	g.mu.Lock()
	cmd, done := g.cmd, g.done
	g.mu.Unlock()
	if cmd == nil {
		return // never started (a step run on its own)
	}
	lab.Terminate(cmd.Process, syscall.SIGTERM, done, 10*time.Second)
}

// CLI runs an ftpgate command against gateway i's pins, in its namespace.
func (l *Lab) CLI(i int, args ...string) (string, error) {
	g := l.GW[i]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append([]string{"--net=/run/netns/" + g.NS, l.Bin}, args...)
	full = append(full, "--pin-dir", g.PinDir)
	if args[0] == "status" {
		full = append(full, "--state-dir", g.States)
	}
	out, err := exec.CommandContext(ctx, "nsenter", full...).CombinedOutput()
	return string(out), err
}

// Counters sums one counter of every gateway.
func (l *Lab) Counter(name string) (per [Gateways]uint64, sum uint64) {
	for i := range Gateways {
		out, err := l.CLI(i, "stats", "--json")
		if err != nil {
			continue
		}
		c, err := lab.StatsCounters(out)
		if err != nil {
			continue
		}
		per[i] = c[name]
		sum += c[name]
	}
	return per, sum
}

// Transfer is one curl download's outcome.
type Transfer struct {
	Port   int  // the control connection's source port
	Active bool // PORT/EPRT, else EPSV/PASV
	OK     bool
	Start  time.Duration // curl's time_starttransfer
	Out    string
}

// StartP50 is the median time_starttransfer of the transfers that
// succeeded, and of those that did not stall.
func StartP50(trs []Transfer) (all, unstalled time.Duration) {
	return startP50(trs, false), startP50(trs, true)
}

func startP50(trs []Transfer, unstalled bool) time.Duration {
	var d []time.Duration
	for _, tr := range trs {
		if tr.OK && !(unstalled && tr.Stalled()) {
			d = append(d, tr.Start)
		}
	}
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[len(d)/2]
}

// Stalled says whether the transfer waited a SYN retransmission (1 s) or
// failed.
func (tr Transfer) Stalled() bool { return !tr.OK || tr.Start >= time.Second }

// portsPerTransfer: curl binds every connection of a transfer in its
// --local-port range: the control connection takes the first, the data
// connection (or active mode's listener) the next free one.
const portsPerTransfer = 4

// Download runs curl in the client namespace, its connections from the
// ports port to port+portsPerTransfer-1.
func (l *Lab) Download(ctx context.Context, port int, active bool, maxTime time.Duration) Transfer {
	args := []string{"--net=/run/netns/" + l.Client, "curl", "-sS", "-o", "/dev/null",
		"--local-port", fmt.Sprintf("%d-%d", port, port+portsPerTransfer-1),
		"--max-time", strconv.FormatFloat(maxTime.Seconds(), 'f', 1, 64), "-w", "%{time_starttransfer}\n"}
	if active {
		args = append(args, "--ftp-port", ClientAddr.String())
	}
	args = append(args, "ftp://"+ServerAddr.String()+"/f")
	out, err := exec.CommandContext(ctx, "nsenter", args...).CombinedOutput()
	tr := Transfer{Port: port, Active: active, OK: err == nil, Out: strings.TrimSpace(string(out))}
	lines := strings.Fields(tr.Out)
	if len(lines) > 0 {
		if s, err := strconv.ParseFloat(lines[len(lines)-1], 64); err == nil {
			tr.Start = time.Duration(s * float64(time.Second))
		}
	}
	return tr
}

// Batch runs passive then active transfers, parallel at most at once,
// each from its own range of source ports, from firstPort on.
func (l *Lab) Batch(ctx context.Context, passive, active, parallel, firstPort int, maxTime time.Duration) []Transfer {
	out := make([]Transfer, passive+active)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i := range out {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i] = l.Download(ctx, firstPort+portsPerTransfer*i, i >= passive, maxTime)
		}()
	}
	wg.Wait()
	return out
}

// Summary counts a batch.
func Summary(trs []Transfer) (ok, stalled, failed int, worst time.Duration) {
	for _, tr := range trs {
		if tr.OK {
			ok++
		} else {
			failed++
		}
		if tr.Stalled() {
			stalled++
		}
		worst = max(worst, tr.Start)
	}
	return
}

// NonZero returns gateway i's counters that are not zero, for the log.
func (l *Lab) NonZero(i int) string {
	out, err := l.CLI(i, "stats", "--json")
	if err != nil {
		return err.Error()
	}
	c, err := lab.StatsCounters(out)
	if err != nil {
		return err.Error()
	}
	var parts []string
	for k, v := range c {
		if v != 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", k, v))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}
