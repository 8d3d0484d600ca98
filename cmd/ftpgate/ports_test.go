package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func portsOf(t *testing.T, f *fixture, set string) []uint16 {
	t.Helper()
	var v struct {
		Ports []uint16 `json:"ports"`
	}
	f.jsonOf(t, &v, set)
	return v.Ports
}

func TestPortsAndAllow(t *testing.T) {
	f := newFixture(t)
	if got := portsOf(t, f, "ports"); !slices.Equal(got, []uint16{21}) {
		t.Fatalf("ports = %v", got)
	}
	if r := f.cmd([]string{"ports", "add"}, "2121", "990"); r.code != 0 {
		t.Fatalf("ports add: %s", r.stderr)
	}
	if got := portsOf(t, f, "ports"); !slices.Equal(got, []uint16{21, 990, 2121}) {
		t.Fatalf("ports after add = %v", got)
	}
	// a control port is not an allowed port
	if got := portsOf(t, f, "allow"); !slices.Equal(got, []uint16{21, 22}) {
		t.Fatalf("allow = %v", got)
	}
	if r := f.cmd([]string{"ports", "del"}, "990"); r.code != 0 {
		t.Fatalf("ports del: %s", r.stderr)
	}
	if r := f.cmd([]string{"allow", "add"}, "2121"); r.code != 0 {
		t.Fatalf("allow add: %s", r.stderr)
	}
	if got := portsOf(t, f, "ports"); !slices.Equal(got, []uint16{21, 2121}) {
		t.Fatalf("ports after del = %v", got)
	}
	if got := portsOf(t, f, "allow"); !slices.Equal(got, []uint16{21, 22, 2121}) {
		t.Fatalf("allow after add = %v", got)
	}
}

// TestScopedPorts: ports add/del take PORT@PREFIX, several at once and
// IPv6; the listing shows each scope; `del PORT@PREFIX` removes one prefix.
func TestScopedPorts(t *testing.T) {
	f := newFixture(t)
	if r := f.cmd([]string{"ports", "add"}, "2121@198.51.100.0/24@2001:db8::/32", "990@203.0.113.77/25"); r.code != 0 {
		t.Fatalf("ports add: %s", r.stderr)
	}
	var v portSet
	f.jsonOf(t, &v, "ports")
	if fmt.Sprint(v.Ports, v.Scoped) != "[21] [990@203.0.113.0/25 2121@198.51.100.0/24 2121@2001:db8::/32]" {
		t.Fatalf("ports --json: %v %v", v.Ports, v.Scoped)
	}
	r := f.cmd([]string{"ports"})
	if r.stdout != "21\n990@203.0.113.0/25\n2121@198.51.100.0/24\n2121@2001:db8::/32\n" {
		t.Fatalf("ports:\n%s", r.stdout)
	}
	if r := f.cmd([]string{"status"}); !strings.Contains(r.stdout, "ftp ports: [21 990@203.0.113.0/25 2121@198.51.100.0/24 2121@2001:db8::/32]") {
		t.Errorf("status:\n%s", r.stdout)
	}
	if r := f.cmd([]string{"ports", "del"}, "2121@198.51.100.0/24", "990@203.0.113.0/25"); r.code != 0 {
		t.Fatalf("ports del: %s", r.stderr)
	}
	f.jsonOf(t, &v, "ports")
	if fmt.Sprint(v.Ports, v.Scoped) != "[21] [2121@2001:db8::/32]" {
		t.Fatalf("after del: %v %v", v.Ports, v.Scoped)
	}
	// a scope is not an allowed port
	if got := portsOf(t, f, "allow"); !slices.Equal(got, []uint16{21, 22}) {
		t.Fatalf("allow = %v", got)
	}
}

// TestFlagsAfterPorts: flags may follow the ports, in either form, value
// flags and bool flags alike; after -- everything is a port.
func TestFlagsAfterPorts(t *testing.T) {
	f := newFixture(t)
	for _, args := range [][]string{
		{"ports", "add", "2121", "--pin-dir", f.pinDir, "--state-dir=" + string(f.states), "990"},
		{"allow", "add", "2121", "--pin-dir=" + f.pinDir, "--state-dir", string(f.states)},
		{"allow", "del", "--pin-dir", f.pinDir, "22", "--state-dir", string(f.states)},
	} {
		if r := ftpgate(args...); r.code != 0 {
			t.Fatalf("%v: exit %d: %s", args, r.code, r.stderr)
		}
	}
	if got := portsOf(t, f, "ports"); !slices.Equal(got, []uint16{21, 990, 2121}) {
		t.Errorf("ports = %v, want [21 990 2121]", got)
	}
	if got := portsOf(t, f, "allow"); !slices.Equal(got, []uint16{21, 2121}) {
		t.Errorf("allow = %v, want [21 2121]", got)
	}
	if r := ftpgate("ports", "add", "2121", "--help"); r.code != 0 || !strings.Contains(r.stdout, "PORT|PORT@PREFIX [...]") {
		t.Errorf("ports add 2121 --help: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r := ftpgate("ports", "add", "2121", "--", "--pin-dir")
	oneLine(t, r)
	if !strings.Contains(r.stderr, `"--pin-dir" is not a port number`) {
		t.Errorf("after --: %s", r.stderr)
	}
}

// A value flag left without its value after the ports changes nothing: it
// must not take a port as its value (then 2121 would never be added).
func TestDanglingValueFlagAfterPorts(t *testing.T) {
	f := newFixture(t)
	r := f.cmd([]string{"ports", "add", "2121", "2122"}, "--state-dir")
	if r.code == 0 {
		t.Fatalf("ports add 2121 2122 --state-dir succeeded: %q", r.stdout)
	}
	if r := f.cmd([]string{"ports"}); strings.Contains(r.stdout, "2121") || strings.Contains(r.stdout, "2122") {
		t.Fatalf("ports after the refused command: %q", r.stdout)
	}
}
