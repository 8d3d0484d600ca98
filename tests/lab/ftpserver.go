package lab

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/nettest"
)

func (l *Lab) makeFiles() error {
	// The anonymous root must not be writable by the ftp user: vsftpd
	// refuses to serve a writable anonymous root.
	l.FTPRoot = filepath.Join(l.Dir, "ftproot")
	l.UploadDir = filepath.Join(l.FTPRoot, "upload")
	if err := os.MkdirAll(l.UploadDir, 0o755); err != nil {
		return fmt.Errorf("create ftp root: %w", err)
	}
	// t.TempDir and its parent are 0700. vsftpd chroots as root, but
	// proftpd switches to the anonymous user before entering the root, so
	// the path down to it must be traversable by everyone.
	for _, d := range []string{filepath.Dir(l.Dir), l.Dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			return fmt.Errorf("chmod %s: %w", d, err)
		}
	}
	if err := os.Chmod(l.FTPRoot, 0o755); err != nil {
		return fmt.Errorf("chmod ftp root: %w", err)
	}
	// World-writable rather than chown'd: works whether the servers drop to
	// "ftp" or "nobody", and the sticky bit is irrelevant for a test.
	if err := os.Chmod(l.UploadDir, 0o777); err != nil {
		return fmt.Errorf("chmod upload dir: %w", err)
	}
	data := make([]byte, l.opts.FileSize)
	if _, err := rand.Read(data); err != nil {
		return fmt.Errorf("generate test file: %w", err)
	}
	l.FileName = "testfile-" + randHex(4) + ".bin"
	l.FileSHA256 = SHA256Hex(data)
	l.FileSize = len(data)
	// vsftpd's anon_world_readable_only needs the file world-readable.
	if err := os.WriteFile(filepath.Join(l.FTPRoot, l.FileName), data, 0o644); err != nil {
		return fmt.Errorf("write test file: %w", err)
	}
	return nil
}

// Vsftpd is one vsftpd instance: where it runs, what it serves and how it
// announces itself.
type Vsftpd struct {
	// NS is the network namespace it runs in, Port the control port.
	NS   string
	Port int
	// ListenAddr, if valid, binds a socket to this address only (an IPv4
	// one, listen=YES; an IPv6 one, listen_ipv6=YES with listen_address6);
	// otherwise one dual-stack socket serves every address.
	ListenAddr netip.Addr
	// Root is the anonymous root (not writable by the ftp user); Dir holds
	// the config, log and output files, which are named after Name.
	Root, Dir, Name string
	// Banner, if set, is the text after "220 " in the greeting, so a test
	// can tell which of several servers answered.
	Banner string
	// ConnectFromPort20 opens active-mode data connections from port 20.
	ConnectFromPort20 bool
	// PasvMinPort and PasvMaxPort bound the passive data ports; zero means
	// the lab's PasvMinPort and PasvMaxPort.
	PasvMinPort, PasvMaxPort int
	// Extra are more config lines (ssl_enable=YES and its files, say).
	Extra []string
}

