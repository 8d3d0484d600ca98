package bench

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/internal/bpfrun"
	"github.com/ftpgate/ftpgate/internal/nettest"
)

// rpLab is a network namespace where the reverse-path check of control
// segments (rp-check strict) really looks routes up: forwarding on, the
// client's network 192.0.2.0/24 on "inside", a default route (towards the
// server 198.51.100.2) via "outside", and permanent neighbours so that
// bpf_fib_lookup answers success, as on a gateway whose neighbours are known.
// Without it a test run's skb is on the loopback, where forwarding is off and
// the lookup stops at "forwarding disabled" (rp_not_forwarding).
type rpLab struct {
	ns              string
	outside, inside uint32
}

func newRPLab(b *testing.B) *rpLab {
	b.Helper()
	l := &rpLab{}
	l.ns = nettest.VethNS(b, "fgb-rp", "outside", "outside-peer")
	err := nettest.Do(l.ns, func() error {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "inside"}, PeerName: "inside-peer"}); err != nil {
			return err
		}
		if err := os.WriteFile("/proc/sys/net/ipv4/conf/all/forwarding", []byte("1"), 0o644); err != nil {
			return err
		}
		for _, dev := range []struct {
			name  string
			idx   *uint32
			addr  string
			gw    string
			neigh string
		}{
			{"outside", &l.outside, "203.0.113.1/24", "203.0.113.254", "203.0.113.254"},
			{"inside", &l.inside, "192.0.2.1/24", "", clientAddr.String()},
			{"inside-peer", nil, "", "", ""},
		} {
			lk, err := netlink.LinkByName(dev.name)
			if err != nil {
				return err
			}
			if err := netlink.LinkSetUp(lk); err != nil {
				return err
			}
			if dev.idx != nil {
				*dev.idx = uint32(lk.Attrs().Index)
			}
			if dev.addr != "" {
				ip, ipn, _ := net.ParseCIDR(dev.addr)
				ipn.IP = ip
				if err := netlink.AddrAdd(lk, &netlink.Addr{IPNet: ipn, Flags: unix.IFA_F_NODAD}); err != nil {
					return fmt.Errorf("address %s: %w", dev.addr, err)
				}
			}
			if dev.gw != "" {
				if err := netlink.RouteAdd(&netlink.Route{LinkIndex: lk.Attrs().Index, Gw: net.ParseIP(dev.gw)}); err != nil {
					return fmt.Errorf("default route via %s: %w", dev.gw, err)
				}
			}
			if dev.neigh != "" {
				err := netlink.NeighSet(&netlink.Neigh{LinkIndex: lk.Attrs().Index, Family: unix.AF_INET, State: netlink.NUD_PERMANENT,
					IP: net.ParseIP(dev.neigh), HardwareAddr: net.HardwareAddr{0x02, 0, 0, 0, 0, 1}})
				if err != nil {
					return fmt.Errorf("neighbour %s: %w", dev.neigh, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		b.Fatalf("set up %s: %v", l.ns, err)
	}
	return l
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
