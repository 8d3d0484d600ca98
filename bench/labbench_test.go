package bench

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/internal/nettest"
	"github.com/ftpgate/ftpgate/internal/packet"
)

const (
	labFileSize    = 200 << 20
	labRounds      = 7 // throughput rounds
	floodRounds    = 3
	floodPackets   = 1_500_000
	floodMaxTime   = 6 * time.Second
	floodUnderTime = 60 * time.Second // bound of the flood that runs during a transfer
)

type labConfig struct {
	name string
	up   func(l *netLab) (down func() error, g *gate, err error)
}

var labConfigs = []labConfig{
	{"no firewall", func(*netLab) (func() error, *gate, error) { return func() error { return nil }, nil, nil }},
	{"nftables+ct helper", func(l *netLab) (func() error, *gate, error) { return l.nftDown, nil, l.nftUp() }},
	{"ftpgate native XDP", func(l *netLab) (func() error, *gate, error) {
		g, err := l.gateUp("native")
		if err != nil {
			return nil, nil, err
		}
		return g.down, g, nil
	}},
	{"ftpgate generic XDP", func(l *netLab) (func() error, *gate, error) {
		g, err := l.gateUp("generic")
		if err != nil {
			return nil, nil, err
		}
		return g.down, g, nil
	}},
}

type xfer struct {
	name           string
	upload, active bool
}

var xfers = []xfer{{"download passive", false, false}, {"download active", false, true}, {"upload passive", true, false}, {"upload active", true, true}}

func BenchmarkLab(b *testing.B) {
	needRoot(b)
	if !onlyOnce(b, "lab") {
		return
	}
	l := newGatedLab(b, labFileSize)
	ctx := context.Background()

	// throughput[config][xfer] per round, bytes/s
	tp := make([][][]float64, len(labConfigs))
	for i := range tp {
		tp[i] = make([][]float64, len(xfers))
	}
	tsoNative := ""
	for round := range labRounds {
		for _, ci := range rotated(round, len(labConfigs)) {
			c := labConfigs[ci]
			down, _, err := c.up(l)
			if err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
			if c.name == "ftpgate native XDP" && tsoNative == "" {
				tsoNative = fmt.Sprintf("with native XDP on gw-c/gw-s: client eth0 tso %s, server eth0 tso %s", tso(l.cli, "eth0"), tso(l.srv, "eth0"))
			}
			for xi, x := range xfers {
				port := 21
				if xi%2 == 1 {
					port = 2121
				}
				bps, err := l.transfer(ctx, x.upload, x.active, port)
				if err != nil {
					down()
					b.Fatalf("%s %s: %v", c.name, x.name, err)
				}
				tp[ci][xi] = append(tp[ci][xi], bps)
			}
			if err := down(); err != nil {
				b.Fatalf("%s teardown: %v", c.name, err)
			}
		}
	}
	addNote("throughput", "TSO without XDP: client eth0 %s, server eth0 %s; %s", tso(l.cli, "eth0"), tso(l.srv, "eth0"), tsoNative)
	const mib = 1 << 20
	for xi, x := range xfers {
		for ci, c := range labConfigs {
			v := tp[ci][xi]
			addRow(Row{Section: "throughput", Case: fmt.Sprintf("%s / %s", x.name, c.name), Value: median(v) / mib, Unit: "MiB/s",
				Note: fmt.Sprintf("rounds: %s", fmtList(v, mib))})
		}
		for ci := 2; ci < len(labConfigs); ci++ {
			for bi, tgt := range []*target{atLeast(0.97), atLeast(1.0)} {
				rs := make([]float64, labRounds)
				for r := range rs {
					rs[r] = tp[ci][xi][r] / tp[bi][xi][r]
				}
				row := Row{Section: "throughput", Case: fmt.Sprintf("%s / %s", x.name, labConfigs[ci].name), Value: median(tp[ci][xi]) / mib, Unit: "MiB/s",
					Baseline: labConfigs[bi].name, BaseValue: median(tp[bi][xi]) / mib, Ratio: median(rs)}
				tgt.apply(&row)
				addRow(row)
			}
		}
	}
	addNote("throughput", "%d MiB per transfer with curl (speed_download/speed_upload), %d rounds, the four configurations in a rotated order each round, ratio = median over rounds of the per-round ratio; passive transfers on control port 21, active ones on 2121; `--xdp-mode auto` picks generic on veth, so 'ftpgate generic XDP' is what auto does here", labFileSize>>20, labRounds)

	floodBench(b, l)
}

