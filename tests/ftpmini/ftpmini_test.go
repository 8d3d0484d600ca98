package ftpmini

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// dialClient connects a client with the given timeout, closed when the
// test ends.
func dialClient(t *testing.T, ctx context.Context, addr string, timeout time.Duration) *Client {
	t.Helper()
	c, err := Dial(ctx, addr, Config{Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func startServer(t *testing.T, addr string, files map[string][]byte) *Server {
	t.Helper()
	s, err := Listen(addr, files)
	if err != nil {
		if strings.Contains(addr, "::1") {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestModes transfers both ways in every mode over IPv4 and IPv6 loopback
// and checks the client used exactly the requested data command.
func TestModes(t *testing.T) {
	file := randomBytes(t, 1<<20+123)
	for _, host := range []string{"127.0.0.1", "::1"} {
		s := startServer(t, net.JoinHostPort(host, "0"), map[string][]byte{"/pub/file.bin": file})
		addr := net.JoinHostPort(host, fmt.Sprint(s.Port()))
		modes := Modes
		if host == "::1" {
			// PASV/PORT carry IPv4 only; TestIPv4OnlyCommandsOnIPv6 covers them.
			modes = []Mode{EPSV, EPRT}
		}
		for _, mode := range modes {
			t.Run(host+"/"+string(mode), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				c := dialClient(t, ctx, addr, 5*time.Second)
				if err := c.Login(ctx, "anonymous", "x"); err != nil {
					t.Fatal(err)
				}
				if n, err := c.Size(ctx, "pub/file.bin"); err != nil || n != int64(len(file)) {
					t.Fatalf("SIZE = %d, %v; want %d", n, err, len(file))
				}
				got, err := c.Retrieve(ctx, "/pub/file.bin", mode)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, file) {
					t.Fatalf("downloaded %d bytes, content differs from the %d served", len(got), len(file))
				}
				up := randomBytes(t, 300<<10)
				name := "up-" + string(mode) + ".bin"
				if err := c.Store(ctx, name, up, mode); err != nil {
					t.Fatal(err)
				}
				if stored, ok := s.File(name); !ok || !bytes.Equal(stored, up) {
					t.Fatalf("server stored %d bytes (present=%v), want the %d uploaded", len(stored), ok, len(up))
				}
				if err := c.Quit(ctx); err != nil {
					t.Fatal(err)
				}
				want := strings.ToUpper(string(mode))
				var used []string
				for _, l := range c.Sent {
					v := strings.Fields(l)[0]
					if v == "PASV" || v == "EPSV" || v == "PORT" || v == "EPRT" {
						used = append(used, v)
					}
				}
				if len(used) != 2 || used[0] != want || used[1] != want {
					t.Fatalf("data commands sent %v, want %s twice", used, want)
				}
			})
		}
	}
}

// TestIPv4OnlyCommandsOnIPv6: the server refuses PASV on an IPv6 control
// connection and the client refuses to send PORT with an IPv6 address.
func TestIPv4OnlyCommandsOnIPv6(t *testing.T) {
	s := startServer(t, "[::1]:0", map[string][]byte{"f": []byte("x")})
	ctx := context.Background()
	c := dialClient(t, ctx, fmt.Sprintf("[::1]:%d", s.Port()), 2*time.Second)
	if err := c.Login(ctx, "u", "p"); err != nil {
		t.Fatal(err)
	}
	_, err := c.Retrieve(ctx, "f", PASV)
	var re *ReplyError
	if !errors.As(err, &re) || re.Code != 425 {
		t.Fatalf("PASV over IPv6: %v, want a 425 reply", err)
	}
	if _, err := c.Retrieve(ctx, "f", PORT); err == nil || !strings.Contains(err.Error(), "PORT needs an IPv4") {
		t.Fatalf("PORT over IPv6: %v, want a client-side refusal", err)
	}
	// The session must still work afterwards.
	if b, err := c.Retrieve(ctx, "f", EPSV); err != nil || string(b) != "x" {
		t.Fatalf("EPSV after refusals: %q, %v", b, err)
	}
}

// TestDualStackListener: an IPv4 client on a [::] listener is answered
// with a plain IPv4 PASV address (not a v4-mapped one).
func TestDualStackListener(t *testing.T) {
	s, err := Listen("[::]:0", map[string][]byte{"f": []byte("dual")})
	if err != nil {
		t.Skipf("no dual-stack listener: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	b, err := Get(context.Background(), fmt.Sprintf("127.0.0.1:%d", s.Port()), "f", PASV, Config{Timeout: 2 * time.Second})
	if err != nil || string(b) != "dual" {
		t.Fatalf("got %q, %v", b, err)
	}
}

func TestGetPutAndErrors(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", nil)
	addr := fmt.Sprintf("127.0.0.1:%d", s.Port())
	ctx := context.Background()
	if err := Put(ctx, addr, "a.txt", []byte("hello"), EPRT, Config{}); err != nil {
		t.Fatal(err)
	}
	if b, err := Get(ctx, addr, "a.txt", PORT, Config{}); err != nil || string(b) != "hello" {
		t.Fatalf("Get = %q, %v", b, err)
	}
	_, err := Get(ctx, addr, "missing", EPSV, Config{})
	var re *ReplyError
	if !errors.As(err, &re) || re.Code != 550 {
		t.Fatalf("missing file: %v, want 550", err)
	}
}

// TestRequiresLogin: transfers before login are refused.
func TestRequiresLogin(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", map[string][]byte{"f": []byte("x")})
	ctx := context.Background()
	c := dialClient(t, ctx, fmt.Sprintf("127.0.0.1:%d", s.Port()), 2*time.Second)
	var re *ReplyError
	if _, err := c.Retrieve(ctx, "f", EPSV); !errors.As(err, &re) || re.Code != 530 {
		t.Fatalf("RETR before login: %v, want 530", err)
	}
}

// TestPassivePortRange: the server's passive ports stay in its range.
func TestPassivePortRange(t *testing.T) {
	// Find a free port to anchor a small range; retry if it got taken.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s := NewServer(map[string][]byte{"f": []byte("range")})
	s.PasvMinPort, s.PasvMaxPort = base, base+3
	ctl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ctl) }()
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	c := dialClient(t, ctx, ctl.Addr().String(), 2*time.Second)
	if err := c.Login(ctx, "u", "p"); err != nil {
		t.Fatal(err)
	}
	ap, err := c.passive(ctx, PASV)
	if err != nil {
		t.Fatal(err)
	}
	if p := int(ap.Port()); p < base || p > base+3 {
		t.Fatalf("passive port %d outside %d-%d", p, base, base+3)
	}
	if ap.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("passive address %s, want 127.0.0.1", ap.Addr())
	}
}

// TestClientTimeout: a server that never greets makes Dial fail within the
// configured timeout instead of hanging.
func TestClientTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	start := time.Now()
	_, err = Dial(context.Background(), ln.Addr().String(), Config{Timeout: 300 * time.Millisecond})
	if err == nil {
		t.Fatal("Dial succeeded without a greeting")
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("Dial took %v, want about 300ms", el)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel shortly after Dial blocks on the greeting.
		<-time.After(100 * time.Millisecond)
		cancel()
	}()
	start = time.Now()
	if _, err := Dial(ctx, ln.Addr().String(), Config{Timeout: 10 * time.Second}); err == nil {
		t.Fatal("Dial succeeded after cancel")
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("cancelled Dial took %v", el)
	}
}

func TestParsers(t *testing.T) {
	ap, err := ParsePortArg("192,0,2,2,117,48")
	if err != nil || ap != netip.MustParseAddrPort("192.0.2.2:30000") {
		t.Fatalf("PORT: %v %v", ap, err)
	}
	for _, bad := range []string{"1,2,3,4,5", "1,2,3,4,0,0", "256,1,1,1,1,1", "a,b,c,d,e,f"} {
		if _, err := ParsePortArg(bad); err == nil {
			t.Errorf("PORT %q accepted", bad)
		}
	}
	ap, err = ParseEprtArg("|2|2001:db8:1::2|5282|")
	if err != nil || ap != netip.MustParseAddrPort("[2001:db8:1::2]:5282") {
		t.Fatalf("EPRT v6: %v %v", ap, err)
	}
	ap, err = ParseEprtArg("!1!192.0.2.2!21!")
	if err != nil || ap != netip.MustParseAddrPort("192.0.2.2:21") {
		t.Fatalf("EPRT custom delimiter: %v %v", ap, err)
	}
	for _, bad := range []string{"|1|2001:db8::1|5|", "|2|192.0.2.1|5|", "|3|x|5|", "|1|192.0.2.1|0|", "|1|192.0.2.1|5"} {
		if _, err := ParseEprtArg(bad); err == nil {
			t.Errorf("EPRT %q accepted", bad)
		}
	}
	if _, err := ParseEprtArg("|3|x|5|"); !errors.Is(err, errEprtProto) {
		t.Errorf("EPRT proto 3: %v, want errEprtProto", err)
	}
	ap, err = parsePasvReply("Entering Passive Mode (198,51,100,2,117,88).")
	if err != nil || ap != netip.MustParseAddrPort("198.51.100.2:30040") {
		t.Fatalf("227: %v %v", ap, err)
	}
	// Some servers omit the parentheses.
	if ap, err = parsePasvReply("=127,0,0,1,4,1"); err != nil || ap.Port() != 1025 {
		t.Fatalf("227 without parens: %v %v", ap, err)
	}
	if p, err := parseEpsvReply("Entering Extended Passive Mode (|||30001|)"); err != nil || p != 30001 {
		t.Fatalf("229: %v %v", p, err)
	}
}

// TestShapedAnnounce: a PORT sent after another command in the same write,
// or split across two writes, still sets up the transfer; a 227 announces
// the server's PasvAddress.
func TestShapedAnnounce(t *testing.T) {
	file := randomBytes(t, 4096)
	s := startServer(t, "127.0.0.1:0", map[string][]byte{"f": file})
	addr := net.JoinHostPort("127.0.0.1", fmt.Sprint(s.Port()))
	for name, sh := range map[string]Shape{
		"before": {Before: "TYPE I"},
		"split":  {SplitAt: len("PORT "), Pause: 20 * time.Millisecond},
		"both":   {Before: "NOOP", SplitAt: 9, Pause: 20 * time.Millisecond},
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got, err := Get(ctx, addr, "f", PORT, Config{Timeout: 5 * time.Second, Announce: sh})
			if err != nil || !bytes.Equal(got, file) {
				t.Fatalf("Get: %d bytes, %v", len(got), err)
			}
		})
	}
	announcing := NewServer(nil)
	announcing.PasvAddress = netip.MustParseAddr("192.0.2.9")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go announcing.Serve(ln)
	t.Cleanup(func() { announcing.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := dialClient(t, ctx, ln.Addr().String(), 5*time.Second)
	if err := c.Login(ctx, "anonymous", "x"); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.Command(ctx, "PASV", 227); err != nil || !strings.Contains(msg, "(192,0,2,9,") {
		t.Fatalf("PASV = %q, %v; want the PasvAddress announced", msg, err)
	}
}

// TestPeerAddressAndSkipPasv: a server that requires the peer's address
// refuses an active-mode address that is not the client's, as vsftpd does,
// and takes the client's own; a client told to skip the 227 address
// connects to the control peer instead of the address announced.
func TestPeerAddressAndSkipPasv(t *testing.T) {
	file := randomBytes(t, 4096)
	s := NewServer(map[string][]byte{"f": file})
	s.RequirePeerAddress = true
	s.PasvAddress = netip.MustParseAddr("192.0.2.9")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, mode := range []Mode{PORT, EPRT} {
		_, err := Get(ctx, ln.Addr().String(), "f", mode, Config{Timeout: 5 * time.Second, ActiveAddr: netip.MustParseAddr("127.0.0.2")})
		var re *ReplyError
		if !errors.As(err, &re) || re.Code != 500 || re.Command != mode.Command() {
			t.Errorf("%s announcing 127.0.0.2 from 127.0.0.1: %v; want 500 Illegal PORT command", mode, err)
		}
		if got, err := Get(ctx, ln.Addr().String(), "f", mode, Config{Timeout: 5 * time.Second}); err != nil || !bytes.Equal(got, file) {
			t.Errorf("%s announcing the peer's address: %d bytes, %v", mode, len(got), err)
		}
	}
	if got, err := Get(ctx, ln.Addr().String(), "f", PASV, Config{Timeout: 5 * time.Second, SkipPasvAddress: true}); err != nil || !bytes.Equal(got, file) {
		t.Errorf("PASV skipping the 227 address (192.0.2.9): %d bytes, %v", len(got), err)
	}
}
