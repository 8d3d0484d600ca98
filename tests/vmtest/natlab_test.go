package vmtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
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

// natFileSize keeps the matrix within CI time: a dozen transfers per kernel.
const natFileSize = 1 << 20

// natMechanismEnv forces --nat-mechanism (auto, conntrack, own) for
// TestNATGateway; unset means auto.
const natMechanismEnv = "FTPGATE_NAT_MECHANISM"

// natLab is a NAT gateway (nettest.NewNATGateway: masquerade, DNAT of the
// inside server on 21 and 2121, forward policy drop) with ftpmini servers
// inside and outside, and ftpgate --nat on the outside interface unless
// the kernel has no mechanism.
type natLab struct {
	tp      *nettest.Topology
	rs      nettest.NATRuleset
	inside  *ftpmini.Server // 192.0.2.66:21, published as 198.51.100.1:21 and :2121
	outside *ftpmini.Server // 198.51.100.2:21
	file    []byte
	dp      *loader.Dataplane
}

func newNATLab(t *testing.T) *natLab {
	t.Helper()
	if os.Geteuid() != 0 {
		bpftest.SkipOrFail(t, "the NAT lab needs root")
	}
	l := &natLab{rs: nettest.DefaultNATRuleset(), file: make([]byte, natFileSize)}
	_, _ = rand.Read(l.file)
	l.tp = nettest.NewNATGateway(t, "fgw", l.rs)
	l.inside = l.serve(t, nettest.NATHostInServer, nettest.NATInsideServer)
	l.outside = l.serve(t, nettest.NATHostOutside, nettest.NATOutsideServer)
	return l
}

// serve starts an ftpmini server on addr:21 in host's namespace that, like
// vsftpd, refuses PORT/EPRT naming another address than the client's.
func (l *natLab) serve(t *testing.T, host string, addr netip.Addr) *ftpmini.Server {
	ns := l.tp.Host(host).NS
	ln, err := nettest.Listen(ns, "tcp", netip.AddrPortFrom(addr, ftpPort).String())
	must(t, err)
	srv := ftpmini.NewServer(map[string][]byte{"file": l.file})
	srv.RequirePeerAddress = true
	srv.WrapDataSocket = func(create func() error) error { return nettest.Do(ns, create) }
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return srv
}

// startFtpgate runs ftpgate on the outside interface as `run --iface wan0
// --allow-port 21 --allow-port 2121 --ftp-port 21 --ftp-port 2121 --fwmark
// 0x100/0x100 --nat --nat-mechanism mech` does.
func (l *natLab) startFtpgate(t *testing.T, mech loader.NATMechanism) (*loader.Dataplane, error) {
	t.Helper()
	pinDir := filepath.Join(nettest.BPFFS(t), "ftpgate")
	states := loader.StateDir(t.TempDir())
	cfg := maps.DefaultConfig()
	cfg.FwmarkValue, cfg.FwmarkMask = l.rs.Mark, l.rs.MarkMask
	cfg.NAT = mech.Mode()
	ports := []uint16{21, 2121}
	t.Cleanup(func() {
		if err := loader.Detach(pinDir, states, "", nil); err != nil {
			t.Errorf("detach: %v", err)
		}
	})
	dp, err := loader.Start(loader.Options{
		PinDir: pinDir, StateDir: states, NetNS: l.tp.Gateway, Ifaces: []string{nettest.NATWanIf},
		XDPMode: loader.XDPAuto, TCMode: loader.TCAuto, CtrlPorts: ports, AllowPorts: ports,
		Config: cfg, NATMechanism: mech,
		Tables: loader.TableSizes{CtrlConns: 1024, Expectations: 1024, DataFlows: 1024},
	})
	if err == nil {
		t.Cleanup(func() { dp.Close() })
	}
	return dp, err
}

// natCase is one FTP session through the gateway: a client on one side,
// the server on the other, one transfer per mode on one control
// connection; store makes the last one an upload.
type natCase struct {
	name string
	// fromInside: the inside client to the outside server (masquerade);
	// otherwise the outside client to the published inside server
	fromInside bool
	port       uint16 // the server's port as the client dials it
	modes      []ftpmini.Mode
	store      bool
}

