// Package ftpslab is the FTPS lab of issue #13: real TLS servers (vsftpd
// with explicit AUTH TLS on 21 and implicit TLS on 990, proftpd with
// mod_tls on 2121) behind a gateway, real TLS clients (curl --ssl-reqd,
// lftp ftp:ssl-force, Python ftplib.FTP_TLS) on one side of it and an
// unrelated host on a third link, in three gateway modes: no filter, the
// kernel's FTP helper on a default-deny forward chain, and ftpgate.
//
// The certificate is made by the test with openssl in its temp dir. Every
// namespace starts with "fgl"; the lab's teardown removes them.
package ftpslab

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/nettest"
	"github.com/ftpgate/ftpgate/tests/lab"
)

// The other host: on a link of its own, it has no control connection to
// anyone, so no data port may open for it.
var (
	OtherV4   = netip.MustParsePrefix("203.0.113.2/24")
	GwOtherV4 = netip.MustParsePrefix("203.0.113.1/24")
	OtherV6   = netip.MustParsePrefix("2001:db8:3::2/64")
	GwOtherV6 = netip.MustParsePrefix("2001:db8:3::1/64")

	OtherLink = nettest.Link{Name: "oth", GwIf: "gw-o",
		GwAddrs: []netip.Prefix{GwOtherV4, GwOtherV6}, HostAddrs: []netip.Prefix{OtherV4, OtherV6}}
)

// Server is one FTPS server of the lab: its control port, how TLS starts
// there, and the passive range it is configured with (the range an
// operator declares to ftpgate or opens in a firewall).
type Server struct {
	Name   string
	Port   int
	TLS    lab.TLS
	Lo, Hi int
}

// The lab's servers.
var (
	VsftpdExplicit = Server{Name: "vsftpd", Port: 21, TLS: lab.ExplicitTLS, Lo: 30000, Hi: 30019}
	VsftpdImplicit = Server{Name: "vsftpd-implicit", Port: 990, TLS: lab.ImplicitTLS, Lo: 30020, Hi: 30039}
	ProftpdTLS     = Server{Name: "proftpd", Port: 2121, TLS: lab.ExplicitTLS, Lo: lab.ProFTPDPasvMinPort, Hi: lab.ProFTPDPasvMaxPort}
	Servers        = []Server{VsftpdExplicit, VsftpdImplicit, ProftpdTLS}
)

// Lab is the FTPS lab: lab.Lab with the other host and the TLS servers.
type Lab struct {
	*lab.Lab
	OtherNS string
	// Cert and Key are the servers' self-signed certificate and its key.
	Cert, Key string
}

