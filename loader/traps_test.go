package loader

import (
	"errors"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
)

// addTun creates a persistent tun device (no Ethernet header) in ns.
func addTun(t *testing.T, ns, name string) {
	t.Helper()
	must(t, inNetns(ns, func() error {
		return netlink.LinkAdd(&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: name}, Mode: netlink.TUNTAP_MODE_TUN})
	}))
}

// TestL3InterfaceIsRefused: the programs parse Ethernet frames, so on a tun
// (wireguard, ppp, ipip, gre alike) they would filter nothing; start refuses
// and names the interface, its type and what to guard instead.
func TestL3InterfaceIsRefused(t *testing.T) {
	env := newEnv(t)
	addTun(t, env.ns, "fgtun0")
	opts := env.options(XDPGeneric, TCNetlink)
	opts.Ifaces = []string{"fg0", "fgtun0"}
	_, err := Start(opts)
	if !errors.Is(err, ErrNotEthernet) {
		t.Fatalf("start on a tun device: %v, want ErrNotEthernet", err)
	}
	for _, want := range []string{`"fgtun0"`, "tuntap", "guard the Ethernet interface"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	env.nothingLeft(t)
}

func TestEthernetLinkTypes(t *testing.T) {
	for encap, want := range map[string]bool{
		"ether": true, "loopback": true, "none": false, "ipip": false, "ipgre": false, "ppp": false, "tunnel6": false, "infiniband": false,
	} {
		if got := carriesEthernet(encap); got != want {
			t.Errorf("carriesEthernet(%q) = %v, want %v", encap, got, want)
		}
	}
}