// config renders the instance's config. listen_ipv6=YES on Linux gives a
// dual-stack socket (vsftpd does not set IPV6_V6ONLY and a fresh netns has
// bindv6only=0), so one instance per port serves IPv4 and IPv6; IPv4 clients
// are seen as ::ffff:a.b.c.d and vsftpd still answers PASV with the IPv4
// address. Tests verify both families against each port.
func (v Vsftpd) config(logPath string) string {
	port20 := "NO"
	if v.ConnectFromPort20 {
		port20 = "YES"
	}
	lo, hi := v.PasvMinPort, v.PasvMaxPort
	if lo == 0 && hi == 0 {
		lo, hi = PasvMinPort, PasvMaxPort
	}
	listen := []string{"listen=NO", "listen_ipv6=YES"}
	switch {
	case v.ListenAddr.Is4():
		listen = []string{"listen=YES", "listen_ipv6=NO", "listen_address=" + v.ListenAddr.String()}
	case v.ListenAddr.Is6():
		listen = append(listen, "listen_address6="+v.ListenAddr.String())
	}
	lines := append(listen,
		"listen_port="+strconv.Itoa(v.Port),
		"background=NO",
		"anonymous_enable=YES",
		"no_anon_password=YES",
		"anon_root="+v.Root,
		"local_enable=NO",
		"write_enable=YES",
		"anon_upload_enable=YES",
		"anon_mkdir_write_enable=NO",
		"anon_other_write_enable=NO",
		"anon_umask=022",
		"pasv_enable=YES",
		"port_enable=YES",
		"pasv_min_port="+strconv.Itoa(lo),
		"pasv_max_port="+strconv.Itoa(hi),
		"connect_from_port_20="+port20,
		// The kernel here is newer than vsftpd's seccomp allow-list.
		"seccomp_sandbox=NO",
		// Otherwise a session's unprivileged process lives in a network
		// namespace of its own, which the lab's teardown (it kills what is
		// in the lab's namespaces) cannot see: a session a middlebox has
		// stalled would outlive the lab.
		"isolate_network=NO",
		"dirmessage_enable=NO",
		"use_localtime=NO",
		"xferlog_enable=YES",
		"xferlog_std_format=NO",
		"log_ftp_protocol=YES",
		"vsftpd_log_file="+logPath,
		"syslog_enable=NO",
		"secure_chroot_dir=/var/run/vsftpd/empty",
		"pam_service_name=vsftpd",
		"max_clients=200",
		"max_per_ip=200",
	)
	if v.Banner != "" {
		lines = append(lines, "ftpd_banner="+v.Banner)
	}
	lines = append(lines, v.Extra...)
	return strings.Join(lines, "\n") + "\n"
}

// StartVsftpd starts v in the background (stopped in t's cleanup) and waits
// until it greets with 220 on each of the addresses in ready, dialled from
// namespace fromNS: the only readiness signal that proves the whole path.
func StartVsftpd(t testing.TB, v Vsftpd, fromNS string, ready ...netip.AddrPort) error {
	// vsftpd insists on this directory existing (Debian creates it at
	// install, but /var/run is a tmpfs).
	if err := os.MkdirAll("/var/run/vsftpd/empty", 0o755); err != nil {
		return fmt.Errorf("create vsftpd secure_chroot_dir: %w", err)
	}
	conf := filepath.Join(v.Dir, v.Name+".conf")
	logPath := filepath.Join(v.Dir, v.Name+".log")
	// vsftpd refuses a config file not owned by root or writable by others.
	if err := os.WriteFile(conf, []byte(v.config(logPath)), 0o600); err != nil {
		return fmt.Errorf("write vsftpd config: %w", err)
	}
	return startServer(t, v.NS, "vsftpd", filepath.Join(v.Dir, v.Name+".out"), fromNS, ready, "vsftpd", conf)
}

func (l *Lab) startVsftpd() error {
	for _, port := range []int{FTPPort, AltFTPPort} {
		v := Vsftpd{NS: l.ServerNS, Port: port, Root: l.FTPRoot, Dir: l.Dir, Name: fmt.Sprintf("vsftpd-%d", port),
			ConnectFromPort20: l.opts.ConnectFromPort20}
		if err := StartVsftpd(l.t, v, l.ClientNS, l.serverAddrs(port)...); err != nil {
			return err
		}
	}
	return nil
}

// serverAddrs are the server's addresses of both families at port.
func (l *Lab) serverAddrs(port int) []netip.AddrPort {
	return []netip.AddrPort{netip.AddrPortFrom(l.ServerAddr(4), uint16(port)), netip.AddrPortFrom(l.ServerAddr(6), uint16(port))}
}

