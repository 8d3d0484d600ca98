// Package packet builds Ethernet frames carrying TCP over IPv4 or IPv6, for
// feeding the BPF programs through BPF_PROG_TEST_RUN and for writing captures.
//
// It builds exactly what a test asks for, including what a real stack would
// never send (too many VLAN tags, deep IPv6 extension chains, truncated
// headers, wrong checksums): the programs must cope with all of it.
package packet

import (
	"encoding/binary"
	"net/netip"

	"github.com/ftpgate/ftpgate/internal/inetsum"
)

// TCP flag bits.
const (
	FIN = 0x01
	SYN = 0x02
	RST = 0x04
	PSH = 0x08
	ACK = 0x10
)

const (
	etherTypeIPv4  = 0x0800
	etherTypeIPv6  = 0x86dd
	etherTypeVLAN  = 0x8100
	protoTCP       = 6
	protoUDP       = 17
	protoHopByHop  = 0
	protoDstOpts   = 60
	protoFragment  = 44
	ipv4HeaderLen  = 20
	ipv6HeaderLen  = 40
	tcpHeaderLen   = 20
	ethHeaderLen   = 14
	defaultTTL     = 64
	defaultWindow  = DefaultWindow
	ipv4DontFrag   = 0x4000
	ipv4MoreFrags  = 0x2000
	extHeaderBytes = 8
)

// DefaultWindow is the window field of every TCP segment built here.
const DefaultWindow = 65535

// TCP describes one TCP segment and its encapsulation.
type TCP struct {
	Src, Dst    netip.AddrPort
	Seq, Ack    uint32
	Flags       uint8
	Payload     []byte
	VLANs       []uint16 // VLAN IDs, outermost first
	IPv6Ext     int      // number of IPv6 destination-options headers before TCP
	FragOffset  uint16   // IPv4/IPv6 fragment offset in 8-byte units; non-zero: a non-first fragment
	MoreFrags   bool     // mark as a (first) fragment
	BadChecksum bool     // corrupt the TCP checksum
	// PartialChecksum leaves only the pseudo-header sum in the checksum
	// field, as the stack does for checksum offload (CHECKSUM_PARTIAL)
	PartialChecksum bool
	TCPOptions      []byte // raw options, padded to 4 bytes by the caller
	EtherTypeRaw    uint16 // when non-zero, overrides the Ethernet type
}

// Bytes serialises the frame.
func (t TCP) Bytes() []byte {
	tcp := t.tcpSegment()
	var l3 []byte
	etherType := uint16(etherTypeIPv4)
	if t.Src.Addr().Is4() {
		l3 = t.ipv4(tcp)
	} else {
		etherType = etherTypeIPv6
		l3 = t.ipv6(tcp)
	}
	if t.EtherTypeRaw != 0 {
		etherType = t.EtherTypeRaw
	}

	frame := make([]byte, 0, ethHeaderLen+4*len(t.VLANs)+len(l3))
	frame = append(frame, 0x02, 0, 0, 0, 0, 0x02) // dst MAC, locally administered
	frame = append(frame, 0x02, 0, 0, 0, 0, 0x01) // src MAC
	for _, id := range t.VLANs {
		frame = binary.BigEndian.AppendUint16(frame, etherTypeVLAN)
		frame = binary.BigEndian.AppendUint16(frame, id&0x0fff)
	}
	frame = binary.BigEndian.AppendUint16(frame, etherType)
	return append(frame, l3...)
}

func (t TCP) tcpSegment() []byte {
	hlen := tcpHeaderLen + len(t.TCPOptions)
	b := make([]byte, hlen, hlen+len(t.Payload))
	binary.BigEndian.PutUint16(b[0:], t.Src.Port())
	binary.BigEndian.PutUint16(b[2:], t.Dst.Port())
	binary.BigEndian.PutUint32(b[4:], t.Seq)
	binary.BigEndian.PutUint32(b[8:], t.Ack)
	b[12] = byte(hlen/4) << 4
	b[13] = t.Flags
	binary.BigEndian.PutUint16(b[14:], defaultWindow)
	copy(b[tcpHeaderLen:], t.TCPOptions)
	b = append(b, t.Payload...)

	sum := inetsum.Pseudo(t.Src.Addr(), t.Dst.Addr(), protoTCP, len(b))
	csum := finish(sum + inetsum.Sum(b))
	if t.PartialChecksum {
		csum = ^finish(sum)
	}
	if t.BadChecksum {
		csum = badChecksum(csum)
	}
	binary.BigEndian.PutUint16(b[16:], csum)
	return b
}

