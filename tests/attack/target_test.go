package attack

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/internal/nettest"
	"github.com/ftpgate/ftpgate/tests/lab"
)

// target is what guards the lab's gateway.
type target struct {
	name  string // subtest name
	title string // column title in the report
	// rpFilter is the gateway's reverse-path filter for a netfilter
	// target (1 strict, 2 loose); 0 means the target is ftpgate.
	rpFilter int
	// gateFlags are added to `ftpgate run` for this target; a build
	// without the first flag skips the target.
	gateFlags []string
	// asserted: an unsafe outcome fails the test (ftpgate as shipped);
	// the other targets are measured for comparison only.
	asserted bool
	// spoofOnly: run only against attacks that forge addresses or
	// segments (spec.spoofing).
	spoofOnly bool
}

func (tg target) isGate() bool { return tg.rpFilter == 0 }

var targets = []target{
	{name: "ftpgate", title: "ftpgate", asserted: true},
	{name: "nf-strict", title: "netfilter, strict rp", rpFilter: 1},
	{name: "nf-loose", title: "netfilter, loose rp", rpFilter: 2},
	// what an operator who relaxes the reverse-path check keeps: TCP
	// tracking and FTP conformance alone
	{name: "ftpgate-rp-loose", title: "ftpgate --rp-check loose", gateFlags: []string{"--rp-check", "loose"}, spoofOnly: true},
}

// spec describes one lab an attack runs in.
type spec struct {
	opts lab.Options
	// gateFlags are added to `ftpgate run` (the control and allowed
	// ports 21 and 2121 are always given).
	gateFlags []string
	// spoofing: the attack forges segments (see target.spoofOnly).
	spoofing bool
	// gateOnly, when set, says why the attack is not run against the
	// kernel's helper (its cells in the table stay "not run").
	gateOnly string
}

// env is one attack against one target, in a lab of its own.
type env struct {
	t      *testing.T
	l      *lab.Lab
	target target
	gate   *lab.Gate // nil for a netfilter target
}

// forEachTarget runs attack once per target, each in its own lab, in
// parallel with the other targets and attacks.
func forEachTarget(t *testing.T, sp spec, attack func(e *env)) {
	t.Helper()
	if os.Geteuid() != 0 {
		bpftest.SkipOrFail(t, "attack labs create network namespaces and load BPF: need root")
	}
	lab.Require(t)
	if sp.opts.FileSize == 0 {
		sp.opts.FileSize = 64 << 10
	}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			switch {
			case sp.gateOnly != "" && !tg.isGate():
				t.Skip(sp.gateOnly)
			case tg.spoofOnly && !sp.spoofing:
				t.Skip("this target is measured against forged segments only")
			case len(tg.gateFlags) > 0 && !gateHasFlag(t, tg.gateFlags[0]):
				t.Skipf("this ftpgate build has no %s", tg.gateFlags[0])
			}
			t.Parallel()
			l := lab.New(t, sp.opts)
			e := &env{t: t, l: l, target: tg}
			// Without this, veth marks frames sent from a packet socket as
			// checksum-verified and a wrong checksum goes unnoticed.
			for _, dev := range []string{lab.GwClientIf, lab.GwServerIf} {
				if out, err := l.Exec(context.Background(), l.GatewayNS, "ethtool", "-K", dev, "rx", "off"); err != nil {
					t.Fatalf("rx checksum offload off on %s: %v\n%s", dev, err, out)
				}
			}
			if tg.isGate() {
				e.gate = startGate(t, l, append(append([]string{}, sp.gateFlags...), tg.gateFlags...)...)
			} else {
				e.netfilter(tg.rpFilter)
			}
			attack(e)
		})
	}
}

// report records the outcome of one attack (a table row) on this target
// and, for ftpgate, fails the test unless it is safe.
func (e *env) report(row string, o outcome) {
	e.t.Helper()
	outcomes.record(row, e.target.name, o)
	switch {
	case e.target.asserted && !o.Safe:
		e.t.Errorf("%s: ftpgate: UNSAFE: %s", row, o.Detail)
	default:
		e.t.Logf("%s: %s: %s: %s", row, e.target.name, o.word(), o.Detail)
	}
}

