package natlab

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ftpgate/ftpgate/internal/nettest"
	"github.com/ftpgate/ftpgate/tests/ftpmini"
	"github.com/ftpgate/ftpgate/tests/lab"
)

// kind says what a case's outcome is held to.
type kind int

const (
	// plain: an FTP session a NAT helper must carry; the kernel's helper
	// must pass it.
	plain kind = iota
	// security: the gateway must refuse what the session asks; every
	// mode must pass.
	security
	// crafted: a control stream cut where the kernel's parser fails
	// (NAT.md); recorded for the kernel, ftpgate-nat must pass it.
	crafted
)

// natCase is one row of the matrix.
type natCase struct {
	name, what string
	kind       kind
	// needsHelper: without any helper the session cannot work, so mode
	// none must fail it; one that passes means the lab does not NAT.
	needsHelper bool
	run         func(ctx context.Context, l *Lab) (note string, err error)
}

// Client timeouts: a blocked data connection fails in seconds.
const (
	clientMaxTime = 15
	miniTimeout   = 8 * time.Second
)

func matrix() []natCase {
	var cs []natCase
	for _, in := range []struct {
		label, host string
		addr        netip.Addr
	}{{"short", HostInShort, InShort}, {"long", HostInLong, InLong}} {
		for _, m := range []lab.Mode{lab.PORT, lab.EPRT, lab.PASV, lab.EPSV} {
			tr := lab.Transfer{Tool: lab.Curl, Mode: m, Server: netip.AddrPortFrom(O1Addr, FTPPort)}
			cs = append(cs, natCase{
				name: fmt.Sprintf("inside_%s_curl_%s", in.label, m.Command()),
				what: fmt.Sprintf("%s → O1, curl %s", in.addr, m.Command()),
				kind: plain, needsHelper: m == lab.PORT || m == lab.EPRT,
				run: fetch(in.host, tr, "O1"),
			})
		}
	}
	o1 := netip.AddrPortFrom(O1Addr, FTPPort)
	o1v6 := netip.AddrPortFrom(O1V6Addr, FTPPort)
	for _, c := range []struct {
		tool lab.Tool
		mode lab.Mode
	}{{lab.Curl, lab.EPRT}, {lab.Lftp, lab.EPRT}, {lab.Curl, lab.EPSV}, {lab.Lftp, lab.EPSV}} {
		cs = append(cs, natCase{
			name: fmt.Sprintf("inside_v6_%s_%s", c.tool, c.mode.Command()),
			what: fmt.Sprintf("%s → O1v6 (NAT66), %s %s", InV6, c.tool, c.mode.Command()),
			kind: plain, needsHelper: c.mode == lab.EPRT,
			run: fetch(HostInShort, lab.Transfer{Tool: c.tool, Mode: c.mode, Server: o1v6}, "O1v6"),
		})
	}
	cs = append(cs,
		natCase{name: "inside_long_lftp_PORT", what: "203.0.113.200 → O1, lftp ftp:passive-mode off",
			needsHelper: true, run: fetch(HostInLong, lab.Transfer{Tool: lab.Lftp, Mode: lab.PORT, Server: o1}, "O1")},
		natCase{name: "inside_short_python_PORT", what: "192.0.2.2 → O1, ftplib set_pasv(False)",
			needsHelper: true, run: fetch(HostInShort, lab.Transfer{Tool: lab.Python, Mode: lab.PORT, Server: o1}, "O1")},
		natCase{name: "inside_long_python_PORT_x3", what: "203.0.113.200 → O1, ftplib: 3 active RETRs on one control connection",
			needsHelper: true, run: fetch(HostInLong, lab.Transfer{Tool: lab.Python, Mode: lab.PORT, Server: o1, Count: 3}, "O1")},
		natCase{name: "inside_short_curl_PORT_upload", what: "192.0.2.2 → O1, curl -T, PORT",
			needsHelper: true, run: upload(HostInShort, lab.Transfer{Tool: lab.Curl, Mode: lab.PORT, Server: o1}, "O1")},
	)
	pub := func(port int) netip.AddrPort { return netip.AddrPortFrom(Public, uint16(port)) }
	for _, o := range []struct {
		tool    lab.Tool
		mode    lab.Mode
		port    int
		backend string
	}{
		{lab.Curl, lab.PASV, FTPPort, "S1"}, {lab.Curl, lab.EPSV, FTPPort, "S1"},
		{lab.Curl, lab.PASV, AltPublicPort, "S2"}, {lab.Curl, lab.EPSV, AltPublicPort, "S2"},
		{lab.Lftp, lab.PASV, FTPPort, "S1"}, {lab.Python, lab.PASV, AltPublicPort, "S2"},
	} {
		tr := lab.Transfer{Tool: o.tool, Mode: o.mode, Server: pub(o.port), TrustPasvAddr: o.mode == lab.PASV}
		what := fmt.Sprintf("outside → %s (%s), %s %s", pub(o.port), o.backend, o.tool, o.mode.Command())
		if tr.TrustPasvAddr {
			what += " trusting the 227 address"
		}
		cs = append(cs, natCase{name: fmt.Sprintf("outside_%s_%s_%d", o.tool, o.mode.Command(), o.port), what: what,
			needsHelper: true, run: fetch(HostOutside, tr, o.backend)})
	}
	for i := 1; i <= 4; i++ {
		tr := lab.Transfer{Tool: lab.Python, Mode: lab.PASV, Server: netip.AddrPortFrom(VIP, FTPPort), TrustPasvAddr: true}
		what := "outside → VIP, ftplib PASV trusting the 227 address; banner and data from one backend"
		if i%2 == 0 {
			tr = lab.Transfer{Tool: lab.Curl, Mode: lab.EPSV, Server: netip.AddrPortFrom(VIP, FTPPort)}
			what = "outside → VIP, curl EPSV; banner and data from one backend"
		}
		cs = append(cs, natCase{name: fmt.Sprintf("vip_%d", i), what: what, needsHelper: true, run: fetch(HostOutside, tr, "")})
	}
	return append(cs,
		natCase{name: "reject_bounce", kind: security, run: rejectBounce,
			what: "192.0.2.2 → a permissive outside server, PORT naming S2's host: no connection reaches S2"},
		natCase{name: "reply_addr_mismatch", kind: security, run: replyAddrMismatch,
			what: "outside → published server whose 227 names S2's host: no connection reaches S2"},
		natCase{name: "crafted_PORT_mid_segment", kind: crafted, needsHelper: true,
			what: `192.0.2.2 → O1, "TYPE I\r\nPORT …\r\n" in one write (PORT mid-segment)`,
			run:  craftedPort(ftpmini.Shape{Before: "TYPE I"})},
		natCase{name: "crafted_PORT_split", kind: crafted, needsHelper: true,
			what: `192.0.2.2 → O1, "PORT " and the rest in two segments 200 ms apart`,
			run:  craftedPort(ftpmini.Shape{SplitAt: len("PORT "), Pause: 200 * time.Millisecond})},
	)
}

