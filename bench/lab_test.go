package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/nettest"
	"github.com/ftpgate/ftpgate/tests/lab"
)

// netLab is the client — gateway — server topology of internal/nettest
// with vsftpd on the server (ports 21 and 2121, IPv4). Everything lives in
// the namespaces and a tmpfs directory, and goes when the benchmark ends.
type netLab struct {
	id, cli, gw, srv string
	dir, root, file  string
	fileSize         int64
	vsftpd           []*exec.Cmd
	bin              string // ftpgate binary
}

// the lab's IPv4 addresses, as curl and the flood generator take them
var (
	labClient = nettest.ClientV4.Addr().String()
	labServer = nettest.ServerV4.Addr().String()
)

const nftTable = "fgbench"

func run(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

func nsRun(ns string, args ...string) (string, error) {
	return run("ip", append([]string{"netns", "exec", ns}, args...)...)
}

func newNetLab(b *testing.B, fileSize int64) *netLab {
	b.Helper()
	tp := nettest.NewTopology(b, nettest.Options{Prefix: "fgb"})
	l := &netLab{id: tp.ID, cli: tp.Client().NS, gw: tp.Gateway, srv: tp.Server().NS, fileSize: fileSize}
	l.dir = filepath.Join("/dev/shm", l.id)
	// registered after the topology's, so it runs first: vsftpd ends before
	// its namespace goes
	b.Cleanup(l.close)
	for _, step := range []func() error{l.makeFiles, l.startVsftpd} {
		if err := step(); err != nil {
			b.Fatalf("bench lab: %v", err)
		}
	}
	return l
}

func (l *netLab) makeFiles() error {
	l.root = filepath.Join(l.dir, "root")
	if err := os.MkdirAll(filepath.Join(l.root, "upload"), 0o755); err != nil {
		return err
	}
	for _, d := range []string{l.dir, l.root} {
		_ = os.Chmod(d, 0o755)
	}
	_ = os.Chmod(filepath.Join(l.root, "upload"), 0o777)
	l.file = filepath.Join(l.root, "big.bin")
	f, err := os.Create(l.file)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	_, _ = rand.Read(buf)
	for n := int64(0); n < l.fileSize; n += int64(len(buf)) {
		if _, err := f.Write(buf); err != nil {
			return err
		}
	}
	return os.Chmod(l.file, 0o644)
}

func (l *netLab) startVsftpd() error {
	if err := os.MkdirAll("/var/run/vsftpd/empty", 0o755); err != nil {
		return err
	}
	for _, port := range []int{21, 2121} {
		conf := filepath.Join(l.dir, fmt.Sprintf("vsftpd-%d.conf", port))
		lines := []string{"listen=YES", "listen_ipv6=NO", "listen_port=" + strconv.Itoa(port), "background=NO",
			"anonymous_enable=YES", "no_anon_password=YES", "anon_root=" + l.root, "local_enable=NO", "write_enable=YES",
			"anon_upload_enable=YES", "anon_other_write_enable=YES", "anon_umask=022", "pasv_enable=YES", "port_enable=YES",
			"pasv_min_port=30000", "pasv_max_port=30100", "connect_from_port_20=NO", "seccomp_sandbox=NO",
			"dirmessage_enable=NO", "xferlog_enable=NO", "syslog_enable=NO", "secure_chroot_dir=/var/run/vsftpd/empty",
			"pam_service_name=vsftpd", "max_clients=200", "max_per_ip=200"}
		if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			return err
		}
		cmd := exec.Command("ip", "netns", "exec", l.srv, "vsftpd", conf)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			return err
		}
		l.vsftpd = append(l.vsftpd, cmd)
	}
	err := nettest.Poll(15*time.Second, func() error {
		_, err := nsRun(l.cli, "curl", "-s", "-S", "--max-time", "2", "-o", "/dev/null", "ftp://"+labServer+"/")
		return err
	})
	if err != nil {
		return fmt.Errorf("vsftpd not reachable through the gateway: %w", err)
	}
	return nil
}

func (l *netLab) close() {
	for _, c := range l.vsftpd {
		if c.Process != nil {
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			_ = c.Wait()
		}
	}
	_ = os.RemoveAll(l.dir)
}

// transfer runs one curl transfer from the client and returns bytes/s.
func (l *netLab) transfer(ctx context.Context, upload, active bool, port int) (float64, error) {
	args := []string{"netns", "exec", l.cli, "curl", "-s", "-S", "--max-time", "120"}
	if active {
		args = append(args, "-P", labClient)
	}
	url := fmt.Sprintf("ftp://%s:%d/", labServer, port)
	var name string
	if upload {
		name = "up-" + hex.EncodeToString([]byte(time.Now().Format("150405.000000")))
		args = append(args, "-T", l.file, "-w", "%{speed_upload} %{size_upload}", url+"upload/"+name)
	} else {
		args = append(args, "-o", "/dev/null", "-w", "%{speed_download} %{size_download}", url+"big.bin")
	}
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if name != "" {
		_ = os.Remove(filepath.Join(l.root, "upload", name))
	}
	if err != nil {
		return 0, fmt.Errorf("curl: %w: %s", err, bytes.TrimSpace(out))
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		return 0, fmt.Errorf("curl output %q", out)
	}
	speed, _ := strconv.ParseFloat(f[0], 64)
	size, _ := strconv.ParseFloat(f[1], 64)
	if int64(size) != l.fileSize {
		return 0, fmt.Errorf("transferred %v bytes, want %d", size, l.fileSize)
	}
	return speed, nil
}