// New builds the lab; proftpd runs only when proftpd is true (it needs
// lab.RequireProftpd first).
func New(t testing.TB, proftpd bool) *Lab {
	t.Helper()
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if out, err := exec.Command("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
		"-subj", "/CN=ftps-lab.example", "-keyout", key, "-out", cert).CombinedOutput(); err != nil {
		t.Fatalf("ftpslab: make certificate: %v\n%s", err, out)
	}
	// proftpd reads the key after dropping to nobody, and refuses a
	// world-readable key: readable by its group is what it takes.
	for _, f := range []string{dir, cert, key} {
		if err := os.Chmod(f, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := lab.Options{FileSize: 256 << 10, NoVsftpd: true, Prefix: "fgl",
		Links: []nettest.Link{nettest.ClientLink, OtherLink, nettest.ServerLink}}
	if proftpd {
		root, err := lab.ProftpdRoot()
		if err != nil {
			t.Fatal(err)
		}
		opts.ProFTPDPort = ProftpdTLS.Port
		opts.ProFTPDConfig = []string{
			"ModulePath " + filepath.Join(root, "usr/lib/proftpd"),
			"LoadModule mod_tls.c",
			"TLSEngine on",
			"TLSProtocol TLSv1.2 TLSv1.3",
			"TLSRSACertificateFile " + cert,
			"TLSRSACertificateKeyFile " + key,
			// Cleartext logins stay possible: the guard, not the server,
			// is what the lab tests.
			"TLSRequired off",
			"TLSVerifyClient off",
			// curl and lftp open each data connection with a new TLS
			// session.
			"TLSOptions NoSessionReuseRequired",
			"TLSLog " + filepath.Join(dir, "proftpd-tls.log"),
		}
	}
	l := &Lab{Lab: lab.New(t, opts), Cert: cert, Key: key}
	l.OtherNS = l.Topo.Host(OtherLink.Name).NS
	for _, s := range []Server{VsftpdExplicit, VsftpdImplicit} {
		if err := l.startVsftpd(t, s); err != nil {
			t.Fatalf("ftpslab: %v", err)
		}
	}
	return l
}

// vsftpdTLS are the TLS lines of every vsftpd of the lab.
func (l *Lab) vsftpdTLS(s Server) []string {
	lines := []string{
		"ssl_enable=YES",
		"rsa_cert_file=" + l.Cert,
		"rsa_private_key_file=" + l.Key,
		"allow_anon_ssl=YES",
		// Cleartext logins stay possible: the guard, not the server, is
		// what the lab tests.
		"force_anon_logins_ssl=NO",
		"force_anon_data_ssl=NO",
		// curl and lftp open each data connection with a new TLS session.
		"require_ssl_reuse=NO",
		"ssl_ciphers=HIGH",
		// Anonymous logins send a PASS, so the cleartext login case has a
		// password for the guard to keep from the server (this line
		// overrides the lab's no_anon_password=YES above it).
		"no_anon_password=NO",
	}
	if s.TLS == lab.ImplicitTLS {
		lines = append(lines, "implicit_ssl=YES")
	}
	return lines
}

func (l *Lab) startVsftpd(t testing.TB, s Server) error {
	v := lab.Vsftpd{NS: l.ServerNS, Port: s.Port, Root: l.FTPRoot, Dir: l.Dir, Name: s.Name,
		PasvMinPort: s.Lo, PasvMaxPort: s.Hi, Extra: l.vsftpdTLS(s)}
	if s.TLS == lab.ExplicitTLS {
		return lab.StartVsftpd(t, v, l.ClientNS, netip.AddrPortFrom(l.ServerAddr(4), uint16(s.Port)),
			netip.AddrPortFrom(l.ServerAddr(6), uint16(s.Port)))
	}
	// An implicit-TLS server greets only inside TLS: ready is a TLS
	// handshake that shows the 220.
	if err := lab.StartVsftpd(t, v, l.ClientNS); err != nil {
		return err
	}
	return nettest.Poll(10*time.Second, func() error {
		for _, fam := range []int{4, 6} {
			out, err := l.Exec(context.Background(), l.ClientNS, "curl", "-sS", "-g", "--insecure", "--max-time", "3",
				"--user", "anonymous:lab@example.org", "--list-only",
				fmt.Sprintf("ftps://%s/", netip.AddrPortFrom(l.ServerAddr(fam), uint16(s.Port))))
			if err != nil {
				return fmt.Errorf("implicit vsftpd on %d: %w: %s", s.Port, err, out)
			}
		}
		return nil
	})
}

// VsftpdLog is the protocol log of vsftpd instance s (log_ftp_protocol:
// every command it received).
func (l *Lab) VsftpdLog(s Server) (string, error) {
	b, err := os.ReadFile(filepath.Join(l.Dir, s.Name+".log"))
	return string(b), err
}

// Range is s's passive range as ftpgate's --tls-range takes it, for the
// server's address of family.
func (l *Lab) Range(s Server, family int) string {
	a := l.ServerAddr(family).String()
	if family == 6 {
		a = "[" + a + "]"
	}
	return fmt.Sprintf("%s:%d-%d", a, s.Lo, s.Hi)
}

// Download fetches the lab's file from s with tool in mode over family,
// the session protected as s expects.
func (l *Lab) Download(ctx context.Context, s Server, tool lab.Tool, mode lab.Mode, family int) lab.Result {
	return l.Fetch(ctx, s, tool, mode, family, s.TLS, "", "")
}

// Fetch is Download with the protection and the login chosen by the caller.
func (l *Lab) Fetch(ctx context.Context, s Server, tool lab.Tool, mode lab.Mode, family int, tls lab.TLS, user, pass string) lab.Result {
	r := lab.Result{Tool: tool, Mode: mode, Family: family, Port: s.Port}
	if !lab.Supported(tool, mode, family) {
		r.Err = lab.ErrUnsupported
		return r
	}
	dir, err := os.MkdirTemp(l.Dir, "dl-")
	if err != nil {
		r.Err = err
		return r
	}
	local := filepath.Join(dir, "out.bin")
	tr := lab.Transfer{Tool: tool, Mode: mode, Server: netip.AddrPortFrom(l.ServerAddr(family), uint16(s.Port)),
		Remote: "/" + l.FileName, Local: local, TLS: tls, User: user, Pass: pass, MaxTime: 15}
	argv, err := tr.Argv()
	if err != nil {
		r.Err = err
		return r
	}
	r.Output, r.Err = l.Exec(ctx, l.ClientNS, argv...)
	r.Commands = lab.Commands(tool, r.Output)
	if len(r.Commands) > 0 {
		r.Command = r.Commands[len(r.Commands)-1]
	}
	if b, err := os.ReadFile(local); err == nil {
		r.Bytes = int64(len(b))
		r.HashOK = lab.SHA256Hex(b) == l.FileSHA256
	}
	return r
}

// Session is a live encrypted control connection held open by Python's
// ftplib.FTP_TLS: logged in, PROT P, one PASV (EPSV on IPv6) answered.
type Session struct {
	// DataPort is the passive port the server announced.
	DataPort int
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	out      *strings.Builder
	done     chan struct{}
}

// holdScript logs in over AUTH TLS, asks for a passive port, prints it and
// keeps the session until stdin closes, then QUITs.
const holdScript = `import ftplib, ssl, sys
host, port = sys.argv[1], int(sys.argv[2])
f = ftplib.FTP_TLS(context=ssl._create_unverified_context(), timeout=10)
f.connect(host, port)
f.login("anonymous", "lab@example.org")
f.prot_p()
if ":" in host:
    p = ftplib.parse229(f.sendcmd("EPSV"), host)[1]
else:
    p = ftplib.parse227(f.sendcmd("PASV"))[1]
print("PORT", p, flush=True)
sys.stdin.read()
f.quit()
print("QUIT", flush=True)
`

// Hold opens a Session from the client to s over family; Close ends it.
func (l *Lab) Hold(t testing.TB, s Server, family int) (*Session, error) {
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		py = "python3"
	}
	cmd := exec.Command("ip", "netns", "exec", l.ClientNS, py, "-u", "-c", holdScript,
		l.ServerAddr(family).String(), strconv.Itoa(s.Port))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	se := &Session{cmd: cmd, stdin: stdin, out: &strings.Builder{}, done: make(chan struct{})}
	cmd.Stderr = se.out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	go func() { _ = cmd.Wait(); close(se.done) }()
	t.Cleanup(func() { _ = se.Close() })
	select {
	case line, ok := <-lines:
		if !ok || !strings.HasPrefix(line, "PORT ") {
			<-se.done
			return nil, fmt.Errorf("ftplib session to %s: %q %s", s.Name, line, se.out.String())
		}
		se.DataPort, err = strconv.Atoi(strings.TrimPrefix(line, "PORT "))
		return se, err
	case <-time.After(15 * time.Second):
		_ = se.Close()
		return nil, fmt.Errorf("ftplib session to %s: no passive port after 15 s: %s", s.Name, se.out.String())
	}
}

// Close ends the session (QUIT, then the script exits) and waits for it;
// it kills the script (by its PID) if it has not exited after 10 s.
func (se *Session) Close() error {
	_ = se.stdin.Close()
	select {
	case <-se.done:
		return nil
	case <-time.After(5 * time.Second):
	}
	if lab.Terminate(se.cmd.Process, os.Interrupt, se.done, 10*time.Second) {
		return fmt.Errorf("ftplib session did not end: %s", se.out.String())
	}
	return nil
}
