package ftpslab

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/tests/lab"
)

// ReportEnv names the file TestFTPS writes its markdown table to.
const ReportEnv = "FTPGATE_FTPS_REPORT"

// ModesEnv, if set, is a comma-separated subset of the modes to run.
const ModesEnv = "FTPGATE_FTPS_MODES"

func TestMain(m *testing.M) {
	code := m.Run()
	lab.RemoveBuilt()
	os.Exit(code)
}

// Mode is what filters the gateway.
type Mode string

const (
	// Plain: the gateway forwards everything (the lab works at all).
	Plain Mode = "plain"
	// Kernel: nf_conntrack_ftp through a `ct helper` rule on a
	// default-deny forward chain; data connections pass only as RELATED.
	Kernel Mode = "kernel"
	// KernelOpen: the same, and every server's passive range opened to
	// everyone: what operators do because the helper cannot read TLS.
	KernelOpen Mode = "kernel-open"
	// Ftpgate: ftpgate with each server's range declared (--tls-range)
	// and 990 as an implicit-TLS port, nothing else in the gateway.
	Ftpgate Mode = "ftpgate"
)

// Modes in report order.
var Modes = []Mode{Plain, Kernel, KernelOpen, Ftpgate}

// xfer is one transfer case.
type xfer struct {
	srv    Server
	tool   lab.Tool
	mode   lab.Mode
	family int
}

func (c xfer) name() string {
	return fmt.Sprintf("%s %s %s IPv%d %s", c.srv.Name, c.srv.TLS, c.tool, c.family, c.mode)
}

// active says whether the server opens the data connection (PORT, EPRT).
func (c xfer) active() bool { return c.mode == lab.PORT || c.mode == lab.EPRT }

func cases(proftpd bool) []xfer {
	cs := []xfer{
		{VsftpdExplicit, lab.Curl, lab.PASV, 4}, {VsftpdExplicit, lab.Curl, lab.EPSV, 4},
		{VsftpdExplicit, lab.Curl, lab.EPSV, 6}, {VsftpdExplicit, lab.Lftp, lab.PASV, 4},
		{VsftpdExplicit, lab.Lftp, lab.EPSV, 6}, {VsftpdExplicit, lab.Python, lab.PASV, 4},
		{VsftpdExplicit, lab.Python, lab.EPSV, 6},
		{VsftpdImplicit, lab.Curl, lab.EPSV, 4}, {VsftpdImplicit, lab.Curl, lab.EPSV, 6},
		{VsftpdImplicit, lab.Lftp, lab.PASV, 4},
		// Active FTPS. Not with curl: Debian 12's curl 7.88.1 fails it by
		// itself ("sa_addr inet_ntop() failed with errno 97" once the
		// server has connected), with no gateway in the path.
		{VsftpdExplicit, lab.Lftp, lab.PORT, 4}, {VsftpdExplicit, lab.Lftp, lab.EPRT, 6},
		{VsftpdExplicit, lab.Python, lab.PORT, 4}, {VsftpdExplicit, lab.Python, lab.EPRT, 6},
	}
	if proftpd {
		cs = append(cs, xfer{ProftpdTLS, lab.Curl, lab.EPSV, 4}, xfer{ProftpdTLS, lab.Curl, lab.EPSV, 6},
			xfer{ProftpdTLS, lab.Lftp, lab.PASV, 4}, xfer{ProftpdTLS, lab.Python, lab.PASV, 4},
			xfer{ProftpdTLS, lab.Python, lab.EPSV, 6})
	}
	return cs
}

// ftpgateAdmitsActive is ftpgate's decision on active FTPS (docs/ftps.md):
// the PORT/EPRT is inside TLS, so no expectation exists and the server's
// connection back to the client is dropped like any unexpected SYN.
const ftpgateAdmitsActive = false

// wantPass is what each mode must do with a transfer: without a filter
// everything passes; the kernel's helper cannot read TLS, so nothing
// encrypted passes until the ranges are opened, and active never does;
// ftpgate passes every passive transfer through the declared ranges.
func wantPass(m Mode, c xfer) bool {
	switch m {
	case Plain:
		return true
	case Kernel:
		return false
	case KernelOpen:
		return !c.active()
	}
	return !c.active() || ftpgateAdmitsActive
}

