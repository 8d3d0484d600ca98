package bpf_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/ftpgate/ftpgate/bpf"
	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/internal/nettest"
	"github.com/ftpgate/ftpgate/internal/packet"
	"github.com/ftpgate/ftpgate/maps"
)

// The NAT_OWN tests (bpf/natown.h): ftpgate translating a data connection
// itself, in the own object (bpf.NATOwn) and in the NAT object with
// config.nat = NAT_OWN.

// natOwnObject returns the own object's rig, loaded once and reset.
func natOwnObject(t *testing.T) *bpftest.Rig { return natVariant(t, bpf.NATOwn) }

// TestNATOwnProbe: the own object's probe program (bpf_skb_ct_lookup and
// the nf_conn reads, no map) verifies alone on this kernel, as the loader
// verifies it before the object, and the object calls none of the kfuncs
// that make conntrack entries.
func TestNATOwnProbe(t *testing.T) {
	natOwnObject(t)
	spec, err := bpf.LoadVariant(bpf.NATOwn)
	must(t, err)
	ps := spec.Programs["ftpgate_nat_probe"]
	if ps == nil {
		t.Fatal("the own object has no probe program ftpgate_nat_probe")
	}
	prog, err := ebpf.NewProgram(ps)
	if err != nil {
		t.Fatalf("the own object's probe: %v", err)
	}
	prog.Close()
	for _, kf := range []string{"bpf_skb_ct_alloc", "bpf_ct_insert_entry", "bpf_ct_set_timeout", "bpf_ct_set_nat_info"} {
		for name, p := range spec.Programs {
			for _, ins := range p.Instructions {
				if ins.IsKfuncCall() {
					if r := ins.Reference(); r == kf {
						t.Errorf("program %s of the own object calls %s", name, kf)
					}
				}
			}
		}
	}
}

// ownRun is one NAT_OWN test: a rig, the namespace its test runs use (the
// NAT object's SYN path looks conntrack up there with NAT_CT), and the
// connection's ends.
type ownRun struct {
	t                    *testing.T
	r                    *bpftest.Rig
	ns                   string
	peer, public, inside netip.AddrPort
}

// tc runs frame through TC ingress or egress and returns the frame as the
// program left it and the mark; the verdict must be TC_ACT_OK.
func (o *ownRun) tc(frame []byte, ingress bool) ([]byte, uint32) {
	o.t.Helper()
	out, mark, ret := o.tcVerdict(frame, ingress)
	if ret != bpftest.TCOK {
		o.t.Fatalf("TC verdict %d, want TC_ACT_OK", ret)
	}
	return out, mark
}

// tcShot is TC_ACT_SHOT, the verdict of a dropped packet
const tcShot = 2

// tcVerdict is tc that returns the verdict too.
func (o *ownRun) tcVerdict(frame []byte, ingress bool) ([]byte, uint32, uint32) {
	o.t.Helper()
	prog := o.r.Objs.FtpgateTcEgress
	if ingress {
		prog = o.r.Objs.FtpgateTcIngress
	}
	out := make([]byte, len(frame)+256)
	var ctx bpftest.SkbCtx
	var ret uint32
	must(o.t, nettest.Do(o.ns, func() (err error) {
		ret, err = prog.Run(&ebpf.RunOptions{Data: frame, DataOut: out, Context: bpftest.SkbCtx{Ifindex: 1}, ContextOut: &ctx})
		return err
	}))
	return out[:len(frame)], ctx.Mark, ret
}

// ends reads the addresses and ports of a frame, checking its IP and TCP
// checksums (decodeSeg).
func ends(t *testing.T, f []byte) (src, dst netip.AddrPort) {
	t.Helper()
	decodeSeg(t, f)
	const eth = 14
	var l4 int
	if f[12] == 0x08 {
		l4 = eth + int(f[eth]&0xf)*4
		src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(f[eth+12:eth+16])), 0)
		dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(f[eth+16:eth+20])), 0)
	} else {
		l4 = eth + 40
		src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(f[eth+8:eth+24])), 0)
		dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(f[eth+24:eth+40])), 0)
	}
	sp := uint16(f[l4])<<8 | uint16(f[l4+1])
	dp := uint16(f[l4+2])<<8 | uint16(f[l4+3])
	return netip.AddrPortFrom(src.Addr(), sp), netip.AddrPortFrom(dst.Addr(), dp)
}

