package bench

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/ftpgate/ftpgate/bpf"
	"github.com/ftpgate/ftpgate/internal/bpfrun"
	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/internal/packet"
	"github.com/ftpgate/ftpgate/maps"
)

const (
	ppRounds     = 15      // rounds of every case, bare and ftpgate interleaved
	ppRepeat     = 1 << 19 // runs per BPF_PROG_TEST_RUN call for stateless paths
	ppBatch      = 1000    // distinct frames per round for stateful paths
	ppDataLength = 1448    // payload of a bulk data segment
)

// ppCase is one path of the programs.
type ppCase struct {
	name     string
	tc       bool // TC (SchedCLS) rather than XDP
	target   *target
	stateful bool
	// stateless: one frame run ppRepeat times
	frame []byte
	prog  *ebpf.Program
	want  uint32
	setup func() error // untimed, before each round
	// stateful: prepare returns the frames of one round, each run once, in
	// order, and a check of the counters they must move
	prepare func(round int) (frames [][]byte, prog *ebpf.Program, err error)
	counter string
	zero    []string // counters that must not move
	// lab: prepared and run in the reverse-path lab with rp-check rp, each
	// run with the __sk_buff context ctx (device, arrival interface)
	lab *rpLab
	rp  maps.RPCheck
	ctx []byte
}