// natCases: what docs/nat.md "NAT in the VM matrix" lists.
var natCases = []natCase{
	{name: "inside_PORT", fromInside: true, port: 21, modes: []ftpmini.Mode{ftpmini.PORT}},
	{name: "inside_EPRT", fromInside: true, port: 21, modes: []ftpmini.Mode{ftpmini.EPRT}},
	{name: "inside_PORT_EPRT_PORT_upload", fromInside: true, port: 21, modes: []ftpmini.Mode{ftpmini.PORT, ftpmini.EPRT, ftpmini.PORT}, store: true},
	{name: "outside_PASV_21", port: 21, modes: []ftpmini.Mode{ftpmini.PASV}},
	{name: "outside_EPSV_21", port: 21, modes: []ftpmini.Mode{ftpmini.EPSV}},
	{name: "outside_PASV_2121", port: 2121, modes: []ftpmini.Mode{ftpmini.PASV}},
	{name: "outside_EPSV_2121", port: 2121, modes: []ftpmini.Mode{ftpmini.EPSV}},
	{name: "outside_PASV_EPSV_PASV_upload_2121", port: 2121, modes: []ftpmini.Mode{ftpmini.PASV, ftpmini.EPSV, ftpmini.PASV}, store: true},
	// what a gateway without an FTP helper passes: masquerade alone
	{name: "inside_PASV_EPSV_PASV_upload", fromInside: true, port: 21, modes: []ftpmini.Mode{ftpmini.PASV, ftpmini.EPSV, ftpmini.PASV}, store: true},
}

// needsHelper: every data connection the gateway cannot make without an
// FTP helper. An inside client's passive data connection goes out like
// any other; everything else needs a rewrite or a translation.
func (c natCase) needsHelper() bool {
	if !c.fromInside {
		return true
	}
	for _, m := range c.modes {
		if m == ftpmini.PORT || m == ftpmini.EPRT {
			return true
		}
	}
	return false
}

// run does the session. Every download is checked against the file's
// SHA-256, an upload against what the server stored. A passive client
// trusts the 227 address unless skipPasv.
func (l *natLab) run(c natCase, timeout time.Duration, skipPasv bool) error {
	clientNS, server, srv := l.tp.Host(nettest.NATHostOutside).NS, netip.AddrPortFrom(nettest.NATPublic, c.port), l.inside
	if c.fromInside {
		clientNS, server, srv = l.tp.Host(nettest.NATHostInClient).NS, netip.AddrPortFrom(nettest.NATOutsideServer, c.port), l.outside
	}
	want := sha256.Sum256(l.file)
	upload := fmt.Sprintf("up-%s", c.name)
	return nettest.Do(clientNS, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cl, err := ftpmini.Dial(ctx, server.String(), ftpmini.Config{Timeout: timeout, SkipPasvAddress: skipPasv})
		if err != nil {
			return controlError{err}
		}
		defer cl.Close()
		if err := cl.Login(ctx, "anonymous", "test@example.org"); err != nil {
			return controlError{err}
		}
		for i, m := range c.modes {
			if c.store && i == len(c.modes)-1 {
				if err := cl.Store(ctx, upload, l.file, m); err != nil {
					return fmt.Errorf("transfer %d (STOR, %s): %w", i+1, m, err)
				}
				got, _ := srv.File(upload)
				if sha256.Sum256(got) != want {
					return fmt.Errorf("transfer %d (STOR, %s): the server stored %d bytes with another SHA-256", i+1, m, len(got))
				}
				continue
			}
			got, err := cl.Retrieve(ctx, "file", m)
			if err != nil {
				return fmt.Errorf("transfer %d (RETR, %s): %w", i+1, m, err)
			}
			if sha256.Sum256(got) != want {
				return fmt.Errorf("transfer %d (RETR, %s): %d bytes with another SHA-256", i+1, m, len(got))
			}
		}
		for _, s := range cl.Sent {
			if v := strings.Fields(s)[0]; isDataCommand(v) && !containsMode(c.modes, v) {
				return fmt.Errorf("the client sent %s, not one of %v", v, c.modes)
			}
		}
		return ignoreEOF(cl.Quit(ctx))
	})
}

