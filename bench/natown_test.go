package bench

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/ftpgate/ftpgate/bpf"
	"github.com/ftpgate/ftpgate/internal/bpfrun"
	"github.com/ftpgate/ftpgate/internal/packet"
	"github.com/ftpgate/ftpgate/maps"
)

// #12 NAT_OWN: what ftpgate's own translation of data connections costs per
// packet in BPF_PROG_TEST_RUN. Every TCP packet on the guarded interface's
// TC hooks pays one nat_own lookup with config.nat = own (the stateless
// rows: a data segment of no translated connection, against the plain
// object); a translated packet also the rewrite (the stateful rows: each
// frame of another translated connection, run once, against the bare
// program).

// natOwnVariant is one rig of the comparison and its config.nat.
type natOwnVariant struct {
	name string
	r    *bpfrun.Rig
	own  bool
}

func loadNATOwnVariants(b *testing.B) []*natOwnVariant {
	b.Helper()
	var vs []*natOwnVariant
	for _, v := range []struct {
		name string
		obj  bpf.Variant
		mode maps.NATMode
	}{
		{"plain object", bpf.Plain, maps.NATOff},
		{"NAT object, nat off", bpf.NAT, maps.NATOff},
		{"NAT object, nat own", bpf.NAT, maps.NATOwn},
		{"own object, nat own", bpf.NATOwn, maps.NATOwn},
	} {
		r, err := loadNATVariant(v.obj, false)
		if err != nil {
			b.Fatalf("load %s: %v", v.name, err)
		}
		b.Cleanup(func() { r.Close() })
		cfg, err := r.Maps.GetConfig()
		if err == nil {
			cfg.NAT = v.mode
			err = r.Maps.SetConfig(cfg)
		}
		if err != nil {
			b.Fatal(err)
		}
		vs = append(vs, &natOwnVariant{name: v.name, r: r, own: v.mode == maps.NATOwn})
	}
	return vs
}

