package attack

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/ftpgate/ftpgate/internal/packet"
	"github.com/ftpgate/ftpgate/tests/lab"
)

// blindSeqs are four sequence numbers a quarter of the sequence space apart
// from a random start: whatever the real one is, some of them lie far ahead
// of it, as a blind attacker spraying the space would hit.
func blindSeqs() []uint32 {
	r := rand.Uint32()
	return []uint32{r, r + 1<<30, r + 2<<30, r + 3<<30}
}

// spray sends, from outside, one segment with flags for each blind
// sequence number in both directions of s's control connection.
func (e *env) spray(s *session, flags uint8, badChecksum bool) {
	e.t.Helper()
	in := e.injectorOn(e.l.ServerNS, lab.GwServerIf)
	for _, seq := range blindSeqs() {
		for _, dir := range [][2]netip.AddrPort{{s.Addr, s.Peer}, {s.Peer, s.Addr}} {
			in.mustSend(e.t, 64, packet.TCP{Src: dir[0], Dst: dir[1], Seq: seq, Ack: rand.Uint32(),
				Flags: flags, BadChecksum: badChecksum})
		}
	}
}

// sessionSurvives: the attacked session's next passive download works.
func (e *env) sessionSurvives(s *session, what string) outcome {
	if err := s.passiveGet(); err != nil {
		e.t.Logf("after %s: %v", what, err)
		return outcome{Detail: "next transfer on the session: " + failure(err)}
	}
	return outcome{Safe: true, Detail: "next transfer on the session worked"}
}

// failure says briefly how a transfer failed, for the table.
func failure(err error) string {
	if errors.Is(err, errDataBlocked) {
		return "data connection dropped"
	}
	return err.Error()
}

func (e *env) open(family int) *session {
	e.t.Helper()
	s, err := openSession(e.l, family, lab.FTPPort)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(s.Close)
	return s
}

// TestBlindDesync is finding 4: spoofed bare ACKs with random sequence
// numbers, checksum wrong or right, must not move the parser: the next
// passive transfer on the attacked control connection works.
func TestBlindDesync(t *testing.T) {
	rows := []struct {
		row string
		bad bool
	}{
		{"4a blind desync: bare ACKs, random seq, bad checksum", true},
		{"4b blind desync: bare ACKs, random seq, valid checksum", false},
	}
	outcomes.note(rows[0].row, "8 ACKs from outside (4 seqs a quarter of the space apart, both directions of the session); rx checksum offload off on the gateway")
	outcomes.note(rows[1].row, "same with a right checksum: only window tracking can tell them")
	forEachTarget(t, spec{spoofing: true}, func(e *env) {
		for _, r := range rows {
			s := e.open(4)
			if err := s.passiveGet(); err != nil {
				e.t.Fatalf("transfer before the attack: %v", err)
			}
			before := e.counters()
			e.spray(s, packet.ACK, r.bad)
			e.report(r.row, e.sessionSurvives(s, "spoofed ACKs"))
			if r.bad {
				e.wantRefusalCounted(before, countChecksum)
			} else {
				e.wantRefusalCounted(before, countWindow)
			}
		}
	})
}

// TestSpoofedClose is finding 5: a spoofed RST or FIN with a random
// sequence number must neither drop the pending expectation nor the
// control connection's state.
func TestSpoofedClose(t *testing.T) {
	rows := []struct {
		row   string
		flags uint8
		bad   bool
	}{
		{"5a spoofed RST, random seq, bad checksum", packet.RST, true},
		{"5b spoofed FIN, random seq, bad checksum", packet.FIN | packet.ACK, true},
		{"5c spoofed RST, random seq, valid checksum", packet.RST, false},
		{"5d spoofed FIN, random seq, valid checksum", packet.FIN | packet.ACK, false},
	}
	outcomes.note(rows[0].row, "sent between the 227 and the data connection, both directions; then that data connection and one more transfer")
	forEachTarget(t, spec{spoofing: true}, func(e *env) {
		for _, r := range rows {
			s := e.open(4)
			target, err := s.passive()
			if err != nil {
				e.t.Fatalf("PASV before the attack: %v", err)
			}
			before := e.counters()
			e.spray(s, r.flags, r.bad)
			o := outcome{Safe: true, Detail: "pending data connection and next transfer worked"}
			if err := s.retrieve(target, netip.AddrPort{}); err != nil {
				e.t.Logf("data connection negotiated before the attack: %v", err)
				o = outcome{Detail: "data connection negotiated before the attack: " + failure(err)}
			} else if n := e.sessionSurvives(s, "the spoofed close"); !n.Safe {
				o = n
			}
			e.report(r.row, o)
			if r.bad {
				e.wantRefusalCounted(before, countChecksum)
			} else {
				e.wantRefusalCounted(before, countWindow)
			}
		}
	})
}
