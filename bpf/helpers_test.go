package bpf_test

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/maps"
)

// Addresses from the documentation ranges (RFC 5737, RFC 3849).
var (
	client4, server4, other4 = addr("192.0.2.10"), addr("198.51.100.20"), addr("203.0.113.30")
	client6, server6         = addr("2001:db8:1::10"), addr("2001:db8:2::20")
)

var addr = netip.MustParseAddr

func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

// open returns a control connection from client:40000 to server:21, opened
// and greeted by the server.
func open(t *testing.T, r *bpftest.Rig, client, server netip.Addr) *bpftest.Conn {
	t.Helper()
	c := bpftest.NewConn(r, ap(client, 40000), ap(server, 21))
	must(t, c.Open())
	must(t, c.Greet())
	return c
}

// converse plays a short exchange, leaving out the empty lines: the client's
// pre and cmd, then the server's reply.
func converse(t *testing.T, c *bpftest.Conn, pre, cmd, reply string) {
	t.Helper()
	for _, line := range []string{pre, cmd} {
		if line != "" {
			must(t, c.ClientSends(line))
		}
	}
	if reply != "" {
		must(t, c.ServerSends(reply))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// expect is the comparable part of an expectation.
type expect struct {
	Kind  string
	Src   netip.Addr
	Dst   netip.Addr
	DPort uint16
}

func (e expect) String() string {
	return fmt.Sprintf("%s %s -> %s:%d", e.Kind, e.Src, e.Dst, e.DPort)
}

func expectations(t *testing.T, r *bpftest.Rig) []expect {
	t.Helper()
	list, err := r.Maps.ListExpectations()
	must(t, err)
	var out []expect
	for _, e := range list {
		out = append(out, expect{e.Kind.String(), e.Src, e.Dst, e.DPort})
	}
	slices.SortFunc(out, func(a, b expect) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// wantExpect fails unless the expectation table holds exactly want.
func wantExpect(t *testing.T, r *bpftest.Rig, want ...expect) {
	t.Helper()
	got := expectations(t, r)
	slices.SortFunc(want, func(a, b expect) int { return strings.Compare(a.String(), b.String()) })
	if !slices.Equal(got, want) {
		t.Fatalf("expectations:\n got  %v\n want %v", got, want)
	}
}

// wantCounters fails unless each named counter has the given value.
func wantCounters(t *testing.T, r *bpftest.Rig, want map[string]uint64) {
	t.Helper()
	got, err := r.Counters()
	must(t, err)
	for name, v := range want {
		if _, ok := got[name]; !ok {
			t.Fatalf("no counter %q", name)
		}
		if got[name] != v {
			t.Errorf("counter %s = %d, want %d (all non-zero: %v)", name, got[name], v, nonZero(got))
		}
	}
}

func nonZero(c map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range c {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

func setConfig(t *testing.T, r *bpftest.Rig, f func(*maps.Config)) {
	t.Helper()
	c, err := r.Maps.GetConfig()
	must(t, err)
	f(&c)
	must(t, r.Maps.SetConfig(c))
}