// ownEntries lists nat_own as "side key -> addr:port".
func ownEntries(t *testing.T, r *bpftest.Rig) []string {
	t.Helper()
	var out []string
	var k bpf.FtpgateFlowKey
	var v bpf.FtpgateNatOwnVal
	it := r.Objs.NatOwn.Iterate()
	for it.Next(&k, &v) {
		side := map[uint8]string{uint8(bpf.FtpgateNatOwnSideNAT_OWN_IN): "in", uint8(bpf.FtpgateNatOwnSideNAT_OWN_OUT): "out"}[v.Side]
		out = append(out, fmt.Sprintf("%s %v -> %v = %v flags %d", side,
			netip.AddrPortFrom(maps.Addr(k.Family, k.Src), k.Sport), netip.AddrPortFrom(maps.Addr(k.Family, k.Dst), k.Dport),
			netip.AddrPortFrom(maps.Addr(k.Family, v.Addr), v.Port), v.Flags))
	}
	must(t, it.Err())
	return out
}

func hasEntry(entries []string, want string) bool {
	for _, e := range entries {
		if strings.HasPrefix(e, want) {
			return true
		}
	}
	return false
}

// TestNATOwnTranslation: with NAT_OWN, the admitted data SYN of a flow with
// an inside end makes the two nat_own entries and reaches TC's caller with
// the inside end as destination (fwmark kept, checksums right); later
// ingress packets of the flow too; the inside end's packets leave with the
// public end as source; the inside end's FIN is recorded, a RST from
// outside is not. Packets of other connections are untouched. With NAT_CT
// or NAT off (config set on the running daemon) the existing connection is
// still translated and no new entry is made. The own object and the NAT
// object, IPv4 and IPv6.
func TestNATOwnTranslation(t *testing.T) {
	for _, obj := range []string{"nat-own", "nat"} {
		for _, fam := range []struct {
			family               int
			peer, public, inside netip.Addr
		}{
			{4, addr("198.51.100.7"), addr("203.0.113.1"), addr("192.168.50.2")},
			{6, addr("2001:db8:5::7"), addr("2001:db8:1::1"), addr("fd00:50::2")},
		} {
			t.Run(fmt.Sprintf("%s/ipv%d", obj, fam.family), func(t *testing.T) {
				var r *bpftest.Rig
				if obj == "nat" {
					r = natObject(t)
				} else {
					r = natOwnObject(t)
				}
				ns := fmt.Sprintf("fgo-own-%06d", rand.IntN(1000000))
				nettest.NS(t, ns)
				o := &ownRun{t: t, r: r, ns: ns, peer: ap(fam.peer, 40001), public: ap(fam.public, 30000), inside: ap(fam.inside, 5000)}
				natOwnFlow(t, o)
			})
		}
	}
}