// builtFtpgate builds ftpgate into a temporary directory removed when b
// ends. Call it before making labs: a cleanup registered before theirs runs
// after them, and their gates' teardown runs the binary (ftpgate detach).
func builtFtpgate(b *testing.B) string {
	b.Helper()
	tmp, err := os.MkdirTemp("", "ftpgate-bench-bin-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(tmp) })
	bin, err := buildFtpgate(tmp)
	if err != nil {
		b.Fatal(err)
	}
	return bin
}

// newGatedLab is a lab serving files of fileSize whose gateway can run an
// ftpgate built for it (gateUp).
func newGatedLab(b *testing.B, fileSize int64) *netLab {
	b.Helper()
	bin := builtFtpgate(b)
	l := newNetLab(b, fileSize)
	l.bin = bin
	return l
}

// rotated is the order of n configurations in a round: rotated by the
// round, so that none always runs first.
func rotated(round, n int) []int {
	order := make([]int, n)
	for k := range order {
		order[k] = (k + round) % n
	}
	return order
}

func fmtList(v []float64, div float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatFloat(x/div, 'f', 0, 64)
	}
	return strings.Join(s, ", ")
}

// softirqTicks sums the softirq column of /proc/stat over all CPUs (USER_HZ).
func cpuTicks() (softirq, total uint64) {
	b, _ := os.ReadFile("/proc/stat")
	line := strings.SplitN(string(b), "\n", 2)[0]
	f := strings.Fields(line)[1:]
	for i, x := range f {
		v, _ := strconv.ParseUint(x, 10, 64)
		total += v
		if i == 6 {
			softirq = v
		}
	}
	return
}

// flood sends unsolicited SYNs from the client namespace through a raw
// socket until count packets are sent, d passes or stop is closed.
func flood(l *netLab, count int, d time.Duration, stop <-chan struct{}) (int, error) {
	// the socket belongs to the namespace it is made in; sending from it
	// needs no thread in that namespace
	var fd int
	err := nettest.Do(l.cli, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		return err
	})
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	pkts := make([][]byte, 4096)
	src := netip.MustParseAddr(labClient)
	dst := netip.MustParseAddr(labServer)
	for i := range pkts {
		pkts[i] = packet.TCP{Src: netip.AddrPortFrom(src, uint16(10000+i)), Dst: netip.AddrPortFrom(dst, uint16(5000+i%997)),
			Seq: uint32(i) * 7919, Flags: packet.SYN}.Bytes()[14:]
	}
	to := &unix.SockaddrInet4{Addr: dst.As4()}
	deadline := time.Now().Add(d)
	n := 0
	for n < count {
		if err := unix.Sendto(fd, pkts[n%len(pkts)], 0, to); err != nil && err != unix.ENOBUFS {
			return n, err
		}
		n++
		if n%1024 == 0 {
			if time.Now().After(deadline) {
				break
			}
			select {
			case <-stop:
				return n, nil
			default:
			}
		}
	}
	return n, nil
}

// floodMeasure is one flood: SYNs sent and dropped, for how long, and the
// drops per softirq CPU-second (0 when no softirq time was measured).
type floodMeasure struct {
	sent    int
	dropped float64
	elapsed time.Duration
	perCPU  float64
}

// floodDrops measures the idle softirq rate for a second, then floods the
// gateway and reads the drop counter (drops) before and after.
func floodDrops(l *netLab, drops func() (uint64, error)) (floodMeasure, error) {
	var m floodMeasure
	s0, _ := cpuTicks()
	time.Sleep(time.Second)
	s1, _ := cpuTicks()
	idle := float64(s1 - s0)
	d0, err := drops()
	if err != nil {
		return m, fmt.Errorf("drop counter: %w", err)
	}
	s0, _ = cpuTicks()
	t0 := time.Now()
	m.sent, err = flood(l, floodPackets, floodMaxTime, nil)
	m.elapsed = time.Since(t0)
	s1, _ = cpuTicks()
	if err != nil {
		return m, err
	}
	d1, err := drops()
	if err != nil {
		return m, fmt.Errorf("drop counter: %w", err)
	}
	m.dropped = float64(d1 - d0)
	if soft := (float64(s1-s0) - idle*m.elapsed.Seconds()) / 100; soft > 0 { // USER_HZ
		m.perCPU = m.dropped / soft
	}
	return m, nil
}

