package nettest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/internal/nsrun"
)

// Addresses of the lab hosts, from the documentation ranges only: the
// client's link is 192.0.2.0/24 and 2001:db8:1::/64, the server's
// 198.51.100.0/24 and 2001:db8:2::/64, and the gateway is .1 (::1) on both.
var (
	ClientV4   = netip.MustParsePrefix("192.0.2.2/24")
	GwClientV4 = netip.MustParsePrefix("192.0.2.1/24")
	GwServerV4 = netip.MustParsePrefix("198.51.100.1/24")
	ServerV4   = netip.MustParsePrefix("198.51.100.2/24")

	ClientV6   = netip.MustParsePrefix("2001:db8:1::2/64")
	GwClientV6 = netip.MustParsePrefix("2001:db8:1::1/64")
	GwServerV6 = netip.MustParsePrefix("2001:db8:2::1/64")
	ServerV6   = netip.MustParsePrefix("2001:db8:2::2/64")
)

// Interface names. They are per namespace, so concurrent topologies reuse them.
const (
	GwClientIf = "gw-c" // the gateway's end towards the client
	GwServerIf = "gw-s" // the gateway's end towards the server
	HostIf     = "eth0" // a host's end towards the gateway
)

// Link is one host hung off the gateway by a veth pair.
type Link struct {
	// Name is the host's role and the end of its namespace's name.
	Name string
	// GwIf is the gateway's end of the pair; the host's end is HostIf.
	GwIf string
	// GwAddrs go on GwIf and are the host's default routes, one per family;
	// HostAddrs go on the host's end.
	GwAddrs, HostAddrs []netip.Prefix
}

// The two links of the default topology.
var (
	ClientLink = Link{Name: "cli", GwIf: GwClientIf,
		GwAddrs: []netip.Prefix{GwClientV4, GwClientV6}, HostAddrs: []netip.Prefix{ClientV4, ClientV6}}
	ServerLink = Link{Name: "srv", GwIf: GwServerIf,
		GwAddrs: []netip.Prefix{GwServerV4, GwServerV6}, HostAddrs: []netip.Prefix{ServerV4, ServerV6}}
)

// Options shapes a topology. The zero value is client — gateway — server.
type Options struct {
	// Prefix starts every namespace name; a random part follows, so that
	// concurrent runs do not collide ("fg" gives fg-1a2b-gw, fg-1a2b-cli…).
	Prefix string
	// Links are the hosts on the gateway, in order; nil means ClientLink
	// and ServerLink. The first host is the one readiness is checked from.
	Links []Link
}

// Host is one namespace on a link to the gateway.
type Host struct {
	Link
	// NS is the network namespace's name (under /run/netns).
	NS string
	// GwIndex is the ifindex of GwIf inside the gateway namespace.
	GwIndex int
}

// Addr returns the host's address of family 4 or 6 (invalid if it has none).
func (h *Host) Addr(family int) netip.Addr { return pick(h.HostAddrs, family) }

// GwAddr returns the gateway's address on this host's link.
func (h *Host) GwAddr(family int) netip.Addr { return pick(h.GwAddrs, family) }

func pick(ps []netip.Prefix, family int) netip.Addr {
	for _, p := range ps {
		if p.Addr().Is6() == (family == 6) {
			return p.Addr()
		}
	}
	return netip.Addr{}
}

// Topology is a gateway namespace that forwards between host namespaces,
// built with netlink only: it needs no `ip` binary, so it also works inside
// the VM matrix.
type Topology struct {
	// ID is the random prefix of the namespace names ("fg-1a2b").
	ID string
	// Gateway is the gateway's namespace name.
	Gateway string
	// Hosts are in Options.Links order.
	Hosts []*Host
}