// probe is the range check from the held session: who reaches the data
// port a live encrypted session was given, and who reaches it after.
type probe struct {
	other, client, after lab.ConnectOutcome
}

// wantProbe: the other host reaches the port only where the range is
// open to everyone; the client reaches it while its session lives, and
// after the session ended the SYN gets to the server (refused: nothing
// listens any more) only where nothing checks for a session.
func wantProbe(m Mode) probe {
	switch m {
	case Plain, KernelOpen:
		return probe{other: lab.Connected, client: lab.Connected, after: lab.Refused}
	case Kernel:
		return probe{other: lab.TimedOut, client: lab.TimedOut, after: lab.TimedOut}
	}
	return probe{other: lab.TimedOut, client: lab.Connected, after: lab.TimedOut}
}

// login is the cleartext login case: curl ftp://user:pass@ without TLS.
type login struct {
	// passed: curl logged in and listed; passLogged: the server's log
	// shows a PASS command from the client.
	passed, passLogged bool
	// out is curl's output, took how long it ran.
	out  string
	took time.Duration
}

// modeRun is one mode's lab and what it measured.
type modeRun struct {
	mode    Mode
	skip    string
	results map[string]outcome
	probe   map[int]probe // by family
	login   login
	// guarded is the cleartext login under --require-tls, tlsLogin a TLS
	// login next to it (ftpgate only).
	guarded, tlsLogin login
	counters          map[string]uint64
}

type outcome struct {
	pass bool
	// dataCmd: the client got as far as sending its data command, so a
	// failure was the data connection's, not the control connection's.
	dataCmd bool
	note    string
}

// TestFTPS runs the transfer cases, the range probe and the cleartext
// login in every mode (a lab each, side by side) and holds each mode to
// what it must do.
func TestFTPS(t *testing.T) {
	if os.Geteuid() != 0 {
		bpftest.SkipOrFail(t, "the FTPS lab creates network namespaces and loads BPF: need root")
	}
	lab.Require(t)
	// RequireProftpd skips the test where proftpd cannot be fetched.
	lab.RequireProftpd(t)
	const proftpd = true
	start := time.Now()
	var runs []*modeRun
	// the modes run side by side (a lab each): most of the time is
	// clients waiting out a blocked data connection
	t.Run("modes", func(t *testing.T) {
		for _, m := range Modes {
			if only := os.Getenv(ModesEnv); only != "" && !strings.Contains(","+only+",", ","+string(m)+",") {
				continue
			}
			r := &modeRun{mode: m, results: map[string]outcome{}, probe: map[int]probe{}}
			runs = append(runs, r)
			t.Run(string(m), func(t *testing.T) {
				t.Parallel()
				runMode(t, r, proftpd)
			})
		}
	})
	rep := report(cases(proftpd), runs, time.Since(start))
	t.Log("\n" + rep)
	if p := os.Getenv(ReportEnv); p != "" {
		if err := os.WriteFile(p, []byte(rep), 0o644); err != nil {
			t.Error(err)
		}
	}
}

