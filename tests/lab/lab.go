// Package lab builds a three-namespace network (client — gateway — server)
// with real FTP servers, so integration tests can attach ftpgate to the
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
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// Interface names. They are per-namespace, so parallel labs can reuse them.
const (
	// GwClientIf is the gateway's interface towards the client.
	GwClientIf = "gw-c"
	// GwServerIf is the gateway's interface towards the server.
	GwServerIf = "gw-s"
	// ClientIf and ServerIf are the hosts' interfaces towards the gateway.
	ClientIf = "eth0"
	ServerIf = "eth0"
)

// Fixed addresses (documentation ranges only).
var (
	ClientV4   = netip.MustParseAddr("192.0.2.2")
	GwClientV4 = netip.MustParseAddr("192.0.2.1")
	GwServerV4 = netip.MustParseAddr("198.51.100.1")
	ServerV4   = netip.MustParseAddr("198.51.100.2")

	ClientV6   = netip.MustParseAddr("2001:db8:1::2")
	GwClientV6 = netip.MustParseAddr("2001:db8:1::1")
	GwServerV6 = netip.MustParseAddr("2001:db8:2::1")
	ServerV6   = netip.MustParseAddr("2001:db8:2::2")
)

// FTP ports the lab's vsftpd instances listen on.
const (
	FTPPort    = 21
	AltFTPPort = 2121
	// PasvMinPort and PasvMaxPort bound vsftpd's passive data ports.
	PasvMinPort = 30000
	PasvMaxPort = 30100
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
}

// Lab is one client — gateway — server topology.
type Lab struct {
	t    *testing.T
	opts Options

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
func New(t *testing.T, opts Options) *Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("lab: network namespaces need root; run the tests as root")
	}
	if opts.FileSize == 0 {
		opts.FileSize = 2 << 20
	}
	l := &Lab{t: t, opts: opts, Dir: t.TempDir()}
	if err := l.createNamespaces(); err != nil {
		t.Fatalf("lab: %v", err)
	}
	if err := l.wire(); err != nil {
		t.Fatalf("lab: %v", err)
	}
	if err := l.waitRouted(15 * time.Second); err != nil {
		t.Fatalf("lab: %v", err)
	}
	if !opts.NoFTP {
		if err := l.makeFiles(); err != nil {
			t.Fatalf("lab: %v", err)
		}
		if err := l.startVsftpd(); err != nil {
			t.Fatalf("lab: %v", err)
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
func (l *Lab) ClientAddr(family int) netip.Addr   { return pick(family, ClientV4, ClientV6) }
func (l *Lab) GwClientAddr(family int) netip.Addr { return pick(family, GwClientV4, GwClientV6) }
func (l *Lab) GwServerAddr(family int) netip.Addr { return pick(family, GwServerV4, GwServerV6) }
func (l *Lab) ServerAddr(family int) netip.Addr   { return pick(family, ServerV4, ServerV6) }

func pick(family int, v4, v6 netip.Addr) netip.Addr {
	if family == 6 {
		return v6
	}
	return v4
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (l *Lab) createNamespaces() error {
	// Retry on the (unlikely) collision with another lab's random prefix.
	for attempt := 0; attempt < 5; attempt++ {
		id := "fg-" + randHex(2)
		names := []string{id + "-cli", id + "-gw", id + "-srv"}
		collide := false
		for _, n := range names {
			if _, err := os.Stat(filepath.Join("/run/netns", n)); err == nil {
				collide = true
			}
		}
		if collide {
			continue
		}
		l.ID = id
		l.ClientNS, l.GatewayNS, l.ServerNS = names[0], names[1], names[2]
		for _, n := range names {
			if out, err := exec.Command("ip", "netns", "add", n).CombinedOutput(); err != nil {
				return fmt.Errorf("create namespace %s: %w: %s", n, err, bytes.TrimSpace(out))
			}
			ns := n
			// Registered per namespace so a half-built lab is still torn down.
			l.t.Cleanup(func() { l.deleteNamespace(ns) })
		}
		return nil
	}
	return errors.New("create namespaces: could not find a free random prefix")
}

// deleteNamespace kills what is left running inside the namespace (only
// processes this lab started there, e.g. vsftpd session children) and
// removes it; a namespace with live processes would otherwise linger.
func (l *Lab) deleteNamespace(ns string) {
	if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
		l.t.Logf("lab: delete namespace %s: %v: %s", ns, err, bytes.TrimSpace(out))
	}
}

// ipBatch runs `ip -n NS -batch -` so a namespace is configured in one exec.
func ipBatch(ns string, lines ...string) error {
	cmd := exec.Command("ip", "-n", ns, "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ip -n %s -batch: %w: %s", ns, err, bytes.TrimSpace(out))
	}
	return nil
}

func writeSysctl(ns, key, val string) error {
	// Go code in the namespace would need a new mount namespace for /proc/sys
	// to reflect the netns; `ip netns exec` already does that remount.
	out, err := exec.Command("ip", "netns", "exec", ns, "sysctl", "-q", "-w", key+"="+val).CombinedOutput()
	if err != nil {
		return fmt.Errorf("sysctl %s=%s in %s: %w: %s", key, val, ns, err, bytes.TrimSpace(out))
	}
	return nil
}

func (l *Lab) wire() error {
	for _, ns := range l.Namespaces() {
		// DAD off before any interface exists, so addresses are usable at once
		// (nodad below covers the explicitly added ones too).
		for _, k := range []string{"net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"} {
			if err := writeSysctl(ns, k, "0"); err != nil {
				return err
			}
		}
	}
	for _, k := range []string{"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"} {
		if err := writeSysctl(l.GatewayNS, k, "1"); err != nil {
			return err
		}
	}
	// The veth pairs are created straight inside the namespaces, so no
	// interface ever appears in the host's namespace.
	if err := ipBatch(l.GatewayNS,
		fmt.Sprintf("link add %s type veth peer name %s netns %s", GwClientIf, ClientIf, l.ClientNS),
		fmt.Sprintf("link add %s type veth peer name %s netns %s", GwServerIf, ServerIf, l.ServerNS),
		"link set lo up",
		"link set "+GwClientIf+" up",
		"link set "+GwServerIf+" up",
		"addr add "+GwClientV4.String()+"/24 dev "+GwClientIf,
		"addr add "+GwServerV4.String()+"/24 dev "+GwServerIf,
		"addr add "+GwClientV6.String()+"/64 dev "+GwClientIf+" nodad",
		"addr add "+GwServerV6.String()+"/64 dev "+GwServerIf+" nodad",
	); err != nil {
		return err
	}
	if err := ipBatch(l.ClientNS,
		"link set lo up",
		"link set "+ClientIf+" up",
		"addr add "+ClientV4.String()+"/24 dev "+ClientIf,
		"addr add "+ClientV6.String()+"/64 dev "+ClientIf+" nodad",
		"route add default via "+GwClientV4.String(),
		"route add default via "+GwClientV6.String(),
	); err != nil {
		return err
	}
	if err := ipBatch(l.ServerNS,
		"link set lo up",
		"link set "+ServerIf+" up",
		"addr add "+ServerV4.String()+"/24 dev "+ServerIf,
		"addr add "+ServerV6.String()+"/64 dev "+ServerIf+" nodad",
		"route add default via "+GwServerV4.String(),
		"route add default via "+GwServerV6.String(),
	); err != nil {
		return err
	}
	return l.InNS(l.GatewayNS, func() error {
		c, err := net.InterfaceByName(GwClientIf)
		if err != nil {
			return fmt.Errorf("look up %s: %w", GwClientIf, err)
		}
		s, err := net.InterfaceByName(GwServerIf)
		if err != nil {
			return fmt.Errorf("look up %s: %w", GwServerIf, err)
		}
		l.GwClientIndex, l.GwServerIndex = c.Index, s.Index
		return nil
	})
}

// waitRouted proves end-to-end forwarding for both families by connecting
// from the client to a throwaway listener in the server namespace, retrying
// until the links are up (veth carrier comes up asynchronously).
func (l *Lab) waitRouted(timeout time.Duration) error {
	for _, fam := range []int{4, 6} {
		ln, err := l.Listen(l.ServerNS, "tcp", netip.AddrPortFrom(l.ServerAddr(fam), 0).String())
		if err != nil {
			return err
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		port := ln.Addr().(*net.TCPAddr).Port
		err = poll(timeout, func() error {
			c, err := l.Dial(context.Background(), l.ClientNS, "tcp", netip.AddrPortFrom(l.ServerAddr(fam), uint16(port)).String(), time.Second)
			if err != nil {
				return err
			}
			return c.Close()
		})
		ln.Close()
		if err != nil {
			return fmt.Errorf("IPv%d path client -> server not ready: %w", fam, err)
		}
	}
	return nil
}

// poll retries fn until it succeeds or timeout passes, backing off from
// 10 ms to 200 ms; it returns the last error on timeout.
func poll(timeout time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	wait := 10 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return nil
		}
		var stop errStop
		if errors.As(err, &stop) {
			return stop.error
		}
		if time.Now().Add(wait).After(deadline) {
			return fmt.Errorf("not ready after %v: %w", timeout, err)
		}
		time.Sleep(wait)
		if wait < 200*time.Millisecond {
			wait *= 2
		}
	}
}