// controlError is a session that failed before any transfer: the control
// connection itself did not get through the gateway.
type controlError struct{ error }

func (e controlError) Error() string { return "control connection: " + e.error.Error() }
func (e controlError) Unwrap() error { return e.error }

func isDataCommand(v string) bool {
	for _, m := range ftpmini.Modes {
		if v == m.Command() {
			return true
		}
	}
	return false
}

func containsMode(ms []ftpmini.Mode, v string) bool {
	for _, m := range ms {
		if m.Command() == v {
			return true
		}
	}
	return false
}

// ignoreEOF: the transfers are done; a server closing before 221 does not
// undo them.
func ignoreEOF(err error) error {
	var re *ftpmini.ReplyError
	if err == nil || errors.As(err, &re) || strings.Contains(err.Error(), "EOF") {
		return nil
	}
	return err
}

// runCases runs every case in order and holds it to want(case): pass or
// fail. Conntrack's INVALID counter must not move during any case.
func (l *natLab) runCases(t *testing.T, want func(natCase) bool, timeout func(natCase) time.Duration, skipPasv bool) {
	t.Helper()
	for _, c := range natCases {
		before, err := nettest.NATInvalid(l.tp.Gateway, l.rs.Table)
		must(t, err)
		start := time.Now()
		err = l.run(c, timeout(c), skipPasv)
		after, rerr := nettest.NATInvalid(l.tp.Gateway, l.rs.Table)
		must(t, rerr)
		took := time.Since(start).Round(time.Millisecond)
		switch {
		case want(c) && err != nil:
			t.Errorf("%s: %v (%v)", c.name, err, took)
		case !want(c) && err == nil:
			t.Errorf("%s: passed (%v); without an FTP helper it must fail, or the gateway does not really NAT it", c.name, took)
		case !want(c) && errors.As(err, new(controlError)):
			// only the data connection needs a helper: masquerade and DNAT
			// of the control connection are the gateway's own job
			t.Errorf("%s: %v (%v); the control connection must get through the gateway", c.name, err, took)
		default:
			t.Logf("%s: %s (%v)", c.name, outcome(err), took)
		}
		if after != before {
			t.Errorf("%s: conntrack INVALID %d -> %d", c.name, before, after)
		}
	}
	n, err := nettest.NATInvalid(l.tp.Gateway, l.rs.Table)
	must(t, err)
	t.Logf("conntrack INVALID after every case: %d", n)
}

func outcome(err error) string {
	if err == nil {
		return "pass"
	}
	return "fail as it must: " + err.Error()
}

// natModeCount sums the transfers of every case in the given modes.
func natModeCount(cases []natCase, modes ...ftpmini.Mode) uint64 {
	var n uint64
	for _, c := range cases {
		if !c.needsHelper() {
			continue
		}
		for _, m := range c.modes {
			if containsMode(modes, m.Command()) {
				n++
			}
		}
	}
	return n
}

// kernelLogClean fails the test on kernel log records at warning level or
// worse (or reporting a bug) written after seq.
func kernelLogClean(t *testing.T, seq uint64) {
	t.Helper()
	lines, err := nettest.KernelWarnings(seq)
	if err != nil {
		t.Errorf("kernel log: %v", err)
	}
	for _, l := range lines {
		t.Errorf("kernel log during the cases: %s", l)
	}
}

