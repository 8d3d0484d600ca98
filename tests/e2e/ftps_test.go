package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/nsrun"
	"github.com/ftpgate/ftpgate/tests/lab"
)

// TestRequireTLSResetsCleartextLogin (#13): under --require-tls a cleartext
// USER never reaches vsftpd: the gateway resets the server's end and the
// client's (the client reads "connection reset"), IPv4 and IPv6. Turned off
// at run time (config set --require-tls=false), the same login works and is
// only counted.
func TestRequireTLSResetsCleartextLogin(t *testing.T) {
	l, g := guardedLab(t, lab.Options{NoFTP: false}, "--require-tls")
	for _, fam := range []int{4, 6} {
		s := dialFTP(t, l, net.JoinHostPort(l.ServerAddr(fam).String(), "21"))
		s.c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(s.c, "USER e2e-guarded-%d\r\n", fam); err != nil {
			t.Fatalf("send USER: %v", err)
		}
		line, err := s.r.ReadString('\n')
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("IPv%d: after USER read %q, %v; want connection reset", fam, line, err)
		}
	}
	c := g.counters()
	if c["login_reset"] != 2 || c["login_cleartext"] != 2 || c["login_reset_failed"] != 0 {
		t.Fatalf("login counters %d reset, %d cleartext, %d failed; want 2, 2, 0", c["login_reset"], c["login_cleartext"], c["login_reset_failed"])
	}

	if out, err := g.cli("config", "set", "--require-tls=false"); err != nil {
		t.Fatalf("config set: %v\n%s", err, out)
	}
	s := dialFTP(t, l, net.JoinHostPort(l.ServerAddr(4).String(), "21"))
	s.login()
	s.expect("QUIT", 221)
	c = g.counters()
	if c["login_reset"] != 2 || c["login_cleartext"] < 3 {
		t.Fatalf("guard off: %d reset, %d cleartext; want 2, >= 3", c["login_reset"], c["login_cleartext"])
	}
	// vsftpd logs every command it reads: the guarded USERs are not there
	logb, err := os.ReadFile(filepath.Join(l.Dir, "vsftpd-21.log"))
	if err != nil {
		t.Fatal(err)
	}
	log := string(logb)
	if !strings.Contains(log, "anonymous") {
		t.Fatalf("the server log does not show the unguarded login: is it the command log?\n%s", lastLines(log, 20))
	}
	if strings.Contains(log, "e2e-guarded") {
		t.Fatalf("a guarded USER reached the server:\n%s", lastLines(log, 20))
	}
}

// listenServer listens on [::]:port (IPv4 and IPv6) in the lab's server
// namespace and keeps what it accepts open, reading, until the test ends.
func listenServer(t *testing.T, l *lab.Lab, port int) {
	t.Helper()
	var ln net.Listener
	err := nsrun.Do(l.ServerNS, func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", port))
		return err
	})
	if err != nil {
		t.Fatalf("listen on %d in %s: %v", port, l.ServerNS, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
}

// TestTLSRangeWithRealTCP (#13): a server's declared range admits the data
// connections of a client only while that client holds an encrypted control
// connection to it, here on an implicit-TLS port (the gateway never reads
// its bytes: a listener that reads them stands in for the FTPS server). The
// range is closed before the session and after it ends; IPv4 and IPv6.
func TestTLSRangeWithRealTCP(t *testing.T) {
	lab.Require(t)
	t.Parallel()
	l := lab.New(t, lab.Options{NoFTP: true})
	g := newGate(t, l)
	g.start("--allow-port", "990", "--ftps-port", "990",
		"--tls-range", l.ServerAddr(4).String()+":30000-30009", "--tls-range", "["+l.ServerAddr(6).String()+"]:30000-30009")
	for _, p := range []int{990, 30000, 30001, 30002} {
		listenServer(t, l, p)
	}
	ctx := context.Background()
	for _, fam := range []int{4, 6} {
		srv := l.ServerAddr(fam)
		if out, err := l.ConnectTimesOut(ctx, l.ClientNS, srv, 30000, 2*time.Second); err != nil || out != lab.TimedOut {
			t.Fatalf("IPv%d: data port before any session: %v %v, want timed out", fam, out, err)
		}
		ctrl, err := l.Dial(ctx, l.ClientNS, "tcp", net.JoinHostPort(srv.String(), "990"), 5*time.Second)
		if err != nil {
			t.Fatalf("IPv%d: control connection to 990: %v", fam, err)
		}
		// a TLS ClientHello's first bytes: not FTP, but on an implicit-TLS port never read
		if _, err := ctrl.Write([]byte("\x16\x03\x01\x00\xf4\x01\x00\x00\xf0\x03\x03")); err != nil {
			t.Fatal(err)
		}
		for _, p := range []int{30001, 30002} {
			if out, err := l.ConnectTimesOut(ctx, l.ClientNS, srv, p, 5*time.Second); err != nil || out != lab.Connected {
				t.Fatalf("IPv%d: data port %d during the session: %v %v, want connected", fam, p, out, err)
			}
		}
		ctrl.Close()
		// the client's FIN ends the session; the server's may lag: wait for the pair to go
		deadline := time.Now().Add(5 * time.Second)
		for {
			out, err := g.cli("ctrl", "--json")
			if err == nil && !strings.Contains(out, `"encrypted": true`) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("IPv%d: the encrypted connection is still listed 5s after its close:\n%s", fam, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if out, err := l.ConnectTimesOut(ctx, l.ClientNS, srv, 30000, 2*time.Second); err != nil || out != lab.TimedOut {
			t.Fatalf("IPv%d: data port after the session: %v %v, want timed out", fam, out, err)
		}
	}
	c := g.counters()
	if c["tls_implicit"] != 2 || c["tls_range_pass"] != 4 || c["tls_range_no_session"] < 4 || c["ctrl_not_ftp"] != 0 {
		t.Fatalf("counters: tls_implicit %d, tls_range_pass %d, tls_range_no_session %d, ctrl_not_ftp %d; want 2, 4, >= 4, 0",
			c["tls_implicit"], c["tls_range_pass"], c["tls_range_no_session"], c["ctrl_not_ftp"])
	}
}
