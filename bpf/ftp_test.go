package bpf_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ftpgate/ftpgate/bpf"
	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/internal/packet"
)

// The tests of issue #11's FTP rules: conformance (is it FTP at all), replies
// in order (multi-line replies, pipelining, the queue), and reordering.

// cmdQueue is how many commands the parser keeps outstanding.
const cmdQueue = int(bpf.FtpgateLimitsCMD_QUEUE)

func TestNotFTP(t *testing.T) {
	cases := []struct {
		name   string
		client []string // sent in turn with server
		server []string
	}{
		// NAT slipstreaming: an HTTP POST whose body holds a PORT line
		{name: "HTTP POST", client: []string{"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\n\r\nPORT 192,0,2,10,195,80\r\n"}},
		// a TLS ClientHello whose session ticket carries a PORT line
		{name: "TLS ClientHello", client: []string{"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\nPORT 192,0,2,10,195,80\r\n"}},
		{name: "client first line not a command", server: []string{"220 ready\r\n"},
			client: []string{"HELLO there\r\nPORT 192,0,2,10,195,80\r\n"}},
		{name: "server first line not a greeting", server: []string{"200 ok\r\n"},
			client: []string{"PORT 192,0,2,10,195,80\r\n"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := bpftest.Shared(t)
			c := bpftest.NewConn(r, ap(client4, 40000), ap(server4, 21))
			must(t, c.Open())
			for _, s := range tc.server {
				must(t, c.ServerSends(s))
			}
			for _, s := range tc.client {
				must(t, c.ClientSends(s))
			}
			// and never parsed again
			must(t, c.ServerSends("220 ready\r\n"))
			must(t, c.ClientSends("PORT 192,0,2,10,195,81\r\n"))
			wantExpect(t, r)
			wantCounters(t, r, map[string]uint64{"ctrl_not_ftp": 1, "cmd_port": 0})
		})
	}
}

func TestGreeting(t *testing.T) {
	for _, greeting := range []string{"220 ready\r\n", "220-Welcome\r\n220 ready\r\n", "120 soon\r\n220 ready\r\n", "220 ready\n"} {
		t.Run(strings.Fields(greeting)[0], func(t *testing.T) {
			r := bpftest.Shared(t)
			c := bpftest.NewConn(r, ap(client4, 40000), ap(server4, 21))
			must(t, c.Open())
			must(t, c.ServerSends(greeting))
			must(t, c.ClientSends("USER a\r\nPASS b\r\nEPSV\r\n"))
			must(t, c.ServerSends("331 ok\r\n230 ok\r\n229 Entering Extended Passive Mode (|||30002|)\r\n"))
			wantExpect(t, r, expect{"epsv", client4, server4, 30002})
			wantCounters(t, r, map[string]uint64{"ctrl_not_ftp": 0})
		})
	}
	t.Run("421", func(t *testing.T) {
		r := bpftest.Shared(t)
		c := bpftest.NewConn(r, ap(client4, 40000), ap(server4, 21))
		must(t, c.Open())
		must(t, c.ServerSends("421 too many users\r\n"))
		wantCounters(t, r, map[string]uint64{"ctrl_not_ftp": 0})
	})
}