func BenchmarkPerPacket(b *testing.B) {
	needRoot(b)
	if !onlyOnce(b, "perpacket") {
		return
	}
	defer pinCPU(0)()
	r, err := loadRig(0, 0, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	bareXDP, bareTC := bares(b)

	xdp, tcIn := r.Objs.FtpgateXdp, r.Objs.FtpgateTcIngress
	cli := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(clientAddr, port) }
	srv := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(serverAddr, port) }
	bulk := make([]byte, ppDataLength)

	// a data flow for the retransmitted-SYN path, admitted through an expectation
	retrSrc, retrDst := cli(45000), srv(30001)
	expVal := func(now uint64) bpf.FtpgateExpectVal {
		return bpf.FtpgateExpectVal{ExpiresNs: now + 3600e9, CreatedNs: now, Kind: uint8(maps.KindPasv), Dir: 1,
			Ctrl: ctrlKey(cli(40000), srv(21))}
	}
	// admitFlow (re)admits it: the stateful rounds empty data_flows
	admitFlow := func() error {
		now, err := r.Maps.Now()
		if err != nil {
			return err
		}
		_ = r.Objs.DataFlows.Delete(flowKey(retrSrc, retrDst))
		if err := r.Maps.MarkSYNGate(retrDst.Port()); err != nil {
			return err
		}
		if err := r.Objs.Expectations.Put(expectKey(clientAddr, serverAddr, retrDst.Port()), expVal(now)); err != nil {
			return err
		}
		if ret, err := r.XDP(bpftest.SYN(retrSrc, retrDst)); err != nil || ret != bpfrun.XDPPass {
			return fmt.Errorf("admit data flow: %d %v", ret, err)
		}
		return nil
	}

	cases := []*ppCase{
		{name: "xdp udp (non-TCP)", frame: packet.UDP(cli(5353), srv(53), make([]byte, 64)), prog: xdp, want: bpfrun.XDPPass},
		{name: "xdp tcp ack (non-SYN)", target: atMost(2), frame: packet.TCP{Src: srv(30001), Dst: cli(45000), Seq: 1, Ack: 1,
			Flags: packet.ACK, Payload: bulk}.Bytes(), prog: xdp, want: bpfrun.XDPPass},
		{name: "xdp syn allowed port", frame: bpftest.SYN(cli(40001), srv(21)), prog: xdp, want: bpfrun.XDPPass},
		{name: "xdp syn retransmit (data_flows hit)", frame: bpftest.SYN(retrSrc, retrDst), prog: xdp, want: bpfrun.XDPPass, setup: admitFlow},
		// no FTPS configured: XDP skips the TLS look-ups (config.tls_ranges, tls_seen clear)
		{name: "xdp syn dropped", frame: bpftest.SYN(cli(40002), srv(5555)), prog: xdp, want: bpfrun.XDPDrop,
			setup: ftpsLookups(r, false)},
		// #14 the same SYN to a port written lately: the gate says maybe,
		// data_flows and expectations are looked up (the drop before #14)
		{name: "xdp syn dropped, gate warm (look-ups)", frame: bpftest.SYN(cli(40002), srv(5556)), prog: xdp, want: bpfrun.XDPDrop,
			setup: func() error {
				if err := r.Maps.SetTLSLookups(false, false); err != nil {
					return err
				}
				return r.Maps.MarkSYNGate(5556)
			}},
		{name: "tc non-control tcp", tc: true, target: atMost(1.5), frame: packet.TCP{Src: srv(30001), Dst: cli(45000), Seq: 1, Ack: 1,
			Flags: packet.ACK, Payload: bulk}.Bytes(), prog: tcIn, want: bpfrun.TCOK},
	}
	// #14: the same admission at TC ingress (--admit-hook tc); tcAdmitVsXDP
	// below sets its dropped SYN beside XDP's
	tcAdmit := r.Objs.FtpgateTcAdmit
	cases = append(cases,
		&ppCase{name: "tc admit tcp ack (non-SYN)", tc: true, frame: packet.TCP{Src: srv(30001), Dst: cli(45000), Seq: 1, Ack: 1,
			Flags: packet.ACK, Payload: bulk}.Bytes(), prog: tcAdmit, want: bpfrun.TCNext},
		&ppCase{name: "tc admit syn dropped", tc: true, frame: bpftest.SYN(cli(40002), srv(5555)), prog: tcAdmit, want: bpfrun.TCShot,
			setup: ftpsLookups(r, false)},
	)

	// stateful paths: each round gets fresh frames (new keys or new sequence
	// numbers), re-armed outside the timed runs
	cases = append(cases, &ppCase{name: "xdp syn matching expectation", stateful: true, counter: "syn_pass_expected",
		prepare: func(round int) ([][]byte, *ebpf.Program, error) {
			if err := bpfrun.Clear(r.Objs.DataFlows); err != nil {
				return nil, nil, err
			}
			if err := bpfrun.Clear(r.Objs.Expectations); err != nil {
				return nil, nil, err
			}
			if _, err := r.Events(); err != nil {
				return nil, nil, err
			}
			now, err := r.Maps.Now()
			if err != nil {
				return nil, nil, err
			}
			keys := make([]bpf.FtpgateExpectKey, ppBatch)
			vals := make([]bpf.FtpgateExpectVal, ppBatch)
			frames := make([][]byte, ppBatch)
			for i := range ppBatch {
				dport := uint16(10000 + i)
				keys[i], vals[i] = expectKey(clientAddr, serverAddr, dport), expVal(now)
				frames[i] = bpftest.SYN(cli(uint16(20000+round)), srv(dport))
				// #14 as the parser does, the SYN gate before the expectation
				if err := r.Maps.MarkSYNGate(dport); err != nil {
					return nil, nil, err
				}
			}
			return frames, xdp, batchPut(r.Objs.Expectations, keys, vals)
		}})

	// #13: the TLS range check (bench/ftps_test.go)
	cases = append(cases, ftpsCases(r, xdp)...)

	// control segments: in the reverse-path lab, once with rp-check off and
	// once strict with a route that leads back (bpf_fib_lookup succeeds).
	// Every connection completes its handshake and is greeted, so it is
	// trusted; the rounds prove it (no untrusted, out-of-window, spoofed or
	// unchecked segment).
	lab := newRPLab(b)
	for _, mode := range []maps.RPCheck{maps.RPOff, maps.RPStrict} {
		cases = append(cases, ctrlCases(r, lab, mode)...)
	}

	type samples struct{ path, base, base1 []float64 }
	res := make([]samples, len(cases))
	for round := range ppRounds {
		for ci, c := range cases {
			baseProg := bareXDP
			if c.tc {
				baseProg = bareTC
			}
			if !c.stateful {
				if c.setup != nil {
					if err := c.setup(); err != nil {
						b.Fatalf("%s: setup: %v", c.name, err)
					}
				}
				// interleave: bare, path, in the same round
				bns, _, err := perRun(baseProg, c.frame, ppRepeat)
				if err != nil {
					b.Fatalf("%s: bare: %v", c.name, err)
				}
				pns, ret, err := perRun(c.prog, c.frame, ppRepeat)
				if err != nil {
					b.Fatalf("%s: %v", c.name, err)
				}
				if ret != c.want {
					b.Fatalf("%s: returned %d, want %d", c.name, ret, c.want)
				}
				res[ci].base = append(res[ci].base, bns)
				res[ci].path = append(res[ci].path, pns)
				continue
			}
			// the bare program timed one run per call too: the harness
			// overhead (timer, loop) that the stateful paths also carry
			var frames [][]byte
			var pd, bd []float64
			run := func() error {
				var prog *ebpf.Program
				var err error
				if frames, prog, err = c.prepare(round); err != nil {
					return fmt.Errorf("prepare: %w", err)
				}
				delta, err := counterDelta(r, func() (err error) {
					if c.ctx != nil {
						pd, bd, err = interleavedCtx(baseProg, prog, frames, c.ctx)
					} else {
						pd, bd, err = interleaved(baseProg, prog, frames)
					}
					return err
				}, append([]string{c.counter}, c.zero...)...)
				if err != nil {
					return err
				}
				if int(delta[c.counter]) != len(frames) {
					return fmt.Errorf("counter %s moved by %d for %d frames: not the intended path", c.counter, delta[c.counter], len(frames))
				}
				for _, z := range c.zero {
					if delta[z] != 0 {
						return fmt.Errorf("counter %s moved by %d: not the intended path", z, delta[z])
					}
				}
				return nil
			}
			var err error
			if c.lab != nil {
				if err = setRP(r, c.rp); err == nil {
					err = c.lab.in(0, run)
				}
			} else {
				err = run()
			}
			if err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
			res[ci].path = append(res[ci].path, median(pd))
			res[ci].base1 = append(res[ci].base1, median(bd))
			// and the bare program in its cheapest form, for the net cost
			bns, _, err := perRun(baseProg, frames[0], ppRepeat)
			if err != nil {
				b.Fatal(err)
			}
			res[ci].base = append(res[ci].base, bns)
		}
	}
	for ci, c := range cases {
		s := res[ci]
		baseName := "bare XDP"
		if c.tc {
			baseName = "bare TC"
		}
		if !c.stateful {
			ratios := make([]float64, len(s.path))
			for i := range s.path {
				ratios[i] = s.path[i] / s.base[i]
			}
			row := Row{Section: "per-packet", Case: c.name, Value: median(s.path), Unit: "ns/pkt",
				Baseline: baseName, BaseValue: median(s.base), Ratio: median(ratios),
				Note: fmt.Sprintf("%d runs per call, thread CPU time, %d rounds", ppRepeat, ppRounds)}
			c.target.apply(&row)
			addRow(row)
			continue
		}
		ratios := make([]float64, len(s.path))
		nets := make([]float64, len(s.path))
		netRatios := make([]float64, len(s.path))
		for i := range s.path {
			ratios[i] = s.path[i] / s.base1[i]
			nets[i] = s.path[i] - s.base1[i] + s.base[i]
			netRatios[i] = nets[i] / s.base[i]
		}
		addRow(Row{Section: "per-packet", Case: c.name + " [1 run/frame]", Value: median(s.path), Unit: "ns/pkt",
			Baseline: baseName + " [1 run/frame]", BaseValue: median(s.base1), Ratio: median(ratios),
			Note: fmt.Sprintf("%d distinct frames per round, kernel duration of 1 run, %d rounds", ppBatch, ppRounds)})
		addRow(Row{Section: "per-packet", Case: c.name + " [net]", Value: median(nets), Unit: "ns/pkt",
			Baseline: baseName, BaseValue: median(s.base), Ratio: median(netRatios),
			Note: "1-run figure minus the bare program's 1-run harness overhead"})
	}
	tcAdmitVsXDP(cases, func(ci int) []float64 { return res[ci].path })
	// #14 the target of the SYN gate: an unsolicited SYN's drop against
	// ftpgate's own non-SYN path, round by round in the same run
	idx := func(name string) int {
		return slices.IndexFunc(cases, func(c *ppCase) bool { return c.name == name })
	}
	if d, a := idx("xdp syn dropped"), idx("xdp tcp ack (non-SYN)"); d >= 0 && a >= 0 {
		ratios := make([]float64, len(res[d].path))
		for i := range ratios {
			ratios[i] = res[d].path[i] / res[a].path[i]
		}
		row := Row{Section: "per-packet", Case: "unsolicited SYN drop", Value: median(res[d].path), Unit: "ns/pkt",
			Baseline: "xdp tcp ack (non-SYN)", BaseValue: median(res[a].path), Ratio: median(ratios),
			Note: "#14: the xdp syn dropped row over the non-SYN row, median of the per-round ratios"}
		atMost(2).apply(&row)
		addRow(row)
	}
	addNote("per-packet", "stateless paths: one frame, %d runs in one BPF_PROG_TEST_RUN call, per-run cost = thread CPU time of the call / runs; bare and ftpgate alternate within each of %d rounds; ratio = median over rounds of ftpgate/bare", ppRepeat, ppRounds)
	addNote("per-packet", "stateful paths (expectation consumed, control segments parsed) run each of %d distinct pre-built frames once per round (new expectation keys re-armed through the map, new sequence numbers or new control connections), alternating with the bare program run once on the same frame; the intended path is proven by a counter moving once per frame (syn_pass_expected, ctrl_segments, cmd_port, reply_227) and, for control segments, by counters that must not move (%s). '[1 run/frame]' ratios include the test-run harness overhead on both sides (timer read, about the cost of the bare program); '[net]' subtracts the bare 1-run cost and adds the bare many-run cost", ppBatch, strings.Join(ctrlZero, ", "))
}

// tcAdmitVsXDP adds the row of a dropped SYN at TC ingress against the same
// drop at XDP, both measured in the same rounds.
func tcAdmitVsXDP(cases []*ppCase, path func(ci int) []float64) {
	find := func(name string) []float64 {
		for ci, c := range cases {
			if c.name == name {
				return path(ci)
			}
		}
		return nil
	}
	tc, xdp := find("tc admit syn dropped"), find("xdp syn dropped")
	if len(tc) == 0 || len(tc) != len(xdp) {
		return
	}
	ratios := make([]float64, len(tc))
	for i := range tc {
		ratios[i] = tc[i] / xdp[i]
	}
	addRow(Row{Section: "per-packet", Case: "tc admit syn dropped, against XDP's", Value: median(tc), Unit: "ns/pkt",
		Baseline: "xdp syn dropped", BaseValue: median(xdp), Ratio: median(ratios),
		Note: "program cost only: BPF_PROG_TEST_RUN reuses one skb, the allocation of an skb per dropped SYN at TC is not in it (the flood rows are)"})
}