func runMode(t *testing.T, r *modeRun, proftpd bool) {
	l := New(t, proftpd)
	var g *lab.Gate
	switch r.mode {
	case Kernel, KernelOpen:
		if err := lab.LoadRuleset(context.Background(), l.GatewayNS, l.Dir, kernelRuleset(l, r.mode == KernelOpen, proftpd)); err != nil {
			t.Fatal(err)
		}
	case Ftpgate:
		bin := lab.FtpgateBinary(t)
		if ok, err := lab.HasRunFlag(bin, "--tls-range"); err != nil {
			t.Fatal(err)
		} else if !ok {
			r.skip = "this build has no --tls-range"
			t.Skip(r.skip)
		}
		var err error
		g, err = lab.StartGate(t, bin, l.GatewayNS, "/sys/fs/bpf/fgl-"+l.ID, ftpgateArgs(l, proftpd)...)
		if err != nil {
			t.Fatal(err)
		}
	}

	// Transfers, a few at a time (two cores).
	var mu sync.Mutex
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, c := range cases(proftpd) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res := l.Download(ctx, c.srv, c.tool, c.mode, c.family)
			o := outcome{pass: res.Check() == nil, dataCmd: len(res.Commands) > 0}
			if err := res.Check(); err != nil {
				o.note = err.Error()
			}
			mu.Lock()
			r.results[c.name()] = o
			mu.Unlock()
			if o.pass != wantPass(r.mode, c) {
				t.Errorf("%s: %s: passed %v, want %v: %s\n%s", r.mode, c.name(), o.pass, wantPass(r.mode, c), o.note, tailOf(res.Output))
			} else if !o.pass && !o.dataCmd {
				t.Errorf("%s: %s: failed before its data command (the control connection must pass): %s\n%s",
					r.mode, c.name(), o.note, tailOf(res.Output))
			}
		}()
	}
	wg.Wait()

	if g != nil {
		// active FTPS: the server's SYN back to a client with a live
		// encrypted session is refused under its own counter
		if c := counters(t, g); c["tls_active_refused"] == 0 {
			t.Errorf("tls_active_refused is 0 after the active FTPS transfers")
		}
	}

	for _, fam := range []int{4, 6} {
		var before map[string]uint64
		if g != nil {
			before = counters(t, g)
		}
		p := rangeProbe(t, l, g, fam)
		r.probe[fam] = p
		if want := wantProbe(r.mode); p != want {
			t.Errorf("%s: IPv%d range probe: other host %v, client %v, client after the session %v; want %v, %v, %v",
				r.mode, fam, p.other, p.client, p.after, want.other, want.client, want.after)
		}
		if g == nil {
			continue
		}
		after := counters(t, g)
		// the other host's SYN and the client's after the session
		if d := after["tls_range_no_session"] - before["tls_range_no_session"]; d < 2 {
			t.Errorf("IPv%d: tls_range_no_session moved by %d over the probe, want at least 2", fam, d)
		}
		if d := after["tls_range_pass"] - before["tls_range_pass"]; d < 1 {
			t.Errorf("IPv%d: tls_range_pass moved by %d over the probe, want at least 1", fam, d)
		}
	}

	if g != nil {
		tlsRangeAtRunTime(t, l, g)
	}

	// Cleartext login, guard off: passes everywhere; ftpgate counts it.
	r.login = cleartextLogin(t, l)
	if !r.login.passed || !r.login.passLogged {
		t.Errorf("%s: cleartext login without a guard: logged in %v, PASS in the server's log %v; want both",
			r.mode, r.login.passed, r.login.passLogged)
	}
	if g == nil {
		return
	}
	c := counters(t, g)
	if c["login_cleartext"] == 0 {
		t.Errorf("login_cleartext is 0 after a cleartext login")
	}
	if c["tls_auth"] == 0 || c["tls_implicit"] == 0 || c["tls_segment"] == 0 {
		t.Errorf("tls_auth %d, tls_implicit %d, tls_segment %d after the TLS transfers; want each > 0",
			c["tls_auth"], c["tls_implicit"], c["tls_segment"])
	}
	// Guard on, at run time: the cleartext login is reset before the
	// server reads a password; a TLS login passes.
	if out, err := g.CLI("config", "set", "--require-tls"); err != nil {
		t.Fatalf("config set --require-tls: %v\n%s", err, out)
	}
	events := monitor(t, g)
	r.guarded = cleartextLogin(t, l)
	if r.guarded.passed || r.guarded.passLogged {
		t.Errorf("cleartext login under --require-tls: logged in %v, PASS in the server's log %v; want neither",
			r.guarded.passed, r.guarded.passLogged)
	}
	// the client is reset, not left to time out
	if !strings.Contains(r.guarded.out, "reset") || r.guarded.took > 5*time.Second {
		t.Errorf("cleartext login under --require-tls: curl after %v: %s; want a connection reset at once",
			r.guarded.took.Round(time.Millisecond), r.guarded.out)
	}
	res := l.Download(context.Background(), VsftpdExplicit, lab.Curl, lab.EPSV, 4)
	r.tlsLogin = login{passed: res.Check() == nil}
	if !r.tlsLogin.passed {
		t.Errorf("TLS login under --require-tls: %v\n%s", res.Check(), tailOf(res.Output))
	}
	r.counters = counters(t, g)
	if r.counters["login_reset"] == 0 {
		t.Errorf("login_reset is 0 after a cleartext login under --require-tls")
	}
	// monitor shows the reset with the client's address
	ev := events()
	found := false
	for _, line := range strings.Split(ev, "\n") {
		if strings.Contains(line, "login_reset") && strings.Contains(line, `"`+l.ClientAddr(4).String()+`"`) {
			found = true
		}
	}
	if !found {
		t.Errorf("monitor --json showed no login_reset event with the client's address %s:\n%s", l.ClientAddr(4), ev)
	}
}

