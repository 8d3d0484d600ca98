package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/tests/lab"
)

// The foreign XDP programs' policy: UDP to this port is dropped at the
// gateway, UDP to discardPort+1 passes.
const discardPort = 9

// foreignName is the name of the test's own XDP program.
const foreignName = "fgt_foreign"

// foreignXDP loads an XDP program that is not ftpgate's and knows nothing of
// libxdp: it drops IPv4 UDP to discardPort (a header without options) and
// passes the rest, so its policy is visible from outside.
func foreignXDP(t *testing.T) *ebpf.Program {
	t.Helper()
	const (
		pass, drop = 2, 1
		ethProto   = 12               // offset of the EtherType
		ipProto    = 14 + 9           // of the IPv4 protocol
		udpDport   = 14 + 20 + 2      // of the UDP destination port
		end        = udpDport + 2     // bytes the program reads
		etherIPv4  = 0x0008           // 0x0800 as a little-endian load sees it
		udp        = 17               // IPPROTO_UDP
		portBE     = discardPort << 8 // the port as a little-endian load sees it
	)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: foreignName, Type: ebpf.XDP, License: "MIT",
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R2, asm.R1, 0, asm.Word), // data
			asm.LoadMem(asm.R3, asm.R1, 4, asm.Word), // data_end
			asm.Mov.Reg(asm.R4, asm.R2),
			asm.Add.Imm(asm.R4, end),
			asm.JGT.Reg(asm.R4, asm.R3, "pass"),
			asm.LoadMem(asm.R5, asm.R2, ethProto, asm.Half),
			asm.JNE.Imm(asm.R5, etherIPv4, "pass"),
			asm.LoadMem(asm.R5, asm.R2, ipProto, asm.Byte),
			asm.JNE.Imm(asm.R5, udp, "pass"),
			asm.LoadMem(asm.R5, asm.R2, udpDport, asm.Half),
			asm.JNE.Imm(asm.R5, portBE, "pass"),
			asm.Mov.Imm(asm.R0, drop),
			asm.Return(),
			asm.Mov.Imm(asm.R0, pass).WithSymbol("pass"),
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatalf("load the foreign XDP program: %v", err)
	}
	return prog
}

// holdXDP attaches prog to both gateway interfaces the way `ip link set
// dev X xdp` does (netlink, generic mode, no link), so that it stays after
// its descriptor is closed; the cleanup removes it again.
func holdXDP(t *testing.T, l *lab.Lab, prog *ebpf.Program) {
	t.Helper()
	set := func(fd int) error {
		return l.InNS(l.GatewayNS, func() error {
			for _, name := range []string{lab.GwClientIf, lab.GwServerIf} {
				lk, err := netlink.LinkByName(name)
				if err != nil {
					return err
				}
				if err := netlink.LinkSetXdpFdWithFlags(lk, fd, int(unix.XDP_FLAGS_SKB_MODE)); err != nil {
					return fmt.Errorf("xdp on %s: %w", name, err)
				}
			}
			return nil
		})
	}
	if err := set(prog.FD()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set(-1) })
}

