package bpf_test

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/internal/bpfrun"
	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/internal/nettest"
	"github.com/ftpgate/ftpgate/maps"
)

var pfx = netip.MustParsePrefix

// TestScopedCtrlPort: 2121@198.51.100.0/24 is parsed towards a server in
// the prefix, in both directions, and ignored (counted) towards another.
func TestScopedCtrlPort(t *testing.T) {
	r := bpftest.Shared(t)
	scope4 := maps.PortScope{Port: 2121, Prefix: pfx("198.51.100.0/24")}
	scope6 := maps.PortScope{Port: 2121, Prefix: pfx("2001:db8:2::/48")}
	must(t, r.Maps.CtrlScopes().Add(scope4))
	must(t, r.Maps.CtrlScopes().Add(scope6))
	if global, err := r.Maps.CtrlPorts().Has(2121); err != nil || global {
		t.Fatalf("2121 global after a scope was added: %v %v", global, err)
	}

	// towards a server inside the prefix: commands and replies are parsed
	active := bpftest.NewConn(r, ap(client4, 40001), ap(server4, 2121))
	must(t, active.Open())
	must(t, active.Greet())
	must(t, active.ClientSends("PORT 192,0,2,10,195,80\r\n"))
	passive := bpftest.NewConn(r, ap(client4, 40011), ap(server4, 2121))
	must(t, passive.Open())
	must(t, passive.Greet())
	converse(t, passive, "", "PASV\r\n", "227 Entering Passive Mode (198,51,100,20,39,16)\r\n")
	in6 := bpftest.NewConn(r, ap(client6, 40001), ap(server6, 2121))
	must(t, in6.Open())
	must(t, in6.Greet())
	must(t, in6.ClientSends("EPRT |2|2001:db8:1::10|50002|\r\n"))
	wantExpect(t, r, expect{"port", server4, client4, 50000}, expect{"pasv", client4, server4, 10000},
		expect{"eprt", server6, client6, 50002})
	wantCounters(t, r, map[string]uint64{"ctrl_out_of_scope": 0})

	// towards another server: not a control connection at all
	out := bpftest.NewConn(r, ap(client4, 40002), ap(other4, 2121))
	must(t, out.Open())                                    // SYN, SYN-ACK, ACK
	must(t, out.ClientSends("PORT 192,0,2,10,195,81\r\n")) // one more
	wantExpect(t, r, expect{"port", server4, client4, 50000}, expect{"pasv", client4, server4, 10000},
		expect{"eprt", server6, client6, 50002})
	wantCounters(t, r, map[string]uint64{"ctrl_out_of_scope": 4, "cmd_port": 1})
	conns, err := r.Maps.ListConns()
	must(t, err)
	for _, c := range conns {
		if c.Server == other4 {
			t.Fatalf("state kept for a server out of scope: %+v", c)
		}
	}

	// 2121 for every server too; then its scopes go and it stays global
	must(t, r.Maps.CtrlPorts().Add(2121))
	out2 := bpftest.NewConn(r, ap(client4, 40003), ap(other4, 2121))
	must(t, out2.Open())
	must(t, out2.Greet())
	must(t, out2.ClientSends("PORT 192,0,2,10,195,82\r\n"))
	must(t, r.Maps.CtrlScopes().Del(scope4))
	must(t, r.Maps.CtrlScopes().Del(scope6))
	if s, err := r.Maps.CtrlScopes().List(); err != nil || len(s) != 0 {
		t.Fatalf("scopes after deleting both: %v %v", s, err)
	}
	if global, err := r.Maps.CtrlPorts().Has(2121); err != nil || !global {
		t.Fatalf("2121 not global after its scopes went: %v %v", global, err)
	}
	// and without the global entry, nothing of 2121 is parsed
	must(t, r.Maps.CtrlPorts().Del(2121))
	gone := bpftest.NewConn(r, ap(client4, 40004), ap(server4, 2121))
	must(t, gone.Open())
	must(t, gone.Greet())
	must(t, gone.ClientSends("PORT 192,0,2,10,195,83\r\n"))
	got := expectations(t, r)
	if len(got) != 4 {
		t.Fatalf("expectations %v: want the three in scope and 50002 through the global port", got)
	}
}