func natOwnFlow(t *testing.T, o *ownRun) {
	r := o.r
	setConfig(t, r, func(c *maps.Config) { c.NAT = maps.NATOwn; c.FwmarkValue, c.FwmarkMask = 0x100, 0xff00 })
	must(t, r.Maps.AddExpectation(maps.Expectation{Kind: maps.KindPasv, Src: o.peer.Addr(), Dst: o.public.Addr(), DPort: o.public.Port(), Inside: o.inside}, time.Hour))

	syn := bpftest.SYN(o.peer, o.public)
	if v, err := r.XDP(syn); err != nil || v != bpftest.XDPPass {
		t.Fatalf("XDP verdict %d (%v) for the data SYN, want pass", v, err)
	}
	out, mark := o.tc(syn, true)
	if src, dst := ends(t, out); src != o.peer || dst != o.inside {
		t.Fatalf("SYN after TC ingress %v -> %v, want %v -> %v", src, dst, o.peer, o.inside)
	}
	if mark != 0x100 {
		t.Errorf("SYN mark %#x, want the fwmark 0x100", mark)
	}
	entries := ownEntries(t, r)
	wantA := fmt.Sprintf("in %v -> %v = %v", o.peer, o.public, o.inside)
	wantB := fmt.Sprintf("out %v -> %v = %v", o.inside, o.peer, o.public)
	if len(entries) != 2 || !hasEntry(entries, wantA) || !hasEntry(entries, wantB) {
		t.Fatalf("nat_own %q, want %q and %q", entries, wantA, wantB)
	}
	wantCounters(t, r, map[string]uint64{"nat_own_made": 1, "nat_own_in": 1, "nat_own_out": 0, "nat_own_table_full": 0, "nat_own_failed": 0,
		"nat_ct_inserted": 0})
	flows, err := r.Maps.ListFlows()
	must(t, err)
	if len(flows) != 1 || flows[0].Inside != o.inside {
		t.Fatalf("flows %+v, want one whose inside end is %v", flows, o.inside)
	}

	// the connection's later packets, both ways, with payload
	ack := packet.TCP{Src: o.peer, Dst: o.public, Seq: 2, Ack: 1000, Flags: packet.ACK, Payload: []byte("data from the peer")}.Bytes()
	out, _ = o.tc(ack, true)
	if src, dst := ends(t, out); src != o.peer || dst != o.inside {
		t.Fatalf("ACK after TC ingress %v -> %v, want %v -> %v", src, dst, o.peer, o.inside)
	}
	if got := decodeSeg(t, out).Payload; got != "data from the peer" {
		t.Fatalf("payload %q changed", got)
	}
	reply := packet.TCP{Src: o.inside, Dst: o.peer, Seq: 1000, Ack: 20, Flags: packet.ACK | packet.PSH, Payload: []byte("150 here it comes\r\n")}.Bytes()
	out, _ = o.tc(reply, false)
	if src, dst := ends(t, out); src != o.public || dst != o.peer {
		t.Fatalf("reply after TC egress %v -> %v, want %v -> %v", src, dst, o.public, o.peer)
	}
	// a RST from outside (spoofable) is translated but does not mark the translation closed
	rst := packet.TCP{Src: o.peer, Dst: o.public, Seq: 20, Flags: packet.RST}.Bytes()
	out, _ = o.tc(rst, true)
	if _, dst := ends(t, out); dst != o.inside {
		t.Fatalf("RST after TC ingress to %v, want %v", dst, o.inside)
	}
	if e := ownEntries(t, r); !hasEntry(e, wantA+" flags 0") || !hasEntry(e, wantB+" flags 0") {
		t.Fatalf("nat_own after a RST from outside %q, want no flags", e)
	}
	fin := packet.TCP{Src: o.inside, Dst: o.peer, Seq: 1019, Ack: 20, Flags: packet.ACK | packet.FIN}.Bytes()
	out, _ = o.tc(fin, false)
	if src, _ := ends(t, out); src != o.public {
		t.Fatalf("FIN after TC egress from %v, want %v", src, o.public)
	}
	if e := ownEntries(t, r); !hasEntry(e, wantB+" flags 1") || !hasEntry(e, wantA+" flags 0") {
		t.Fatalf("nat_own after the inside end's FIN %q, want FIN on the out entry only", e)
	}
	wantCounters(t, r, map[string]uint64{"nat_own_made": 1, "nat_own_in": 3, "nat_own_out": 2})

	// other connections: not this peer port, not this inside port, the
	// egress direction of A's tuple, the ingress direction of B's
	other := ap(o.peer.Addr(), 40002)
	for _, tc := range []struct {
		name    string
		frame   []byte
		ingress bool
	}{
		{"another peer port", packet.TCP{Src: other, Dst: o.public, Seq: 2, Ack: 9, Flags: packet.ACK}.Bytes(), true},
		{"another inside port", packet.TCP{Src: ap(o.inside.Addr(), 5001), Dst: o.peer, Seq: 2, Ack: 9, Flags: packet.ACK}.Bytes(), false},
		{"A's tuple at egress", ack, false},
		{"B's tuple at ingress", reply, true},
		{"an unadmitted SYN", bpftest.SYN(other, o.public), true},
	} {
		if out, _ := o.tc(tc.frame, tc.ingress); !bytes.Equal(out, tc.frame) {
			t.Errorf("%s: changed by TC", tc.name)
		}
	}
	wantCounters(t, r, map[string]uint64{"nat_own_made": 1, "nat_own_in": 3, "nat_own_out": 2})

	// NAT_CT and NAT off (a `config set` on the running daemon) keep
	// translating the existing connection, and make no new entries
	for i, mode := range []maps.NATMode{maps.NATCT, maps.NATOff} {
		setConfig(t, r, func(c *maps.Config) { c.NAT = mode })
		if out, _ := o.tc(ack, true); bytes.Equal(out, ack) {
			t.Errorf("nat %v: the peer's ACK not translated at ingress", mode)
		}
		if out, _ := o.tc(reply, false); bytes.Equal(out, reply) {
			t.Errorf("nat %v: the inside end's reply not translated at egress", mode)
		}
		peer := ap(o.peer.Addr(), 41000+uint16(i))
		must(t, r.Maps.AddExpectation(maps.Expectation{Kind: maps.KindPasv, Src: peer.Addr(), Dst: o.public.Addr(), DPort: o.public.Port() + 1, Inside: o.inside}, time.Hour))
		syn := bpftest.SYN(peer, ap(o.public.Addr(), o.public.Port()+1))
		if v, err := r.XDP(syn); err != nil || v != bpftest.XDPPass {
			t.Fatalf("nat %v: XDP verdict %d (%v) for a data SYN, want pass", mode, v, err)
		}
		if out, _ := o.tc(syn, true); mode == maps.NATOff && !bytes.Equal(out, syn) {
			t.Errorf("nat %v: a new data SYN changed", mode)
		}
		if e := ownEntries(t, r); len(e) != 2 {
			t.Errorf("nat %v: nat_own %q, want the first connection's two entries only", mode, e)
		}
	}
	wantCounters(t, r, map[string]uint64{"nat_own_made": 1, "nat_own_in": 5, "nat_own_out": 4})
}