func TestPickupRules(t *testing.T) {
	// A picked-up connection is trusted once both directions acknowledged
	// each other's bytes (tcp.h); each direction resumes at a line start if
	// its untrusted bytes ended with LF, else at its next line. These tests
	// first play that exchange.
	t.Run("HTTP", func(t *testing.T) {
		r := bpftest.Shared(t)
		c := bpftest.NewConn(r, ap(client4, 40001), ap(server4, 21))
		must(t, c.ClientSends("x\r\n"))
		must(t, c.ServerSends("x\r\n"))
		must(t, c.ClientSends("x\r\nPOST /upload HTTP/1.1\r\n"))
		must(t, c.ServerSends("x\r\n200 ok\r\n"))
		must(t, c.ClientSends("PORT 192,0,2,10,195,80\r\n"))
		wantExpect(t, r)
		wantCounters(t, r, map[string]uint64{"ctrl_trusted_pickup": 1, "ctrl_not_ftp": 1})
	})
	t.Run("HTTP response", func(t *testing.T) {
		r := bpftest.Shared(t)
		c := bpftest.NewConn(r, ap(client4, 40001), ap(server4, 21))
		must(t, c.ClientSends("x\r\n"))
		must(t, c.ServerSends("x\r\n"))
		must(t, c.ClientSends("x\r\n"))
		must(t, c.ServerSends("x\r\nHTTP/1.1 200 OK\r\n"))
		wantCounters(t, r, map[string]uint64{"ctrl_trusted_pickup": 1, "ctrl_not_ftp": 1})
	})
	t.Run("reply verifies", func(t *testing.T) {
		r := bpftest.Shared(t)
		c := bpftest.NewConn(r, ap(client4, 40001), ap(server4, 21))
		must(t, c.ServerSends("ignored\r\n"))
		must(t, c.ClientSends("ignored\r\n"))
		must(t, c.ServerSends("ignored\r\n"))
		must(t, c.ClientSends("PASV\r\n"))
		must(t, c.ServerSends("227 Entering Passive Mode (198,51,100,20,117,48).\r\n"))
		wantExpect(t, r, expect{"pasv", client4, server4, 30000})
		wantCounters(t, r, map[string]uint64{"ctrl_trusted_pickup": 1})
	})
}

func TestMultiLineReplies(t *testing.T) {
	r := bpftest.Shared(t)
	c := open(t, r, client4, server4)
	must(t, c.ClientSends("PASV\r\n"))
	// a 227 inside a multi-line reply is text, whatever the lines look like
	must(t, c.ServerSends("227-Entering Passive Mode (198,51,100,20,0,22)\r\n227 Entering Passive Mode (198,51,100,20,117,48)\r\n"))
	wantExpect(t, r, expect{"pasv", client4, server4, 30000})

	must(t, c.ClientSends("PASV\r\n"))
	must(t, c.ServerSends("211-status\r\n227 Entering Passive Mode (198,51,100,20,117,49)\r\n200 still text\r\n211 end\r\n"))
	wantExpect(t, r, expect{"pasv", client4, server4, 30000})
	wantCounters(t, r, map[string]uint64{"reply_227": 1})
}

// TestStatEcho is finding 3: STAT . pipelined with PASV, the STAT listing
// holding a line "227 ... (server,12,234)" that the uploader put in a
// directory name. The echoed line is text inside the multi-line reply; and
// a multi-line reply to one of several outstanding commands taints the
// queue until it drains (see TestStatEchoWithCRLF), so the pipelined PASV's
// real 227 is refused too. The next PASV works.
func TestStatEcho(t *testing.T) {
	r := bpftest.Shared(t)
	c := open(t, r, client4, server4)
	must(t, c.ClientSends("STAT .\r\nPASV\r\n"))
	must(t, c.ServerSends("213-Status follows:\r\ndrwxr-xr-x 2 ftp ftp 4096 Jan 1 00:00 x\r\n"+
		"227 Entering Passive Mode (198,51,100,20,12,234)\r\n"+
		"213 End of status\r\n"))
	wantExpect(t, r)
	must(t, c.ServerSends("227 Entering Passive Mode (198,51,100,20,117,48)\r\n"))
	wantExpect(t, r)
	wantCounters(t, r, map[string]uint64{"reply_227": 1, "reject_unpaired": 1, "expect_created": 0})
	converse(t, c, "", "PASV\r\n", "227 Entering Passive Mode (198,51,100,20,117,49)\r\n")
	wantExpect(t, r, expect{"pasv", client4, server4, 30001})
}

// TestStatEchoWithCRLF (found by the attack review of #11): vsftpd 3.0.3
// strips only a command line's trailing CR and turns a NUL into LF, so a
// name "x\r\0213 End\r\0227 ..." is listed by STAT as real CRLF lines: the
// forged "213 End" ends the multi-line reply with a CRLF, and the forged 227
// follows as a top-level line. The multi-line reply answered STAT with PASV
// still outstanding: the queue is tainted, the forged 227 is refused.
func TestStatEchoWithCRLF(t *testing.T) {
	r := bpftest.Shared(t)
	c := open(t, r, client4, server4)
	must(t, c.ClientSends("STAT .\r\nPASV\r\n"))
	must(t, c.ServerSends("213-Status follows:\r\n"+
		"drwxr-xr-x    2 102      105          4096 Nov 30 06:07 x\r\n"+
		"213 End\r\n"+
		"227 Entering Passive Mode (198,51,100,20,12,234).\r\n"+
		"213 End of status\r\n"))
	must(t, c.ServerSends("227 Entering Passive Mode (198,51,100,20,117,109).\r\n"))
	wantExpect(t, r)
	wantCounters(t, r, map[string]uint64{"expect_created": 0})
}

