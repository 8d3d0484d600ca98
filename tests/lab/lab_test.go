package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/tests/ftpmini"
)

// TestDownloadMatrix proves the lab without any firewall: every mode each
// client can be forced into, over both families, against both vsftpd
// instances, transfers the file intact with exactly the requested command.
func TestDownloadMatrix(t *testing.T) {
	Require(t)
	t.Parallel()
	l := New(t, Options{})
	for _, port := range []int{FTPPort, AltFTPPort} {
		for _, tool := range Tools {
			for _, fam := range []int{4, 6} {
				for _, mode := range Modes {
					port, tool, fam, mode := port, tool, fam, mode
					t.Run(fmt.Sprintf("%d/%s/v%d/%s", port, tool, fam, mode), func(t *testing.T) {
						t.Parallel()
						ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
						defer cancel()
						r := l.Download(ctx, mode, fam, port, tool)
						if !Supported(tool, mode, fam) {
							if !errors.Is(r.Err, ErrUnsupported) {
								t.Fatalf("unsupported combination ran: %v", r.Err)
							}
							return
						}
						if err := r.Check(); err != nil {
							t.Fatalf("%v\n%s", err, r.Output)
						}
						if r.Bytes != int64(l.FileSize) {
							t.Fatalf("got %d bytes, want %d", r.Bytes, l.FileSize)
						}
					})
				}
			}
		}
	}
}

func TestUpload(t *testing.T) {
	Require(t)
	t.Parallel()
	l := New(t, Options{FileSize: 64 << 10})
	cases := []struct {
		tool Tool
		mode Mode
		fam  int
		port int
	}{
		{Curl, EPSV, 4, FTPPort},
		{Curl, PORT, 4, AltFTPPort},
		{Curl, EPRT, 6, FTPPort},
		{Lftp, PASV, 4, FTPPort},
		{Lftp, EPSV, 6, AltFTPPort},
	}
	for _, c := range cases {
		c := c
		t.Run(fmt.Sprintf("%d/%s/v%d/%s", c.port, c.tool, c.fam, c.mode), func(t *testing.T) {
			t.Parallel()
			r := l.Upload(context.Background(), c.mode, c.fam, c.port, c.tool, 512<<10)
			if err := r.Check(); err != nil {
				t.Fatalf("%v\n%s", err, r.Output)
			}
			if r.Bytes != 512<<10 {
				t.Fatalf("server stored %d bytes, want %d", r.Bytes, 512<<10)
			}
		})
	}
}

// TestResultCheckRejectsFallback guards the property the firewall tests
// rely on: a client that fell back to another data command is a failure.
func TestResultCheckRejectsFallback(t *testing.T) {
	r := Result{Tool: Curl, Mode: EPSV, Family: 4, Port: 21, Commands: []string{"EPSV", "PASV"}, Command: "PASV", HashOK: true}
	if r.Check() == nil {
		t.Fatal("Check accepted an EPSV->PASV fallback")
	}
	r.Commands, r.Command = []string{"EPSV"}, "EPSV"
	if err := r.Check(); err != nil {
		t.Fatalf("Check rejected a clean EPSV transfer: %v", err)
	}
	if got := Commands(Curl, "> EPSV\r\n< 229 ok\n> PASV\n"); fmt.Sprint(got) != "[EPSV PASV]" {
		t.Fatalf("curl parse: %v", got)
	}
	if got := Commands(Lftp, "---> EPRT |2|::1|5000|\n<--- 200\n"); fmt.Sprint(got) != "[EPRT]" {
		t.Fatalf("lftp parse: %v", got)
	}
}

func TestProftpd(t *testing.T) {
	RequireProftpd(t)
	t.Parallel()
	const port = 2122
	l := New(t, Options{ProFTPDPort: port, FileSize: 256 << 10})
	for _, c := range []struct {
		tool Tool
		mode Mode
		fam  int
	}{{Curl, PASV, 4}, {Curl, EPRT, 6}, {Lftp, PORT, 4}, {Lftp, EPSV, 6}} {
		r := l.Download(context.Background(), c.mode, c.fam, port, c.tool)
		if err := r.Check(); err != nil {
			t.Errorf("%v\n%s", err, r.Output)
		}
	}
	if r := l.Upload(context.Background(), EPSV, 4, port, Curl, 0); r.Check() != nil {
		t.Errorf("upload: %v\n%s", r.Check(), r.Output)
	}
}