// TestNATOwnNoTarget: with NAT_OWN, a data SYN admitted through an
// expectation without an inside end (no rewrite happened) makes no entry
// and passes unchanged.
func TestNATOwnNoTarget(t *testing.T) {
	r := natOwnObject(t)
	setConfig(t, r, func(c *maps.Config) { c.NAT = maps.NATOwn })
	ns := fmt.Sprintf("fgo-own-%06d", rand.IntN(1000000))
	nettest.NS(t, ns)
	o := &ownRun{t: t, r: r, ns: ns, peer: ap(addr("198.51.100.7"), 40001), public: ap(addr("203.0.113.1"), 30000)}
	must(t, r.Maps.AddExpectation(maps.Expectation{Kind: maps.KindPasv, Src: o.peer.Addr(), Dst: o.public.Addr(), DPort: o.public.Port()}, time.Hour))
	syn := bpftest.SYN(o.peer, o.public)
	if v, err := r.XDP(syn); err != nil || v != bpftest.XDPPass {
		t.Fatalf("XDP verdict %d (%v), want pass", v, err)
	}
	if out, _ := o.tc(syn, true); !bytes.Equal(out, syn) {
		t.Fatal("SYN without an inside end changed by TC")
	}
	if e := ownEntries(t, r); len(e) != 0 {
		t.Fatalf("nat_own %q, want empty", e)
	}
	wantCounters(t, r, map[string]uint64{"nat_own_made": 0, "nat_own_in": 0})
}

// ownRig is an own-object run in a fresh namespace with NAT_OWN.
func ownRig(t *testing.T) *ownRun {
	r := natOwnObject(t)
	setConfig(t, r, func(c *maps.Config) { c.NAT = maps.NATOwn })
	ns := fmt.Sprintf("fgf-own-%06d", rand.IntN(1000000))
	nettest.NS(t, ns)
	return &ownRun{t: t, r: r, ns: ns, peer: ap(addr("198.51.100.7"), 20), public: ap(addr("203.0.113.1"), 30000), inside: ap(addr("192.168.50.2"), 5000)}
}