// TestScanLimitKeepsMultiLine (found by the attack review of #11): a server
// segment past the scan limit (MAX_LINES lines, from a name full of NULs)
// must not end the multi-line reply it was in: the echoed 227 after it,
// cut by bare LFs only, stays text, even for a PASV sent after the gap.
func TestScanLimitKeepsMultiLine(t *testing.T) {
	r := bpftest.Shared(t)
	c := open(t, r, client4, server4)
	must(t, c.ClientSends("STAT .\r\n"))
	must(t, c.ServerSends("213-Status follows:\r\n"+
		"drwxr-xr-x    2 102      105          4096 Nov 30 06:07 y"+strings.Repeat("\n", 80)+"\r\n"))
	must(t, c.ClientSends("PASV\r\n"))
	must(t, c.ServerSends("drwxr-xr-x    2 102      105          4096 Nov 30 06:07 x\n"+
		"227 Entering Passive Mode (198,51,100,20,12,234).\r\n"+
		"213 End of status\r\n"))
	wantExpect(t, r)
	wantCounters(t, r, map[string]uint64{"scan_limit": 1})
}

// TestStatEchoEndsReplyEarly: the echoed name also holds a line that looks
// like the end of the STAT reply. vsftpd cuts it with a bare LF (from a NUL),
// while its own lines end with CRLF: the reply does not end there.
func TestStatEchoEndsReplyEarly(t *testing.T) {
	r := bpftest.Shared(t)
	c := open(t, r, client4, server4)
	must(t, c.ClientSends("STAT .\r\nPASV\r\n"))
	must(t, c.ServerSends("213-Status follows:\r\ndrwxr-xr-x 2 ftp ftp 4096 Jan 1 00:00 x\n"+
		"213 x\n227 Entering Passive Mode (198,51,100,20,12,234)\r\n"))
	must(t, c.ServerSends("213 End of status\r\n"))
	wantExpect(t, r)
	// the pipelined PASV's real 227 is refused too (the tainted queue)
	must(t, c.ServerSends("227 Entering Passive Mode (198,51,100,20,117,48)\r\n"))
	wantExpect(t, r)
}

func TestPipelining(t *testing.T) {
	r := bpftest.Shared(t)
	c := bpftest.NewConn(r, ap(client4, 40000), ap(server4, 21))
	must(t, c.Open())
	must(t, c.Greet())
	must(t, c.ClientSends("USER anonymous\r\nPASS x\r\nPASV\r\nLIST\r\n"))
	must(t, c.ServerSends("331 ok\r\n"))
	must(t, c.ServerSends("230 ok\r\n227 Entering Passive Mode (198,51,100,20,117,48)\r\n150 here\r\n"))
	wantExpect(t, r, expect{"pasv", client4, server4, 30000})
	// the 1xx was preliminary: LIST is still outstanding, a 227 now answers it
	must(t, c.ServerSends("227 Entering Passive Mode (198,51,100,20,117,49)\r\n"))
	wantExpect(t, r, expect{"pasv", client4, server4, 30000})
	wantCounters(t, r, map[string]uint64{"reject_unpaired": 1})
	// and the queue is empty: a further reply is unsolicited
	must(t, c.ServerSends("226 done\r\n"))
	wantCounters(t, r, map[string]uint64{"reply_unsolicited": 1})
}

func TestPreliminaryThenFinal(t *testing.T) {
	r := bpftest.Shared(t)
	c := open(t, r, client4, server4)
	must(t, c.ClientSends("RETR x\r\nEPSV\r\n"))
	must(t, c.ServerSends("150 opening\r\n125 still\r\n226 done\r\n229 ok (|||30002|)\r\n"))
	wantExpect(t, r, expect{"epsv", client4, server4, 30002})
}