func floodBench(b *testing.B, l *netLab) {
	configs := []labConfig{labConfigs[1], labConfigs[2], labConfigs[3]}
	type acc struct{ dropsPerCPUs, underFlood, noFlood, sentPerSec []float64 }
	res := make([]acc, len(configs))
	ctx := context.Background()
	for round := range floodRounds {
		for _, ci := range rotated(round, len(configs)) {
			c := configs[ci]
			down, g, err := c.up(l)
			if err != nil {
				b.Fatalf("flood %s: %v", c.name, err)
			}
			drops := l.nftDrops
			if g != nil {
				drops = func() (uint64, error) { return g.counter("syn_drop_unexpected") }
			}
			m, err := floodDrops(l, drops)
			if err != nil {
				b.Fatalf("flood %s: %v", c.name, err)
			}
			if m.dropped < 0.9*float64(m.sent) {
				addNote("flood", "%s round %d: %v dropped of %d sent", c.name, round, m.dropped, m.sent)
			}
			if m.perCPU > 0 {
				res[ci].dropsPerCPUs = append(res[ci].dropsPerCPUs, m.perCPU)
			}
			res[ci].sentPerSec = append(res[ci].sentPerSec, float64(m.sent)/m.elapsed.Seconds())

			// a transfer without, then during a flood
			bps, err := l.transfer(ctx, false, false, 21)
			if err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
			res[ci].noFlood = append(res[ci].noFlood, bps)
			stop := make(chan struct{})
			fdone := make(chan error, 1)
			go func() { _, err := flood(l, 1<<40, floodUnderTime, stop); fdone <- err }()
			time.Sleep(300 * time.Millisecond)
			bps, err = l.transfer(ctx, false, false, 21)
			close(stop)
			if ferr := <-fdone; ferr != nil {
				b.Fatalf("%s: flood: %v", c.name, ferr)
			}
			if err != nil {
				b.Fatalf("%s under flood: %v", c.name, err)
			}
			res[ci].underFlood = append(res[ci].underFlood, bps)
			if err := down(); err != nil {
				b.Fatalf("%s teardown: %v", c.name, err)
			}
		}
	}
	const mib = 1 << 20
	for ci, c := range configs {
		addRow(Row{Section: "flood", Case: "SYNs dropped per softirq CPU-second / " + c.name, Value: median(res[ci].dropsPerCPUs), Unit: "pkt/s",
			Note: fmt.Sprintf("generator %.0f pkt/s", median(res[ci].sentPerSec))})
	}
	for ci := 1; ci < len(configs); ci++ {
		rs := make([]float64, 0, floodRounds)
		for r := range min(len(res[ci].dropsPerCPUs), len(res[0].dropsPerCPUs)) {
			rs = append(rs, res[ci].dropsPerCPUs[r]/res[0].dropsPerCPUs[r])
		}
		row := Row{Section: "flood", Case: "drops per softirq CPU-second / " + configs[ci].name, Value: median(res[ci].dropsPerCPUs), Unit: "pkt/s",
			Baseline: configs[0].name, BaseValue: median(res[0].dropsPerCPUs), Ratio: median(rs)}
		atLeast(5).apply(&row)
		addRow(row)
	}
	for ci, c := range configs {
		rs := make([]float64, floodRounds)
		for r := range rs {
			rs[r] = res[ci].underFlood[r] / res[ci].noFlood[r]
		}
		addRow(Row{Section: "flood", Case: "download passive during flood / " + c.name, Value: median(res[ci].underFlood) / mib, Unit: "MiB/s",
			Baseline: "same config, no flood", BaseValue: median(res[ci].noFlood) / mib, Ratio: median(rs)})
	}
	for ci := 1; ci < len(configs); ci++ {
		rs := make([]float64, floodRounds)
		for r := range rs {
			rs[r] = res[ci].underFlood[r] / res[0].underFlood[r]
		}
		addRow(Row{Section: "flood", Case: "download passive during flood / " + configs[ci].name, Value: median(res[ci].underFlood) / mib, Unit: "MiB/s",
			Baseline: configs[0].name + " during flood", BaseValue: median(res[0].underFlood) / mib, Ratio: median(rs)})
	}
	addNote("flood", "unsolicited SYNs (4096 source/destination port pairs, 192.0.2.2 -> 198.51.100.2:5000-5996) from a raw socket in the client namespace, at most %d packets or %v per measurement; CPU = softirq column of /proc/stat (all CPUs, tick-sampled: the kernel has no IRQ_TIME_ACCOUNTING) minus the idle softirq rate measured for 1 s just before; drops counted by ftpgate's syn_drop_unexpected or the nft rule counter; %d rounds, configurations rotated", floodPackets, floodMaxTime, floodRounds)
	addNote("flood", "the nftables side is configuration (b): the stateful forward chain, whose policy drops the SYNs after conntrack has looked at them (the `counter drop` at the end of the chain)")
}