// monitor starts `ftpgate monitor --json` on g and returns a function
// that stops it (by its PID) and returns what it printed.
func monitor(t *testing.T, g *lab.Gate) func() string {
	t.Helper()
	cmd := exec.Command(g.Bin, "monitor", "--json", "--pin-dir", g.PinDir, "--netns", g.NS)
	var out strings.Builder
	var mu sync.Mutex
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		b, _ := io.ReadAll(stdout)
		mu.Lock()
		out.Write(b)
		mu.Unlock()
		close(done)
	}()
	// it says on stderr when it reads
	line, err := bufio.NewReader(stderr).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "monitoring") {
		_ = cmd.Process.Kill()
		t.Fatalf("monitor not ready: %q %v", line, err)
	}
	go io.Copy(io.Discard, stderr)
	stop := func() string {
		time.Sleep(500 * time.Millisecond)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return out.String()
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return stop
}

// tlsRangeAtRunTime deletes the explicit vsftpd's IPv4 range from the
// running gate (a TLS passive transfer is then blocked), lists the ranges
// and adds it back (the transfer passes again).
func tlsRangeAtRunTime(t *testing.T, l *Lab, g *lab.Gate) {
	t.Helper()
	rng := l.Range(VsftpdExplicit, 4)
	fetch := func() lab.Result {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return l.Download(ctx, VsftpdExplicit, lab.Curl, lab.EPSV, 4)
	}
	if out, err := g.CLI("tls-range", "del", rng); err != nil {
		t.Fatalf("tls-range del %s: %v\n%s", rng, err, out)
	}
	if out, err := g.CLI("tls-range"); err != nil || strings.Contains(out, rng) {
		t.Errorf("tls-range after del %s: %v\n%s", rng, err, out)
	}
	if res := fetch(); res.Check() == nil || len(res.Commands) == 0 {
		t.Errorf("TLS transfer without its range: %v (want blocked at the data connection)", res.Check())
	}
	if out, err := g.CLI("tls-range", "add", rng); err != nil {
		t.Fatalf("tls-range add %s: %v\n%s", rng, err, out)
	}
	if out, err := g.CLI("tls-range"); err != nil || !strings.Contains(out, rng) {
		t.Errorf("tls-range lists no %s: %v\n%s", rng, err, out)
	}
	if res := fetch(); res.Check() != nil {
		t.Errorf("TLS transfer with its range added back: %v\n%s", res.Check(), tailOf(res.Output))
	}
}

// rangeProbe holds an encrypted session from the client to the explicit
// vsftpd and tries its passive port from the other host, from the client,
// and from the client again once the session has ended. With a gate, its
// `ctrl --json` must show the session encrypted by AUTH.
func rangeProbe(t *testing.T, l *Lab, g *lab.Gate, family int) probe {
	t.Helper()
	se, err := l.Hold(t, VsftpdExplicit, family)
	if err != nil {
		t.Fatal(err)
	}
	if g != nil {
		out, err := g.CLI("ctrl", "--json")
		if err != nil || !encryptedRE.MatchString(out) || !strings.Contains(out, `"`+l.ClientAddr(family).String()+`"`) {
			t.Errorf("ctrl --json shows no session of %s encrypted by AUTH: %v\n%s", l.ClientAddr(family), err, out)
		}
	}
	try := func(ns string) lab.ConnectOutcome {
		o, err := l.ConnectTimesOut(context.Background(), ns, l.ServerAddr(family), se.DataPort, 3*time.Second)
		if err != nil {
			t.Errorf("connect from %s to %d: %v", ns, se.DataPort, err)
		}
		return o
	}
	var p probe
	p.other = try(l.OtherNS)
	p.client = try(l.ClientNS)
	if err := se.Close(); err != nil {
		t.Error(err)
	}
	p.after = try(l.ClientNS)
	return p
}