// ABOR after Telnet IP and Synch (IAC IP IAC DM) is a command line like any
// other: the aborted RETR gets its 426, ABOR its 226.
func TestTelnetAbort(t *testing.T) {
	r := bpftest.Shared(t)
	c := open(t, r, client4, server4)
	must(t, c.ClientSends("RETR x\r\n"))
	must(t, c.ServerSends("150 opening\r\n"))
	must(t, c.ClientSends("\xff\xf4\xff\xf2ABOR\r\nPASV\r\n"))
	must(t, c.ServerSends("426 aborted\r\n226 ABOR ok\r\n227 Entering Passive Mode (198,51,100,20,117,48)\r\n"))
	wantExpect(t, r, expect{"pasv", client4, server4, 30000})
	wantCounters(t, r, map[string]uint64{"reply_unsolicited": 0})
}

func TestQueueOverflow(t *testing.T) {
	r := bpftest.Shared(t)
	c := open(t, r, client4, server4)
	must(t, c.ClientSends(strings.Repeat("NOOP\r\n", cmdQueue)+"PASV\r\n"))
	wantCounters(t, r, map[string]uint64{"cmd_queue_full": 1})
	// all answered in order: the PASV's kind was not kept, so its 227 is refused
	must(t, c.ServerSends(strings.Repeat("200 ok\r\n", cmdQueue)+"227 Entering Passive Mode (198,51,100,20,117,48)\r\n"))
	wantExpect(t, r)
	wantCounters(t, r, map[string]uint64{"reject_unpaired": 1})
	// the queue has drained: pairing works again
	must(t, c.ClientSends("PASV\r\n"))
	must(t, c.ServerSends("227 Entering Passive Mode (198,51,100,20,117,49)\r\n"))
	wantExpect(t, r, expect{"pasv", client4, server4, 30001})
}

// TestReordering: a pipelining client's segment is lost before the gateway,
// so PASV arrives ahead of the retransmitted earlier command; the transfer
// must still be admitted from the real 227.
func TestReordering(t *testing.T) {
	for _, tc := range []struct {
		name, lost, after string
		pieces            []int // the retransmission in pieces of these sizes; nil: one piece
		want              int   // expectations
	}{
		{name: "one command", lost: "TYPE I\r\n", after: "PASV\r\n", want: 1},
		{name: "two commands", lost: "TYPE I\r\nREST 0\r\n", after: "PASV\r\n", want: 1},
		{name: "in pieces", lost: "TYPE I\r\nREST 0\r\n", after: "PASV\r\n", pieces: []int{8, 8}, want: 1},
		// the retransmission does not end a line where the tentative bytes begin
		{name: "not a line end", lost: "TYPE", after: " I\r\nPASV\r\n", want: 0},
		{name: "piece inside a line", lost: "TYPE I\r\n", after: "PASV\r\n", pieces: []int{4, 4}, want: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := bpftest.Shared(t)
			c := open(t, r, client4, server4)
			lostAt := c.CSeq
			c.CSeq += uint32(len(tc.lost))
			must(t, c.ClientSends(tc.after))
			wantCounters(t, r, map[string]uint64{"parse_resync": 1})
			at := lostAt
			pieces := tc.pieces
			if pieces == nil {
				pieces = []int{len(tc.lost)}
			}
			off := 0
			for _, n := range pieces {
				must(t, c.ClientAt(at, tc.lost[off:off+n]))
				at += uint32(n)
				off += n
			}
			replies := strings.Repeat("200 ok\r\n", strings.Count(tc.lost+tc.after, "\n")-1)
			must(t, c.ServerSends(replies+"227 Entering Passive Mode (198,51,100,20,117,48)\r\n"))
			if tc.want == 1 {
				wantExpect(t, r, expect{"pasv", client4, server4, 30000})
				wantCounters(t, r, map[string]uint64{"gap_filled": 1, "tentative_dropped": 0})
			} else {
				wantExpect(t, r)
				wantCounters(t, r, map[string]uint64{"gap_filled": 0, "tentative_dropped": 1})
			}
		})
	}
	t.Run("forged text never pairs", func(t *testing.T) {
		// the gap is never filled: the tentative PASV stays out of the queue
		r := bpftest.Shared(t)
		c := open(t, r, client4, server4)
		c.CSeq += 8
		must(t, c.ClientSends("PASV\r\n"))
		must(t, c.ServerSends("227 Entering Passive Mode (198,51,100,20,117,48)\r\n"))
		wantExpect(t, r)
		wantCounters(t, r, map[string]uint64{"cmd_tentative": 1, "reply_unsolicited": 1})
	})
	t.Run("retransmission covering everything", func(t *testing.T) {
		r := bpftest.Shared(t)
		c := open(t, r, client4, server4)
		lostAt := c.CSeq
		c.CSeq += 8
		must(t, c.ClientSends("PASV\r\n"))
		must(t, c.ClientAt(lostAt, "TYPE I\r\nPASV\r\nLIST\r\n"))
		c.CSeq = lostAt + uint32(len("TYPE I\r\nPASV\r\nLIST\r\n"))
		must(t, c.ServerSends("200 ok\r\n227 Entering Passive Mode (198,51,100,20,117,48)\r\n"))
		wantExpect(t, r, expect{"pasv", client4, server4, 30000})
		must(t, c.ServerSends("150 ok\r\n226 ok\r\n"))
		wantCounters(t, r, map[string]uint64{"gap_filled": 1, "reply_unsolicited": 0})
	})
}

