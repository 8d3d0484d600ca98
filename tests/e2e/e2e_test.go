// Package e2e runs the real ftpgate binary on the gateway of a namespace lab
// with real vsftpd, proftpd, curl and lftp, and no other firewall.
package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/tests/lab"
)

// TestTransfersThroughGateway: passive and active, IPv4 and IPv6, curl and
// lftp, through a gateway guarded on both sides.
func TestTransfersThroughGateway(t *testing.T) {
	l, g := guardedLab(t, lab.Options{FileSize: 256 << 10})
	for _, tool := range lab.Tools {
		for _, fam := range []int{4, 6} {
			for _, mode := range lab.Modes {
				if !lab.Supported(tool, mode, fam) {
					continue
				}
				t.Run(fmt.Sprintf("%s/v%d/%s", tool, fam, mode), func(t *testing.T) {
					wantTransfer(t, l, mode, fam, lab.FTPPort, tool)
				})
			}
		}
	}
	c := g.counters()
	if c["syn_pass_expected"] == 0 || c["expect_consumed"] != c["syn_pass_expected"] {
		t.Fatalf("counters after transfers: %v", c)
	}
	// veth segments carry offloaded (partial) checksums: all are trusted
	if c["ctrl_bad_checksum"] != 0 || c["ctrl_segments"] == 0 {
		t.Fatalf("checksums of real traffic refused: %v", c)
	}
}

func TestUploadThroughGateway(t *testing.T) {
	l, _ := guardedLab(t, lab.Options{FileSize: 64 << 10})
	for _, mode := range []lab.Mode{lab.PASV, lab.PORT} {
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		r := l.Upload(ctx, mode, 4, lab.FTPPort, lab.Curl, 128<<10)
		cancel()
		if err := r.Check(); err != nil {
			t.Fatalf("upload %s: %v\n%s", mode, err, lastLines(r.Output, 15))
		}
	}
}

func TestProftpdThroughGateway(t *testing.T) {
	lab.RequireProftpd(t)
	const port = 2100
	l, _ := guardedLab(t, lab.Options{FileSize: 64 << 10, ProFTPDPort: port},
		"--ftp-port", "21", "--ftp-port", strconv.Itoa(port), "--allow-port", strconv.Itoa(port))
	for _, mode := range []lab.Mode{lab.PASV, lab.EPSV, lab.PORT} {
		wantTransfer(t, l, mode, 4, port, lab.Curl)
	}
	wantTransfer(t, l, lab.EPRT, 6, port, lab.Curl)
}

// TestUnsolicitedConnectionsAreDropped: a connection nobody negotiated
// times out (dropped), in both directions, and is counted.
func TestUnsolicitedConnectionsAreDropped(t *testing.T) {
	l, g := guardedLab(t, lab.Options{NoFTP: true})
	ctx := context.Background()
	for _, c := range []struct {
		from string
		to   netip.Addr
	}{
		{l.ClientNS, l.ServerAddr(4)}, {l.ServerNS, l.ClientAddr(4)},
		{l.ClientNS, l.ServerAddr(6)}, {l.ServerNS, l.ClientAddr(6)},
	} {
		out, err := l.ConnectTimesOut(ctx, c.from, c.to, 40000, 2*time.Second)
		if err != nil || out != lab.TimedOut {
			t.Fatalf("unsolicited connect to %s from %s: %v %v, want timed out", c.to, c.from, out, err)
		}
	}
	if n := g.counters()["syn_drop_unexpected"]; n < 4 {
		t.Fatalf("syn_drop_unexpected = %d, want >= 4", n)
	}
}

// TestAlternateCtrlPortAtRunTime: 2121 is allowed from the start, so the
// control connection works, but data connections need it to be a control
// port: they fail before `ftpgate ports add 2121` and work right after.
func TestAlternateCtrlPortAtRunTime(t *testing.T) {
	l, g := guardedLab(t, lab.Options{FileSize: 64 << 10})
	wantNoTransfer(t, l, lab.PASV, 4, lab.AltFTPPort, lab.Curl)
	if out, err := g.cli("ports", "add", "2121"); err != nil {
		t.Fatalf("ports add: %v\n%s", err, out)
	}
	wantTransfer(t, l, lab.PASV, 4, lab.AltFTPPort, lab.Curl)
	wantTransfer(t, l, lab.EPRT, 6, lab.AltFTPPort, lab.Curl)
	out, err := g.cli("ports", "--json")
	if err != nil || !strings.Contains(strings.ReplaceAll(out, " ", ""), "2121") {
		t.Fatalf("ports --json: %v\n%s", err, out)
	}
}