// TestNATGateway runs FTP sessions through a NAT gateway whose rules are
// made over netlink, with the mechanism this kernel gets for `run --nat`
// (bpftest.NATRun; FTPGATE_NAT_MECHANISM forces one). With a
// mechanism every case passes: inside clients' PORT and EPRT to an
// outside server, outside clients' PASV (trusting the 227 address) and
// EPSV to the inside server published on 21 and on 2121->21, several
// transfers and an upload on one control connection. Where the kernel
// refuses, run --nat must say so in one line, and the gateway alone must
// pass what needs no helper and fail the rest.
func TestNATGateway(t *testing.T) {
	mech := loader.NATAuto
	if s := os.Getenv(natMechanismEnv); s != "" {
		var err error
		if mech, err = loader.ParseNATMechanism(s); err != nil {
			t.Fatalf("%s: %v", natMechanismEnv, err)
		}
	}
	release, mode, refusal := bpftest.NATRun(string(mech))
	t.Logf("kernel %s, --nat-mechanism %s: measured %s", release, mech, expectation(mode, refusal))
	l := newNATLab(t)
	dp, err := l.startFtpgate(t, mech)
	if mode == maps.NATOff {
		if err == nil {
			t.Fatalf("kernel %s took --nat --nat-mechanism %s (object %+v); measured: refuses (%s)", release, mech, dp.Object, refusal)
		}
		checkRefusal(t, release, err, refusal)
		// the gateway on its own: passive from the inside with the client
		// using the control peer's address, and nothing that needs a helper
		seq, err := nettest.KmsgLast()
		must(t, err)
		l.runCases(t, func(c natCase) bool { return !c.needsHelper() },
			func(c natCase) time.Duration {
				if c.needsHelper() {
					return 3 * time.Second
				}
				return 10 * time.Second
			}, true)
		kernelLogClean(t, seq)
		return
	}
	if err != nil {
		t.Fatalf("kernel %s: run --nat --nat-mechanism %s: %v", release, mech, err)
	}
	cfg, err := dp.Maps.GetConfig()
	must(t, err)
	if cfg.NAT != mode {
		t.Fatalf("kernel %s: --nat-mechanism %s runs %v; measured %v", release, mech, cfg.NAT, mode)
	}
	seq, err := nettest.KmsgLast()
	must(t, err)
	l.runCases(t, func(natCase) bool { return true }, func(natCase) time.Duration { return 10 * time.Second }, false)
	kernelLogClean(t, seq)

	c, err := dp.Maps.Counters()
	must(t, err)
	rewrites := natModeCount(natCases, ftpmini.PORT, ftpmini.EPRT, ftpmini.PASV)
	epsv := natModeCount(natCases, ftpmini.EPSV)
	if c["nat_rewrite"] != rewrites || c["nat_rewrite_229"] != epsv || c["syn_pass_expected"] != rewrites+epsv {
		t.Errorf("want %d rewrites of PORT/EPRT/227, %d of 229 and as many data connections: %s", rewrites, epsv, summary(c))
	}
	if mode == maps.NATCT && (c["nat_ct_inserted"] != rewrites+epsv || c["nat_ct_alloc_failed"]+c["nat_ct_nat_failed"]+c["nat_ct_insert_failed"] != 0) {
		t.Errorf("want %d conntrack entries and no failure: %s", rewrites+epsv, summary(c))
	}
	if mode == maps.NATOwn && (c["nat_own_made"] != rewrites+epsv || c["nat_ct_inserted"] != 0 ||
		c["nat_own_in"] == 0 || c["nat_own_out"] == 0 || c["nat_own_table_full"]+c["nat_own_failed"] != 0) {
		t.Errorf("want %d pairs of nat_own entries, packets translated both ways, no conntrack entry and no failure: %s", rewrites+epsv, summary(c))
	}
	t.Logf("ftpgate: %s", summary(c))
}

func expectation(mode maps.NATMode, refusal string) string {
	if mode == maps.NATOff {
		return "refuses (" + refusal + ")"
	}
	return mode.String()
}

// checkRefusal: run --nat refused in one line that says why (refusal, as
// measured) and names the kernel helper to use instead.
func checkRefusal(t *testing.T, release string, err error, refusal string) {
	t.Helper()
	t.Logf("kernel %s: %v", release, err)
	if !errors.Is(err, loader.ErrNATUnavailable) || !strings.Contains(err.Error(), refusal) ||
		!strings.Contains(err.Error(), "nf_nat_ftp") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("kernel %s: run --nat says %q; want one line with %q and the kernel helper", release, err, refusal)
	}
}
