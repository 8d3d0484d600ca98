package main

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ftpgate/ftpgate/maps"
)

func tlsRangesOf(t *testing.T, f *fixture) []string {
	t.Helper()
	var rs []maps.TLSRange
	f.jsonOf(t, &rs, "tls-range")
	var out []string
	for _, r := range rs {
		out = append(out, r.String())
	}
	return out
}

// TestTLSRangeCommand: tls-range lists, adds and deletes; a bad range or a
// server's ninth range gets one line.
func TestTLSRangeCommand(t *testing.T) {
	f := newFixture(t)
	if got := tlsRangesOf(t, f); len(got) != 0 {
		t.Fatalf("ranges at start %v", got)
	}
	if r := f.cmd([]string{"tls-range", "add"}, "198.51.100.2:30000-30099", "[2001:db8::2]:40000-40099", "198.51.100.2:31000-31009"); r.code != 0 {
		t.Fatalf("tls-range add: %s", r.stderr)
	}
	want := []string{"198.51.100.2:30000-30099", "198.51.100.2:31000-31009", "[2001:db8::2]:40000-40099"}
	if got := tlsRangesOf(t, f); !slices.Equal(got, want) {
		t.Fatalf("ranges %v, want %v", got, want)
	}
	if r := f.cmd([]string{"tls-range"}); r.code != 0 || r.stdout != strings.Join(want, "\n")+"\n" {
		t.Fatalf("tls-range text: %q %q", r.stdout, r.stderr)
	}
	if r := f.cmd([]string{"tls-range", "del"}, "198.51.100.2:30000-30099"); r.code != 0 {
		t.Fatalf("tls-range del: %s", r.stderr)
	}
	if got := tlsRangesOf(t, f); !slices.Equal(got, want[1:]) {
		t.Fatalf("ranges after del %v, want %v", got, want[1:])
	}
	for _, bad := range [][]string{
		{"tls-range", "add"},
		{"tls-range", "add", "198.51.100.2:30000"},
		{"tls-range", "add", "2001:db8::2:30000-30099"},
		{"tls-range", "add", "198.51.100.2:990-999"},
		{"tls-range", "add", "198.51.100.2:20-30000"},
		{"tls-range", "del", "198.51.100.2:30000-30099"},
	} {
		r := f.cmd(bad[:2], bad[2:]...)
		oneLine(t, r)
	}
	for i := range maps.TLSRangesPerServer {
		if r := f.cmd([]string{"tls-range", "add"}, "203.0.113.5:"+strconv.Itoa(40000+10*i)+"-"+strconv.Itoa(40005+10*i)); r.code != 0 {
			t.Fatalf("add range %d: %s", i, r.stderr)
		}
	}
	r := f.cmd([]string{"tls-range", "add"}, "203.0.113.5:41000-41005")
	if r.code == 0 {
		t.Fatal("one range more than a server holds accepted")
	}
	if r := f.cmd([]string{"tls-range", "add"}, "203.0.113.5:41000-41005"); !strings.Contains(r.stderr, "delete one first") {
		t.Fatalf("full server: %q", r.stderr)
	}
}

// TestRunTLSFlags: run's FTPS flags reach the options; bad ones get one line.
func TestRunTLSFlags(t *testing.T) {
	for _, bad := range [][]string{
		{"run", "--iface", "lo", "--tls-range", "198.51.100.2"},
		{"run", "--iface", "lo", "--ftps-port", "0"},
		{"config", "set", "--require-tls=maybe"},
	} {
		oneLine(t, ftpgate(bad...))
	}
}