// TestScopeSetLists: scopes list by port, IPv4 first; Replace makes the set.
func TestScopeSetLists(t *testing.T) {
	r := bpftest.Shared(t)
	want := []maps.PortScope{
		{Port: 990, Prefix: pfx("2001:db8::/32")},
		{Port: 2121, Prefix: pfx("198.51.100.0/24")},
		{Port: 2121, Prefix: pfx("203.0.113.128/25")},
	}
	must(t, r.Maps.CtrlScopes().Replace([]maps.PortScope{want[2], want[0], want[1]}))
	got, err := r.Maps.CtrlScopes().List()
	must(t, err)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("scopes %v, want %v", got, want)
	}
	must(t, r.Maps.CtrlScopes().Replace(want[1:2]))
	got, err = r.Maps.CtrlScopes().List()
	must(t, err)
	if fmt.Sprint(got) != "[2121@198.51.100.0/24]" {
		t.Fatalf("after replace: %v", got)
	}
	var v struct{ Enabled uint32 }
	must(t, r.Objs.CtrlPorts.Lookup(uint32(990), &v))
	if v.Enabled != 0 {
		t.Fatalf("990 keeps flags %#x after its last scope went", v.Enabled)
	}
}

// rpLab is a namespace standing for a gateway (nettest.Routed): "outside"
// holds the default route, "inside" the clients' prefixes (192.0.2.0/24,
// 2001:db8:1::/64), and an unreachable route covers 10.66.0.0/16.
type rpLab struct {
	ns              string
	outside, inside uint32
}

func newRPLab(t *testing.T) *rpLab {
	t.Helper()
	n := nettest.NewRouted(t, "ftpgate-rp")
	return &rpLab{ns: n.NS, outside: n.Outside, inside: n.Inside}
}

// conn drives a control connection through the lab's interfaces: the
// client's segments arrive on clientIf, the server's on outside, at TC
// ingress.
func (l *rpLab) conn(r *bpftest.Rig, client, server netip.AddrPort, clientIf uint32) *bpftest.Conn {
	c := bpftest.NewConn(r, client, server)
	c.Hook = func(frame []byte, fromClient bool) error {
		on := l.outside
		if fromClient {
			on = clientIf
		}
		return nettest.Do(l.ns, func() error {
			_, err := r.TCOn(frame, true, on, 0)
			return err
		})
	}
	return c
}

