package bench

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/bpf"
	"github.com/ftpgate/ftpgate/internal/bpfrun"
	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/internal/nettest"
	"github.com/ftpgate/ftpgate/internal/packet"
	"github.com/ftpgate/ftpgate/maps"
)

// #12: what the NAT object costs per packet, against the plain object, in
// BPF_PROG_TEST_RUN. Three rigs side by side: the plain object, the NAT
// object with config.nat off, and the NAT object with config.nat conntrack
// (what `run --nat` loads). They run in a network namespace of their own:
// the conntrack kfuncs look in the namespace of the test run's device (the
// calling thread's loopback), where the benchmark makes the conntrack
// entries of the control connections through netlink.

const (
	natRounds         = 21 // rounds of the stateless cases, all variants interleaved
	natStatefulRounds = 15 // rounds of the stateful cases (each prepares 1000 frames per variant)
	natFwmark         = 0x100
)

// Addresses of the NAT rows: a client behind masquerade (natInsideAddr,
// seen as natPublicAddr) whose control connection goes to natServerAddr;
// natServerAddr is also the peer of the data connections.
var (
	natInsideAddr = netip.MustParseAddr("192.0.2.2")
	natPublicAddr = netip.MustParseAddr("198.51.100.1")
	natServerAddr = netip.MustParseAddr("203.0.113.30")
)

// natVariant is one of the three rigs compared.
type natVariant struct {
	name string
	r    *bpfrun.Rig
	nat  bool // config.nat = conntrack
}