// InNS runs fn on an OS thread switched into network namespace ns. The
// thread is never unlocked, so Go discards it when fn returns instead of
// handing a thread in the wrong namespace to other goroutines. Sockets fn
// creates stay in ns; goroutines fn starts do NOT run in ns.
func (l *Lab) InNS(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromName(ns)
		if err != nil {
			errc <- fmt.Errorf("open namespace %s: %w", ns, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Dial opens a connection from inside namespace ns.
func (l *Lab) Dial(ctx context.Context, ns, network, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := l.InNS(ns, func() error {
		var err error
		d := net.Dialer{Timeout: timeout}
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Listen opens a listener inside namespace ns; it can be used from any goroutine.
func (l *Lab) Listen(ns, network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := l.InNS(ns, func() error {
		var err error
		ln, err = net.Listen(network, addr)
		if err != nil {
			return fmt.Errorf("listen %s %s in %s: %w", network, addr, ns, err)
		}
		return nil
	})
	return ln, err
}

// Exec runs argv inside namespace ns via `ip netns exec` and returns its
// combined stdout and stderr. Without a deadline on ctx it is bounded by 60 s.
func (l *Lab) Exec(ctx context.Context, ns string, argv ...string) (string, error) {
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
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p.waitErr
}

// Start runs argv in namespace ns in the background, logging its output to
// logPath, and stops it in cleanup unless stopped earlier.
func (l *Lab) Start(ns, logPath string, argv ...string) (*Process, error) {
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
	l.t.Cleanup(func() { _ = p.Stop() })
	return p, nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