// TestNATOwnRemade: a new data connection on the tuple of a lingering
// translation (closed by the inside end) whose expectation names another
// inside end reaches that end: the pair is made again (the old B deleted,
// no flags), not reused. With NAT off, a new one whose expectation names
// no inside end deletes the old pair and passes unchanged (nat_own_stale).
func TestNATOwnRemade(t *testing.T) {
	o := ownRig(t)
	r := o.r
	must(t, r.Maps.AddExpectation(maps.Expectation{Kind: maps.KindPort, Src: o.peer.Addr(), Dst: o.public.Addr(), DPort: o.public.Port(), Inside: o.inside}, time.Hour))
	syn := bpftest.SYN(o.peer, o.public)
	if v, err := r.XDP(syn); err != nil || v != bpftest.XDPPass {
		t.Fatalf("XDP verdict %d (%v) for the first data SYN, want pass", v, err)
	}
	o.tc(syn, true)
	fin := packet.TCP{Src: o.inside, Dst: o.peer, Seq: 2, Ack: 2, Flags: packet.ACK | packet.FIN}.Bytes()
	o.tc(fin, false)
	// the connection is over: its flow goes (as the ager reclaims it), the translation lingers
	var fk bpf.FtpgateFlowKey
	var fv bpf.FtpgateFlowVal
	it := r.Objs.DataFlows.Iterate()
	for it.Next(&fk, &fv) {
		must(t, r.Objs.DataFlows.Delete(fk))
	}

	other := ap(addr("192.168.50.3"), 6000)
	must(t, r.Maps.AddExpectation(maps.Expectation{Kind: maps.KindPort, Src: o.peer.Addr(), Dst: o.public.Addr(), DPort: o.public.Port(), Inside: other}, time.Hour))
	syn2 := packet.TCP{Src: o.peer, Dst: o.public, Seq: 7000, Flags: packet.SYN}.Bytes()
	if v, err := r.XDP(syn2); err != nil || v != bpftest.XDPPass {
		t.Fatalf("XDP verdict %d (%v) for the second data SYN, want pass", v, err)
	}
	out, _ := o.tc(syn2, true)
	if _, dst := ends(t, out); dst != other {
		t.Fatalf("second data SYN sent to %v, want %v", dst, other)
	}
	wantA := fmt.Sprintf("in %v -> %v = %v flags 0", o.peer, o.public, other)
	wantB := fmt.Sprintf("out %v -> %v = %v flags 0", other, o.peer, o.public)
	if e := ownEntries(t, r); len(e) != 2 || !hasEntry(e, wantA) || !hasEntry(e, wantB) {
		t.Fatalf("nat_own %q, want %q and %q", e, wantA, wantB)
	}
	wantCounters(t, r, map[string]uint64{"nat_own_made": 2, "nat_own_in": 2, "nat_own_out": 1, "nat_own_stale": 1})

	// NAT off now: a data SYN on that tuple admitted by an expectation
	// without an inside end is not the translated connection's: the pair
	// goes and the SYN passes unchanged
	setConfig(t, r, func(c *maps.Config) { c.NAT = maps.NATOff })
	it = r.Objs.DataFlows.Iterate()
	for it.Next(&fk, &fv) {
		must(t, r.Objs.DataFlows.Delete(fk))
	}
	must(t, r.Maps.AddExpectation(maps.Expectation{Kind: maps.KindPort, Src: o.peer.Addr(), Dst: o.public.Addr(), DPort: o.public.Port()}, time.Hour))
	syn3 := packet.TCP{Src: o.peer, Dst: o.public, Seq: 9000, Flags: packet.SYN}.Bytes()
	if v, err := r.XDP(syn3); err != nil || v != bpftest.XDPPass {
		t.Fatalf("XDP verdict %d (%v) for the third data SYN, want pass", v, err)
	}
	if out, _ := o.tc(syn3, true); !bytes.Equal(out, syn3) {
		t.Fatal("a data SYN without an inside end on a translated tuple changed by TC")
	}
	if e := ownEntries(t, r); len(e) != 0 {
		t.Fatalf("nat_own %q, want the old pair gone", e)
	}
	wantCounters(t, r, map[string]uint64{"nat_own_made": 2, "nat_own_in": 2, "nat_own_stale": 2})
}

// TestNATOwnHalf: a translation whose egress half (B) is gone drops the
// peer's packets (nat_own_half) instead of delivering them to an inside end
// whose replies would leave with its private address; and nat_own is a
// plain hash, which refuses when full instead of evicting a live pair.
func TestNATOwnHalf(t *testing.T) {
	o := ownRig(t)
	r := o.r
	if typ := r.Objs.NatOwn.Type(); typ != ebpf.Hash {
		t.Errorf("nat_own is a %v, want a plain hash", typ)
	}
	must(t, r.Maps.AddExpectation(maps.Expectation{Kind: maps.KindPort, Src: o.peer.Addr(), Dst: o.public.Addr(), DPort: o.public.Port(), Inside: o.inside}, time.Hour))
	syn := bpftest.SYN(o.peer, o.public)
	if v, err := r.XDP(syn); err != nil || v != bpftest.XDPPass {
		t.Fatalf("XDP verdict %d (%v) for the data SYN, want pass", v, err)
	}
	o.tc(syn, true)
	b := bpf.FtpgateFlowKey{Sport: o.inside.Port(), Dport: o.peer.Port()}
	b.Family, b.Src = maps.Words(o.inside.Addr())
	_, b.Dst = maps.Words(o.peer.Addr())
	must(t, r.Objs.NatOwn.Delete(b))
	ack := packet.TCP{Src: o.peer, Dst: o.public, Seq: 2, Ack: 1000, Flags: packet.ACK, Payload: []byte("data")}.Bytes()
	if _, _, ret := o.tcVerdict(ack, true); ret != tcShot {
		t.Fatalf("TC verdict %d for a packet of a half translation, want TC_ACT_SHOT", ret)
	}
	wantCounters(t, r, map[string]uint64{"nat_own_half": 1, "nat_own_in": 1})
}
