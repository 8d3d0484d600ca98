package bench

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/bpf"
	"github.com/ftpgate/ftpgate/internal/bpfrun"
	"github.com/ftpgate/ftpgate/maps"
)

// Addresses of the synthetic traffic (documentation ranges only).
var (
	clientAddr = netip.MustParseAddr("192.0.2.2")
	serverAddr = netip.MustParseAddr("198.51.100.2")
)

// bare returns a program of the given type that only returns ret: the
// baseline every per-packet figure is divided by.
func bare(typ ebpf.ProgramType, ret int32) (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "bare",
		Type:         typ,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, ret), asm.Return()},
	})
}

// bares returns the bare XDP and TC programs, closed when b ends.
func bares(b *testing.B) (xdp, tc *ebpf.Program) {
	b.Helper()
	xdp, err := bare(ebpf.XDP, bpfrun.XDPPass)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { xdp.Close() })
	tc, err = bare(ebpf.SchedCLS, bpfrun.TCOK)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tc.Close() })
	return xdp, tc
}

// loadRig loads ftpgate's programs with the given table sizes and the
// daemon's defaults: control ports 21 and 2121, allowed ports 21 and 2121.
func loadRig(ctrl, exp, flows uint32) (*bpfrun.Rig, error) {
	r, err := bpfrun.Load(ctrl, exp, flows)
	if err != nil {
		return nil, err
	}
	if err := r.Reset(); err != nil {
		r.Close()
		return nil, err
	}
	if err := r.Maps.SetConfig(maps.DefaultConfig()); err != nil {
		r.Close()
		return nil, err
	}
	if err := r.Maps.CtrlPorts().Replace([]uint16{21, 2121}); err != nil {
		r.Close()
		return nil, err
	}
	if err := r.Maps.AllowPorts().Replace([]uint16{21, 2121}); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// threadCPU reads the calling thread's CPU time (user + system). With the
// goroutine locked to its thread it measures the kernel time of a
// BPF_PROG_TEST_RUN call without the time the thread spent preempted.
func threadCPU() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}

// perRun runs prog repeat times on frame in one BPF_PROG_TEST_RUN call and
// returns the thread CPU time per run in ns (the kernel's own figure is
// truncated to whole ns, too coarse for a 5 ns program).
func perRun(p *ebpf.Program, frame []byte, repeat int) (float64, uint32, error) {
	t0 := threadCPU()
	ret, _, err := p.Benchmark(frame, repeat, nil)
	d := threadCPU() - t0
	if err != nil {
		return 0, 0, err
	}
	return float64(d.Nanoseconds()) / float64(repeat), ret, nil
}

// once runs prog one time and returns the kernel's measured duration (ns):
// for paths that change state, where each frame is new.
func once(p *ebpf.Program, frame []byte) (float64, uint32, error) {
	ret, d, err := p.Benchmark(frame, 1, nil)
	if err != nil {
		return 0, 0, err
	}
	return float64(d.Nanoseconds()), ret, nil
}

// interleaved runs each frame once through base and once through prog,
// alternating so that both see the same cache, and returns the durations
// (ns) of prog's runs and of base's.
func interleaved(base, prog *ebpf.Program, frames [][]byte) (progNs, baseNs []float64, err error) {
	progNs = make([]float64, 0, len(frames))
	baseNs = make([]float64, 0, len(frames))
	for _, f := range frames {
		d, _, err := once(base, f)
		if err != nil {
			return nil, nil, err
		}
		baseNs = append(baseNs, d)
		if d, _, err = once(prog, f); err != nil {
			return nil, nil, err
		}
		progNs = append(progNs, d)
	}
	return progNs, baseNs, nil
}

// pinCPU locks the goroutine to its thread and the thread to one CPU, so that
// LRU maps filled from user space and used by the program share the same
// per-CPU free list and every run sees the same cache.
func pinCPU(cpu int) func() {
	runtime.LockOSThread()
	var old unix.CPUSet
	_ = unix.SchedGetaffinity(0, &old)
	var set unix.CPUSet
	set.Set(cpu)
	_ = unix.SchedSetaffinity(0, &set)
	return func() {
		_ = unix.SchedSetaffinity(0, &old)
		runtime.UnlockOSThread()
	}
}

// batchPut writes keys and values in chunks.
func batchPut[K, V any](m *ebpf.Map, keys []K, vals []V) error {
	const chunk = 8192
	for i := 0; i < len(keys); i += chunk {
		j := min(i+chunk, len(keys))
		if _, err := m.BatchUpdate(keys[i:j], vals[i:j], nil); err != nil {
			return fmt.Errorf("batch update %s [%d:%d]: %w", m.String(), i, j, err)
		}
	}
	return nil
}

func batchDel[K any](m *ebpf.Map, keys []K) error {
	const chunk = 8192
	for i := 0; i < len(keys); i += chunk {
		j := min(i+chunk, len(keys))
		if _, err := m.BatchDelete(keys[i:j], nil); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			// a batch stops at the first missing key: fall back to one by one
			for _, k := range keys[i:j] {
				_ = m.Delete(k)
			}
		}
	}
	return nil
}

func v4(a netip.Addr) [4]uint32 { _, w := maps.Words(a); return w }

func ctrlKey(client netip.AddrPort, server netip.AddrPort) bpf.FtpgateCtrlKey {
	return maps.Control{Client: client.Addr(), ClientPort: client.Port(), Server: server.Addr(), ServerPort: server.Port()}.Key()
}

// expectKey is the expectation a SYN src -> dst:dport consumes.
func expectKey(src, dst netip.Addr, dport uint16) bpf.FtpgateExpectKey {
	fam, _ := maps.Words(src)
	return bpf.FtpgateExpectKey{Family: fam, Dport: dport, Src: v4(src), Dst: v4(dst)}
}

func flowKey(src, dst netip.AddrPort) bpf.FtpgateFlowKey {
	fam, _ := maps.Words(src.Addr())
	return bpf.FtpgateFlowKey{Family: fam, Sport: src.Port(), Dport: dst.Port(), Src: v4(src.Addr()), Dst: v4(dst.Addr())}
}

// counterDelta runs fn and returns how much each named counter moved.
func counterDelta(r *bpfrun.Rig, fn func() error, names ...string) (map[string]uint64, error) {
	before, err := r.Counters()
	if err != nil {
		return nil, err
	}
	if err := fn(); err != nil {
		return nil, err
	}
	after, err := r.Counters()
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for _, n := range names {
		if _, ok := after[n]; !ok {
			return nil, fmt.Errorf("no counter %q", n)
		}
		out[n] = after[n] - before[n]
	}
	return out, nil
}
