// Package lab puts real FTP servers on the client — gateway — server
// topology of internal/nettest, so integration tests can attach ftpgate to the
// gateway's two interfaces and drive real FTP clients through it.
//
// Everything the lab creates lives inside network namespaces it names with a
// random per-instance prefix; the host's own interfaces, routes and firewall
// are never touched. All resources are released through t.Cleanup, also when
// a test fails or panics.
package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/nettest"
)

// Interface names. They are per-namespace, so parallel labs can reuse them.
const (
	// GwClientIf is the gateway's interface towards the client.
	GwClientIf = nettest.GwClientIf
	// GwServerIf is the gateway's interface towards the server.
	GwServerIf = nettest.GwServerIf
	// ClientIf and ServerIf are the hosts' interfaces towards the gateway.
	ClientIf = nettest.HostIf
	ServerIf = nettest.HostIf
)

// Fixed addresses (documentation ranges only), those of the topology.
var (
	ClientV4   = nettest.ClientV4.Addr()
	GwClientV4 = nettest.GwClientV4.Addr()
	GwServerV4 = nettest.GwServerV4.Addr()
	ServerV4   = nettest.ServerV4.Addr()

	ClientV6   = nettest.ClientV6.Addr()
	GwClientV6 = nettest.GwClientV6.Addr()
	GwServerV6 = nettest.GwServerV6.Addr()
	ServerV6   = nettest.ServerV6.Addr()
)

// FTP ports the lab's vsftpd instances listen on.
const (
	FTPPort    = 21
	AltFTPPort = 2121
	// PasvMinPort and PasvMaxPort bound vsftpd's passive data ports.
	PasvMinPort = 30000
	PasvMaxPort = 30100
	// ProFTPDPasvMinPort and ProFTPDPasvMaxPort bound proftpd's passive
	// data ports: its own range, so the servers never fight over a port.
	ProFTPDPasvMinPort = PasvMaxPort + 1
	ProFTPDPasvMaxPort = PasvMaxPort + 100
)

// Options tunes a lab. The zero value gives the full lab: vsftpd on 21 and
// 2121 (IPv4 and IPv6), a 2 MiB test file, no proftpd.
type Options struct {
	// NoFTP skips starting the FTP servers (pure network lab).
	NoFTP bool
	// FileSize is the size of the served test file; 0 means 2 MiB.
	FileSize int
	// ConnectFromPort20 makes vsftpd open active-mode data connections from
	// source port 20, like a classic FTP server; default is an ephemeral port.
	ConnectFromPort20 bool
	// ProFTPDPort, when non-zero, also starts proftpd (extracted from the
	// Debian package into .cache/lab, see Require) on this port.
	ProFTPDPort int
	// ProFTPDConfig are more proftpd.conf lines (TLS, say), placed before
	// its <Anonymous> section.
	ProFTPDConfig []string
	// NoVsftpd makes the files but starts no vsftpd: a suite starts the
	// servers it configures itself (StartVsftpd).
	NoVsftpd bool
	// Prefix starts the namespace names; empty means "fg".
	Prefix string
	// Links are the hosts on the gateway (nettest.Options.Links); nil
	// means the client and the server. Both of those must be among them.
	Links []nettest.Link
}

// Lab is one client — gateway — server topology.
type Lab struct {
	t    testing.TB
	opts Options
	// Topo is the network underneath: namespaces, links, addresses.
	Topo *nettest.Topology

	// ID is the random prefix of this lab's namespace names ("fg-1a2b").
	ID string
	// Namespace names, usable with `ip netns exec`.
	ClientNS, GatewayNS, ServerNS string
	// Gateway interface indexes (inside GatewayNS) for attaching programs.
	GwClientIndex, GwServerIndex int

	// Dir is this lab's private temp directory (configs, logs, files).
	Dir string
	// FTPRoot is the anonymous root served by the FTP servers; it holds
	// FileName and the world-writable "upload" directory.
	FTPRoot   string
	UploadDir string
	// FileName is the test file's name inside FTPRoot, FileSHA256 its hex
	// SHA-256 and FileSize its length.
	FileName   string
	FileSHA256 string
	FileSize   int
}

// New builds a lab and registers its teardown with t.Cleanup. It fails the
// test (t.Fatal) on any setup error. The caller must be root; see Require.
func New(t testing.TB, opts Options) *Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("lab: network namespaces need root; run the tests as root")
	}
	if opts.FileSize == 0 {
		opts.FileSize = 2 << 20
	}
	if opts.Prefix == "" {
		opts.Prefix = "fg"
	}
	tp := nettest.NewTopology(t, nettest.Options{Prefix: opts.Prefix, Links: opts.Links})
	l := &Lab{t: t, opts: opts, Topo: tp, ID: tp.ID, Dir: t.TempDir(),
		ClientNS: tp.Client().NS, GatewayNS: tp.Gateway, ServerNS: tp.Server().NS,
		GwClientIndex: tp.Client().GwIndex, GwServerIndex: tp.Server().GwIndex}
	if !opts.NoFTP {
		if err := l.makeFiles(); err != nil {
			t.Fatalf("lab: %v", err)
		}
		if !opts.NoVsftpd {
			if err := l.startVsftpd(); err != nil {
				t.Fatalf("lab: %v", err)
			}
		}
		if opts.ProFTPDPort != 0 {
			if err := l.startProftpd(opts.ProFTPDPort); err != nil {
				t.Fatalf("lab: %v", err)
			}
		}
	}
	return l
}

