package bpf_test

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/bpf/ctread"
	"github.com/ftpgate/ftpgate/internal/bpfrun"
	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/internal/nettest"
	"github.com/ftpgate/ftpgate/maps"
)

// natRig loads the NAT object in a network namespace of its own, whose
// conntrack table the programs' test runs write (the kfuncs take the netns
// of the calling thread): run test runs through ns.do.
type natRig struct {
	*bpftest.Rig
	ns string
}

func newNATRig(t *testing.T) *natRig {
	t.Helper()
	r := natObject(t)
	ns := fmt.Sprintf("fgnat-%06d", rand.IntN(1000000))
	nettest.NS(t, ns)
	must(t, r.Maps.SetConfig(maps.DefaultConfig()))
	return &natRig{Rig: r, ns: ns}
}

func (n *natRig) do(t *testing.T, fn func() error) {
	t.Helper()
	must(t, nettest.Do(n.ns, fn))
}

// expectNAT seeds a passive expectation peer → public, whose data
// connection really goes to inside, as the control-connection rewrite
// writes it.
func (n *natRig) expectNAT(t *testing.T, peer netip.Addr, public, inside netip.AddrPort) {
	t.Helper()
	must(t, n.Maps.AddExpectation(maps.Expectation{Kind: maps.KindPasv, Src: peer, Dst: public.Addr(), DPort: public.Port(), Inside: inside}, time.Hour))
}

// syn runs a data SYN through XDP, then TC ingress, as the guarded
// interface sees it, and returns the mark TC left.
func (n *natRig) syn(t *testing.T, from, to netip.AddrPort) uint32 {
	t.Helper()
	syn := bpftest.SYN(from, to)
	v, err := n.XDP(syn)
	must(t, err)
	if v != bpftest.XDPPass {
		t.Fatalf("XDP verdict %d for the data SYN %v → %v, want pass", v, from, to)
	}
	var mark uint32
	n.do(t, func() (err error) {
		mark, err = n.TC(syn, true, 0)
		return err
	})
	return mark
}

// conntrackL lists the namespace's TCP conntrack entries over netlink, and
// checks that the conntrack tool, where installed (not in the VM matrix),
// shows the same tuples.
func conntrackL(t *testing.T, ns string, family int) []string {
	t.Helper()
	lines, err := nettest.Conntrack(ns, family)
	must(t, err)
	if _, err := exec.LookPath("conntrack"); err != nil {
		return lines
	}
	fam := "ipv4"
	if family == 6 {
		fam = "ipv6"
	}
	out, err := exec.Command("ip", "netns", "exec", ns, "conntrack", "-L", "-p", "tcp", "-f", fam).CombinedOutput()
	if err != nil {
		t.Fatalf("conntrack -L in %s: %v\n%s", ns, err, out)
	}
	var tool []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "tcp ") {
			tool = append(tool, l)
		}
	}
	if len(tool) != len(lines) {
		t.Fatalf("conntrack -L shows %q, netlink %q", tool, lines)
	}
	for i := range tool {
		// netlink's line is the tool's, less its state, counters and flags
		f := strings.Fields(lines[i])
		if !hasAll(tool[i], []string{strings.Join(f[0:4], " "), strings.Join(f[4:8], " "), f[8]}) {
			t.Fatalf("conntrack -L shows %q, netlink %q", tool[i], lines[i])
		}
	}
	return lines
}

// ctWant is the entry conntrack -L must show for a NATed data SYN: the
// original tuple is the SYN's, the reply comes from the inside end.
func ctWant(peer, public, inside netip.AddrPort) []string {
	return []string{
		fmt.Sprintf("src=%s dst=%s sport=%d dport=%d", peer.Addr(), public.Addr(), peer.Port(), public.Port()),
		fmt.Sprintf("src=%s dst=%s sport=%d dport=%d", inside.Addr(), peer.Addr(), inside.Port(), peer.Port()),
	}
}

func hasAll(line string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(line, p) {
			return false
		}
	}
	return true
}