// ftpSession is a hand-driven control connection, for steps a client tool
// does not let a test pause between.
type ftpSession struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialFTP(t *testing.T, l *lab.Lab, addr string) *ftpSession {
	t.Helper()
	c, err := l.Dial(context.Background(), l.ClientNS, "tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("control connection to %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	s := &ftpSession{t: t, c: c, r: bufio.NewReader(c)}
	s.expect("", 220)
	return s
}

// expect sends cmd (unless empty) and reads one (possibly multi-line) reply.
func (s *ftpSession) expect(cmd string, code int) string {
	s.t.Helper()
	s.c.SetDeadline(time.Now().Add(10 * time.Second))
	if cmd != "" {
		if _, err := fmt.Fprintf(s.c, "%s\r\n", cmd); err != nil {
			s.t.Fatalf("send %s: %v", cmd, err)
		}
	}
	var first string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			s.t.Fatalf("reply to %q: %v", cmd, err)
		}
		if first == "" {
			first = line
		}
		if len(line) >= 4 && line[3] == ' ' && line[:3] == first[:3] {
			break
		}
	}
	if got, _ := strconv.Atoi(first[:3]); got != code {
		s.t.Fatalf("reply to %q: %q, want %d", cmd, strings.TrimSpace(first), code)
	}
	return strings.TrimSpace(first)
}

// login logs in anonymously; vsftpd may accept the user without a password.
func (s *ftpSession) login() {
	s.t.Helper()
	s.c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(s.c, "USER anonymous\r\n")
	line, err := s.r.ReadString('\n')
	if err != nil {
		s.t.Fatalf("USER: %v", err)
	}
	switch {
	case strings.HasPrefix(line, "230 "):
	case strings.HasPrefix(line, "331 "):
		s.expect("PASS e2e@", 230)
	default:
		s.t.Fatalf("USER: %q", line)
	}
}

var pasvRe = regexp.MustCompile(`(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)`)

func pasvPort(t *testing.T, reply string) int {
	m := pasvRe.FindStringSubmatch(reply)
	if m == nil {
		t.Fatalf("no address in %q", reply)
	}
	hi, _ := strconv.Atoi(m[5])
	lo, _ := strconv.Atoi(m[6])
	return hi<<8 | lo
}