// startServer starts an FTP server in namespace ns, its output in stdout,
// and waits for its banner on each address in ready, dialled from fromNS.
func startServer(t testing.TB, ns, name, stdout, fromNS string, ready []netip.AddrPort, argv ...string) error {
	p, err := Start(t, ns, stdout, argv...)
	if err != nil {
		return err
	}
	for _, addr := range ready {
		if err := waitBanner(p, fromNS, addr, 10*time.Second); err != nil {
			out, _ := os.ReadFile(stdout)
			return fmt.Errorf("%s on %s: %w (output: %s)", name, addr, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// waitBanner polls addr from namespace fromNS until the server greets with 220.
func waitBanner(p *Process, fromNS string, addr netip.AddrPort, timeout time.Duration) error {
	return nettest.Poll(timeout, func() error {
		select {
		case <-p.Exited():
			// vsftpd exits with status 2 and no message on an unknown
			// config variable, so say at least that it died.
			return nettest.Stop{Err: fmt.Errorf("server exited: %v", p.waitErr)}
		default:
		}
		c, err := nettest.Dial(context.Background(), fromNS, "tcp", addr.String(), time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return fmt.Errorf("read banner from %s: %w", addr, err)
		}
		if !strings.HasPrefix(line, "220") {
			return fmt.Errorf("unexpected banner from %s: %q", addr, line)
		}
		_, _ = c.Write([]byte("QUIT\r\n"))
		return nil
	})
}

// ProftpdDir is where Require extracts proftpd (relative to the module
// root): vsftpd and proftpd conflict as Debian packages, so proftpd is run
// from an extracted .deb with LD_LIBRARY_PATH instead of being installed.
const ProftpdDir = ".cache/lab/proftpd"

func (l *Lab) startProftpd(port int) error {
	root, err := proftpdRoot()
	if err != nil {
		return err
	}
	bin := filepath.Join(root, "usr/sbin/proftpd")
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("proftpd not extracted (run with FTPGATE_INSTALL=1 and lab.RequireProftpd): %w", err)
	}
	dir := filepath.Join(l.Dir, "proftpd")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create proftpd dir: %w", err)
	}
	group := "nogroup"
	if _, err := user.LookupGroup(group); err != nil {
		group = "nobody"
	}
	anonUser := "ftp"
	if _, err := user.Lookup(anonUser); err != nil {
		anonUser = "nobody"
	}
	conf := strings.Join(append([]string{
		`ServerName "ftpgate-lab"`,
		"ServerType standalone",
		"DefaultServer on",
		"Port " + strconv.Itoa(port),
		"UseIPv6 on",
		"DefaultAddress ::",
		"User nobody",
		"Group " + group,
		"Umask 022",
		"MaxInstances 100",
		"UseReverseDNS off",
		"AuthPAM off",
		"AuthOrder mod_auth_unix.c",
		"WtmpLog off",
		"DelayTable none",
		"ScoreboardFile " + filepath.Join(dir, "scoreboard"),
		"PidFile " + filepath.Join(dir, "proftpd.pid"),
		"SystemLog " + filepath.Join(dir, "system.log"),
		"TransferLog none",
		// Own range so proftpd and vsftpd never fight over a passive port.
		fmt.Sprintf("PassivePorts %d %d", ProFTPDPasvMinPort, ProFTPDPasvMaxPort),
	}, l.opts.ProFTPDConfig...), "\n") + "\n" + strings.Join([]string{
		"<Anonymous " + l.FTPRoot + ">",
		"  User " + anonUser,
		"  Group " + group,
		"  UserAlias anonymous " + anonUser,
		"  RequireValidShell off",
		"  <Limit WRITE>",
		"    DenyAll",
		"  </Limit>",
		"  <Directory upload>",
		"    <Limit WRITE>",
		"      AllowAll",
		"    </Limit>",
		"  </Directory>",
		"</Anonymous>",
	}, "\n") + "\n"
	confPath := filepath.Join(dir, "proftpd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return fmt.Errorf("write proftpd config: %w", err)
	}
	out := filepath.Join(dir, "proftpd.out")
	return startServer(l.t, l.ServerNS, "proftpd", out, l.ClientNS, l.serverAddrs(port), "env", "LD_LIBRARY_PATH="+filepath.Join(root, "usr/lib/x86_64-linux-gnu"),
		bin, "--nodaemon", "--config", confPath)
}

// moduleRoot finds the directory holding go.mod above the working directory
// (go test runs in the package directory).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("getwd: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above working directory")
		}
		dir = parent
	}
}

// ProftpdRoot is the absolute path of ProftpdDir: its usr/lib/proftpd holds
// the loadable modules (mod_tls.so) for a ModulePath line.
func ProftpdRoot() (string, error) { return proftpdRoot() }

func proftpdRoot() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ProftpdDir), nil
}
