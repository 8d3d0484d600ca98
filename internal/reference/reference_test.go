package reference

import (
	"net/netip"
	"testing"
)

// An unpaired 227 without an address is counted apart; with one it is a
// rejection, as in the BPF parser (bpf/events_test.go).
func TestUnpaired227(t *testing.T) {
	c := NewConn(netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("198.51.100.20"), Config{})
	c.SYN(false, 0)
	c.Segment(false, 1, []byte("227 Logout.\r\n227 Entering Passive Mode (198,51,100,20,117,48)\r\n"))
	if c.Rejects["reply_227_no_address"] != 1 || c.Rejects["reject_unpaired"] != 1 || len(c.Created) != 0 {
		t.Fatalf("rejects %v, created %v", c.Rejects, c.Created)
	}
}