// a reply to a PORT, a gap in the server stream and the queue after it
func TestServerGapAnswersOutstanding(t *testing.T) {
	r := bpftest.Shared(t)
	c := open(t, r, client4, server4)
	must(t, c.ClientSends("NOOP\r\nPASV\r\n"))
	c.SSeq += uint32(len("200 ok\r\n"))
	must(t, c.ServerSends("227 Entering Passive Mode (198,51,100,20,117,48)\r\n"))
	wantExpect(t, r)
	must(t, c.ClientSends("PASV\r\n"))
	must(t, c.ServerSends(fmt.Sprintf("227 Entering Passive Mode (198,51,100,20,117,%d)\r\n", 49)))
	wantExpect(t, r, expect{"pasv", client4, server4, 30001})
}

// Found by the attack review of #11: forced pickup + slipstreaming. The hostile server (outside, port 21
// here; 2121 or any browser-reachable control port in practice) deletes the
// embryo of the browser's connection with its own in-window RST after the
// SYN-ACK (sent with a TTL that expires at the gateway, or a pseudo-header-only
// checksum: the browser never sees it). The connection is picked up from the
// browser's first data, so no greeting/first-line rule applies; the only
// check left (an HTTP request line) stops once the server's first reply-like
// line is parsed. A header "200-x: y" is that line; the browser's next request
// on the keep-alive connection carries PORT in its body.
func TestForcedPickupThenHTTPIsNotFTP(t *testing.T) {
	r := bpftest.Shared(t)
	c := bpftest.NewConn(r, ap(client4, 40000), ap(server4, 21))
	must(t, c.OpenHalf()) // browser SYN, server SYN-ACK
	// the server's own RST at its next sequence number: accepted, embryo deleted
	must(t, c.Forge(false, packet.TCP{Seq: c.SSeq, Ack: c.CSeq, Flags: packet.RST | packet.ACK}))
	must(t, c.ClientFlags(packet.ACK)) // third ACK: bare, creates nothing
	req1 := "GET / HTTP/1.1\r\nHost: evil.example:21\r\n\r\n"
	isnData := c.CSeq
	must(t, c.ClientSends(req1)) // creates a pickup embryo: untrusted, unparsed
	// the status line, acknowledging nothing of the request yet: untrusted
	status := "HTTP/1.1 200 OK\r\n"
	must(t, c.Forge(false, packet.TCP{Seq: c.SSeq, Ack: isnData, Flags: packet.ACK | packet.PSH, Payload: []byte(status)}))
	c.SSeq += uint32(len(status))
	must(t, c.ClientFlags(packet.ACK))
	// the rest of the headers, acknowledging the request: trusted now, parsed
	must(t, c.ServerSends("200-x: y\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"))
	// fetch("/x", {method: "POST", body: "PORT ..."}) on the same connection
	must(t, c.ClientSends("POST /x HTTP/1.1\r\nHost: evil.example:21\r\nContent-Type: text/plain;charset=UTF-8\r\n"+
		"Content-Length: 24\r\n\r\nPORT 192,0,2,10,12,234\r\n"))
	wantCounters(t, r, map[string]uint64{"ctrl_trusted_handshake": 0})
	wantExpect(t, r)
}

