package replay

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Frame is one captured packet, turned into an Ethernet frame. A frame
// shorter than an Ethernet header is a runt (empty when the packet was too
// short for its own link-layer header): replay skips and counts it.
type Frame struct {
	Time time.Time
	Data []byte
	// Ethernet: Data's Ethernet header is the captured one, so its MAC
	// addresses tell where the frame came from (replay made up the header
	// of a Linux cooked or raw IP packet)
	Ethernet bool
}

// ErrLinkType means the capture's link type is not one replay understands.
var ErrLinkType = errors.New("unsupported link type")

// errRunt means a packet is too short for its link-layer header.
var errRunt = errors.New("runt")

// packetSource is what the pcap and pcapng readers share.
type packetSource interface {
	ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

// ReadCapture reads a pcap or pcapng file into Ethernet frames. Ethernet,
// Linux cooked (SLL, SLL2) and raw IP link types are understood; each
// packet of another link type is an error naming it.
func ReadCapture(path string) ([]Frame, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open capture: %w", err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("read capture %s: too short to be a pcap or pcapng file", path)
	}

	var src packetSource
	var linkOf func(ci gopacket.CaptureInfo) (layers.LinkType, error)
	if binary.BigEndian.Uint32(magic) == 0x0a0d0d0a { // pcapng section header block
		r, err := pcapgo.NewNgReader(br, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			return nil, fmt.Errorf("read pcapng %s: %w", path, err)
		}
		src = r
		linkOf = func(ci gopacket.CaptureInfo) (layers.LinkType, error) {
			ifc, err := r.Interface(ci.InterfaceIndex)
			if err != nil {
				return 0, fmt.Errorf("packet on unknown interface %d: %w", ci.InterfaceIndex, err)
			}
			return ifc.LinkType, nil
		}
	} else {
		r, err := pcapgo.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("read %s: not a pcap or pcapng capture (%v)", path, err)
		}
		src = r
		lt := r.LinkType()
		linkOf = func(gopacket.CaptureInfo) (layers.LinkType, error) { return lt, nil }
	}

	var frames []Frame
	for n := 1; ; n++ {
		data, ci, err := src.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return frames, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read packet %d of %s: %w", n, path, err)
		}
		lt, err := linkOf(ci)
		if err != nil {
			return nil, fmt.Errorf("packet %d: %w", n, err)
		}
		eth, err := toEthernet(lt, data)
		if errors.Is(err, errRunt) {
			frames = append(frames, Frame{Time: ci.Timestamp})
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("packet %d of %s: %w", n, path, err)
		}
		if eth != nil {
			frames = append(frames, Frame{Time: ci.Timestamp, Data: eth, Ethernet: lt == layers.LinkTypeEthernet})
		}
	}
}

// link types not named in gopacket's layers
const (
	linkTypeSLL2   = 276
	sllHeaderLen   = 16
	sll2HeaderLen  = 20
	etherHeaderLen = 14
)

// toEthernet returns data as an Ethernet frame, or nil for a packet that
// carries no IP (an SLL header of another protocol); errRunt for a packet
// too short for its link-layer header.
func toEthernet(lt layers.LinkType, data []byte) ([]byte, error) {
	switch lt {
	case layers.LinkTypeEthernet:
		return data, nil
	case layers.LinkTypeLinuxSLL:
		if len(data) < sllHeaderLen {
			return nil, errRunt
		}
		return withEthernet(binary.BigEndian.Uint16(data[14:16]), data[sllHeaderLen:]), nil
	case linkTypeSLL2:
		if len(data) < sll2HeaderLen {
			return nil, errRunt
		}
		return withEthernet(binary.BigEndian.Uint16(data[0:2]), data[sll2HeaderLen:]), nil
	// LINKTYPE_RAW (101), the DLT_RAW values some systems write (12, 14),
	// LINKTYPE_IPV4 (228) and LINKTYPE_IPV6 (229)
	case 101, 12, 14, 228, 229:
		if len(data) == 0 {
			return nil, errRunt
		}
		switch data[0] >> 4 {
		case 4:
			return withEthernet(uint16(layers.EthernetTypeIPv4), data), nil
		case 6:
			return withEthernet(uint16(layers.EthernetTypeIPv6), data), nil
		}
		return nil, fmt.Errorf("raw packet of IP version %d", data[0]>>4)
	}
	return nil, fmt.Errorf("%w %d (%s): replay reads Ethernet, Linux cooked (SLL, SLL2) and raw IP captures", ErrLinkType, int(lt), lt)
}

func withEthernet(etherType uint16, l3 []byte) []byte {
	f := make([]byte, etherHeaderLen, etherHeaderLen+len(l3))
	f[0], f[5] = 0x02, 0x02 // locally administered addresses
	f[6], f[11] = 0x02, 0x01
	binary.BigEndian.PutUint16(f[12:], etherType)
	return append(f, l3...)
}