// TestRestartBetween227AndDataConnection restarts the daemon with another
// binary after the 227 and before the data connection: the expectation made
// before the restart admits it, and the counters carry on.
func TestRestartBetween227AndDataConnection(t *testing.T) {
	l, g := guardedLab(t, lab.Options{FileSize: 64 << 10})

	s := dialFTP(t, l, netip.AddrPortFrom(l.ServerAddr(4), lab.FTPPort).String())
	s.login()
	s.expect("TYPE I", 200)
	port := pasvPort(t, s.expect("PASV", 227))

	// operators see named fields while the expectation waits
	dump, err := exec.Command("bpftool", "-j", "map", "dump", "pinned", g.pinDir+"/expectations").CombinedOutput()
	if err != nil || !strings.Contains(string(dump), `"dport":`+strconv.Itoa(port)) {
		t.Fatalf("bpftool dump during the transfer: %v\n%s", err, dump)
	}
	before := g.counters()

	g.stop()
	_, rebuilt := ftpgateBinaries(t)
	g.bin = rebuilt
	g.start()
	if out, err := exec.Command(g.bin, "version").CombinedOutput(); err != nil || !strings.Contains(string(out), "e2e-b") {
		t.Fatalf("not running the rebuilt binary: %v %s", err, out)
	}

	data, err := l.Dial(context.Background(), l.ClientNS, "tcp", netip.AddrPortFrom(l.ServerAddr(4), uint16(port)).String(), 5*time.Second)
	if err != nil {
		t.Fatalf("data connection after restart: %v\n%s", err, g.log)
	}
	defer data.Close()
	if _, err := fmt.Fprintf(s.c, "RETR %s\r\n", l.FileName); err != nil {
		t.Fatal(err)
	}
	data.SetDeadline(time.Now().Add(20 * time.Second))
	h := sha256.New()
	if _, err := io.Copy(h, data); err != nil {
		t.Fatalf("read data: %v", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != l.FileSHA256 {
		t.Fatalf("data hash %s, want %s", got, l.FileSHA256)
	}
	after := g.counters()
	if after["expect_created"] < before["expect_created"] || after["syn_pass_expected"] != before["syn_pass_expected"]+1 {
		t.Fatalf("counters did not carry on: before %v after %v", before, after)
	}
}

// TestDryRunPassesAndCounts: in dry-run an unsolicited connection reaches the
// server (which refuses it: nothing listens) and is counted.
func TestDryRunPassesAndCounts(t *testing.T) {
	l, g := guardedLab(t, lab.Options{NoFTP: true}, "--dry-run")
	out, err := l.ConnectTimesOut(context.Background(), l.ClientNS, l.ServerAddr(4), 40000, 2*time.Second)
	if err != nil || out != lab.Refused {
		t.Fatalf("connect in dry-run: %v %v, want refused by the server", out, err)
	}
	c := g.counters()
	if c["syn_dryrun_would_drop"] < 1 || c["syn_drop_unexpected"] != 0 {
		t.Fatalf("dry-run counters: %v", c)
	}
}

// nftRuleset is a stateful forward chain with no FTP helper: only the mark
// ftpgate puts on admitted data SYNs lets data connections through.
const nftRuleset = `
table inet fg {
	chain forward {
		type filter hook forward priority 0; policy drop;
		ct state established,related accept
		tcp dport { 21, 2121 } ct state new accept
		meta mark & 0xff00 == 0x100 accept
	}
}
`

func TestFwmarkMakesStatefulFirewallWork(t *testing.T) {
	lab.Require(t)
	t.Parallel()
	l := lab.New(t, lab.Options{FileSize: 64 << 10})
	cmd := exec.Command("ip", "netns", "exec", l.GatewayNS, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(nftRuleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("load nftables ruleset: %v\n%s", err, out)
	}

	g := newGate(t, l)
	g.start()
	t.Run("without fwmark", func(t *testing.T) {
		wantNoTransfer(t, l, lab.PASV, 4, lab.FTPPort, lab.Curl)
		wantNoTransfer(t, l, lab.PORT, 4, lab.FTPPort, lab.Curl)
	})
	g.stop()
	g.start("--fwmark", "0x100/0xff00")
	t.Run("with fwmark", func(t *testing.T) {
		for _, c := range []struct {
			mode lab.Mode
			fam  int
		}{{lab.PASV, 4}, {lab.PORT, 4}, {lab.EPSV, 6}, {lab.EPRT, 6}} {
			wantTransfer(t, l, c.mode, c.fam, lab.FTPPort, lab.Curl)
		}
	})
	if n := g.counters()["syn_fwmark"]; n < 4 {
		t.Fatalf("syn_fwmark = %d, want >= 4", n)
	}
}

// TestStatusAndListings checks the operator's read-only commands against a
// live dataplane with a pending expectation.
func TestStatusAndListings(t *testing.T) {
	l, g := guardedLab(t, lab.Options{FileSize: 64 << 10})

	out, err := g.cli("status")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	for _, want := range []string{lab.GwClientIf, lab.GwServerIf, "generic", "ftpgate_xdp", "expectations"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}

	s := dialFTP(t, l, netip.AddrPortFrom(l.ServerAddr(6), lab.FTPPort).String())
	s.login()
	reply := s.expect("EPSV", 229)
	out, err = g.cli("expectations", "--json")
	if err != nil {
		t.Fatalf("expectations: %v\n%s", err, out)
	}
	var exps []struct {
		Kind      string `json:"kind"`
		Src       string `json:"src"`
		Dst       string `json:"dst"`
		DPort     int    `json:"dport"`
		ExpiresMs int64  `json:"expires_in_ms"`
		Control   struct {
			Client     string `json:"client"`
			ServerPort int    `json:"server_port"`
		} `json:"control"`
	}
	if err := json.Unmarshal([]byte(out), &exps); err != nil || len(exps) != 1 {
		t.Fatalf("expectations --json: %v\n%s", err, out)
	}
	e := exps[0]
	if e.Kind != "epsv" || e.Src != l.ClientAddr(6).String() || e.Dst != l.ServerAddr(6).String() ||
		!strings.Contains(reply, "|"+strconv.Itoa(e.DPort)+"|") || e.ExpiresMs <= 0 || e.Control.ServerPort != 21 {
		t.Fatalf("expectation %+v does not match reply %q", e, reply)
	}
	if out, err := g.cli("ctrl"); err != nil || !strings.Contains(out, "["+l.ServerAddr(6).String()+"]:21") {
		t.Fatalf("ctrl: %v\n%s", err, out)
	}

	// after detach, status says so and exits non-zero
	g.stop()
	if out, err := g.cli("detach"); err != nil {
		t.Fatalf("detach: %v\n%s", err, out)
	}
	if out, err := g.cli("status"); err == nil {
		t.Fatalf("status after detach exited 0:\n%s", out)
	}
}

// TestIPNetnsExecIsRefused: under `ip netns exec` /sys is remounted and a
// bpffs there is private to the command, so pins would vanish with it; run
// refuses and says what to do instead.
func TestIPNetnsExecIsRefused(t *testing.T) {
	lab.Require(t)
	t.Parallel()
	l := lab.New(t, lab.Options{NoFTP: true})
	bin, _ := ftpgateBinaries(t)
	// bounded: a run that is not refused would otherwise run forever
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", l.GatewayNS, bin, "run", "--iface", lab.GwClientIf,
		"--pin-dir", "/sys/fs/bpf/ftpgate-e2e-private-"+l.ID).CombinedOutput()
	if err == nil {
		exec.Command(bin, "detach", "--pin-dir", "/sys/fs/bpf/ftpgate-e2e-private-"+l.ID, "--netns", l.GatewayNS).Run()
		t.Fatalf("run under ip netns exec succeeded:\n%s", out)
	}
	if !strings.Contains(string(out), "private bpffs") || !strings.Contains(string(out), "--netns") {
		t.Fatalf("refusal does not explain itself:\n%s", out)
	}
}