// Found by the attack review of #11: role flip. An outside attacker connects FROM port 21 to an inside web
// server: control_dir classifies by port, so the web server is the "client"
// and its HTTP responses are FTP commands. The attacker first spends its own
// per-source embryo budget (EMBRYO_PER_SRC_BURST segments to port 21 of
// anything), so its SYN is not tracked and the connection is a pickup: the
// client-side check (http_line) looks only for request lines, not for
// "HTTP/1.1 ..." responses. A response that reflects "\nPORT <self>,12,234\n"
// (a 400 page printing the decoded query) opens the web server's port 3306 to
// the attacker.
func TestRoleFlipFromPort21IsNotFTP(t *testing.T) {
	r := bpftest.Shared(t)
	web, attacker := ap(client4, 8080), ap(other4, 21)
	// spend the attacker's bucket: payload segments from :21, each a new pickup embryo
	for i := 0; i < 140; i++ {
		f := packet.TCP{Src: attacker, Dst: ap(server4, uint16(1024+i)), Seq: 1, Ack: 1,
			Flags: packet.ACK | packet.PSH, Payload: []byte("x\r\n")}.Bytes()
		_, err := r.TC(f, true, 0)
		must(t, err)
	}
	c := bpftest.NewConn(r, web, attacker)
	must(t, c.ServerFlags(packet.SYN)) // attacker's SYN: over its budget, not tracked
	c.SSeq++
	must(t, c.ClientFlags(packet.SYN|packet.ACK)) // the web server's SYN-ACK starts the embryo
	c.CSeq++
	must(t, c.ServerFlags(packet.ACK))
	must(t, c.ServerSends("GET /q?%0APORT%20192,0,2,10,12,234%0A HTTP/1.1\r\nHost: web\r\n")) // untrusted
	must(t, c.ClientFlags(packet.ACK))                                                        // trusted now
	must(t, c.ServerSends("200-x: y\r\n\r\n"))                                                // the "server's" first reply line
	must(t, c.ClientSends("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\r\nbad query: \nPORT 192,0,2,10,12,234\n"))
	wantCounters(t, r, map[string]uint64{"ctrl_trusted_handshake": 0, "ctrl_trusted_pickup": 1})
	wantExpect(t, r)
}

// Found by the attack review of #11: in handshake mode, an HTTP request whose method is an FTP command
// (fetch(url, {method: "USER", body}) same-origin, or after a CORS preflight
// on another connection) passes the first-line rule; the hostile server
// orders its greeting first with a zero window in its SYN-ACK.
func TestHTTPRequestWithFTPMethodIsNotFTP(t *testing.T) {
	r := bpftest.Shared(t)
	c := open(t, r, client4, server4) // handshake + "220" before any client byte
	must(t, c.ClientSends("USER /x HTTP/1.1\r\nHost: evil.example:2121\r\nContent-Type: text/plain;charset=UTF-8\r\n"+
		"Origin: http://evil.example:2121\r\nContent-Length: 24\r\n\r\nPORT 192,0,2,10,12,234\r\n"))
	wantExpect(t, r)
}

// TestVendorCommandsAreFTP: after the first line, a client line needs a
// command's form, not a listed command: NcFTP sends CLNT (in nDPI's public
// capture), other clients XCRC or vendor SITE forms.
func TestVendorCommandsAreFTP(t *testing.T) {
	r := bpftest.Shared(t)
	c := open(t, r, client4, server4)
	converse(t, c, "", "USER anonymous\r\n", "331 ok\r\n")
	converse(t, c, "", "CLNT NcFTP 3.2.6 macosx10.13\r\n", "500 Unknown command.\r\n")
	converse(t, c, "", "XCRC file\r\n", "500 Unknown command.\r\n")
	converse(t, c, "", "PASV\r\n", pasvReply)
	wantExpect(t, r, expect{"pasv", client4, server4, 30000})
	wantCounters(t, r, map[string]uint64{"ctrl_not_ftp": 0})
}