// nftHelperRuleset is the kernel's FTP helper on a default-deny gateway:
// control connections to 21 and 2121 are allowed and get the helper, data
// connections pass only as RELATED to an expectation. IPv6 has no
// rp_filter sysctl, so its reverse-path check is the nftables fib
// expression of the same strictness (%s).
const nftHelperRuleset = `
table inet fgattack {
	ct helper ftp-helper {
		type "ftp" protocol tcp
		l3proto inet
	}
	chain rpf_ipv6 {
		type filter hook prerouting priority raw; policy accept;
		meta nfproto ipv6 %s
	}
	chain assign_helper {
		type filter hook prerouting priority filter; policy accept;
		tcp dport { 21, 2121 } ct helper set "ftp-helper"
	}
	chain filter_forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		tcp dport { 21, 2121 } ct state new accept
		meta l4proto { icmp, ipv6-icmp } accept
	}
}
`

// netfilter turns the gateway into a default-deny firewall with the
// kernel's FTP helper and reverse-path filtering of the given mode.
func (e *env) netfilter(rp int) {
	e.t.Helper()
	err := nettest.Do(e.l.GatewayNS, func() error {
		for _, dev := range []string{"all", "default", lab.GwClientIf, lab.GwServerIf} {
			p := "/proc/sys/net/ipv4/conf/" + dev + "/rp_filter"
			if err := os.WriteFile(p, []byte(fmt.Sprint(rp)), 0o644); err != nil {
				return fmt.Errorf("sysctl %s: %w", p, err)
			}
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	fib := "fib saddr . iif oif missing drop"
	if rp == 2 {
		fib = "fib saddr oif missing drop"
	}
	e.nft(e.l.GatewayNS, fmt.Sprintf(nftHelperRuleset, fib))
}

// nft loads a ruleset into namespace ns.
func (e *env) nft(ns, ruleset string) {
	e.t.Helper()
	if err := lab.LoadRuleset(context.Background(), ns, e.l.Dir, ruleset); err != nil {
		e.t.Fatal(err)
	}
}

// startGate runs ftpgate guarding both gateway interfaces.
func startGate(t *testing.T, l *lab.Lab, extra ...string) *lab.Gate {
	t.Helper()
	args := append([]string{"--iface", lab.GwClientIf, "--iface", lab.GwServerIf,
		"--allow-port", "21", "--allow-port", "2121"}, extra...)
	g, err := lab.StartGate(t, lab.FtpgateBinary(t), l.GatewayNS, "/sys/fs/bpf/ftpgate-attack-"+l.ID, args...)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// gateHasFlag says whether this build's `ftpgate run` knows flag.
func gateHasFlag(t *testing.T, flag string) bool {
	ok, err := lab.HasRunFlag(lab.FtpgateBinary(t), flag)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// counters reads every ftpgate counter; nil for a netfilter target.
func (e *env) counters() map[string]uint64 {
	e.t.Helper()
	if e.gate == nil {
		return nil
	}
	c, err := e.gate.Counters()
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// Counters that show each refusal, as regular expressions over counter
// names (README, "Counters").
const (
	countSpoofed    = `^ctrl_spoofed$`                                     // reverse-path check
	countChecksum   = `^(ctrl_bad_checksum|ctrl_spoofed)$`                 // bad checksum (a forged copy of an inside address is refused as spoofed first)
	countWindow     = `^(tcp_out_of_window|tcp_rst_ignored|ctrl_spoofed)$` // out-of-window segment
	countNotFTP     = `^ctrl_not_ftp$`                                     // a control-port connection that is not FTP
	countTableGuard = `^(ctrl_embryo_limited|ctrl_conn_full)$`             // untrusted-connection refusals
	countSynDrop    = `^syn_(drop_unexpected|flow_refused)$`               // a data SYN with no expectation
)

// wantRefusalCounted checks, for the asserted ftpgate target only, that a counter whose name
// matches pattern rose between before and now: the refusal must be
// visible to an operator.
func (e *env) wantRefusalCounted(before map[string]uint64, pattern string) {
	e.t.Helper()
	if !e.target.asserted {
		return
	}
	re := regexp.MustCompile(pattern)
	after := e.counters()
	var rose, seen []string
	for name, n := range after {
		if !re.MatchString(name) {
			continue
		}
		seen = append(seen, name)
		if n > before[name] {
			rose = append(rose, fmt.Sprintf("%s +%d", name, n-before[name]))
		}
	}
	sort.Strings(seen)
	if len(rose) == 0 {
		e.t.Errorf("no counter matching %q rose (candidates present: %v); the refusal is not counted", pattern, seen)
		return
	}
	e.t.Logf("refusal counted: %s", strings.Join(rose, ", "))
}