// Namespaces returns the three namespace names in client, gateway, server order.
func (l *Lab) Namespaces() []string { return []string{l.ClientNS, l.GatewayNS, l.ServerNS} }

// ClientAddr, GwClientAddr, GwServerAddr and ServerAddr return the lab
// address of the given family (4 or 6).
func (l *Lab) ClientAddr(family int) netip.Addr   { return l.Topo.Client().Addr(family) }
func (l *Lab) GwClientAddr(family int) netip.Addr { return l.Topo.Client().GwAddr(family) }
func (l *Lab) GwServerAddr(family int) netip.Addr { return l.Topo.Server().GwAddr(family) }
func (l *Lab) ServerAddr(family int) netip.Addr   { return l.Topo.Server().Addr(family) }

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// InNS runs fn on an OS thread switched into network namespace ns. Sockets
// fn creates stay in ns; goroutines fn starts do NOT run in ns.
func (l *Lab) InNS(ns string, fn func() error) error { return nettest.Do(ns, fn) }

// Dial opens a connection from inside namespace ns.
func (l *Lab) Dial(ctx context.Context, ns, network, addr string, timeout time.Duration) (net.Conn, error) {
	return nettest.Dial(ctx, ns, network, addr, timeout)
}

// Listen opens a listener inside namespace ns; it can be used from any goroutine.
func (l *Lab) Listen(ns, network, addr string) (net.Listener, error) {
	return nettest.Listen(ns, network, addr)
}

// Exec runs argv inside namespace ns via `ip netns exec` and returns its
// combined stdout and stderr. Without a deadline on ctx it is bounded by 60 s.
func (l *Lab) Exec(ctx context.Context, ns string, argv ...string) (string, error) {
	return Exec(ctx, ns, argv...)
}

// Exec runs argv inside namespace ns via `ip netns exec` and returns its
// combined stdout and stderr. Without a deadline on ctx it is bounded by 60 s.
func Exec(ctx context.Context, ns string, argv ...string) (string, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, argv...)...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	// A grandchild keeping the pipe open must not hang us past cancellation.
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return buf.String(), fmt.Errorf("%s in %s: %w: %s", argv[0], ns, err, tail(buf.String(), 2000))
	}
	return buf.String(), nil
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// Process is a background program started in a namespace by Start.
type Process struct {
	cmd     *exec.Cmd
	done    chan struct{}
	once    sync.Once
	waitErr error
}

// Exited is closed when the program has exited.
func (p *Process) Exited() <-chan struct{} { return p.done }

// Stop ends the program (SIGTERM, SIGKILL after 5 s) and returns its wait
// error. It is idempotent.
func (p *Process) Stop() error {
	p.once.Do(func() { Terminate(p.cmd.Process, syscall.SIGTERM, p.done, 5*time.Second) })
	return p.waitErr
}

// ErrExited means a program ended before it was ready.
var ErrExited = errors.New("exited before it was ready")

// WaitReady waits until the ready file path exists (the program's own
// signal that it serves), failing with ErrExited once done is closed and
// with a timeout error after timeout.
func WaitReady(path string, done <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-done:
			return ErrExited
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not there after %v", path, timeout)
		}
	}
}

// Terminate asks a program to end with sig and waits until done is closed;
// a program still running after grace is killed. It reports whether it had
// to be, and returns at once for a program that has already exited.
func Terminate(p *os.Process, sig os.Signal, done <-chan struct{}, grace time.Duration) (killed bool) {
	select {
	case <-done:
		return false
	default:
	}
	_ = p.Signal(sig)
	select {
	case <-done:
		return false
	case <-time.After(grace):
		_ = p.Kill()
		<-done
		return true
	}
}

// Start runs argv in namespace ns in the background, logging its output to
// logPath, and stops it in cleanup unless stopped earlier.
func (l *Lab) Start(ns, logPath string, argv ...string) (*Process, error) {
	return Start(l.t, ns, logPath, argv...)
}

// Start runs argv in namespace ns in the background, logging its output to
// logPath, and stops it (by its PID) in t's cleanup unless stopped earlier.
func Start(t testing.TB, ns, logPath string, argv ...string) (*Process, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create log %s: %w", logPath, err)
	}
	// `ip netns exec` execs the program in place, so signals reach it directly.
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s in %s: %w", argv[0], ns, err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	t.Cleanup(func() { _ = p.Stop() })
	return p, nil
}

// SHA256Hex is the hex SHA-256 of b, the form the lab compares files in.
func SHA256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