// TestConnectOutcomes shows ConnectTimesOut tells the three cases apart:
// a listener connects, a closed port is refused (nothing drops yet), and a
// namespace-local nft drop rule in the gateway makes it time out.
func TestConnectOutcomes(t *testing.T) {
	Require(t)
	t.Parallel()
	l := New(t, Options{NoFTP: true})
	ctx := context.Background()
	const closedPort = 4444

	for _, fam := range []int{4, 6} {
		ln, err := l.Listen(l.ServerNS, "tcp", netip.AddrPortFrom(l.ServerAddr(fam), 0).String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		open := ln.Addr().(*net.TCPAddr).Port
		if got, err := l.ConnectTimesOut(ctx, l.ClientNS, l.ServerAddr(fam), open, 2*time.Second); err != nil || got != Connected {
			t.Errorf("IPv%d listener: got %v (%v), want connected", fam, got, err)
		}
		if got, err := l.ConnectTimesOut(ctx, l.ClientNS, l.ServerAddr(fam), closedPort, 2*time.Second); err != nil || got != Refused {
			t.Errorf("IPv%d closed port: got %v (%v), want refused", fam, got, err)
		}
	}

	rules := "table inet labtest {\n chain forward_drop {\n  type filter hook forward priority 0; policy accept;\n" +
		"  tcp dport " + strconv.Itoa(closedPort) + " drop\n }\n}\n"
	rulesPath := filepath.Join(l.Dir, "drop.nft")
	if err := os.WriteFile(rulesPath, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Exec(ctx, l.GatewayNS, "nft", "-f", rulesPath); err != nil {
		t.Fatalf("load nft rules in gateway: %v", err)
	}
	for _, fam := range []int{4, 6} {
		start := time.Now()
		got, err := l.ConnectTimesOut(ctx, l.ClientNS, l.ServerAddr(fam), closedPort, 700*time.Millisecond)
		if err != nil || got != TimedOut {
			t.Errorf("IPv%d dropped port: got %v (%v), want timed out", fam, got, err)
		}
		if el := time.Since(start); el > 3*time.Second {
			t.Errorf("IPv%d timeout took %v, want about 700ms", fam, el)
		}
	}
}

// TestCapture records a connection on the gateway's client-side interface
// and checks the pcap holds its packets.
func TestCapture(t *testing.T) {
	Require(t)
	t.Parallel()
	l := New(t, Options{NoFTP: true})
	path := filepath.Join(l.Dir, "gw-c.pcap")
	c, err := l.StartCapture(l.GatewayNS, GwClientIf, path, "tcp", "port", "4444")
	if err != nil {
		t.Fatal(err)
	}
	// Three refused SYNs: 3 SYN + 3 RST on the wire.
	for i := 0; i < 3; i++ {
		if got, err := l.ConnectTimesOut(context.Background(), l.ClientNS, ServerV4, 4444, time.Second); err != nil || got != Refused {
			t.Fatalf("connect: %v %v", got, err)
		}
	}
	if err := c.WaitPackets(6, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	n, err := CountPcapPackets(path)
	if err != nil {
		t.Fatal(err)
	}
	if n != 6 {
		t.Fatalf("pcap holds %d packets, want 6 (3 SYN + 3 RST)", n)
	}
}

// TestExecAndIndexes checks the plain plumbing the lead's tests build on.
func TestExecAndIndexes(t *testing.T) {
	Require(t)
	t.Parallel()
	l := New(t, Options{NoFTP: true})
	if l.GwClientIndex == 0 || l.GwServerIndex == 0 || l.GwClientIndex == l.GwServerIndex {
		t.Fatalf("bad ifindexes %d %d", l.GwClientIndex, l.GwServerIndex)
	}
	out, err := l.Exec(context.Background(), l.GatewayNS, "cat", "/proc/sys/net/ipv4/ip_forward")
	if err != nil || out != "1\n" {
		t.Fatalf("gateway ip_forward = %q, %v", out, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := l.Exec(ctx, l.ClientNS, "sleep", "5"); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Exec ignored the context deadline: %v", err)
	}
}

// TestFtpminiAcrossNamespaces runs the pure-Go FTP server in the server
// namespace and its client in the client namespace (Go code in a netns),
// through the gateway, in all modes the family allows.
func TestFtpminiAcrossNamespaces(t *testing.T) {
	Require(t)
	t.Parallel()
	l := New(t, Options{NoFTP: true})
	file := []byte(strings.Repeat("ftpgate", 50000))
	for _, fam := range []int{4, 6} {
		ln, err := l.Listen(l.ServerNS, "tcp", netip.AddrPortFrom(l.ServerAddr(fam), 2100).String())
		if err != nil {
			t.Fatal(err)
		}
		srv := ftpmini.NewServer(map[string][]byte{"f": file})
		srv.WrapDataSocket = func(create func() error) error { return l.InNS(l.ServerNS, create) }
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { srv.Close() })
		modes := []ftpmini.Mode{ftpmini.EPSV, ftpmini.EPRT}
		if fam == 4 {
			modes = ftpmini.Modes
		}
		for _, m := range modes {
			var got []byte
			err := l.InNS(l.ClientNS, func() error {
				var err error
				got, err = ftpmini.Get(context.Background(), ln.Addr().String(), "f", m, ftpmini.Config{Timeout: 5 * time.Second})
				return err
			})
			if err != nil || !bytes.Equal(got, file) {
				t.Errorf("IPv%d %s: %d bytes, %v", fam, m, len(got), err)
			}
		}
	}
}

// TestActiveFromPort20 checks Options.ConnectFromPort20: the active-mode
// data connection leaves the server from port 20, as seen on the gateway.
func TestActiveFromPort20(t *testing.T) {
	Require(t)
	t.Parallel()
	l := New(t, Options{ConnectFromPort20: true, FileSize: 64 << 10})
	c, err := l.StartCapture(l.GatewayNS, GwServerIf, filepath.Join(l.Dir, "port20.pcap"),
		// libpcap's tcp[] only indexes IPv4; ip6[53] is the TCP flags byte
		// behind a bare 40-byte IPv6 header.
		"src port 20 and ((ip and tcp[13] & 2 != 0) or (ip6 and ip6[53] & 2 != 0))")
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range []int{4, 6} {
		mode := PORT
		if fam == 6 {
			mode = EPRT
		}
		if err := l.Download(context.Background(), mode, fam, FTPPort, Curl).Check(); err != nil {
			t.Fatal(err)
		}
	}
	// One SYN from port 20 per family.
	if err := c.WaitPackets(2, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}
