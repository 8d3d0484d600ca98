package replay

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/ftpgate/ftpgate/internal/nettest"
	"github.com/ftpgate/ftpgate/internal/packet"
	"github.com/ftpgate/ftpgate/maps"
)

// the lab's addresses: a client port and the FTP port
var (
	cli4 = netip.AddrPortFrom(nettest.ClientV4.Addr(), 40000)
	srv4 = netip.AddrPortFrom(nettest.ServerV4.Addr(), 21)
	cli6 = netip.AddrPortFrom(nettest.ClientV6.Addr(), 40000)
	srv6 = netip.AddrPortFrom(nettest.ServerV6.Addr(), 21)
)

func TestLocateTCP(t *testing.T) {
	payload := bytes.Repeat([]byte("NOOP\r\n"), 1500)
	for _, c := range []struct {
		name string
		tcp  packet.TCP
		hdrs int
	}{
		{"ipv4", packet.TCP{Src: cli4, Dst: srv4}, 14 + 20 + 20},
		{"ipv4 in two VLAN tags, TCP options", packet.TCP{Src: cli4, Dst: srv4, VLANs: []uint16{7, 8}, TCPOptions: make([]byte, 12)}, 14 + 8 + 20 + 32},
		{"ipv6 with two extension headers", packet.TCP{Src: cli6, Dst: srv6, IPv6Ext: 2}, 14 + 40 + 16 + 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.tcp.Seq, c.tcp.Flags, c.tcp.Payload = 1234, packet.ACK|packet.PSH|packet.FIN, payload
			s, ok := locateTCP(c.tcp.Bytes())
			if !ok || s.payloadOff != c.hdrs || s.payloadLen != len(payload) || s.seq != 1234 ||
				s.src != c.tcp.Src || s.dst != c.tcp.Dst || s.flags != packet.ACK|packet.PSH|packet.FIN {
				t.Fatalf("located %+v (ok %v), want payload at %d", s, ok, c.hdrs)
			}
		})
	}
	for name, tcp := range map[string]packet.TCP{
		"three VLAN tags":     {Src: cli4, Dst: srv4, VLANs: []uint16{1, 2, 3}},
		"non-first fragment":  {Src: cli4, Dst: srv4, FragOffset: 10},
		"ipv6 chain too deep": {Src: cli6, Dst: srv6, IPv6Ext: maps.MaxIPv6Ext + 1},
	} {
		if _, ok := locateTCP(tcp.Bytes()); ok {
			t.Errorf("%s: located, but the programs do not parse it as TCP", name)
		}
	}
}

// trusted agrees with the packet builder's checksum forms
func TestTrusted(t *testing.T) {
	for _, c := range []struct {
		name string
		tcp  packet.TCP
		want bool
	}{
		{"right checksum", packet.TCP{}, true},
		{"offload form", packet.TCP{PartialChecksum: true}, true},
		{"wrong checksum", packet.TCP{BadChecksum: true}, false},
		{"wrong checksum, longer than the parser reads", packet.TCP{BadChecksum: true, Payload: make([]byte, maps.MaxScanBytes+1)}, true},
	} {
		for _, ends := range [][2]netip.AddrPort{{cli4, srv4}, {cli6, srv6}} {
			c.tcp.Src, c.tcp.Dst = ends[0], ends[1]
			if c.tcp.Payload == nil {
				c.tcp.Payload = []byte("PORT 192,0,2,2,195,80\r\n")
			}
			f := c.tcp.Bytes()
			s, _ := locateTCP(f)
			if got := s.trusted(f[s.tcpOff:]); got != c.want {
				t.Errorf("%s %s: trusted %v", c.name, ends[0].Addr(), got)
			}
		}
	}
}

// a piece decodes as the segment it stands for, with a right checksum
func TestPiece(t *testing.T) {
	for _, ends := range [][2]netip.AddrPort{{cli4, srv4}, {cli6, srv6}} {
		big := packet.TCP{Src: ends[0], Dst: ends[1], Seq: 100, Flags: packet.ACK | packet.PSH,
			Payload: bytes.Repeat([]byte("x"), 9000), PartialChecksum: true, IPv6Ext: 1}
		s, ok := locateTCP(big.Bytes())
		if !ok {
			t.Fatal("not located")
		}
		f := s.piece(3100, packet.ACK|packet.FIN, []byte("PORT 1\r\n"), 8)
		p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
		tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if !ok || tcp.Seq != 3100 || !tcp.FIN || tcp.PSH || string(tcp.Payload) != "PORT 1\r\n" {
			t.Fatalf("piece decodes as %v", p)
		}
		if ps, _ := locateTCP(f); ps.payloadLen != 8 || !ps.trusted(f[ps.tcpOff:]) {
			t.Errorf("piece: payload length %d, trusted %v", ps.payloadLen, ps.trusted(f[ps.tcpOff:]))
		}
		// a gap piece claims bytes it does not carry
		if ps, _ := locateTCP(s.piece(4196, packet.ACK, nil, 4804)); ps.payloadLen != 4804 || len(ps.captured()) != 0 {
			t.Errorf("gap piece: claims %d, carries %d", ps.payloadLen, len(ps.captured()))
		}
	}
}

func TestReach(t *testing.T) {
	line := "NOOP\r\n"
	for _, c := range []struct {
		payload string
		start   int
		want    int
	}{
		{"", 0, 0},
		{"NOOP", 0, 4},
		{strings.Repeat(line, 10), 0, 60},
		{strings.Repeat(line, maps.MaxLines), 0, 6 * maps.MaxLines},
		{strings.Repeat(line, maps.MaxLines+1), 0, 6 * maps.MaxLines},
		// a partial line at the start takes a step of its own
		{"OP\r\n" + strings.Repeat(line, maps.MaxLines), 0, 4 + 6*(maps.MaxLines-1)},
		// the steps count from the first new byte
		{strings.Repeat(line, maps.MaxLines+5), 30, 30 + 6*maps.MaxLines},
	} {
		if got := reach([]byte(c.payload), c.start); got != c.want {
			t.Errorf("reach(%d bytes, %d) = %d, want %d", len(c.payload), c.start, got, c.want)
		}
	}
}