// TestReversePathCheck: with real routes, an inside client's PORT that
// arrives from outside (finding 1 of issue #11) is ignored in strict mode
// and creates no state, while the genuine one, arriving inside, works; loose
// accepts any routed source and refuses an unreachable one; off parses all.
func TestReversePathCheck(t *testing.T) {
	r := bpftest.Shared(t)
	l := newRPLab(t)
	port := uint16(41000)
	// try sends PORT/EPRT from client through clientIf and reports whether
	// it created an expectation
	try := func(t *testing.T, client netip.Addr, clientIf uint32) bool {
		t.Helper()
		port++
		server, cmd := server4, fmt.Sprintf("PORT %s,195,80\r\n", strings.ReplaceAll(client.String(), ".", ","))
		if client.Is6() {
			server, cmd = server6, fmt.Sprintf("EPRT |2|%s|50000|\r\n", client)
		}
		c := l.conn(r, ap(client, port), ap(server, 21), clientIf)
		must(t, c.Open())
		must(t, c.Greet())
		must(t, c.ClientSends(cmd))
		got := expectations(t, r)
		clearTables(t, r)
		return len(got) == 1
	}
	unroutable := addr("10.66.0.9")
	for _, tc := range []struct {
		mode                           maps.RPCheck
		inside, spoofed, unroutableOut bool
	}{
		{maps.RPStrict, true, false, false},
		{maps.RPLoose, true, true, false},
		{maps.RPOff, true, true, true},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			setConfig(t, r, func(c *maps.Config) { c.RPCheck = tc.mode })
			for _, client := range []netip.Addr{client4, client6} {
				if got := try(t, client, l.inside); got != tc.inside {
					t.Errorf("%s from inside: expectation %v, want %v", client, got, tc.inside)
				}
				before := counter(t, r, "ctrl_spoofed")
				if got := try(t, client, l.outside); got != tc.spoofed {
					t.Errorf("%s arriving from outside: expectation %v, want %v", client, got, tc.spoofed)
				}
				if spoofed := counter(t, r, "ctrl_spoofed") - before; (spoofed == 0) != tc.spoofed {
					t.Errorf("%s arriving from outside: ctrl_spoofed +%d", client, spoofed)
				}
			}
			if got := try(t, unroutable, l.outside); got != tc.unroutableOut {
				t.Errorf("%s (unreachable route): expectation %v, want %v", unroutable, got, tc.unroutableOut)
			}
		})
	}

	// strict: spoofed segments (the attacker has only its own) leave no
	// trace in the control table
	setConfig(t, r, func(c *maps.Config) { c.RPCheck = maps.RPStrict })
	c := l.conn(r, ap(client4, 42000), ap(server4, 21), l.outside)
	hook := c.Hook
	c.Hook = func(frame []byte, fromClient bool) error {
		if !fromClient {
			return nil
		}
		return hook(frame, fromClient)
	}
	must(t, c.Open())
	must(t, c.Greet())
	must(t, c.ClientSends("PORT 192,0,2,10,195,80\r\n"))
	conns, err := r.Maps.ListConns()
	must(t, err)
	for _, cc := range conns {
		if cc.Client == client4 {
			t.Fatalf("a spoofed client's segments made state: %+v", cc)
		}
	}

	// egress: what this host sends is trusted; a forwarded segment is
	// checked against the interface it came in on
	egress := func(ingressIfindex uint32) (bool, error) {
		return l.egressPORT(t, r, client4, ingressIfindex)
	}
	if ok, err := egress(0); err != nil || !ok {
		t.Errorf("locally sent PORT at egress: expectation %v (%v), want one", ok, err)
	}
	ok, err := egress(l.outside)
	if errors.Is(err, unix.EINVAL) {
		t.Logf("BPF_PROG_TEST_RUN of this kernel does not take ingress_ifindex: egress of forwarded segments not tested here")
		return
	}
	if err != nil || ok {
		t.Errorf("PORT of an inside client forwarded from outside, at egress: expectation %v (%v), want none", ok, err)
	}
	if ok, err := egress(l.inside); err != nil || !ok {
		t.Errorf("PORT forwarded from inside, at egress: expectation %v (%v), want one", ok, err)
	}
}

// egressPORT drives a control connection from client to server4:21 seen at
// TC egress of outside, its client's segments forwarded from the interface
// ingressIfindex (0: sent by this host), and has the client announce its own
// address in a PORT. Reports whether an expectation resulted.
func (l *rpLab) egressPORT(t *testing.T, r *bpftest.Rig, client netip.Addr, ingressIfindex uint32) (bool, error) {
	t.Helper()
	c := bpftest.NewConn(r, ap(client, 42001), ap(server4, 21))
	c.Hook = func(frame []byte, fromClient bool) error {
		on, from := l.outside, ingressIfindex
		if !fromClient && ingressIfindex != 0 {
			// the server's replies are forwarded from outside to inside
			on, from = l.inside, l.outside
		}
		return nettest.Do(l.ns, func() error {
			_, err := r.TCOn(frame, false, on, from)
			return err
		})
	}
	if err := c.Open(); err != nil {
		return false, err
	}
	must(t, c.Greet())
	must(t, c.ClientSends(fmt.Sprintf("PORT %s,195,80\r\n", strings.ReplaceAll(client.String(), ".", ","))))
	got := expectations(t, r)
	clearTables(t, r)
	return len(got) == 1, nil
}