// cleartextLogin lists the explicit vsftpd's root with curl, no TLS, and
// says whether vsftpd's protocol log gained a PASS command (it writes
// `"PASS <password>"`, the password masked, for each one it reads; the
// lab runs nothing else against it meanwhile).
func cleartextLogin(t *testing.T, l *Lab) login {
	t.Helper()
	passes := func() int {
		log, err := l.VsftpdLog(VsftpdExplicit)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(log, `"PASS `)
	}
	before := passes()
	start := time.Now()
	out, err := l.Exec(context.Background(), l.ClientNS, "curl", "-sS", "--max-time", "10", "--list-only",
		fmt.Sprintf("ftp://anonymous:secret@%s:%d/", l.ServerAddr(4), VsftpdExplicit.Port))
	return login{passed: err == nil, passLogged: passes() > before, out: out, took: time.Since(start)}
}

// encryptedRE is a control connection encrypted by AUTH TLS in `ftpgate ctrl --json`.
var encryptedRE = regexp.MustCompile(`"encrypted":\s*true,\s*"tls":\s*"auth"`)

func counters(t *testing.T, g *lab.Gate) map[string]uint64 {
	t.Helper()
	c, err := g.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ftpgateArgs guards all three gateway interfaces: control ports 21 and
// 2121 (scoped to the server) parsed, 990 implicit TLS, every server's
// range declared for both families, nothing else allowed.
func ftpgateArgs(l *Lab, proftpd bool) []string {
	args := []string{"--iface", lab.GwClientIf, "--iface", lab.GwServerIf, "--iface", OtherLink.GwIf,
		"--allow-port", "21", "--allow-port", "990", "--allow-port", "2121", "--ftps-port", "990",
		"--ftp-port", "21", "--ftp-port", fmt.Sprintf("2121@%s/32@%s/128", l.ServerAddr(4), l.ServerAddr(6))}
	for _, s := range Servers {
		if s == ProftpdTLS && !proftpd {
			continue
		}
		for _, fam := range []int{4, 6} {
			args = append(args, "--tls-range", l.Range(s, fam))
		}
	}
	return args
}

// kernelRuleset is the kernel's FTP helper on a default-deny forward
// chain, as docs/trust.md's comparison runs it; open adds each server's
// passive range for every source.
func kernelRuleset(l *Lab, open, proftpd bool) string {
	var ranges []string
	if open {
		for _, s := range Servers {
			if s == ProftpdTLS && !proftpd {
				continue
			}
			ranges = append(ranges,
				fmt.Sprintf("\t\tip daddr %s tcp dport %d-%d ct state new accept", l.ServerAddr(4), s.Lo, s.Hi),
				fmt.Sprintf("\t\tip6 daddr %s tcp dport %d-%d ct state new accept", l.ServerAddr(6), s.Lo, s.Hi))
		}
	}
	return fmt.Sprintf(`table inet fgl_ftps {
	ct helper ftp-helper {
		type "ftp" protocol tcp
		l3proto inet
	}
	chain assign_helper {
		type filter hook prerouting priority filter; policy accept;
		tcp dport { 21, 2121 } ct helper set "ftp-helper"
	}
	chain filter_forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		tcp dport { 21, 990, 2121 } ct state new accept
		meta l4proto { icmp, ipv6-icmp } accept
%s
	}
}
`, strings.Join(ranges, "\n"))
}

func tailOf(s string) string {
	if len(s) > 1500 {
		return "..." + s[len(s)-1500:]
	}
	return s
}

// report renders the results as the markdown table of docs/ftps.md.
func report(cs []xfer, runs []*modeRun, took time.Duration) string {
	var b strings.Builder
	b.WriteString("| case |")
	for _, r := range runs {
		b.WriteString(" " + string(r.mode) + " |")
	}
	b.WriteString("\n|---|")
	for range runs {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	row := func(name string, cell func(r *modeRun) string) {
		b.WriteString("| " + name + " |")
		for _, r := range runs {
			if r.skip != "" {
				b.WriteString(" skipped |")
				continue
			}
			b.WriteString(" " + cell(r) + " |")
		}
		b.WriteString("\n")
	}
	for _, c := range cs {
		row(c.name(), func(r *modeRun) string {
			o, ok := r.results[c.name()]
			switch {
			case !ok:
				return "not run"
			case o.pass:
				return "pass (sha256)"
			case o.dataCmd:
				return "data connection blocked"
			}
			return "failed before the data command"
		})
	}
	for _, fam := range []int{4, 6} {
		row(fmt.Sprintf("IPv%d: other host → passive port of a live TLS session", fam), func(r *modeRun) string { return r.probe[fam].other.String() })
		row(fmt.Sprintf("IPv%d: client → its own session's passive port", fam), func(r *modeRun) string { return r.probe[fam].client.String() })
		row(fmt.Sprintf("IPv%d: client → that port after QUIT", fam), func(r *modeRun) string { return r.probe[fam].after.String() })
	}
	row("cleartext `curl ftp://anonymous:PASS@` (guard off)", func(r *modeRun) string {
		return fmt.Sprintf("logged in %v, PASS in server log %v", r.login.passed, r.login.passLogged)
	})
	row("the same under `--require-tls`", func(r *modeRun) string {
		if r.mode != Ftpgate {
			return "(no such setting)"
		}
		return fmt.Sprintf("logged in %v, PASS in server log %v; curl: %s (%.2f s)", r.guarded.passed, r.guarded.passLogged,
			strings.TrimPrefix(strings.TrimSpace(r.guarded.out), "curl: "), r.guarded.took.Seconds())
	})
	row("TLS login under `--require-tls`", func(r *modeRun) string {
		if r.mode != Ftpgate {
			return "—"
		}
		return fmt.Sprintf("pass %v", r.tlsLogin.passed)
	})
	for _, r := range runs {
		if r.counters == nil {
			continue
		}
		var names []string
		for k, v := range r.counters {
			if v != 0 && (strings.HasPrefix(k, "tls_") || strings.HasPrefix(k, "login_")) {
				names = append(names, fmt.Sprintf("%s %d", k, v))
			}
		}
		sort.Strings(names)
		fmt.Fprintf(&b, "\nftpgate's TLS counters after the run: %s\n", strings.Join(names, ", "))
	}
	fmt.Fprintf(&b, "\n%d cases, %d modes, %.0f s\n", len(cs), len(runs), took.Seconds())
	return b.String()
}

// TestGuardServerSide runs the login guard with ftpgate on the gateway's
// server-side interface only: the client's USER is seen at that
// interface's TC egress (forwarded), so the reset back to the client goes
// in at the device's ingress and is routed to it, where in TestFTPS (every
// interface guarded) the client's side sees it first at ingress and the
// reset leaves by the same device's egress.
func TestGuardServerSide(t *testing.T) {
	if os.Geteuid() != 0 {
		bpftest.SkipOrFail(t, "the FTPS lab creates network namespaces and loads BPF: need root")
	}
	lab.Require(t)
	bin := lab.FtpgateBinary(t)
	if ok, err := lab.HasRunFlag(bin, "--require-tls"); err != nil {
		t.Fatal(err)
	} else if !ok {
		t.Skip("this build has no --require-tls")
	}
	l := New(t, false)
	g, err := lab.StartGate(t, bin, l.GatewayNS, "/sys/fs/bpf/fgl-"+l.ID, "--iface", lab.GwServerIf,
		"--allow-port", "21", "--require-tls", "--tls-range", l.Range(VsftpdExplicit, 4))
	if err != nil {
		t.Fatal(err)
	}
	got := cleartextLogin(t, l)
	t.Logf("cleartext login, server side guarded: logged in %v, PASS in the server's log %v, curl after %v: %s",
		got.passed, got.passLogged, got.took.Round(time.Millisecond), strings.TrimSpace(got.out))
	if got.passed || got.passLogged || !strings.Contains(got.out, "reset") || got.took > 5*time.Second {
		t.Errorf("want no login, no PASS in the server's log and a connection reset at once")
	}
	if c := counters(t, g); c["login_reset"] == 0 {
		t.Errorf("login_reset is 0")
	}
	res := l.Download(context.Background(), VsftpdExplicit, lab.Curl, lab.EPSV, 4)
	if err := res.Check(); err != nil {
		t.Errorf("TLS login with the server side guarded: %v\n%s", err, tailOf(res.Output))
	}
}
