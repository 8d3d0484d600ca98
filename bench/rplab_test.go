package bench

import (
	"encoding/binary"
	"fmt"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/internal/bpfrun"
	"github.com/ftpgate/ftpgate/internal/nettest"
)

// rpLab is a namespace where the reverse-path check of control segments
// (rp-check strict) really looks routes up (nettest.Routed), with the
// client a permanent neighbour so that bpf_fib_lookup answers success, as on
// a gateway whose neighbours are known.
type rpLab struct {
	ns              string
	outside, inside uint32
}

func newRPLab(b *testing.B) *rpLab {
	b.Helper()
	n := nettest.NewRouted(b, "fgb-rp", clientAddr)
	return &rpLab{ns: n.NS, outside: n.Outside, inside: n.Inside}
}

// in runs fn in the lab's namespace on a thread pinned to cpu.
func (l *rpLab) in(cpu int, fn func() error) error {
	return nettest.Do(l.ns, func() error {
		defer pinCPU(cpu)()
		return fn()
	})
}

// testRunAttr is the BPF_PROG_TEST_RUN part of union bpf_attr.
type testRunAttr struct {
	ProgFd      uint32
	Retval      uint32
	DataSizeIn  uint32
	DataSizeOut uint32
	DataIn      uint64
	DataOut     uint64
	Repeat      uint32
	Duration    uint32
	CtxSizeIn   uint32
	CtxSizeOut  uint32
	CtxIn       uint64
	CtxOut      uint64
	Flags       uint32
	CPU         uint32
	BatchSize   uint32
	_           uint32
}

// skbCtx is the start of struct __sk_buff up to ifindex, the fields a test
// run takes: the device the skb is on and the one it arrived on.
func skbCtx(ifindex, ingressIfindex uint32) []byte {
	ctx := bpfrun.SkbCtx{Ifindex: ifindex, IngressIfindex: ingressIfindex}
	buf, _ := binary.Append(nil, binary.NativeEndian, ctx)
	return buf[:unsafe.Offsetof(ctx.TcIndex)]
}

// onceCtx is once with an __sk_buff context (cilium/ebpf returns the
// kernel's duration only without one): one run, the kernel's duration (ns).
func onceCtx(p *ebpf.Program, frame, ctx []byte) (float64, uint32, error) {
	attr := testRunAttr{
		ProgFd:     uint32(p.FD()),
		DataSizeIn: uint32(len(frame)),
		DataIn:     uint64(uintptr(unsafe.Pointer(&frame[0]))),
		Repeat:     1,
		CtxSizeIn:  uint32(len(ctx)),
		CtxIn:      uint64(uintptr(unsafe.Pointer(&ctx[0]))),
	}
	_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_TEST_RUN, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	if errno != 0 {
		return 0, 0, fmt.Errorf("BPF_PROG_TEST_RUN: %w", errno)
	}
	return float64(attr.Duration), attr.Retval, nil
}

// interleavedCtx is interleaved with a context: both programs on the same
// device, one run each per frame, alternating.
func interleavedCtx(base, prog *ebpf.Program, frames [][]byte, ctx []byte) (progNs, baseNs []float64, err error) {
	progNs = make([]float64, 0, len(frames))
	baseNs = make([]float64, 0, len(frames))
	for _, f := range frames {
		d, _, err := onceCtx(base, f, ctx)
		if err != nil {
			return nil, nil, err
		}
		baseNs = append(baseNs, d)
		d, ret, err := onceCtx(prog, f, ctx)
		if err != nil {
			return nil, nil, err
		}
		if ret != bpfrun.TCOK {
			return nil, nil, fmt.Errorf("tc returned %d", ret)
		}
		progNs = append(progNs, d)
	}
	return progNs, baseNs, nil
}