// TestReversePathNotForwarding: an interface that does not forward (a host
// guarding its own NIC) cannot be checked by bpf_fib_lookup: the segment is
// parsed and counted.
func TestReversePathNotForwarding(t *testing.T) {
	r := bpftest.Shared(t)
	l := newRPLab(t)
	err := nettest.Do(l.ns, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/conf/inside/forwarding", []byte("0"), 0o644)
	})
	must(t, err)
	setConfig(t, r, func(c *maps.Config) { c.RPCheck = maps.RPStrict })
	c := l.conn(r, ap(client4, 43000), ap(server4, 21), l.inside)
	c.Hook = func(frame []byte, fromClient bool) error {
		return nettest.Do(l.ns, func() error {
			_, err := r.TCOn(frame, true, l.inside, 0)
			return err
		})
	}
	must(t, c.Open())
	must(t, c.Greet())
	must(t, c.ClientSends("PORT 192,0,2,10,195,80\r\n"))
	wantExpect(t, r, expect{"port", server4, client4, 50000})
	wantCounters(t, r, map[string]uint64{"ctrl_spoofed": 0, "rp_not_forwarding": 5})
}

// clearTables empties the connection tables between attempts
func clearTables(t *testing.T, r *bpftest.Rig) {
	t.Helper()
	for _, name := range maps.SizedTables {
		must(t, bpfrun.Clear(r.Maps.ByName(name)))
	}
}

func counter(t *testing.T, r *bpftest.Rig, name string) uint64 {
	t.Helper()
	c, err := r.Counters()
	must(t, err)
	return c[name]
}

// TestReversePathSNATSource: on a NAT gateway a forwarded control segment
// leaves with this host's own address as its source (masquerade, or the
// reverse of DNAT). The kernel drops arriving segments with a local source
// as martians, so only this host can have put it there: the segment is
// parsed and counted (rp_snat_source), where before it counted as spoofed
// and a gateway running the kernel's helper next to ftpgate's filter
// admitted no data connection. A forwarded segment with a foreign source
// that does not route back is still refused.
func TestReversePathSNATSource(t *testing.T) {
	r := bpftest.Shared(t)
	l := newRPLab(t)
	setConfig(t, r, func(c *maps.Config) { c.RPCheck = maps.RPStrict })
	public := addr("203.0.113.1") // the lab's own outside address
	forwarded := func(client netip.Addr) (bool, error) { return l.egressPORT(t, r, client, l.inside) }
	before := counter(t, r, "rp_snat_source")
	ok, err := forwarded(public)
	if errors.Is(err, unix.EINVAL) {
		t.Skip("BPF_PROG_TEST_RUN of this kernel does not take ingress_ifindex: egress of forwarded segments not testable here")
	}
	if err != nil || !ok {
		t.Fatalf("PORT of a masqueraded client (source %v, this host's) at egress: expectation %v (%v), want one", public, ok, err)
	}
	if n := counter(t, r, "rp_snat_source") - before; n == 0 {
		t.Errorf("rp_snat_source +%d, want the segments counted", n)
	}
	spoofed := counter(t, r, "ctrl_spoofed")
	if ok, err := forwarded(addr("10.66.0.9")); err != nil || ok {
		t.Errorf("PORT forwarded from inside with an unroutable foreign source: expectation %v (%v), want none", ok, err)
	}
	if counter(t, r, "ctrl_spoofed") == spoofed {
		t.Errorf("unroutable foreign source at egress: ctrl_spoofed did not move")
	}
}
