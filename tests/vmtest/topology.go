// Package vmtest is the end-to-end test that runs inside the VM matrix: a
// client, a gateway guarded by ftpgate and an FTP server in network
// namespaces, built with netlink and driven by a pure-Go FTP server and
// client, so that it needs no binary but its own.
package vmtest

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/internal/nettest"
)

// Addresses of the three hosts (documentation ranges).
var (
	clientV4 = netip.MustParsePrefix("192.0.2.2/24")
	gwCliV4  = netip.MustParsePrefix("192.0.2.1/24")
	gwSrvV4  = netip.MustParsePrefix("198.51.100.1/24")
	serverV4 = netip.MustParsePrefix("198.51.100.2/24")
	clientV6 = netip.MustParsePrefix("2001:db8:1::2/64")
	gwCliV6  = netip.MustParsePrefix("2001:db8:1::1/64")
	gwSrvV6  = netip.MustParsePrefix("2001:db8:2::1/64")
	serverV6 = netip.MustParsePrefix("2001:db8:2::2/64")
)

// Interface names on the gateway.
const (
	gwClientIf = "gw-c"
	gwServerIf = "gw-s"
)

type topology struct {
	client, gateway, server string // namespace names
}

// newTopology builds client -- gateway -- server with two veth pairs.
func newTopology(t *testing.T) *topology {
	t.Helper()
	id := fmt.Sprintf("fgv%05d", rand.IntN(100000))
	tp := &topology{client: id + "-c", gateway: id + "-g", server: id + "-s"}
	for _, ns := range []string{tp.client, tp.gateway, tp.server} {
		nettest.NS(t, ns)
	}
	must(t, nettest.Do(tp.gateway, func() error {
		for _, w := range []string{"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"} {
			if err := os.WriteFile("/proc/sys/"+w, []byte("1"), 0o644); err != nil {
				return fmt.Errorf("enable forwarding: %w", err)
			}
		}
		return nil
	}))
	tp.link(t, gwClientIf, tp.client, []netip.Prefix{gwCliV4, gwCliV6}, []netip.Prefix{clientV4, clientV6})
	tp.link(t, gwServerIf, tp.server, []netip.Prefix{gwSrvV4, gwSrvV6}, []netip.Prefix{serverV4, serverV6})
	return tp
}

// link creates a veth pair from the gateway (gwIf) to host (eth0), addresses
// both ends and routes the host's default through the gateway.
func (tp *topology) link(t *testing.T, gwIf, host string, gwAddrs, hostAddrs []netip.Prefix) {
	t.Helper()
	hostNS, err := netns.GetFromName(host)
	must(t, err)
	defer hostNS.Close()
	must(t, nettest.Do(tp.gateway, func() error {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: gwIf}, PeerName: "eth0", PeerNamespace: netlink.NsFd(hostNS)}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth %s: %w", gwIf, err)
		}
		return configure(gwIf, gwAddrs, nil)
	}))
	must(t, nettest.Do(host, func() error {
		return configure("eth0", hostAddrs, []netip.Addr{gwAddrs[0].Addr(), gwAddrs[1].Addr()})
	}))
}

// configure brings lo and dev up with addrs (no duplicate address
// detection: usable at once) and default routes via gws.
func configure(dev string, addrs []netip.Prefix, gws []netip.Addr) error {
	for _, name := range []string{"lo", dev} {
		lk, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(lk); err != nil {
			return fmt.Errorf("set %s up: %w", name, err)
		}
	}
	lk, err := netlink.LinkByName(dev)
	if err != nil {
		return err
	}
	for _, p := range addrs {
		a := &netlink.Addr{IPNet: prefixNet(p), Flags: unix.IFA_F_NODAD}
		if err := netlink.AddrAdd(lk, a); err != nil {
			return fmt.Errorf("address %s on %s: %w", p, dev, err)
		}
	}
	for _, gw := range gws {
		r := &netlink.Route{LinkIndex: lk.Attrs().Index, Gw: gw.AsSlice()}
		if err := netlink.RouteAdd(r); err != nil {
			return fmt.Errorf("default route via %s: %w", gw, err)
		}
	}
	return nil
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
