package loader

import (
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/bpf"
	"github.com/ftpgate/ftpgate/internal/bpfrun"
	"github.com/ftpgate/ftpgate/internal/packet"
	"github.com/ftpgate/ftpgate/maps"
)

const (
	dispRepeat = 1 << 16 // runs per BPF_PROG_TEST_RUN call
	dispRounds = 9
)

func threadCPUTime() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}

// perRunNs is the thread CPU time of one BPF_PROG_TEST_RUN call of repeat
// runs, per run.
func perRunNs(p *ebpf.Program, frame []byte) (float64, uint32, error) {
	t0 := threadCPUTime()
	ret, _, err := p.Benchmark(frame, dispRepeat, nil)
	return float64((threadCPUTime() - t0).Nanoseconds()) / dispRepeat, ret, err
}

// BenchmarkDispatcherOverhead: ftpgate's admission run directly (as an XDP
// link runs it) against the same program as the one component of a libxdp
// dispatcher, on the same maps; per path, the median over rounds of
// dispatcher/direct, the two alternating within each round. Needs a kernel
// that takes freplace (the VMs: make vmtest ... -test.bench
// DispatcherOverhead; docs/benchmarks.md says where it was measured).
func BenchmarkDispatcherOverhead(b *testing.B) {
	if err := probeFreplace(); err != nil {
		b.Skipf("%v", err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	rig, err := bpfrun.Load(1024, 1024, 1024)
	if err != nil {
		b.Fatal(err)
	}
	defer rig.Close()
	if err := rig.Maps.SetConfig(maps.DefaultConfig()); err != nil {
		b.Fatal(err)
	}
	// the same object again, its XDP program as a dispatcher component on
	// the rig's maps
	spec, err := bpf.LoadFtpgate()
	if err != nil {
		b.Fatal(err)
	}
	repl := map[string]*ebpf.Map{}
	for _, name := range maps.Names {
		repl[name] = rig.Maps.ByName(name)
		spec.Maps[name].MaxEntries = repl[name].MaxEntries()
	}
	release, err := extensionSpec(spec.Programs[progPins[0]])
	if err != nil {
		b.Fatal(err)
	}
	var comp struct {
		Prog *ebpf.Program `ebpf:"ftpgate_xdp"`
	}
	err = spec.LoadAndAssign(&comp, &ebpf.CollectionOptions{MapReplacements: repl})
	release()
	if err != nil {
		b.Fatal(err)
	}
	defer comp.Prog.Close()
	disp, err := loadDispatcher(dispatcherConfig([]component{{prio: DefaultXDPPriority, chain: ftpgateChainActions}}))
	if err != nil {
		b.Fatal(err)
	}
	defer disp.Close()
	l, err := link.AttachFreplace(disp, slotName(0), comp.Prog)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()

	paths := []struct {
		name  string
		frame []byte
		want  uint32
	}{
		{"TCP non-SYN (passes)", packet.TCP{Src: outsideAP(40000), Dst: insideAP(22), Seq: 1, Ack: 1, Flags: packet.ACK}.Bytes(), 2},
		{"unsolicited SYN (dropped)", synTo(80), 1},
		{"UDP (passes)", udp53, 2},
	}
	for range b.N {
		for _, p := range paths {
			var ratios, direct, viaDisp []float64
			for range dispRounds {
				d, r1, err := perRunNs(rig.Objs.FtpgateXdp, p.frame)
				if err != nil {
					b.Fatal(err)
				}
				x, r2, err := perRunNs(disp, p.frame)
				if err != nil {
					b.Fatal(err)
				}
				if r1 != p.want || r2 != p.want {
					b.Fatalf("%s: direct %d, dispatcher %d, want %d", p.name, r1, r2, p.want)
				}
				direct, viaDisp, ratios = append(direct, d), append(viaDisp, x), append(ratios, x/d)
			}
			b.Logf("%-28s direct %6.1f ns  dispatcher %6.1f ns  dispatcher/direct %.2f (medians of %d rounds, %d runs per call, thread CPU time)",
				p.name, median(direct), median(viaDisp), median(ratios), dispRounds, dispRepeat)
			b.ReportMetric(median(ratios), fmt.Sprintf("ratio-%s", metricName(p.name)))
		}
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func metricName(s string) string {
	out := []rune{}
	for _, r := range s {
		if r == ' ' || r == '(' || r == ')' {
			if len(out) > 0 && out[len(out)-1] != '-' {
				out = append(out, '-')
			}
			continue
		}
		out = append(out, r)
	}
	for len(out) > 0 && out[len(out)-1] == '-' {
		out = out[:len(out)-1]
	}
	return string(out)
}

func outsideAP(port uint16) netip.AddrPort { return netip.AddrPortFrom(outside, port) }
func insideAP(port uint16) netip.AddrPort  { return netip.AddrPortFrom(inside, port) }
