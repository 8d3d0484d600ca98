package nettest

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Routed is a namespace that routes as a gateway does, so that the
// reverse-path check of control segments (bpf_fib_lookup, rp-check) really
// looks routes up: forwarding on; "outside" (a veth) holds the default
// routes via 203.0.113.254 and 2001:db8:ff::fe, "inside" (another) the
// client prefixes 192.0.2.0/24 and 2001:db8:1::/64; 10.66.0.0/16 is
// unreachable. The outside gateways and the given inside hosts are
// permanent neighbours, so that lookups towards them answer success rather
// than "no neighbour". A test run's skb otherwise sits on the loopback,
// where forwarding is off and the lookup stops at "forwarding disabled".
type Routed struct {
	NS              string
	Outside, Inside uint32 // interface indexes
}

// routedUnreachable is the prefix Routed routes nowhere.
const routedUnreachable = "10.66.0.0/16"

// NewRouted creates a Routed namespace named after prefix; t.Cleanup removes it.
func NewRouted(t testing.TB, prefix string, insideHosts ...netip.Addr) *Routed {
	t.Helper()
	l := &Routed{NS: VethNS(t, prefix, "outside", "outside-peer")}
	err := Do(l.NS, func() error {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "inside"}, PeerName: "inside-peer"}); err != nil {
			return err
		}
		for _, f := range []string{"ipv4/conf/all/forwarding", "ipv6/conf/all/forwarding"} {
			if err := os.WriteFile("/proc/sys/net/"+f, []byte("1"), 0o644); err != nil {
				return err
			}
		}
		gws := []netip.Addr{netip.MustParseAddr("203.0.113.254"), netip.MustParseAddr("2001:db8:ff::fe")}
		for _, dev := range []struct {
			name  string
			idx   *uint32
			addrs []string
			gws   []netip.Addr
			neigh []netip.Addr
		}{
			{"outside", &l.Outside, []string{"203.0.113.1/24", "2001:db8:ff::1/64"}, gws, gws},
			{"inside", &l.Inside, []string{"192.0.2.1/24", "2001:db8:1::1/64"}, nil, insideHosts},
			{"inside-peer", nil, nil, nil, nil},
		} {
			lk, err := netlink.LinkByName(dev.name)
			if err != nil {
				return err
			}
			if err := netlink.LinkSetUp(lk); err != nil {
				return err
			}
			if dev.idx != nil {
				*dev.idx = uint32(lk.Attrs().Index)
			}
			for _, a := range dev.addrs {
				p := netip.MustParsePrefix(a)
				ipn := &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
				if err := netlink.AddrAdd(lk, &netlink.Addr{IPNet: ipn, Flags: unix.IFA_F_NODAD}); err != nil {
					return fmt.Errorf("address %s: %w", a, err)
				}
			}
			for _, gw := range dev.gws {
				if err := netlink.RouteAdd(&netlink.Route{LinkIndex: lk.Attrs().Index, Gw: gw.AsSlice()}); err != nil {
					return fmt.Errorf("default route via %s: %w", gw, err)
				}
			}
			for _, n := range dev.neigh {
				family := unix.AF_INET
				if n.Is6() {
					family = unix.AF_INET6
				}
				err := netlink.NeighSet(&netlink.Neigh{LinkIndex: lk.Attrs().Index, Family: family, State: netlink.NUD_PERMANENT,
					IP: n.AsSlice(), HardwareAddr: net.HardwareAddr{0x02, 0, 0, 0, 0, 1}})
				if err != nil {
					return fmt.Errorf("neighbour %s: %w", n, err)
				}
			}
		}
		_, unreachable, _ := net.ParseCIDR(routedUnreachable)
		return netlink.RouteAdd(&netlink.Route{Dst: unreachable, Type: unix.RTN_UNREACHABLE})
	})
	if err != nil {
		t.Fatalf("set up %s: %v", l.NS, err)
	}
	return l
}