// Host returns the host of the link named name, nil if there is none.
func (tp *Topology) Host(name string) *Host {
	for _, h := range tp.Hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// Client and Server are the hosts of ClientLink and ServerLink.
func (tp *Topology) Client() *Host { return tp.Host(ClientLink.Name) }
func (tp *Topology) Server() *Host { return tp.Host(ServerLink.Name) }

// Namespaces returns every namespace name, the gateway's first.
func (tp *Topology) Namespaces() []string {
	names := []string{tp.Gateway}
	for _, h := range tp.Hosts {
		names = append(names, h.NS)
	}
	return names
}

// routedTimeout bounds the wait for a freshly built path to forward: veth
// carrier comes up asynchronously.
const routedTimeout = 15 * time.Second

// NewTopology builds the namespaces and links of opts, waits until the first
// host reaches every other through the gateway in each family they share,
// and removes everything when the test ends. It fails the test on any
// error; the caller must be root.
func NewTopology(t testing.TB, opts Options) *Topology {
	t.Helper()
	if opts.Links == nil {
		opts.Links = []Link{ClientLink, ServerLink}
	}
	tp, err := createNamespaces(t, opts)
	if err != nil {
		t.Fatalf("topology: %v", err)
	}
	for _, h := range tp.Hosts {
		if err := tp.connect(h); err != nil {
			t.Fatalf("topology %s: %v", tp.ID, err)
		}
	}
	if err := tp.waitRouted(routedTimeout); err != nil {
		t.Fatalf("topology %s: %v", tp.ID, err)
	}
	return tp
}

// createNamespaces makes the gateway and host namespaces under a free
// random ID, each removed in cleanup as soon as it exists, so a topology
// that fails half-way is still torn down.
func createNamespaces(t testing.TB, opts Options) (*Topology, error) {
	prefix := opts.Prefix
	if prefix == "" {
		prefix = "fg"
	}
	for attempt := 0; attempt < 5; attempt++ {
		b := make([]byte, 2)
		_, _ = rand.Read(b)
		id := prefix + "-" + hex.EncodeToString(b)
		tp := &Topology{ID: id, Gateway: id + "-gw"}
		for _, lk := range opts.Links {
			tp.Hosts = append(tp.Hosts, &Host{Link: lk, NS: id + "-" + lk.Name})
		}
		if taken(tp.Namespaces()) {
			continue
		}
		err := createNS(t, tp.Gateway, "net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding")
		for _, h := range tp.Hosts {
			if err == nil {
				err = createNS(t, h.NS)
			}
		}
		if errors.Is(err, os.ErrExist) {
			continue // another run took a name since taken looked
		}
		if err != nil {
			return nil, err
		}
		return tp, nil
	}
	return nil, errors.New("create namespaces: no free random name")
}

func taken(names []string) bool {
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(netnsDir, n)); err == nil {
			return true
		}
	}
	return false
}

// createNS makes a namespace with lo up, duplicate address detection off
// (addresses are usable at once, also the link-local ones) and the given
// sysctls under /proc/sys set to 1. /proc/sys/net shows the namespace of
// the thread that opens it, so no mount namespace is needed.
func createNS(t testing.TB, name string, on ...string) error {
	err := nsrun.Create(name, func() error {
		for _, k := range append([]string{"net/ipv6/conf/all/accept_dad", "net/ipv6/conf/default/accept_dad"}, on...) {
			val := "1"
			if strings.HasSuffix(k, "accept_dad") {
				val = "0"
			}
			if err := os.WriteFile("/proc/sys/"+k, []byte(val), 0o644); err != nil {
				return fmt.Errorf("sysctl %s: %w", k, err)
			}
		}
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	})
	if errors.Is(err, os.ErrExist) {
		return err // the name is another run's: not ours to remove
	}
	if _, serr := os.Stat(filepath.Join(netnsDir, name)); serr == nil {
		t.Cleanup(func() { removeNS(t, name) })
	}
	if err != nil {
		return fmt.Errorf("namespace %s: %w", name, err)
	}
	return nil
}

// connect creates h's veth pair straight across the two namespaces (no
// interface ever appears in the caller's), addresses both ends and routes
// the host's default through the gateway.
func (tp *Topology) connect(h *Host) error {
	hostNS, err := netns.GetFromName(h.NS)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", h.NS, err)
	}
	defer hostNS.Close()
	err = nsrun.Do(tp.Gateway, func() error {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: h.GwIf}, PeerName: HostIf, PeerNamespace: netlink.NsFd(hostNS)}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth %s: %w", h.GwIf, err)
		}
		idx, err := configure(h.GwIf, h.GwAddrs, nil)
		h.GwIndex = idx
		return err
	})
	if err != nil {
		return err
	}
	var gws []netip.Addr
	for _, p := range h.GwAddrs {
		gws = append(gws, p.Addr())
	}
	return nsrun.Do(h.NS, func() error {
		_, err := configure(HostIf, h.HostAddrs, gws)
		return err
	})
}