// fetch downloads FileName with tr from host, and checks every file that
// arrived against backend's (for "", the backend that greeted: a VIP's).
func fetch(host string, tr lab.Transfer, backend string) func(context.Context, *Lab) (string, error) {
	return func(ctx context.Context, l *Lab) (string, error) {
		tr := tr // every mode runs this at once
		dir, err := os.MkdirTemp(l.Dir, "dl-")
		if err != nil {
			return "", err
		}
		tr.Remote, tr.Local, tr.MaxTime = "/"+FileName, filepath.Join(dir, "out.bin"), clientMaxTime
		b, err := l.runClient(ctx, host, tr, backend)
		if err != nil {
			return "", err
		}
		for i := range max(tr.Count, 1) {
			name := tr.Local
			if tr.Count > 1 {
				name = fmt.Sprintf("%s.%d", tr.Local, i)
			}
			data, err := os.ReadFile(name)
			if err != nil {
				return "", fmt.Errorf("download %d missing", i+1)
			}
			if lab.SHA256Hex(data) != b.FileSHA256 {
				return "", fmt.Errorf("download %d is not %s's file (%d bytes)", i+1, b.Name, len(data))
			}
		}
		return b.Name, nil
	}
}

// upload stores a fresh file with tr from host into backend's upload
// directory and checks what arrived.
func upload(host string, tr lab.Transfer, backend string) func(context.Context, *Lab) (string, error) {
	return func(ctx context.Context, l *Lab) (string, error) {
		tr := tr // every mode runs this at once
		dir, err := os.MkdirTemp(l.Dir, "ul-")
		if err != nil {
			return "", err
		}
		data := make([]byte, 192<<10)
		_, _ = rand.Read(data)
		name := filepath.Base(dir) + ".bin"
		tr.Remote, tr.Local, tr.Upload, tr.MaxTime = "/upload/"+name, filepath.Join(dir, "in.bin"), true, clientMaxTime
		if err := os.WriteFile(tr.Local, data, 0o644); err != nil {
			return "", err
		}
		b, err := l.runClient(ctx, host, tr, backend)
		if err != nil {
			return "", err
		}
		got, err := os.ReadFile(filepath.Join(b.Root, "upload", name))
		if err != nil || lab.SHA256Hex(got) != lab.SHA256Hex(data) {
			return "", fmt.Errorf("upload did not arrive intact on %s (%d of %d bytes)", b.Name, len(got), len(data))
		}
		return "", nil
	}
}