// xdpHolders returns the id of the XDP program on each gateway interface.
func xdpHolders(t *testing.T, l *lab.Lab) []uint32 {
	t.Helper()
	var ids []uint32
	err := l.InNS(l.GatewayNS, func() error {
		for _, name := range []string{lab.GwClientIf, lab.GwServerIf} {
			lk, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			var id uint32
			if x := lk.Attrs().Xdp; x != nil && x.Attached {
				id = x.ProgId
			}
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// wantUDPPolicy checks the foreign program's policy from the client: a
// datagram to discardPort+1 reaches the server, datagrams to discardPort
// do not.
func wantUDPPolicy(t *testing.T, l *lab.Lab) {
	t.Helper()
	listen := func(port int) net.PacketConn {
		var pc net.PacketConn
		err := l.InNS(l.ServerNS, func() (err error) {
			pc, err = net.ListenPacket("udp4", netip.AddrPortFrom(l.ServerAddr(4), uint16(port)).String())
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return pc
	}
	send := func(port int) {
		err := l.InNS(l.ClientNS, func() error {
			c, err := net.Dial("udp4", netip.AddrPortFrom(l.ServerAddr(4), uint16(port)).String())
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write([]byte("fgt"))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	received := func(pc net.PacketConn, within time.Duration) bool {
		pc.SetReadDeadline(time.Now().Add(within))
		buf := make([]byte, 16)
		_, _, err := pc.ReadFrom(buf)
		return err == nil
	}
	open, closed := listen(discardPort+1), listen(discardPort)
	defer open.Close()
	defer closed.Close()
	// the path is up (neighbours resolved) once one datagram arrives
	deadline := time.Now().Add(10 * time.Second)
	for !received(open, 200*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no datagram to port %d reached the server", discardPort+1)
		}
		send(discardPort + 1)
	}
	for range 3 {
		send(discardPort)
	}
	send(discardPort + 1)
	if !received(open, 5*time.Second) {
		t.Fatalf("a datagram to port %d was lost", discardPort+1)
	}
	if received(closed, time.Second) {
		t.Fatalf("a datagram to port %d reached the server: the foreign XDP program's drop did not happen", discardPort)
	}
}

// wantTCAdmission: with --admit-hook tc beside another XDP program, FTP
// works both ways and in both families, unsolicited SYNs time out and are
// counted, and status says where the admission runs.
func wantTCAdmission(t *testing.T, l *lab.Lab, g *gate) {
	t.Helper()
	for _, c := range []struct {
		mode lab.Mode
		fam  int
	}{{lab.PASV, 4}, {lab.PORT, 4}, {lab.EPSV, 6}, {lab.EPRT, 6}} {
		wantTransfer(t, l, c.mode, c.fam, lab.FTPPort, lab.Curl)
	}
	ctx := context.Background()
	for _, c := range []struct {
		from string
		to   netip.Addr
	}{{l.ClientNS, l.ServerAddr(4)}, {l.ServerNS, l.ClientAddr(4)}, {l.ClientNS, l.ServerAddr(6)}} {
		out, err := l.ConnectTimesOut(ctx, c.from, c.to, 40000, 2*time.Second)
		if err != nil || out != lab.TimedOut {
			t.Fatalf("unsolicited connect to %s from %s: %v %v, want timed out", c.to, c.from, out, err)
		}
	}
	c := g.counters()
	if c["syn_drop_unexpected"] < 3 || c["syn_pass_expected"] < 4 || c["expect_consumed"] != c["syn_pass_expected"] {
		t.Fatalf("counters: want >= 3 unexpected SYNs dropped, >= 4 expected admitted: %v", c)
	}
	out, err := g.cli("status")
	if err != nil || !strings.Contains(out, "admit-hook tc") || strings.Contains(out, "missing") {
		t.Fatalf("status: %v\n%s", err, out)
	}
}

// TestTCAdmissionBesideForeignXDP: a plain (non-libxdp) XDP program holds
// both gateway interfaces, as Cilium's would. ftpgate with the XDP hook
// refuses and names it; with --admit-hook tc it admits FTP and drops
// unsolicited SYNs while the other program's drop still happens, and it
// leaves that program attached when it detaches.
func TestTCAdmissionBesideForeignXDP(t *testing.T) {
	lab.Require(t)
	t.Parallel()
	l := lab.New(t, lab.Options{FileSize: 64 << 10})
	prog := foreignXDP(t)
	holdXDP(t, l, prog)
	prog.Close()
	held := xdpHolders(t, l)

	g := newGate(t, l)
	out, err := exec.Command(g.bin, "run", "--netns", l.GatewayNS, "--iface", lab.GwClientIf, "--iface", lab.GwServerIf,
		"--pin-dir", g.pinDir).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || !strings.Contains(string(out), foreignName) {
		t.Fatalf("ftpgate run with the XDP hook held: %v, want a refusal naming %s:\n%s", err, foreignName, out)
	}

	g.start("--admit-hook", "tc")
	wantUDPPolicy(t, l)
	wantTCAdmission(t, l, g)
	if got := xdpHolders(t, l); fmt.Sprint(got) != fmt.Sprint(held) {
		t.Fatalf("XDP programs %v after ftpgate started, want the foreign %v", got, held)
	}
	g.stop()
	if out, err := g.cli("detach"); err != nil {
		t.Fatalf("detach: %v\n%s", err, out)
	}
	if got := xdpHolders(t, l); fmt.Sprint(got) != fmt.Sprint(held) {
		t.Fatalf("XDP programs %v after ftpgate detached, want the foreign %v", got, held)
	}
	wantUDPPolicy(t, l)
}

// TestTCAdmissionBesideXDPFilter: Debian's xdp-filter (xdp-tools) holds
// both gateway interfaces and drops UDP to discardPort; ftpgate with
// --admit-hook tc runs beside it, and both policies hold at once. On a
// kernel that refuses freplace (this host's 6.18) libxdp attaches
// xdp-filter alone, without its dispatcher.
func TestTCAdmissionBesideXDPFilter(t *testing.T) {
	lab.Require(t)
	if _, err := exec.LookPath("xdp-filter"); err != nil {
		t.Fatal("xdp-filter (Debian's xdp-tools) not installed: scripts/deps.sh test installs it")
	}
	t.Parallel()
	l := lab.New(t, lab.Options{FileSize: 64 << 10})
	// a bpffs of its own in a private mount namespace: xdp-filter pins its
	// maps under /sys/fs/bpf/xdp-filter, which parallel labs would share.
	// The programs stay attached (and hold their maps) when it goes.
	netns := "/run/netns/" + l.GatewayNS
	script := fmt.Sprintf(`set -e
mount -t bpf bpf /sys/fs/bpf
nsenter --net=%[1]s xdp-filter load -m skb %[2]s
nsenter --net=%[1]s xdp-filter load -m skb %[3]s
nsenter --net=%[1]s xdp-filter port -p udp %[4]d
`, netns, lab.GwClientIf, lab.GwServerIf, discardPort)
	if out, err := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("xdp-filter: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		l.InNS(l.GatewayNS, func() error {
			for _, name := range []string{lab.GwClientIf, lab.GwServerIf} {
				if lk, err := netlink.LinkByName(name); err == nil {
					netlink.LinkSetXdpFdWithFlags(lk, -1, int(unix.XDP_FLAGS_SKB_MODE))
				}
			}
			return nil
		})
	})
	held := xdpHolders(t, l)
	if held[0] == 0 || held[1] == 0 {
		t.Fatalf("xdp-filter attached nothing: %v", held)
	}
	wantUDPPolicy(t, l)

	g := newGate(t, l)
	g.start("--admit-hook", "tc")
	wantUDPPolicy(t, l)
	wantTCAdmission(t, l, g)
	if got := xdpHolders(t, l); fmt.Sprint(got) != fmt.Sprint(held) {
		t.Fatalf("XDP programs %v after ftpgate started, want xdp-filter's %v", got, held)
	}
}
