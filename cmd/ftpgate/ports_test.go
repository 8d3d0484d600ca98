package main

import (
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

func TestFlagsAfterPortsAreExplained(t *testing.T) {
	r := ftpgate("ports", "add", "2121", "--pin-dir", "/tmp/x")
	oneLine(t, r)
	if !strings.Contains(r.stderr, "flags go before the ports") {
		t.Fatalf("error does not explain flag order: %s", r.stderr)
	}
}
