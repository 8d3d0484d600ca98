package attack

import (
	"strings"
	"testing"
)

// TestServerEcho is finding 3: vsftpd turns a NUL in a file name into a
// line break when it lists the name in a STAT reply, so an uploader can make
// the server send a line "227 ... (server,12,234)". Pipelined with a PASV,
// that line must not count as the PASV's reply: the uploader must not reach
// the server's port 3306.
func TestServerEcho(t *testing.T) {
	const row = "3 server echo: NUL in an uploaded name, `STAT .` pipelined with PASV"
	outcomes.note(row, "the 227 line sits inside vsftpd's multi-line 213 reply, not at a segment start (the kernel's helper was fooled only with MSS alignment, not tried here)")
	forEachTarget(t, spec{}, func(e *env) {
		s := e.l.ServerAddr(4)
		e.serve(e.l.ServerNS, s, victimPort)
		sess := e.open(4)
		if _, err := sess.cmdWant("CWD upload", 250); err != nil {
			e.t.Fatal(err)
		}
		fake := "227 Entering Passive Mode (" + portArg(s, victimPort) + ")."
		if err := sess.store("x\x00"+fake, []byte("echo\n")); err != nil {
			e.t.Fatalf("upload the file whose name carries the line: %v", err)
		}
		before := e.counters()
		if err := sess.send("STAT .\r\nPASV\r\n"); err != nil {
			e.t.Fatal(err)
		}
		stat, err := sess.expect(213)
		if err != nil {
			e.t.Fatalf("STAT: %v", err)
		}
		if !strings.Contains(stat, "\n"+fake) {
			e.t.Fatalf("vsftpd's listing does not carry the forged line at a line start:\n%q", stat)
		}
		if _, err := sess.expect(227); err != nil {
			e.t.Fatalf("PASV: %v", err)
		}
		o := e.attempt(e.l.ClientNS, s, victimPort)
		if o.Safe {
			// the session still works: the pairing did not lose its place
			if _, err := sess.cmdWant("CWD /", 250); err != nil {
				e.t.Fatal(err)
			}
			if err := sess.passiveGet(); err != nil {
				e.t.Logf("transfer after the attack: %v", err)
				o = outcome{Detail: "attacker held off, but the next transfer on the session: " + failure(err)}
			}
		}
		e.report(row, o)
		// no counter is asserted: inside a multi-line reply the line is
		// text, which is no refusal
		if after := e.counters(); after != nil {
			e.t.Logf("reject_unpaired %d -> %d", before["reject_unpaired"], after["reject_unpaired"])
		}
	})
}
