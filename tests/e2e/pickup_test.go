package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/tests/lab"
)

// TestSessionStartedBeforeGateIsPickedUp: control sessions that logged in
// (and transferred) while the gateway only forwarded, before ftpgate
// started, still get their transfers once ftpgate guards the gateway —
// passive and active, IPv4 and IPv6 — through expectations made from the
// picked-up connections, since ftpgate drops every SYN nobody negotiated.
//
// What a picked-up session must show before its PASV is believed (bpf/tcp.h,
// bpf/embryo.h embryo_promote, bpf/ftp.h ftp_verified):
//
//   - trust: each direction acknowledges bytes ftpgate saw the other send. A
//     command and its reply (NOOP, 200) seen by ftpgate, then any client
//     segment acknowledging that reply (the PASV itself, or the client's bare
//     ACK before it), make the connection trusted; the reply's bytes went by
//     untrusted and ended with LF, so both directions resume at a line start
//     and the PASV segment that brings trust is read as a command.
//   - verification: a well-formed reply line of the server read while trusted.
//     The 227 itself is one (it verifies, then pairs with the PASV), so one
//     exchange before PASV is the minimum; a PORT/EPRT needs a reply line
//     before it, hence TYPE I here.
//
// So a PASV sent as the first command after ftpgate starts is not believed:
// its 227 goes by before the client has acknowledged anything from the
// server, and that transfer's data connection is dropped. This test sends
// NOOP and TYPE I first and asserts nothing about such a first PASV.
func TestSessionStartedBeforeGateIsPickedUp(t *testing.T) {
	lab.Require(t)
	t.Parallel()
	l := lab.New(t, lab.Options{FileSize: 64 << 10})
	g := newGate(t, l)

	// no ftpgate yet: the gateway forwards everything (ip_forward, no firewall)
	sessions := map[int]*ftpSession{}
	for _, fam := range []int{4, 6} {
		s := dialFTP(t, l, netip.AddrPortFrom(l.ServerAddr(fam), lab.FTPPort).String())
		s.login()
		s.expect("TYPE I", 200)
		pickupRetr(t, l, s, fam, false)
		sessions[fam] = s
	}

	g.start()
	if c := g.counters(); c["ctrl_pickup"] != 0 || c["expect_created"] != 0 {
		t.Fatalf("counters before the sessions sent anything: %v", c)
	}
	for _, fam := range []int{4, 6} {
		s := sessions[fam]
		s.expect("NOOP", 200)   // seen untrusted: the client's bytes, the server's reply
		s.expect("TYPE I", 200) // acknowledges that 200: trusted; this reply verifies
		pickupRetr(t, l, s, fam, false)
		pickupRetr(t, l, s, fam, true)
	}

	c := g.counters()
	for name, want := range map[string]uint64{
		"ctrl_pickup": 2, "ctrl_trusted_pickup": 2, "ctrl_trusted_handshake": 0,
		"expect_created": 4, "expect_consumed": 4, "syn_pass_expected": 4,
		"syn_drop_unexpected": 0, "reject_unverified": 0,
	} {
		if c[name] != want {
			t.Errorf("%s = %d, want %d", name, c[name], want)
		}
	}
	// each session's NOOP and its 200 went by unparsed
	if c["tcp_untrusted"] < 4 {
		t.Errorf("tcp_untrusted = %d, want >= 4", c["tcp_untrusted"])
	}
	if t.Failed() {
		t.Fatalf("counters: %v\n%s", c, lastLines(g.log.String(), 20))
	}
}

var epsvRe = regexp.MustCompile(`\(\|\|\|(\d+)\|\)`)

// pickupRetr downloads the lab's file on session s: passive (PASV or EPSV by
// family) or active (PORT or EPRT, the server connecting back to the
// client), and checks its hash and the 226.
func pickupRetr(t *testing.T, l *lab.Lab, s *ftpSession, fam int, active bool) {
	t.Helper()
	var data net.Conn
	var err error
	if active {
		ln, err := l.Listen(l.ClientNS, "tcp", netip.AddrPortFrom(l.ClientAddr(fam), 0).String())
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		port := ln.Addr().(*net.TCPAddr).Port
		if fam == 4 {
			a := l.ClientAddr(4).As4()
			s.expect(fmt.Sprintf("PORT %d,%d,%d,%d,%d,%d", a[0], a[1], a[2], a[3], port>>8, port&0xff), 200)
		} else {
			s.expect(fmt.Sprintf("EPRT |2|%s|%d|", l.ClientAddr(6), port), 200)
		}
		s.expect("RETR "+l.FileName, 150) // vsftpd has connected back by then
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
		if data, err = ln.Accept(); err != nil {
			t.Fatalf("v%d active data connection: %v", fam, err)
		}
	} else {
		var port int
		if fam == 4 {
			port = pasvPort(t, s.expect("PASV", 227))
		} else {
			m := epsvRe.FindStringSubmatch(s.expect("EPSV", 229))
			if m == nil {
				t.Fatal("no port in the 229")
			}
			port, _ = strconv.Atoi(m[1])
		}
		addr := netip.AddrPortFrom(l.ServerAddr(fam), uint16(port)).String()
		if data, err = l.Dial(context.Background(), l.ClientNS, "tcp", addr, 5*time.Second); err != nil {
			t.Fatalf("v%d passive data connection to %s: %v", fam, addr, err)
		}
		s.expect("RETR "+l.FileName, 150)
	}
	defer data.Close()
	data.SetDeadline(time.Now().Add(10 * time.Second))
	h := sha256.New()
	if _, err := io.Copy(h, data); err != nil {
		t.Fatalf("v%d read data: %v", fam, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != l.FileSHA256 {
		t.Fatalf("v%d data hash %s, want %s", fam, got, l.FileSHA256)
	}
	s.expect("", 226)
}