// nftables: stateful forward chain with the ftp conntrack helper
const nftRuleset = `table inet ` + nftTable + ` {
	ct helper ftp-std {
		type "ftp" protocol tcp
	}
	chain prerouting_helper {
		type filter hook prerouting priority filter; policy accept;
		tcp dport { 21, 2121 } ct helper set "ftp-std"
	}
	chain forward_filter {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		tcp dport { 21, 2121 } ct state new accept
		counter name "unsolicited" drop
	}
	counter unsolicited {
	}
}
`

func (l *netLab) nftUp() error {
	if p, err := exec.LookPath("modprobe"); err == nil {
		_, _ = run(p, "nf_conntrack_ftp")
	}
	f := filepath.Join(l.dir, "rules.nft")
	if err := os.WriteFile(f, []byte(nftRuleset), 0o600); err != nil {
		return err
	}
	_, err := nsRun(l.gw, "nft", "-f", f)
	return err
}

func (l *netLab) nftDown() error {
	_, err := nsRun(l.gw, "nft", "delete", "table", "inet", nftTable)
	return err
}

func (l *netLab) nftDrops() (uint64, error) {
	out, err := nsRun(l.gw, "nft", "-j", "list", "counter", "inet", nftTable, "unsolicited")
	if err != nil {
		return 0, err
	}
	var v struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return 0, err
	}
	for _, o := range v.Nftables {
		if c, ok := o["counter"]; ok {
			var cc struct{ Packets uint64 }
			_ = json.Unmarshal(c, &cc)
			return cc.Packets, nil
		}
	}
	return 0, fmt.Errorf("no counter in %s", out)
}

// gate is one `ftpgate run` on the lab's gateway.
type gate struct {
	l      *netLab
	pinDir string
	cmd    *exec.Cmd
	log    bytes.Buffer
	done   chan struct{}
}

func (l *netLab) gateUp(mode string, extra ...string) (*gate, error) {
	g := &gate{l: l, pinDir: "/sys/fs/bpf/ftpgate-bench-" + l.id}
	ready := filepath.Join(l.dir, "ready")
	_ = os.Remove(ready)
	g.cmd = exec.Command(l.bin, "run", "--netns", l.gw, "--iface", "gw-c", "--iface", "gw-s", "--pin-dir", g.pinDir,
		"--ready-file", ready, "--ftp-port", "21", "--ftp-port", "2121", "--allow-port", "21", "--allow-port", "2121", "--xdp-mode", mode)
	g.cmd.Args = append(g.cmd.Args, extra...)
	g.cmd.Stdout, g.cmd.Stderr = &g.log, &g.log
	if err := g.cmd.Start(); err != nil {
		return nil, err
	}
	g.done = make(chan struct{})
	go func() { _ = g.cmd.Wait(); close(g.done) }()
	switch err := lab.WaitReady(ready, g.done, 30*time.Second); {
	case errors.Is(err, lab.ErrExited):
		g.down()
		return nil, fmt.Errorf("ftpgate run --xdp-mode %s exited: %s", mode, g.log.String())
	case err != nil:
		g.down()
		return nil, fmt.Errorf("ftpgate not ready after 30s: %s", g.log.String())
	}
	return g, nil
}

// down stops run with SIGTERM and detaches (removes links, programs, pins).
func (g *gate) down() error {
	lab.Terminate(g.cmd.Process, syscall.SIGTERM, g.done, 15*time.Second)
	_, err := run(g.l.bin, "detach", "--pin-dir", g.pinDir, "--netns", g.l.gw)
	_ = os.RemoveAll(g.pinDir)
	return err
}

func (g *gate) counter(name string) (uint64, error) {
	out, err := run(g.l.bin, "stats", "--json", "--pin-dir", g.pinDir, "--netns", g.l.gw)
	if err != nil {
		return 0, err
	}
	var v struct {
		Counters map[string]uint64 `json:"counters"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return 0, fmt.Errorf("stats --json: %w: %s", err, out)
	}
	return v.Counters[name], nil
}

// buildFtpgate builds the binary into dir.
func buildFtpgate(dir string) (string, error) {
	bin := filepath.Join(dir, "ftpgate")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/ftpgate")
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/ftpgate: %w\n%s", err, out)
	}
	return bin, nil
}

// tso reports the tcp-segmentation-offload state of an interface.
func tso(ns, dev string) string {
	out, err := nsRun(ns, "ethtool", "-k", dev)
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "tcp-segmentation-offload:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "tcp-segmentation-offload:"))
		}
	}
	return "?"
}