func BenchmarkNATOwnPerPacket(b *testing.B) {
	needRoot(b)
	if !onlyOnce(b, "nat-own-perpacket") {
		return
	}
	defer pinCPU(0)()
	vs := loadNATOwnVariants(b)
	_, bareTC := bares(b)
	peer := netip.AddrPortFrom(natServerAddr, 20)
	public := netip.AddrPortFrom(natPublicAddr, 51210)
	inside := netip.AddrPortFrom(natInsideAddr, 51210)
	bulk := make([]byte, ppDataLength)

	// stateless: a data segment of no translated connection
	for _, c := range []struct {
		name  string
		frame []byte
		prog  func(r *bpfrun.Rig) *ebpf.Program
	}{
		{"tc ingress data segment, not translated", packet.TCP{Src: peer, Dst: public, Seq: 1, Ack: 1, Flags: packet.ACK, Payload: bulk}.Bytes(),
			func(r *bpfrun.Rig) *ebpf.Program { return r.Objs.FtpgateTcIngress }},
		{"tc egress data segment, not translated", packet.TCP{Src: public, Dst: peer, Seq: 1, Ack: 1, Flags: packet.ACK, Payload: bulk}.Bytes(),
			func(r *bpfrun.Rig) *ebpf.Program { return r.Objs.FtpgateTcEgress }},
	} {
		ns := make([][]float64, len(vs))
		for round := range natRounds {
			for _, vi := range rotated(round, len(vs)) {
				d, ret, err := perRun(c.prog(vs[vi].r), c.frame, ppRepeat)
				if err != nil || ret != bpfrun.TCOK {
					b.Fatalf("%s, %s: %v (returned %d)", c.name, vs[vi].name, err, ret)
				}
				ns[vi] = append(ns[vi], d)
			}
		}
		for vi := 1; vi < len(vs); vi++ {
			addRow(Row{Section: "nat own per-packet", Case: c.name + " / " + vs[vi].name, Value: median(ns[vi]), Unit: "ns/pkt",
				Baseline: vs[0].name, BaseValue: median(ns[0]), Ratio: medianRatio(ns[vi], ns[0])})
		}
	}

	// stateless too: a translated segment, repeated, of one connection
	// whose entry writes what the packet carries (so that every repetition
	// finds it again): the lookup hit, the refresh and the rewrite, warm
	identity := packet.TCP{Src: peer, Dst: public, Seq: 1, Ack: 1, Flags: packet.ACK, Payload: bulk}.Bytes()
	for _, v := range vs {
		if !v.own {
			continue
		}
		// and its egress half, without which ingress drops (nat_own_half)
		putPair(b, v.r, peer, public, public)
		var ns []float64
		delta, err := counterDelta(v.r, func() error {
			for range natRounds {
				d, ret, err := perRun(v.r.Objs.FtpgateTcIngress, identity, ppRepeat)
				if err != nil || ret != bpfrun.TCOK {
					return fmt.Errorf("returned %d: %w", ret, err)
				}
				ns = append(ns, d)
			}
			return nil
		}, "nat_own_in")
		if err != nil {
			b.Fatal(err)
		}
		if delta["nat_own_in"] != uint64(natRounds*ppRepeat) {
			b.Fatalf("identity rewrite, %s: nat_own_in moved by %d, want %d", v.name, delta["nat_own_in"], natRounds*ppRepeat)
		}
		if err := bpfrun.Clear(v.r.Objs.NatOwn); err != nil {
			b.Fatal(err)
		}
		addRow(Row{Section: "nat own per-packet", Case: "tc ingress data segment, translated, one connection, warm / " + v.name,
			Value: median(ns), Unit: "ns/pkt"})
	}

	// stateful: translated segments, ppBatch connections, each frame once
	for _, c := range []struct {
		name    string
		ingress bool
		counter string
	}{
		{"tc ingress data segment, translated (destination to the inside end)", true, "nat_own_in"},
		{"tc egress data segment, translated (source to the public end)", false, "nat_own_out"},
	} {
		for _, v := range vs {
			if !v.own {
				continue
			}
			var path, base []float64
			for round := range natStatefulRounds {
				frames := make([][]byte, ppBatch)
				for i := range frames {
					pp := netip.AddrPortFrom(peer.Addr(), uint16(20000+i))
					seg := packet.TCP{Src: pp, Dst: public, Seq: uint32(round), Ack: 1, Flags: packet.ACK, Payload: bulk}
					putPair(b, v.r, pp, public, inside)
					if !c.ingress {
						seg = packet.TCP{Src: inside, Dst: pp, Seq: uint32(round), Ack: 1, Flags: packet.ACK, Payload: bulk}
					}
					frames[i] = seg.Bytes()
				}
				prog := v.r.Objs.FtpgateTcEgress
				if c.ingress {
					prog = v.r.Objs.FtpgateTcIngress
				}
				var pd, bd []float64
				delta, err := counterDelta(v.r, func() (err error) {
					pd, bd, err = interleaved(bareTC, prog, frames)
					return err
				}, c.counter)
				if err != nil {
					b.Fatal(err)
				}
				if int(delta[c.counter]) != len(frames) {
					b.Fatalf("%s, %s: %s moved by %d for %d frames: not the intended path", c.name, v.name, c.counter, delta[c.counter], len(frames))
				}
				path, base = append(path, median(pd)), append(base, median(bd))
				if err := bpfrun.Clear(v.r.Objs.NatOwn); err != nil {
					b.Fatal(err)
				}
			}
			addRow(Row{Section: "nat own per-packet", Case: c.name + " / " + v.name, Value: median(path), Unit: "ns/pkt",
				Baseline: "bare TC", BaseValue: median(base), Ratio: medianRatio(path, base)})
		}
	}
	addNote("nat own per-packet", "stateless rows: a %d-byte data segment (%s <-> %s) of no translated connection, %d runs per BPF_PROG_TEST_RUN call, thread CPU time / runs, %d rounds, variants rotated; the warm row: one translated connection whose entry writes the address the segment carries, so every repetition is translated; stateful rows: %d translated connections (their nat_own entries made from user space), each frame run once (kernel-measured), interleaved with the bare TC program, %d rounds; ratio = median over rounds of the per-round ratio",
		ppDataLength, peer, public, ppRepeat, natRounds, ppBatch, natStatefulRounds)
}

// ownEntry is the nat_own entry of the tuple src -> dst, to be rewritten to
// to: entry A (in: destination) or B (source).
// putPair puts both entries of a translation peer -> public (ingress: to
// inside; egress: inside -> peer from public).
func putPair(b *testing.B, r *bpfrun.Rig, peer, public, inside netip.AddrPort) {
	ka, va := ownEntry(peer, public, inside, true)
	kb, vb := ownEntry(inside, peer, public, false)
	if err := r.Objs.NatOwn.Put(ka, va); err != nil {
		b.Fatal(err)
	}
	if err := r.Objs.NatOwn.Put(kb, vb); err != nil {
		b.Fatal(err)
	}
}

func ownEntry(src, dst, to netip.AddrPort, in bool) (bpf.FtpgateFlowKey, bpf.FtpgateNatOwnVal) {
	fam, s := maps.Words(src.Addr())
	_, d := maps.Words(dst.Addr())
	_, a := maps.Words(to.Addr())
	side := uint8(bpf.FtpgateNatOwnSideNAT_OWN_OUT)
	if in {
		side = uint8(bpf.FtpgateNatOwnSideNAT_OWN_IN)
	}
	return bpf.FtpgateFlowKey{Family: fam, Sport: src.Port(), Dport: dst.Port(), Src: s, Dst: d},
		bpf.FtpgateNatOwnVal{Addr: a, Port: to.Port(), Side: side}
}
