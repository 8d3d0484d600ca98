package maps

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/ftpgate/ftpgate/internal/packet"
)

// TestFinishChecksum: a partial checksum (the pseudo-header's sum, left for
// the device) is finished, a right one left alone, any other refused; IPv4
// and IPv6.
func TestFinishChecksum(t *testing.T) {
	for _, fam := range []struct{ src, dst string }{
		{"198.51.100.2:21", "192.0.2.10:40000"},
		{"[2001:db8:2::2]:21", "[2001:db8:1::10]:40000"},
	} {
		seg := func(partial, bad bool) []byte {
			return packet.TCP{Src: netip.MustParseAddrPort(fam.src), Dst: netip.MustParseAddrPort(fam.dst), Seq: 7, Ack: 9,
				Flags: packet.PSH | packet.ACK, Payload: []byte("227 Entering Passive Mode (198,51,100,2,117,48).\r\n"),
				PartialChecksum: partial, BadChecksum: bad}.Bytes()
		}
		right := seg(false, false)
		got := seg(true, false)
		if err := FinishChecksum(got, 14); err != nil || string(got) != string(right) {
			t.Fatalf("%s: partial checksum: err %v, finished right %v", fam.src, err, string(got) == string(right))
		}
		again := seg(false, false)
		if err := FinishChecksum(again, 14); err != nil || string(again) != string(right) {
			t.Fatalf("%s: right checksum changed or refused: %v", fam.src, err)
		}
		if err := FinishChecksum(seg(false, true), 14); !errors.Is(err, ErrHeldChecksum) {
			t.Fatalf("%s: damaged checksum: %v, want ErrHeldChecksum", fam.src, err)
		}
		if err := FinishChecksum(right[:30], 14); !errors.Is(err, ErrHeldFrame) {
			t.Fatalf("%s: truncated frame: %v, want ErrHeldFrame", fam.src, err)
		}
	}
}