func (t TCP) ipv4(payload []byte) []byte {
	b := make([]byte, ipv4HeaderLen, ipv4HeaderLen+len(payload))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(ipv4HeaderLen+len(payload)))
	frag := t.FragOffset & 0x1fff
	if t.MoreFrags {
		frag |= ipv4MoreFrags
	}
	if frag == 0 {
		frag = ipv4DontFrag
	}
	binary.BigEndian.PutUint16(b[6:], frag)
	b[8] = defaultTTL
	b[9] = protoTCP
	src, dst := t.Src.Addr().As4(), t.Dst.Addr().As4()
	copy(b[12:], src[:])
	copy(b[16:], dst[:])
	binary.BigEndian.PutUint16(b[10:], finish(inetsum.Sum(b)))
	return append(b, payload...)
}

func (t TCP) ipv6(payload []byte) []byte {
	var ext []byte
	next := byte(protoTCP)
	if t.FragOffset != 0 || t.MoreFrags {
		fh := make([]byte, extHeaderBytes)
		fh[0] = next
		off := t.FragOffset << 3
		if t.MoreFrags {
			off |= 1
		}
		binary.BigEndian.PutUint16(fh[2:], off)
		ext = append(fh, ext...)
		next = protoFragment
	}
	for i := 0; i < t.IPv6Ext; i++ {
		h := make([]byte, extHeaderBytes) // length 0: 8 bytes, PadN filling
		h[0] = next
		h[2], h[3] = 1, 4 // PadN option of 4 bytes
		ext = append(h, ext...)
		next = protoDstOpts
	}

	b := make([]byte, ipv6HeaderLen, ipv6HeaderLen+len(ext)+len(payload))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(ext)+len(payload)))
	b[6] = next
	b[7] = defaultTTL
	src, dst := t.Src.Addr().As16(), t.Dst.Addr().As16()
	copy(b[8:], src[:])
	copy(b[24:], dst[:])
	b = append(b, ext...)
	return append(b, payload...)
}

// UDP returns an Ethernet frame with a UDP datagram, for non-TCP traffic.
func UDP(src, dst netip.AddrPort, payload []byte) []byte {
	t := TCP{Src: src, Dst: dst}
	u := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(u[0:], src.Port())
	binary.BigEndian.PutUint16(u[2:], dst.Port())
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	u = append(u, payload...)
	var frame []byte
	if src.Addr().Is4() {
		frame = t.ipv4(u)
		frame[9] = protoUDP
		frame[10], frame[11] = 0, 0
		binary.BigEndian.PutUint16(frame[10:], finish(inetsum.Sum(frame[:ipv4HeaderLen])))
	} else {
		frame = t.ipv6(u)
		frame[6] = protoUDP
	}
	eth := TCP{Src: src, Dst: dst}.Bytes()[:ethHeaderLen]
	return append(append([]byte{}, eth...), frame...)
}

// finish is the checksum field for a sum.
func finish(sum uint64) uint16 { return ^inetsum.Fold(sum) }

// badChecksum returns a checksum no receiver accepts in place of good: its
// complement, except where that is the other form of one's-complement
// zero (0x0000 and 0xffff verify alike: the differential fuzz once saw the
// parser, rightly, read a "bad" segment whose good checksum was 0x0000).
func badChecksum(good uint16) uint16 {
	if bad := good ^ 0xffff; bad != 0 && bad != 0xffff {
		return bad
	}
	return good ^ 0x00ff
}
