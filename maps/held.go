package maps

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"

	"github.com/ftpgate/ftpgate/bpf"
	"github.com/ftpgate/ftpgate/internal/inetsum"
)

// HeldSegment is one record of the held ring (#15 --sync-hold): a control
// segment TC dropped because it made an expectation, for run to send on
// once the group's peers have that expectation.
type HeldSegment struct {
	Held    time.Duration // when, on the ftpgate clock (Now)
	Ifindex int           // the device whose TC hook held it
	Ingress bool          // held at ingress (send it on as received there), else at egress
	// Frame is the segment as TC saw it, from its link-layer header; L3Off
	// bytes come before the IP header (14 on Ethernet, 0 on an IP device)
	Frame []byte
	L3Off int
	// VLANProto and VLANTCI: a tag the device kept outside Frame (0 without)
	VLANProto, VLANTCI uint16
	// Src, Dst, DPort: the expectation it made (the last, if several)
	Src, Dst netip.Addr
	DPort    uint16
	// Pending is its entry in hold_pending, which drops its sender's
	// retransmissions until run sends it on (EndHold)
	Pending bpf.FtpgateHoldKey
}

// DecodeHeld decodes a raw record of the held ring.
func DecodeHeld(raw []byte) (HeldSegment, error) {
	var h bpf.FtpgateHeldSegment
	if err := binary.Read(bytes.NewReader(raw), binary.NativeEndian, &h); err != nil {
		return HeldSegment{}, fmt.Errorf("decode held segment: %w", err)
	}
	if int(h.Len) > len(h.Data) || int(h.L3Off) > int(h.Len) {
		return HeldSegment{}, fmt.Errorf("decode held segment: %d bytes, IP header at %d", h.Len, h.L3Off)
	}
	out := HeldSegment{
		Held:      time.Duration(h.HeldNs),
		Ifindex:   int(h.Ifindex),
		Ingress:   h.Ingress != 0,
		Frame:     bytes.Clone(h.Data[:h.Len]),
		L3Off:     int(h.L3Off),
		VLANProto: h.VlanProto,
		VLANTCI:   h.VlanTci,
		Pending:   h.Pending,
	}
	if h.Expect.Family != 0 {
		out.Src, out.Dst, out.DPort = Addr(h.Expect.Family, h.Expect.Src), Addr(h.Expect.Family, h.Expect.Dst), h.Expect.Dport
	}
	return out, nil
}

// HoldWait is how long a held segment may wait for the peers: the
// dataplane drops its sender's retransmissions for as long (HOLD_WAIT_MS).
const HoldWait = time.Duration(bpf.FtpgateLimitsHOLD_WAIT_MS) * time.Millisecond

// HoldLeaseRenew is how often run renews its lease on the hold.
const HoldLeaseRenew = time.Duration(bpf.FtpgateLimitsHOLD_LEASE_RENEW_MS) * time.Millisecond

// RenewHoldLease lets the dataplane hold for HoldWait from now: run calls
// it every HoldLeaseRenew while it reads the held ring, ingress telling
// whether it can send on a segment held at ingress. A run that dies stops
// renewing and the dataplane stops holding HoldWait later.
func (m *Maps) RenewHoldLease(ingress bool) error {
	now, err := m.Now()
	if err != nil {
		return err
	}
	l := bpf.FtpgateHoldLease{UntilNs: now + uint64(HoldWait)}
	if ingress {
		l.Flags = uint32(bpf.FtpgateHoldLeaseFlagsHOLD_INGRESS)
	}
	if err := m.HoldLease.Put(uint32(0), l); err != nil {
		return fmt.Errorf("update %s: %w", NameHoldLease, err)
	}
	return nil
}

// EndHoldLease stops the dataplane holding: run leaves its group.
func (m *Maps) EndHoldLease() error {
	if err := m.HoldLease.Put(uint32(0), bpf.FtpgateHoldLease{}); err != nil {
		return fmt.Errorf("update %s: %w", NameHoldLease, err)
	}
	return nil
}

// EndHold removes h's hold_pending entry: from now on its sender's
// retransmissions pass. run calls it before it sends h on (or gives up).
func (m *Maps) EndHold(h HeldSegment) error {
	if err := m.HoldPending.Delete(&h.Pending); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete from %s: %w", NameHoldPending, err)
	}
	return nil
}

// ErrHeldChecksum: a held segment's TCP checksum is neither right nor the
// partial sum a sender's offload leaves for the device to finish; it may
// have been damaged on the way, and is not sent on.
var ErrHeldChecksum = errors.New("TCP checksum neither complete nor partial")

// ErrHeldFrame: a held frame that is not IPv4 or IPv6 carrying TCP whole.
var ErrHeldFrame = errors.New("not an IP packet carrying a whole TCP segment")

// FinishChecksum makes the TCP checksum of a held frame complete, in place.
// A segment from a sender next to the gateway (a veth, a virtual NIC with
// offload) reaches TC with the checksum left partial: the field holds the
// pseudo-header's sum, for the device to finish. TC dropped it there; a copy
// sent on as a new frame would reach the receiver unfinished. A checksum
// already right is left alone; one that is neither is refused
// (ErrHeldChecksum): its sender's retransmission will come.
func FinishChecksum(frame []byte, l3Off int) error {
	if l3Off < 0 || l3Off >= len(frame) {
		return ErrHeldFrame
	}
	ip := frame[l3Off:]
	var src, dst netip.Addr
	var l4 []byte
	switch ip[0] >> 4 {
	case 4:
		if len(ip) < 20 {
			return ErrHeldFrame
		}
		hl, total := int(ip[0]&0xf)*4, int(binary.BigEndian.Uint16(ip[2:]))
		frag := binary.BigEndian.Uint16(ip[6:]) & 0x3fff
		if ip[9] != 6 || hl < 20 || total < hl || total > len(ip) || frag != 0 {
			return ErrHeldFrame
		}
		src, dst = netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
		l4 = ip[hl:total]
	case 6:
		if len(ip) < 40 {
			return ErrHeldFrame
		}
		total := 40 + int(binary.BigEndian.Uint16(ip[4:]))
		if ip[6] != 6 || total > len(ip) { // extension headers: the parser never holds such a segment
			return ErrHeldFrame
		}
		src, dst = netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
		l4 = ip[40:total]
	default:
		return ErrHeldFrame
	}
	if len(l4) < 20 {
		return ErrHeldFrame
	}
	pseudo := inetsum.Pseudo(src, dst, 6, len(l4))
	if inetsum.Fold(pseudo+inetsum.Sum(l4)) == 0xffff {
		return nil // complete and right
	}
	field := binary.BigEndian.Uint16(l4[16:])
	if field != inetsum.Fold(pseudo) {
		return ErrHeldChecksum
	}
	binary.BigEndian.PutUint16(l4[16:], 0)
	binary.BigEndian.PutUint16(l4[16:], ^inetsum.Fold(pseudo+inetsum.Sum(l4)))
	return nil
}
