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

// TestAuthTLSStopsParsing (#13): after AUTH answered 234 nothing is parsed
// (the BPF parser's rule); an AUTH answered otherwise, or a 234 answering
// another command, changes nothing.
func TestAuthTLSStopsParsing(t *testing.T) {
	client, server := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("198.51.100.20")
	pasv := "227 Entering Passive Mode (198,51,100,20,117,48)\r\n"
	for _, tc := range []struct {
		name, auth, reply string
		created           int
	}{
		{"234", "AUTH TLS\r\n", "234 Proceed\r\n", 0},
		{"534", "AUTH TLS\r\n", "534 No\r\n", 1},
		{"234 to NOOP", "NOOP\r\n", "234 not TLS\r\n", 1},
	} {
		c := NewConn(client, server, Config{})
		c.SYN(true, 0)
		c.SYN(false, 0)
		cseq, sseq := uint32(1), uint32(1)
		send := func(fromClient bool, text string) {
			if fromClient {
				c.Segment(true, cseq, []byte(text))
				cseq += uint32(len(text))
			} else {
				c.Segment(false, sseq, []byte(text))
				sseq += uint32(len(text))
			}
		}
		send(false, "220 hi\r\n")
		send(true, tc.auth)
		send(false, tc.reply)
		send(true, "PASV\r\n")
		send(false, pasv)
		if len(c.Created) != tc.created {
			t.Errorf("%s: %d expectations, want %d", tc.name, len(c.Created), tc.created)
		}
	}
}