// loadNATVariant loads object v with the daemon's defaults as `run --nat
// --fwmark 0x100/0x100` sets them (nat only when on), control and allowed
// ports 21 and 2121, rp-check off (the rigs run on the loopback).
func loadNATVariant(v bpf.Variant, on bool) (*bpfrun.Rig, error) {
	r, err := bpfrun.LoadVariant(v, 0, 0, 0)
	if err != nil {
		return nil, err
	}
	cfg := maps.DefaultConfig()
	cfg.RPCheck = maps.RPOff
	cfg.FwmarkValue, cfg.FwmarkMask = natFwmark, natFwmark
	if on {
		cfg.NAT = maps.NATCT
	}
	err = errors.Join(r.Reset(), r.Maps.SetConfig(cfg), r.Maps.CtrlPorts().Replace([]uint16{21, 2121}),
		r.Maps.AllowPorts().Replace([]uint16{21, 2121}))
	if err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// natStatelessCase is a frame run ppRepeat times per call by every variant.
type natStatelessCase struct {
	name    string
	prog    func(r *bpfrun.Rig) *ebpf.Program
	tc      bool
	frame   []byte
	want    uint32
	target  *target
	explain string
}

// natStatefulCase is a path that changes state: each round prepares
// ppBatch distinct frames per variant, each run once; check proves that
// every frame took the intended path.
type natStatefulCase struct {
	name    string
	tc      bool
	prepare func(v *natVariant, round int) (frames [][]byte, prog *ebpf.Program, err error)
	// counters that must move once per frame, by variant
	counters func(v *natVariant) []string
	zero     []string
}

func BenchmarkNATPerPacket(b *testing.B) {
	needRoot(b)
	if !onlyOnce(b, "nat-perpacket") {
		return
	}
	ns := fmt.Sprintf("fgb-nat-%06d", rand.IntN(1000000))
	nettest.NS(b, ns)
	var vs []*natVariant
	for _, v := range []struct {
		name string
		obj  bpf.Variant
		on   bool
	}{{"plain object", bpf.Plain, false}, {"NAT object, nat off", bpf.NAT, false}, {"NAT object, nat on", bpf.NAT, true}} {
		r, err := loadNATVariant(v.obj, v.on)
		if err != nil {
			b.Fatalf("load %s: %v", v.name, err)
		}
		defer r.Close()
		vs = append(vs, &natVariant{name: v.name, r: r, nat: v.on})
	}
	bareXDP, bareTC := bares(b)
	err := nettest.Do(ns, func() error {
		defer pinCPU(0)()
		if err := natStateless(vs, bareXDP, bareTC); err != nil {
			return err
		}
		return natStateful(vs, bareXDP, bareTC)
	})
	if err != nil {
		b.Fatal(err)
	}
}

// natStateless: the packets of a NATed data connection after its SYN (the
// kernel NATs them; BPF only looks), the bulk of what a gateway forwards.
func natStateless(vs []*natVariant, bareXDP, bareTC *ebpf.Program) error {
	peer := netip.AddrPortFrom(natServerAddr, 20)
	public := netip.AddrPortFrom(natPublicAddr, 51210)
	bulk := make([]byte, ppDataLength)
	in := packet.TCP{Src: peer, Dst: public, Seq: 1, Ack: 1, Flags: packet.ACK, Payload: bulk}.Bytes()
	out := packet.TCP{Src: public, Dst: peer, Seq: 1, Ack: 1, Flags: packet.ACK, Payload: bulk}.Bytes()
	cases := []natStatelessCase{
		{name: "xdp data segment (non-SYN)", prog: func(r *bpfrun.Rig) *ebpf.Program { return r.Objs.FtpgateXdp },
			frame: in, want: bpfrun.XDPPass, target: atMost(1.05)},
		{name: "tc ingress data segment (non-control)", tc: true, prog: func(r *bpfrun.Rig) *ebpf.Program { return r.Objs.FtpgateTcIngress },
			frame: in, want: bpfrun.TCOK, target: atMost(1.05)},
		{name: "tc egress data segment (non-control)", tc: true, prog: func(r *bpfrun.Rig) *ebpf.Program { return r.Objs.FtpgateTcEgress },
			frame: out, want: bpfrun.TCOK, target: atMost(1.05)},
	}
	for _, c := range cases {
		base := bareXDP
		if c.tc {
			base = bareTC
		}
		ns := make([][]float64, len(vs)) // per variant, per round
		var bareNs []float64
		for round := range natRounds {
			d, _, err := perRun(base, c.frame, ppRepeat)
			if err != nil {
				return fmt.Errorf("%s: bare: %w", c.name, err)
			}
			bareNs = append(bareNs, d)
			for _, vi := range rotated(round, len(vs)) {
				d, ret, err := perRun(c.prog(vs[vi].r), c.frame, ppRepeat)
				if err != nil {
					return fmt.Errorf("%s, %s: %w", c.name, vs[vi].name, err)
				}
				if ret != c.want {
					return fmt.Errorf("%s, %s: returned %d, want %d", c.name, vs[vi].name, ret, c.want)
				}
				ns[vi] = append(ns[vi], d)
			}
		}
		baseName := map[bool]string{false: "bare XDP", true: "bare TC"}[c.tc]
		for vi, v := range vs {
			addRow(Row{Section: "nat per-packet", Case: c.name + " / " + v.name, Value: median(ns[vi]), Unit: "ns/pkt",
				Baseline: baseName, BaseValue: median(bareNs), Ratio: medianRatio(ns[vi], bareNs)})
		}
		for vi := 1; vi < len(vs); vi++ {
			row := Row{Section: "nat per-packet", Case: c.name + " / " + vs[vi].name, Value: median(ns[vi]), Unit: "ns/pkt",
				Baseline: vs[0].name, BaseValue: median(ns[0]), Ratio: medianRatio(ns[vi], ns[0])}
			c.target.apply(&row)
			addRow(row)
		}
	}
	addNote("nat per-packet", "stateless rows: a 1448-byte data segment of a NATed data connection (%s -> %s and back), %d runs per BPF_PROG_TEST_RUN call, thread CPU time / runs; per round the bare program, then the three variants in a rotated order; %d rounds; ratio = median over rounds of the per-round ratio",
		peer, public, ppRepeat, natRounds)
	return nil
}

// medianRatio is the median over rounds of a[i]/b[i].
func medianRatio(a, b []float64) float64 {
	rs := make([]float64, min(len(a), len(b)))
	for i := range rs {
		rs[i] = a[i] / b[i]
	}
	return median(rs)
}

// natStateful: the PORT of a client behind masquerade at TC egress, and
// the data SYN of its connection at XDP and TC ingress.
func natStateful(vs []*natVariant, bareXDP, bareTC *ebpf.Program) error {
	// the control connections' conntrack entries (masquerade: inside ->
	// server, reply server -> public), made once: every round opens
	// connections with the same ports
	for i := range ppBatch {
		port := uint16(50000 + i)
		if err := natMasqueradeEntry(netip.AddrPortFrom(natInsideAddr, port), netip.AddrPortFrom(natPublicAddr, port),
			netip.AddrPortFrom(natServerAddr, 21)); err != nil {
			return err
		}
	}
	peer := netip.AddrPortFrom(natServerAddr, 20)
	// the data connections of the SYN rows: the server's active-mode
	// connection from port 20 to a public port the PORT named (inside end:
	// the client's own port); the XDP row consumes the expectations, the
	// TC row runs the same SYNs on the flows XDP made
	dataPort := func(i int) uint16 { return uint16(10000 + i) }
	synFrames := func(round int) [][]byte {
		frames := make([][]byte, ppBatch)
		for i := range frames {
			s := packet.TCP{Src: peer, Dst: netip.AddrPortFrom(natPublicAddr, dataPort(i)), Seq: uint32(round)<<16 | uint32(i),
				Flags: packet.SYN}
			frames[i] = s.Bytes()
		}
		return frames
	}
	cases := []natStatefulCase{
		{name: "tc egress PORT of a client behind masquerade", tc: true, zero: ctrlZero,
			counters: func(v *natVariant) []string {
				if v.nat {
					return []string{"cmd_port", "expect_created", "nat_rewrite"}
				}
				return []string{"cmd_port", "expect_created"}
			},
			prepare: func(v *natVariant, round int) ([][]byte, *ebpf.Program, error) {
				frames, err := natPortFrames(v)
				return frames, v.r.Objs.FtpgateTcEgress, err
			}},
		{name: "tc egress NOOP after a PORT on the same connection (nat on: rewritten, so seq shifted)", tc: true, zero: ctrlZero,
			counters: func(v *natVariant) []string {
				if v.nat {
					return []string{"ctrl_segments", "nat_seq_shifted"}
				}
				return []string{"ctrl_segments"}
			},
			prepare: func(v *natVariant, round int) ([][]byte, *ebpf.Program, error) {
				frames, err := natNoopFrames(v)
				return frames, v.r.Objs.FtpgateTcEgress, err
			}},
		{name: "xdp data SYN consuming an expectation",
			counters: func(*natVariant) []string { return []string{"syn_pass_expected"} },
			prepare: func(v *natVariant, round int) ([][]byte, *ebpf.Program, error) {
				r := v.r
				if err := errors.Join(bpfrun.Clear(r.Objs.DataFlows), bpfrun.Clear(r.Objs.Expectations), drain(r)); err != nil {
					return nil, nil, err
				}
				for i := range ppBatch {
					e := maps.Expectation{Kind: maps.KindPort, Src: peer.Addr(), Dst: natPublicAddr, DPort: dataPort(i)}
					if v.nat {
						// what the PORT rewrite leaves: the inside end
						e.Inside = netip.AddrPortFrom(natInsideAddr, dataPort(i))
					}
					if err := r.Maps.AddExpectation(e, natExpectTTL); err != nil {
						return nil, nil, err
					}
				}
				return synFrames(round), r.Objs.FtpgateXdp, nil
			}},
		{name: "tc ingress data SYN (admitted; nat on: makes the conntrack entry)", tc: true,
			counters: func(v *natVariant) []string {
				if v.nat {
					return []string{"syn_fwmark", "nat_ct_inserted"}
				}
				return []string{"syn_fwmark"}
			},
			zero: []string{"nat_ct_exists", "nat_ct_alloc_failed", "nat_ct_nat_failed", "nat_ct_insert_failed"},
			prepare: func(v *natVariant, round int) ([][]byte, *ebpf.Program, error) {
				// the flows are the XDP row's of this round; the entries
				// of the last round go
				if err := natFlushPeer(peer.Addr()); err != nil {
					return nil, nil, err
				}
				return synFrames(round), v.r.Objs.FtpgateTcIngress, nil
			}},
	}

	type samples struct{ path, base1, base [][]float64 } // [variant][round]
	res := make([]samples, len(cases))
	for ci := range res {
		res[ci] = samples{make([][]float64, len(vs)), make([][]float64, len(vs)), make([][]float64, len(vs))}
	}
	for round := range natStatefulRounds {
		for ci, c := range cases {
			base := bareXDP
			if c.tc {
				base = bareTC
			}
			for _, vi := range rotated(round, len(vs)) {
				v := vs[vi]
				frames, prog, err := c.prepare(v, round)
				if err != nil {
					return fmt.Errorf("%s, %s: prepare: %w", c.name, v.name, err)
				}
				want := c.counters(v)
				var pd, bd []float64
				delta, err := counterDelta(v.r, func() (err error) {
					pd, bd, err = interleaved(base, prog, frames)
					return err
				}, append(append([]string(nil), want...), c.zero...)...)
				if err != nil {
					return fmt.Errorf("%s, %s: %w", c.name, v.name, err)
				}
				for _, n := range want {
					if int(delta[n]) != len(frames) {
						return fmt.Errorf("%s, %s: counter %s moved by %d for %d frames: not the intended path", c.name, v.name, n, delta[n], len(frames))
					}
				}
				for _, z := range c.zero {
					if delta[z] != 0 {
						return fmt.Errorf("%s, %s: counter %s moved by %d: not the intended path", c.name, v.name, z, delta[z])
					}
				}
				bns, _, err := perRun(base, frames[0], ppRepeat)
				if err != nil {
					return err
				}
				res[ci].path[vi] = append(res[ci].path[vi], median(pd))
				res[ci].base1[vi] = append(res[ci].base1[vi], median(bd))
				res[ci].base[vi] = append(res[ci].base[vi], bns)
			}
		}
	}
	if err := natFlushPeer(peer.Addr()); err != nil {
		return err
	}
	for ci, c := range cases {
		s := res[ci]
		// net: the 1-run figure less the bare program's 1-run harness cost
		// plus the bare program's own cost (as BenchmarkPerPacket's [net])
		nets := make([][]float64, len(vs))
		for vi := range vs {
			for r := range s.path[vi] {
				nets[vi] = append(nets[vi], s.path[vi][r]-s.base1[vi][r]+s.base[vi][r])
			}
		}
		for vi := 1; vi < len(vs); vi++ {
			added := make([]float64, len(nets[vi]))
			for r := range added {
				added[r] = nets[vi][r] - nets[0][r]
			}
			addRow(Row{Section: "nat per-packet", Case: c.name + " [net] / " + vs[vi].name, Value: median(nets[vi]), Unit: "ns/pkt",
				Baseline: vs[0].name + " [net]", BaseValue: median(nets[0]), Ratio: medianRatio(nets[vi], nets[0]),
				Note: fmt.Sprintf("added: %s ns (median over rounds of the difference)", fmtVal(median(added)))})
		}
	}
	addNote("nat per-packet", "stateful rows: %d distinct frames per round and variant, each run once, alternating with the bare program run once on the same frame; '[net]' = 1-run cost - bare 1-run cost + bare many-run cost, as in the per-packet section; %d rounds, variants in a rotated order", ppBatch, natStatefulRounds)
	addNote("nat per-packet", "PORT row: %d fresh control connections per round from %s:50000+ to %s:21 (handshake and greeting untimed, client segments at TC egress on the loopback of a namespace, rp-check off); plain object and nat off: 'PORT 198,51,100,1,...' (the public address, what passes without NAT); nat on: 'PORT 192,0,2,2,...' with the connection's masquerade entry in conntrack (made through netlink), rewritten to the public address; proven by cmd_port, expect_created (and nat_rewrite) moving once per frame and %s not moving",
		ppBatch, natPublicAddr, natServerAddr, strings.Join(ctrlZero, ", "))
	addNote("nat per-packet", "data SYN rows: %d SYNs %s -> %s:10000+ per round; XDP consumes an expectation (nat on: one with an inside end, as the rewrite writes it); TC ingress then sees the same SYNs on the admitted flows with --fwmark 0x100/0x100: plain and nat off look the flow up and mark it (syn_fwmark), nat on also makes the conntrack entry with NAT info (bpf_skb_ct_lookup miss, bpf_skb_ct_alloc, bpf_ct_set_nat_info x2, bpf_ct_insert_entry; nat_ct_inserted once per frame); the entries are flushed before each round, untimed",
		ppBatch, peer, natPublicAddr)
	return nil
}

// natExpectTTL outlives a round.
const natExpectTTL = 3600e9

// drain empties the ring buffer, so that events never fill it.
func drain(r *bpfrun.Rig) error {
	_, err := r.Events()
	return err
}

// natPortFrames opens ppBatch trusted control connections on v's rig,
// public:50000+i -> server:21, and returns the PORT segment of each, not
// run.
func natPortFrames(v *natVariant) ([][]byte, error) {
	r := v.r
	if err := errors.Join(bpfrun.Clear(r.Objs.CtrlConns), bpfrun.Clear(r.Objs.Expectations), drain(r)); err != nil {
		return nil, err
	}
	frames := make([][]byte, ppBatch)
	for i := range frames {
		c, err := natOpen(r, uint16(50000+i))
		if err != nil {
			return nil, err
		}
		c.Hook = func(frame []byte, _ bool) error { frames[i] = frame; return nil }
		if err := c.ClientSends(natPortLine(v, 40000+i)); err != nil {
			return nil, err
		}
	}
	return frames, nil
}

// natNoopFrames opens one trusted control connection on v's rig, sends a
// PORT through TC egress (the inside address with nat, rewritten and
// logged; the public one without), and returns ppBatch NOOP segments that
// follow it, not run: with nat each is shifted by the rewrite's growth.
func natNoopFrames(v *natVariant) ([][]byte, error) {
	r := v.r
	if err := errors.Join(bpfrun.Clear(r.Objs.CtrlConns), bpfrun.Clear(r.Objs.Expectations), drain(r)); err != nil {
		return nil, err
	}
	c, err := natOpen(r, 50000)
	if err != nil {
		return nil, err
	}
	if err := c.ClientSends(natPortLine(v, 40000)); err != nil {
		return nil, err
	}
	frames := make([][]byte, ppBatch)
	for i := range frames {
		c.Hook = func(frame []byte, _ bool) error { frames[i] = frame; return nil }
		if err := c.ClientSends("NOOP\r\n"); err != nil {
			return nil, err
		}
	}
	return frames, nil
}

// natOpen opens a trusted control connection public:port -> server:21 on
// r: its handshake and greeting through TC, the client's segments at
// egress (a client behind the gateway), the server's at ingress.
func natOpen(r *bpfrun.Rig, port uint16) (*bpftest.Conn, error) {
	c := bpftest.NewConn(r, netip.AddrPortFrom(natPublicAddr, port), netip.AddrPortFrom(natServerAddr, 21))
	c.Hook = func(frame []byte, fromClient bool) error {
		_, err := r.TCOn(frame, !fromClient, 1, 0)
		return err
	}
	return c, errors.Join(c.Open(), c.Greet())
}

// natPortLine is the PORT of data port p: the inside address with nat (the
// rewrite's work), the public one without (what passes without NAT).
func natPortLine(v *natVariant, p int) string {
	a := natPublicAddr.As4()
	if v.nat {
		a = natInsideAddr.As4()
	}
	return fmt.Sprintf("PORT %d,%d,%d,%d,%d,%d\r\n", a[0], a[1], a[2], a[3], p>>8, p&255)
}

// natMasqueradeEntry makes the conntrack entry of a masqueraded TCP
// connection inside -> server (reply server -> public), established, in
// the calling thread's namespace.
func natMasqueradeEntry(inside, public, server netip.AddrPort) error {
	flow := &netlink.ConntrackFlow{
		FamilyType: unix.AF_INET,
		Forward: netlink.IPTuple{Protocol: unix.IPPROTO_TCP, SrcIP: net.IP(inside.Addr().AsSlice()), SrcPort: inside.Port(),
			DstIP: net.IP(server.Addr().AsSlice()), DstPort: server.Port()},
		Reverse: netlink.IPTuple{Protocol: unix.IPPROTO_TCP, SrcIP: net.IP(server.Addr().AsSlice()), SrcPort: server.Port(),
			DstIP: net.IP(public.Addr().AsSlice()), DstPort: public.Port()},
		TimeOut:   3600,
		ProtoInfo: &netlink.ProtoInfoTCP{State: nl.TCP_CONNTRACK_ESTABLISHED},
	}
	if err := netlink.ConntrackCreate(netlink.ConntrackTable, unix.AF_INET, flow); err != nil {
		return fmt.Errorf("conntrack entry %v -> %v: %w", inside, server, err)
	}
	return nil
}

// natFlushPeer deletes the conntrack entries whose original source is peer.
func natFlushPeer(peer netip.Addr) error {
	f := &netlink.ConntrackFilter{}
	if err := f.AddIP(netlink.ConntrackOrigSrcIP, net.IP(peer.AsSlice())); err != nil {
		return err
	}
	if _, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, f); err != nil {
		return fmt.Errorf("delete conntrack entries of %v: %w", peer, err)
	}
	return nil
}