// runClient runs tr's client in host's namespace, checks it sent only its
// mode's data command, and returns the backend that greeted it, which must
// be want unless want is "".
func (l *Lab) runClient(ctx context.Context, host string, tr lab.Transfer, want string) (*Backend, error) {
	argv, err := tr.Argv()
	if err != nil {
		return nil, err
	}
	out, err := lab.Exec(ctx, l.NS(host), argv...)
	if err != nil {
		return nil, &clientError{reason: clientReason(out, err), log: out}
	}
	for _, c := range lab.Commands(tr.Tool, out) {
		if c != tr.Mode.Command() {
			return nil, fmt.Errorf("client sent %s, want only %s", c, tr.Mode.Command())
		}
	}
	return l.greeter(tr.Tool, out, want)
}

// greeter is the backend whose banner the client's log shows; it must be
// want unless want is "".
func (l *Lab) greeter(tool lab.Tool, out, want string) (*Backend, error) {
	banner := lab.Banner(tool, out)
	for _, b := range l.Backends {
		if b.Banner == banner && (want == "" || want == b.Name) {
			return b, nil
		}
	}
	return nil, fmt.Errorf("greeted by %q, want %s", banner, want)
}

// clientError is a client program's failure: a short reason for the
// table, and its log for the test's.
type clientError struct{ reason, log string }

func (e *clientError) Error() string { return e.reason }

var (
	curlErrRE   = regexp.MustCompile(`curl: \(\d+\)[^\n]*`)
	curlCodeRE  = regexp.MustCompile(`curl: \(\d+\)`)
	curlTryRE   = regexp.MustCompile(`(?m)^\*\s+Trying (\S+?)\.\.\.`)
	lastReplyRE = regexp.MustCompile(`(?m)^(?:< |<--- |\*resp\* '|ftplib\.error_\w+: )?([45]\d\d [^\r\n']*)`)
)

// clientReason is a short reason for a client's failure: its own error
// line and the last 4xx/5xx reply, or a timeout.
func clientReason(out string, err error) string {
	var parts []string
	if m := lastReplyRE.FindAllStringSubmatch(out, -1); m != nil {
		parts = append(parts, "server: "+strings.TrimSpace(m[len(m)-1][1]))
	}
	if m := curlErrRE.FindAllString(out, -1); m != nil {
		e := m[len(m)-1]
		if len(parts) > 0 {
			// after a refusal curl's own text says little ("inet_ntop() failed")
			e = curlCodeRE.FindString(e)
		} else if t := curlTryRE.FindAllStringSubmatch(out, -1); len(t) > 1 {
			// curl names the control connection's port even when the data
			// connection failed: say where it really connected last
			code := curlCodeRE.FindString(e)
			msg := strings.TrimSpace(strings.TrimPrefix(e, code))
			if i := strings.LastIndex(msg, ": "); i >= 0 {
				msg = msg[i+2:]
			}
			e = fmt.Sprintf("%s data connection to %s: %s", code, t[len(t)-1][1], msg)
		}
		parts = append(parts, e)
	} else if strings.Contains(err.Error(), "exit status 124") {
		parts = append(parts, fmt.Sprintf("no result in %d s", clientMaxTime))
	} else if lines := strings.Split(strings.TrimSpace(out), "\n"); len(parts) == 0 && len(lines) > 0 {
		parts = append(parts, lines[len(lines)-1])
	}
	if len(parts) == 0 {
		parts = append(parts, err.Error())
	}
	return strings.Join(parts, "; ")
}

// trap listens at addr in host's namespace and counts the connections it
// accepts: a host that must never be reached. hits waits up to
// trapGrace for a connection the kernel has completed but the accept loop
// has not yet counted.
func (l *Lab) trap(host string, addr netip.AddrPort) (port uint16, hits func() int64, err error) {
	ln, err := nettest.Listen(l.NS(host), "tcp", addr.String())
	if err != nil {
		return 0, nil, err
	}
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	l.t.Cleanup(func() { ln.Close() })
	hits = func() int64 {
		for deadline := time.Now().Add(trapGrace); n.Load() == 0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		return n.Load()
	}
	return uint16(ln.Addr().(*net.TCPAddr).Port), hits, nil
}

// trapGrace is how long a trap waits for a connection it may still count.
const trapGrace = 500 * time.Millisecond

// serveMini runs an ftpmini server at addr in host's namespace (data
// sockets there too) until the case ends.
func (l *Lab) serveMini(host string, addr netip.AddrPort, s *ftpmini.Server) (func(), error) {
	ns := l.NS(host)
	s.Timeout = 3 * time.Second
	s.WrapDataSocket = func(create func() error) error { return nettest.Do(ns, create) }
	ln, err := nettest.Listen(ns, "tcp", addr.String())
	if err != nil {
		return nil, err
	}
	go s.Serve(ln)
	return func() { s.Close() }, nil
}

