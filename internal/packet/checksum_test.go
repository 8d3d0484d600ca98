package packet

import (
	"net/netip"
	"testing"

	"github.com/ftpgate/ftpgate/internal/inetsum"
)

// TestBadChecksumNeverVerifies: a segment built with BadChecksum fails
// the receiver's check (the sum over the pseudo-header and the segment,
// checksum included, is not 0xffff) for every client port, also the ones
// whose good checksum is 0x0000.
func TestBadChecksumNeverVerifies(t *testing.T) {
	src, dst := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("198.51.100.20")
	zero := 0
	for port := range 65536 {
		seg := TCP{Src: netip.AddrPortFrom(src, uint16(port)), Dst: netip.AddrPortFrom(dst, 21), Seq: 0xfffff001, Ack: 0x10000001,
			Flags: ACK | PSH, Payload: []byte("\r\nPORT 192,0,2,10,195,99\r\n")}
		good := seg.tcpSegment()
		if good[16] == 0 && good[17] == 0 {
			zero++
		}
		seg.BadChecksum = true
		bad := seg.tcpSegment()
		if inetsum.Fold(inetsum.Pseudo(src, dst, 6, len(bad))+inetsum.Sum(bad)) == 0xffff {
			t.Fatalf("port %d: the bad checksum %02x%02x verifies (good %02x%02x)", port, bad[16], bad[17], good[16], good[17])
		}
	}
	t.Logf("%d of 65536 ports have the good checksum 0x0000", zero)
}