// TestNATConntrackEntry: an admitted data SYN whose expectation carries an
// inside end gets a conntrack entry, made at TC ingress from BPF, whose
// reply tuple names the inside end (the kernel then NATs the connection
// there); a retransmitted SYN finds it (bpf_skb_ct_lookup) and makes none;
// with NAT off nothing is made. IPv4 and IPv6.
func TestNATConntrackEntry(t *testing.T) {
	for _, tc := range []struct {
		family               int
		peer, public, inside netip.Addr
	}{
		{4, addr("198.51.100.7"), addr("203.0.113.1"), addr("192.168.50.2")},
		{6, addr("2001:db8:5::7"), addr("2001:db8:1::1"), addr("fd00:50::2")},
	} {
		t.Run(fmt.Sprintf("ipv%d", tc.family), func(t *testing.T) {
			n := newNATRig(t)
			setConfig(t, n.Rig, func(c *maps.Config) { c.NAT = maps.NATCT; c.FwmarkValue, c.FwmarkMask = 0x100, 0xff00 })
			peer, public, inside := ap(tc.peer, 40001), ap(tc.public, 30000), ap(tc.inside, 5000)
			n.expectNAT(t, tc.peer, public, inside)

			if mark := n.syn(t, peer, public); mark != 0x100 {
				t.Errorf("SYN mark %#x, want the fwmark 0x100", mark)
			}
			flows, err := n.Maps.ListFlows()
			must(t, err)
			if len(flows) != 1 || flows[0].Inside != inside {
				t.Fatalf("flows %+v, want one whose inside end is %v (copied from the expectation)", flows, inside)
			}
			wantCounters(t, n.Rig, map[string]uint64{"nat_ct_inserted": 1, "nat_ct_exists": 0, "nat_ct_alloc_failed": 0,
				"nat_ct_nat_failed": 0, "nat_ct_insert_failed": 0})
			lines := conntrackL(t, n.ns, tc.family)
			t.Logf("conntrack entries: %q", lines)
			if len(lines) != 1 || !hasAll(lines[0], append(ctWant(peer, public, inside), "mark=256")) {
				t.Fatalf("conntrack -L:\n%s\nwant one entry with %q and the ct mark 256", strings.Join(lines, "\n"), ctWant(peer, public, inside))
			}

			// the same entry as BPF sees it, from either direction
			seen := n.ctRead(t, peer, public)
			wantCT(t, seen, ctDirOriginal, peer, public, inside)
			wantCT(t, n.ctRead(t, inside, peer), ctDirReply, peer, public, inside)
			if seen = n.ctRead(t, ap(tc.peer, 40009), public); seen.Found != 0 || seen.Error != -int32(unix.ENOENT) {
				t.Errorf("lookup of a tuple nothing made: found %d, error %d, want ENOENT", seen.Found, seen.Error)
			}

			// the retransmission: XDP passes it, TC finds the entry
			n.syn(t, peer, public)
			wantCounters(t, n.Rig, map[string]uint64{"nat_ct_inserted": 1, "nat_ct_exists": 1, "nat_ct_insert_failed": 0})
			if lines := conntrackL(t, n.ns, tc.family); len(lines) != 1 {
				t.Fatalf("after the retransmitted SYN, conntrack -L:\n%s\nwant the one entry", strings.Join(lines, "\n"))
			}

			// NAT off: the same kind of SYN makes nothing
			setConfig(t, n.Rig, func(c *maps.Config) { c.NAT = maps.NATOff })
			other := ap(tc.peer, 40002)
			n.expectNAT(t, tc.peer, ap(tc.public, 30001), inside)
			n.syn(t, other, ap(tc.public, 30001))
			wantCounters(t, n.Rig, map[string]uint64{"nat_ct_inserted": 1, "nat_ct_exists": 1})
			if lines := conntrackL(t, n.ns, tc.family); len(lines) != 1 {
				t.Fatalf("with NAT off, conntrack -L:\n%s\nwant only the first entry", strings.Join(lines, "\n"))
			}
		})
	}
}

// TestNATConntrackOnlyWithTarget: with NAT on, a data SYN admitted through
// an expectation without an inside end (no rewrite happened: no NAT on its
// path) makes no conntrack entry; conntrack tracks it as usual.
func TestNATConntrackOnlyWithTarget(t *testing.T) {
	n := newNATRig(t)
	setConfig(t, n.Rig, func(c *maps.Config) { c.NAT = maps.NATCT })
	peer, public := ap(addr("198.51.100.7"), 40001), ap(addr("203.0.113.1"), 30000)
	n.expectNAT(t, peer.Addr(), public, netip.AddrPort{})
	if mark := n.syn(t, peer, public); mark != 0 {
		t.Errorf("mark %#x without --fwmark", mark)
	}
	wantCounters(t, n.Rig, map[string]uint64{"nat_ct_inserted": 0, "nat_ct_exists": 0})
	if lines := conntrackL(t, n.ns, 4); len(lines) != 0 {
		t.Fatalf("conntrack -L:\n%s\nwant nothing", strings.Join(lines, "\n"))
	}
}

// The conntrack status bits the tests read (include/uapi/linux/netfilter/
// nf_conntrack_common.h) and the directions of a lookup.
const (
	ipsConfirmed  = 1 << 3
	ipsSrcNAT     = 1 << 4
	ipsDstNAT     = 1 << 5
	ipsSrcNATDone = 1 << 7
	ipsDstNATDone = 1 << 8
	ctDirOriginal = 0
	ctDirReply    = 1
)

