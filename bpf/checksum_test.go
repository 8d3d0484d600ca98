package bpf_test

import (
	"testing"

	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/internal/packet"
)

// serverSegment sends a server segment of c built with opts at seq, through egress.
func serverSegment(t *testing.T, r *bpftest.Rig, c *bpftest.Conn, seq uint32, payload string, bad, partial bool) {
	t.Helper()
	f := packet.TCP{Src: ap(server4, 21), Dst: ap(client4, 40000), Seq: seq, Ack: c.CSeq, Flags: packet.ACK | packet.PSH,
		Payload: []byte(payload), BadChecksum: bad, PartialChecksum: partial}.Bytes()
	if _, err := r.TC(f, false, 0); err != nil {
		t.Fatal(err)
	}
}

// TestForgedSegmentWithBadChecksum: a forged 227 with a wrong checksum (the
// server's TCP would drop it) arrives first; the genuine reply at the same
// sequence number follows. The parser must trust neither the forgery nor
// mistake the genuine segment for a retransmission.
func TestForgedSegmentWithBadChecksum(t *testing.T) {
	r := bpftest.Shared(t)
	c := open(t, r, client4, server4)
	must(t, c.ClientSends("PASV\r\n"))
	forged := "227 Entering Passive Mode (198,51,100,20,200,0)\r\n"
	genuine := "227 Entering Passive Mode (198,51,100,20,117,48)\r\n"
	serverSegment(t, r, c, c.SSeq, forged, true, false)
	wantExpect(t, r)
	// a forged segment far ahead must not force a resync either
	serverSegment(t, r, c, c.SSeq+1000, "xx\r\n", true, false)
	must(t, c.ServerSends(genuine))
	wantExpect(t, r, expect{"pasv", client4, server4, 30000})
	wantCounters(t, r, map[string]uint64{"ctrl_bad_checksum": 2, "parse_resync": 0, "ctrl_retransmit": 0})
}

// TestPartialChecksumIsTrusted: with checksum offload the stack leaves only
// the pseudo-header sum in the field (local senders, veth); such segments
// are parsed.
func TestPartialChecksumIsTrusted(t *testing.T) {
	r := bpftest.Shared(t)
	c := open(t, r, client4, server4)
	must(t, c.ClientSends("PASV\r\n"))
	serverSegment(t, r, c, c.SSeq, "227 Entering Passive Mode (198,51,100,20,117,48)\r\n", false, true)
	wantExpect(t, r, expect{"pasv", client4, server4, 30000})
	wantCounters(t, r, map[string]uint64{"ctrl_bad_checksum": 0})
}

// TestChecksumOfEveryLength covers payloads of every length modulo four and
// across checksum chunks, IPv4 and IPv6: valid segments are all parsed.
func TestChecksumOfEveryLength(t *testing.T) {
	r := bpftest.Shared(t)
	for _, fam := range []struct{ c, s string }{{"v4", ""}, {"v6", ""}} {
		client, server := client4, server4
		if fam.c == "v6" {
			client, server = client6, server6
		}
		c := open(t, r, client, server)
		for n := 1; n < 1100; n += 37 {
			pad := make([]byte, n)
			for i := range pad {
				pad[i] = 'a' + byte(i%26)
			}
			must(t, c.ClientSends("NOOP "+string(pad)+"\r\n"))
		}
	}
	wantCounters(t, r, map[string]uint64{"ctrl_bad_checksum": 0})
}