// configure brings dev up with addrs (no duplicate address detection) and
// default routes via gws, and returns its ifindex.
func configure(dev string, addrs []netip.Prefix, gws []netip.Addr) (int, error) {
	lk, err := netlink.LinkByName(dev)
	if err != nil {
		return 0, fmt.Errorf("look up %s: %w", dev, err)
	}
	if err := netlink.LinkSetUp(lk); err != nil {
		return 0, fmt.Errorf("set %s up: %w", dev, err)
	}
	for _, p := range addrs {
		a := &netlink.Addr{IPNet: prefixNet(p), Flags: unix.IFA_F_NODAD}
		if err := netlink.AddrAdd(lk, a); err != nil {
			return 0, fmt.Errorf("address %s on %s: %w", p, dev, err)
		}
	}
	for _, gw := range gws {
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: lk.Attrs().Index, Gw: gw.AsSlice()}); err != nil {
			return 0, fmt.Errorf("default route via %s: %w", gw, err)
		}
	}
	return lk.Attrs().Index, nil
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// waitRouted proves forwarding by connecting from the first host to a
// throwaway listener on every other, in each family both have.
func (tp *Topology) waitRouted(timeout time.Duration) error {
	from := tp.Hosts[0]
	for _, to := range tp.Hosts[1:] {
		for _, fam := range []int{4, 6} {
			if !from.Addr(fam).IsValid() || !to.Addr(fam).IsValid() {
				continue
			}
			if err := reachable(from.NS, to.NS, to.Addr(fam), timeout); err != nil {
				return fmt.Errorf("IPv%d path %s -> %s not ready: %w", fam, from.Name, to.Name, err)
			}
		}
	}
	return nil
}

func reachable(fromNS, toNS string, addr netip.Addr, timeout time.Duration) error {
	ln, err := Listen(toNS, "tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		return err
	}
	defer ln.Close()
	go AcceptAndClose(ln)
	return Poll(timeout, func() error {
		c, err := Dial(context.Background(), fromNS, "tcp", ln.Addr().String(), time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// Dial opens a connection from inside namespace ns.
func Dial(ctx context.Context, ns, network, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := nsrun.Do(ns, func() error {
		var err error
		d := net.Dialer{Timeout: timeout}
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Listen opens a listener inside namespace ns; any goroutine may use it.
func Listen(ns, network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := nsrun.Do(ns, func() error {
		var err error
		if ln, err = net.Listen(network, addr); err != nil {
			return fmt.Errorf("listen %s %s in %s: %w", network, addr, ns, err)
		}
		return nil
	})
	return ln, err
}

// Stop ends a Poll early: retrying cannot help.
type Stop struct{ Err error }

func (s Stop) Error() string { return s.Err.Error() }
func (s Stop) Unwrap() error { return s.Err }

// Poll retries fn until it succeeds, returns a Stop, or timeout passes,
// backing off from 10 ms to 200 ms; on timeout it returns the last error.
func Poll(timeout time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	wait := 10 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return nil
		}
		var stop Stop
		if errors.As(err, &stop) {
			return stop.Err
		}
		if time.Now().Add(wait).After(deadline) {
			return fmt.Errorf("not ready after %v: %w", timeout, err)
		}
		time.Sleep(wait)
		if wait < 200*time.Millisecond {
			wait *= 2
		}
	}
}

// netnsDir is where named namespaces are bound (as `ip netns` and the
// netns package do).
const netnsDir = "/run/netns"

// removeNS kills the processes still inside the namespace and deletes it:
// what a test started there (vsftpd's session children, say) would
// otherwise keep the namespace alive. Only processes whose network
// namespace is this one are touched, never the test itself.
func removeNS(t testing.TB, name string) {
	var ns unix.Stat_t
	if err := unix.Stat(filepath.Join(netnsDir, name), &ns); err == nil {
		links, _ := filepath.Glob("/proc/[0-9]*/ns/net")
		for _, l := range links {
			var st unix.Stat_t
			if unix.Stat(l, &st) != nil || st.Dev != ns.Dev || st.Ino != ns.Ino {
				continue
			}
			pid, err := strconv.Atoi(strings.Split(l, "/")[2])
			if err == nil && pid != os.Getpid() {
				_ = unix.Kill(pid, unix.SIGKILL)
			}
		}
	}
	if err := netns.DeleteNamed(name); err != nil {
		t.Logf("delete namespace %s: %v", name, err)
	}
}

// AcceptAndClose accepts connections on ln and closes each at once, until
// ln is closed: a listener that only shows whether a connect got through.
func AcceptAndClose(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}