// ctRead looks the TCP tuple from → to up in the rig's namespace with
// bpf_skb_ct_lookup (bpf/ctread, a test-only program) and returns what the
// kernel holds for it.
func (n *natRig) ctRead(t *testing.T, from, to netip.AddrPort) ctread.CtreadCtSeen {
	t.Helper()
	var objs ctread.CtreadObjects
	if err := ctread.LoadCtreadObjects(&objs, nil); err != nil {
		t.Fatalf("load the ctread program (the NAT object's kfuncs loaded): %v", err)
	}
	defer objs.Close()
	q := ctread.CtreadCtQuery{Saddr: ctAddr(from.Addr()), Daddr: ctAddr(to.Addr()), Sport: ctPort(from.Port()), Dport: ctPort(to.Port()), Version: 4}
	if from.Addr().Is6() {
		q.Version = 6
	}
	must(t, objs.CtreadQuery.Put(uint32(0), q))
	frame := bpftest.SYN(from, to)
	n.do(t, func() error {
		_, err := objs.Ctread.Run(&ebpf.RunOptions{Data: frame, Context: bpfrun.SkbCtx{Ifindex: 1}})
		return err
	})
	var seen ctread.CtreadCtSeen
	must(t, objs.CtreadSeen.Lookup(uint32(0), &seen))
	return seen
}

// wantCT fails unless seen is the entry of a NATed data connection peer →
// public whose reply comes from inside, found in direction dir: DNAT to the
// inside end (the source mapping is the identity, so IPS_SRC_NAT stays
// clear), both NAT stages done, confirmed, with the fwmark as ct mark.
func wantCT(t *testing.T, seen ctread.CtreadCtSeen, dir uint8, peer, public, inside netip.AddrPort) {
	t.Helper()
	tuple := func(x ctread.CtreadCtTuple) string {
		return fmt.Sprintf("%v -> %v", ctAddrPort(x.Src, x.Sport, peer.Addr().Is6()), ctAddrPort(x.Dst, x.Dport, peer.Addr().Is6()))
	}
	t.Logf("bpf_skb_ct_lookup: found %d dir %d status %#x mark %#x orig %s reply %s",
		seen.Found, seen.Dir, seen.Status, seen.Mark, tuple(seen.Orig), tuple(seen.Reply))
	wantOrig, wantReply := fmt.Sprintf("%v -> %v", peer, public), fmt.Sprintf("%v -> %v", inside, peer)
	switch {
	case seen.Found != 1 || seen.Dir != dir:
		t.Errorf("found %d in direction %d, want the entry in direction %d (error %d)", seen.Found, seen.Dir, dir, seen.Error)
	case tuple(seen.Orig) != wantOrig || tuple(seen.Reply) != wantReply:
		t.Errorf("tuples %s / %s, want %s / %s", tuple(seen.Orig), tuple(seen.Reply), wantOrig, wantReply)
	case seen.Status&(ipsConfirmed|ipsDstNAT|ipsSrcNATDone|ipsDstNATDone) != ipsConfirmed|ipsDstNAT|ipsSrcNATDone|ipsDstNATDone ||
		seen.Status&ipsSrcNAT != 0:
		t.Errorf("status %#x, want CONFIRMED, DST_NAT, SRC_NAT_DONE and DST_NAT_DONE, and no SRC_NAT", seen.Status)
	case seen.Mark != 0x100:
		t.Errorf("ct mark %#x, want the fwmark 0x100", seen.Mark)
	}
}

// ctAddr is a as the kernel stores it (network order, IPv4 in the first word).
func ctAddr(a netip.Addr) (w [4]uint32) {
	b := a.As16()
	if a.Is4() {
		b = [16]byte{}
		v4 := a.As4()
		copy(b[:], v4[:])
	}
	for i := range w {
		w[i] = binary.NativeEndian.Uint32(b[4*i:])
	}
	return w
}

// ctPort is port in network order, as a native uint16.
func ctPort(p uint16) uint16 {
	return binary.NativeEndian.Uint16(binary.BigEndian.AppendUint16(nil, p))
}

// ctAddrPort reads an address and port back from the kernel's form.
func ctAddrPort(w [4]uint32, port uint16, v6 bool) netip.AddrPort {
	var b [16]byte
	for i := range w {
		binary.NativeEndian.PutUint32(b[4*i:], w[i])
	}
	a := netip.AddrFrom16(b)
	if !v6 {
		a = netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrPortFrom(a, ctPort(port))
}