// session logs in from host to an FTP server at addr and runs fn on the
// control connection, all in host's namespace.
func session(ctx context.Context, l *Lab, host string, addr netip.AddrPort, fn func(*ftpmini.Client) error) error {
	return nettest.Do(l.NS(host), func() error {
		c, err := ftpmini.Dial(ctx, addr.String(), ftpmini.Config{Timeout: miniTimeout})
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.Login(ctx, "anonymous", "lab@example.org"); err != nil {
			return err
		}
		return fn(c)
	})
}

// rejectBounce: an inside client tells a permissive outside server (it
// connects wherever PORT says) to connect to S2's host. A helper that
// believed the PORT would open a way in to S2; the trap there must see
// nothing.
func rejectBounce(ctx context.Context, l *Lab) (string, error) {
	port, hits, err := l.trap(HostS2, netip.AddrPortFrom(S2Addr, 0))
	if err != nil {
		return "", err
	}
	stop, err := l.serveMini(HostOutside, netip.AddrPortFrom(Permissive, FTPPort), ftpmini.NewServer(map[string][]byte{"f": []byte("bounce")}))
	if err != nil {
		return "", err
	}
	defer stop()
	var code int
	err = session(ctx, l, HostInShort, netip.AddrPortFrom(Permissive, FTPPort), func(c *ftpmini.Client) error {
		a := S2Addr.As4()
		if _, _, err := c.Command(ctx, fmt.Sprintf("PORT %d,%d,%d,%d,%d,%d", a[0], a[1], a[2], a[3], port>>8, port&0xff), 200); err != nil {
			return err
		}
		code, _, err = c.Command(ctx, "RETR f", 150, 125, 425)
		return err
	})
	if n := hits(); n > 0 {
		return "", fmt.Errorf("the bounce reached S2's host (%d connections; server said %d)", n, code)
	}
	if err != nil {
		return "", fmt.Errorf("session: %w", err)
	}
	return fmt.Sprintf("server's connect failed (%d)", code), nil
}

// replyAddrMismatch: a published inside server answers PASV with S2's
// address. A helper that believed the 227 would let the outside client in
// to S2; the trap there must see nothing.
func replyAddrMismatch(ctx context.Context, l *Lab) (string, error) {
	const pasvPort = 40100
	_, hits, err := l.trap(HostS2, netip.AddrPortFrom(S2Addr, pasvPort))
	if err != nil {
		return "", err
	}
	srv := ftpmini.NewServer(map[string][]byte{"f": []byte("mismatch")})
	srv.PasvAddress, srv.PasvMinPort, srv.PasvMaxPort = S2Addr, pasvPort, pasvPort
	stop, err := l.serveMini(HostS1, netip.AddrPortFrom(S1Addr, AnnouncerPort), srv)
	if err != nil {
		return "", err
	}
	defer stop()
	var msg string
	err = session(ctx, l, HostOutside, netip.AddrPortFrom(Announcer, FTPPort), func(c *ftpmini.Client) error {
		_, msg, err = c.Command(ctx, "PASV", 227)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("session: %w", err)
	}
	m := regexp.MustCompile(`\d+,\d+,\d+,\d+,\d+,\d+`).FindString(msg)
	target, err := ftpmini.ParsePortArg(m)
	if err != nil {
		return "", fmt.Errorf("227 %q: %w", msg, err)
	}
	outcome, err := nettest.ConnectTimesOut(ctx, l.NS(HostOutside), target.Addr(), int(target.Port()), 2*time.Second)
	if n := hits(); n > 0 {
		return "", fmt.Errorf("the 227 let the client reach S2's host (227 said %s)", target)
	}
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("227 said %s: %s", target, outcome), nil
}

// craftedPort downloads O1's file from the short inside client with a PORT
// written as sh says.
func craftedPort(sh ftpmini.Shape) func(context.Context, *Lab) (string, error) {
	return func(ctx context.Context, l *Lab) (string, error) {
		var got []byte
		err := nettest.Do(l.NS(HostInShort), func() error {
			var err error
			cfg := ftpmini.Config{Timeout: miniTimeout, Announce: sh}
			got, err = ftpmini.Get(ctx, netip.AddrPortFrom(O1Addr, FTPPort).String(), FileName, ftpmini.PORT, cfg)
			return err
		})
		var re *ftpmini.ReplyError
		switch {
		case errors.As(err, &re):
			return "", fmt.Errorf("server: %d %s", re.Code, re.Msg)
		case errors.Is(err, os.ErrDeadlineExceeded):
			return "", fmt.Errorf("stalled: no reply in %v", miniTimeout)
		case err != nil:
			return "", err
		case lab.SHA256Hex(got) != l.Backends["O1"].FileSHA256:
			return "", fmt.Errorf("not O1's file (%d bytes)", len(got))
		}
		return "", nil
	}
}
