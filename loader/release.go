package loader

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/maps"
)

// Releaser sends on the control segments TC held under --sync-hold (#15,
// maps.HeldSegment) once the group's peers have their expectation. A
// segment held at ingress is given back to the stack as received on its
// device: a two-instruction XDP program returning XDP_PASS, run by
// BPF_PROG_RUN in live-frame mode (Linux 5.18), which injects the frame
// there. One held at egress is sent out of its device on a packet socket.
// Either way the copy meets ftpgate's TC hook again, as old bytes: passed,
// not parsed, not held. Interface indexes are run's --netns's.
type Releaser struct {
	ns   string        // the network namespace of the guarded devices
	pass *ebpf.Program // nil: the kernel has no live frames
	pkt  int           // AF_PACKET socket in ns (protocol 0: it receives nothing)
}

// bpfFTestXDPLiveFrames is BPF_F_TEST_XDP_LIVE_FRAMES (uapi bpf.h).
const bpfFTestXDPLiveFrames = 1 << 1

// xdpMD is the context of an XDP program run (uapi struct xdp_md): for a
// live frame data_end is the frame's length and ingress_ifindex its device.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// ErrNoLiveFrames: the kernel cannot inject a frame at a device's ingress
// (BPF_PROG_RUN live frames, 5.18): a segment held at ingress waits for its
// sender's retransmission.
var ErrNoLiveFrames = errors.New("this kernel cannot inject a held segment at ingress (BPF_PROG_RUN live frames, Linux 5.18): its sender's retransmission brings it")

// ErrHeldNotEthernet: a held frame without an Ethernet header is not sent on.
var ErrHeldNotEthernet = errors.New("held segment's device is not Ethernet: its sender's retransmission brings it")

func xdpReturning(action int32) (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "ftpgate_release", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, action), asm.Return()},
	})
}

// NewReleaser makes a releaser for the devices of network namespace ns
// ("" for run's own); it asks the kernel for live frames with a program
// that drops the probe frame on the loopback device.
func NewReleaser(ns string) (*Releaser, error) {
	r := &Releaser{ns: ns, pkt: -1}
	probe, err := xdpReturning(1) // XDP_DROP
	if err != nil {
		return nil, fmt.Errorf("sync hold: load XDP program: %w", err)
	}
	defer probe.Close()
	var live error
	err = inNetns(ns, func() error {
		if r.pkt, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0); err != nil {
			return fmt.Errorf("sync hold: packet socket: %w", err)
		}
		_, live = probe.Run(&ebpf.RunOptions{
			Data: make([]byte, 64), Repeat: 1, Flags: bpfFTestXDPLiveFrames,
			Context: xdpMD{DataEnd: 64, IngressIfindex: 1},
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if live != nil {
		return r, nil // no live frames: LiveFrames says so
	}
	if r.pass, err = xdpReturning(2); err != nil { // XDP_PASS
		r.Close()
		return nil, fmt.Errorf("sync hold: load XDP program: %w", err)
	}
	return r, nil
}

// LiveFrames tells whether segments held at ingress can be sent on.
func (r *Releaser) LiveFrames() bool { return r.pass != nil }

// Release sends h on: completes its TCP checksum when its sender left it
// partial (maps.FinishChecksum), puts back a VLAN tag its device kept
// aside, and injects it where TC held it.
func (r *Releaser) Release(h maps.HeldSegment) error {
	if h.L3Off != 14 {
		return ErrHeldNotEthernet
	}
	if h.Ingress && r.pass == nil {
		return ErrNoLiveFrames
	}
	frame := h.Frame
	if err := maps.FinishChecksum(frame, h.L3Off); err != nil {
		return err
	}
	frame = withVLAN(frame, h.VLANProto, h.VLANTCI)
	if h.Ingress {
		return inNetns(r.ns, func() error {
			_, err := r.pass.Run(&ebpf.RunOptions{
				Data: frame, Repeat: 1, Flags: bpfFTestXDPLiveFrames,
				Context: xdpMD{DataEnd: uint32(len(frame)), IngressIfindex: uint32(h.Ifindex)},
			})
			if err != nil {
				return fmt.Errorf("inject held segment at ingress of ifindex %d: %w", h.Ifindex, err)
			}
			return nil
		})
	}
	to := &unix.SockaddrLinklayer{Ifindex: h.Ifindex, Protocol: binary.NativeEndian.Uint16(frame[12:])} // network order
	if err := unix.Sendto(r.pkt, frame, 0, to); err != nil {
		return fmt.Errorf("send held segment out of ifindex %d: %w", h.Ifindex, err)
	}
	return nil
}

// withVLAN puts a VLAN tag the device kept outside an Ethernet frame back
// after its addresses; proto is in network order, 0 for no tag.
func withVLAN(frame []byte, proto, tci uint16) []byte {
	if proto == 0 {
		return frame
	}
	var tag [4]byte
	binary.NativeEndian.PutUint16(tag[:], proto)
	binary.BigEndian.PutUint16(tag[2:], tci)
	return slices.Insert(slices.Clone(frame), 12, tag[:]...)
}

// Close frees the releaser's program and socket.
func (r *Releaser) Close() {
	if r.pass != nil {
		r.pass.Close()
	}
	if r.pkt >= 0 {
		unix.Close(r.pkt)
	}
}
