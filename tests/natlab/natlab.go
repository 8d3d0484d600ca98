// Package natlab puts a Linux NAT gateway between FTP clients and servers in
// network namespaces, so the same FTP sessions can be run through it with
// no FTP helper, with the kernel's helper, and with ftpgate.
//
//	inside                         gateway                      outside
//	cs  192.0.2.2      ── in-cs ─┐                       ┌─ 198.51.100.2  O1 (vsftpd)
//	cl  203.0.113.200  ── in-cl ─┤  masquerade, DNAT,    │  198.51.100.3  (a permissive server)
//	s1  192.0.2.66  S1 ── in-s1 ─┤  forward policy drop  ├─ outside clients
//	s2  192.0.2.130 S2 ── in-s2 ─┘  wan0 198.51.100.1    ┘
//	                                (+ .10 VIP, .11 lab's announcing server)
//	cs  also 2001:db8:1::2          NAT66 masquerade:    2001:db8:ff::2  O1v6 (vsftpd)
//	                                wan0 2001:db8:ff::1
//
// The inside clients' addresses are shorter (cs) and longer (cl) than the
// public one when written as a PORT argument, so a helper's rewrite grows
// and shrinks the line. Everything lives in namespaces named with a random
// prefix; the host's interfaces, routes and firewall are never touched, and
// t.Cleanup removes every namespace, process and file.
//
// The gateway's NAT and filter rules are described by Ruleset, which
// renders them as an nftables ruleset and applies them with the nft binary;
// a VM build without nft can apply the same Ruleset over netlink.
package natlab

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/internal/nettest"
	"github.com/ftpgate/ftpgate/tests/lab"
)

// Mode is which FTP helper the gateway runs.
type Mode string

const (
	// None: NAT and a default-deny forward chain, no FTP helper at all.
	None Mode = "none"
	// Kernel: the kernel's nf_conntrack_ftp + nf_nat_ftp, assigned by a
	// `ct helper` rule for the control ports.
	Kernel Mode = "kernel"
	// Ftpgate: ftpgate's filter on wan0 (no rewriting), admitting data
	// connections by fwmark.
	Ftpgate Mode = "ftpgate"
	// FtpgateNAT: ftpgate run --nat, ftpgate rewriting and translating.
	FtpgateNAT Mode = "ftpgate-nat"
	// KernelFtpgate: the kernel's helper rewrites, ftpgate's filter
	// (no --nat) admits the data connections.
	KernelFtpgate Mode = "kernel+ftpgate"
	// KernelFtpgateNAT: both helpers at once, the kernel's and ftpgate
	// --nat: whatever one rewrote the other must leave alone.
	KernelFtpgateNAT Mode = "kernel+ftpgate-nat"
	// FtpgateNATOwn: ftpgate run --nat --nat-mechanism own, ftpgate
	// rewriting and translating the data connections itself (no
	// conntrack entries made from BPF).
	FtpgateNATOwn Mode = "ftpgate-nat-own"
)

// Modes lists every mode, in the report's column order.
var Modes = []Mode{None, Kernel, Ftpgate, FtpgateNAT, KernelFtpgate, KernelFtpgateNAT, FtpgateNATOwn}

// KernelHelper tells whether the mode's ruleset assigns the kernel's helper.
func (m Mode) KernelHelper() bool { return m == Kernel || m == KernelFtpgate || m == KernelFtpgateNAT }

// RunsFtpgate tells whether the mode runs ftpgate on wan0.
func (m Mode) RunsFtpgate() bool { return m == Ftpgate || m == KernelFtpgate || m.NAT() }

// NAT tells whether the mode runs ftpgate with --nat.
func (m Mode) NAT() bool { return m == FtpgateNAT || m == KernelFtpgateNAT || m == FtpgateNATOwn }

// WanIf is the gateway's outside interface.
const WanIf = "wan0"

// The lab's addresses (documentation ranges only).
var (
	// Public is the gateway's address on wan0: masquerade source, and
	// published servers at :21 (S1) and :2121 (S2, port 21 inside).
	Public = netip.MustParseAddr("198.51.100.1")
	// VIP is a second public address whose port 21 is load-balanced over
	// S1 and S2.
	VIP = netip.MustParseAddr("198.51.100.10")
	// Announcer is a third public address whose port 21 publishes the
	// lab's announcing server on S1's host (AnnouncerPort): a server whose
	// 227 names another host.
	Announcer = netip.MustParseAddr("198.51.100.11")

	InShort = netip.MustParseAddr("192.0.2.2")
	InLong  = netip.MustParseAddr("203.0.113.200")
	S1Addr  = netip.MustParseAddr("192.0.2.66")
	S2Addr  = netip.MustParseAddr("192.0.2.130")
	O1Addr  = netip.MustParseAddr("198.51.100.2")
	// Permissive is a second outside address, for a server that connects
	// wherever a PORT says.
	Permissive = netip.MustParseAddr("198.51.100.3")

	// InsidePrefixes are masqueraded when leaving through wan0.
	InsidePrefixes = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("203.0.113.128/25")}

	// NAT66: the short inside client's IPv6 address, masqueraded to
	// PublicV6 (wan0's) towards O1v6, the outside IPv6 server.
	InV6     = netip.MustParseAddr("2001:db8:1::2")
	PublicV6 = netip.MustParseAddr("2001:db8:ff::1")
	O1V6Addr = netip.MustParseAddr("2001:db8:ff::2")
	// InsidePrefixesV6 are masqueraded (NAT66) when leaving through wan0.
	InsidePrefixesV6 = []netip.Prefix{netip.MustParsePrefix("2001:db8:1::/64")}
)

// Ports.
const (
	FTPPort       = 21
	AltPublicPort = 2121 // public port of S2's port 21
	AnnouncerPort = 2122 // the announcing server's port on S1's host
)

// Host names: the ends of the namespace names.
const (
	HostInShort = "cs"
	HostInLong  = "cl"
	HostS1      = "s1"
	HostS2      = "s2"
	HostOutside = "out"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// links is the topology: every host on its own veth to the gateway.
var links = []nettest.Link{
	{Name: HostInShort, GwIf: "in-cs", GwAddrs: []netip.Prefix{pfx("192.0.2.1/26"), pfx("2001:db8:1::1/64")},
		HostAddrs: []netip.Prefix{pfx("192.0.2.2/26"), pfx("2001:db8:1::2/64")}},
	{Name: HostInLong, GwIf: "in-cl", GwAddrs: []netip.Prefix{pfx("203.0.113.129/25")}, HostAddrs: []netip.Prefix{pfx("203.0.113.200/25")}},
	{Name: HostS1, GwIf: "in-s1", GwAddrs: []netip.Prefix{pfx("192.0.2.65/26")}, HostAddrs: []netip.Prefix{pfx("192.0.2.66/26")}},
	{Name: HostS2, GwIf: "in-s2", GwAddrs: []netip.Prefix{pfx("192.0.2.129/26")}, HostAddrs: []netip.Prefix{pfx("192.0.2.130/26")}},
	{Name: HostOutside, GwIf: WanIf, GwAddrs: []netip.Prefix{pfx("198.51.100.1/24"), pfx("2001:db8:ff::1/64")},
		HostAddrs: []netip.Prefix{pfx("198.51.100.2/24"), pfx("198.51.100.3/24"), pfx("2001:db8:ff::2/64")}},
}

// Fwmark is the mark ftpgate puts on admitted data SYNs and the forward
// chain accepts (value/mask).
const Fwmark = "0x100/0x100"

// Ruleset is the gateway's NAT and filter configuration.
type Ruleset struct {
	// Helper assigns the kernel's FTP helper to connections whose original
	// destination port is one of HelperPorts.
	Helper      bool
	HelperPorts []int
}

// rulesetFor is the ruleset of a mode: all share NAT and filtering, only
// the kernel mode assigns a helper.
func rulesetFor(m Mode) Ruleset {
	return Ruleset{Helper: m.KernelHelper(), HelperPorts: []int{FTPPort, AltPublicPort}}
}

// NFT renders the ruleset for `nft -f`.
func (r Ruleset) NFT() string {
	var inside []string
	for _, p := range InsidePrefixes {
		inside = append(inside, p.String())
	}
	var ports []string
	for _, p := range r.HelperPorts {
		ports = append(ports, fmt.Sprint(p))
	}
	var inside6 []string
	for _, p := range InsidePrefixesV6 {
		inside6 = append(inside6, p.String())
	}
	helperObj, helperChain, helperObj6 := "", "", ""
	if r.Helper {
		helper := `
	ct helper ftp-standard {
		type "ftp" protocol tcp
		l3proto %s
	}
`
		helperObj, helperObj6 = fmt.Sprintf(helper, "ip"), fmt.Sprintf(helper, "ip6")
		// After DNAT (priority dstnat < filter): match the original
		// destination port, so 2121 -> 21 gets the helper too.
		helperChain = fmt.Sprintf(`
	chain helpers {
		type filter hook prerouting priority filter; policy accept;
		ct state new meta l4proto tcp ct original proto-dst { %s } ct helper set "ftp-standard"
	}
`, strings.Join(ports, ", "))
	}
	return r.nft4(helperObj, helperChain, inside) + "\n" + r.nft6(helperObj6, helperChain, inside6)
}

// nft6 renders the IPv6 table: NAT66 masquerade of the inside client and
// the same default-deny forward chain (no published IPv6 servers).
func (r Ruleset) nft6(helperObj, helperChain string, inside []string) string {
	return fmt.Sprintf(`table ip6 natlab {
	counter invalid {
	}
%s%s
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "%[3]s" ip6 saddr { %[4]s } masquerade
	}

	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state invalid counter name "invalid" drop
		ct state established,related accept
		iifname != "%[3]s" oifname "%[3]s" accept
		meta mark & %[5]s == %[5]s accept
	}
}
`, helperObj, helperChain, WanIf, strings.Join(inside, ", "), strings.Split(Fwmark, "/")[0])
}

// nft4 renders the IPv4 table.
func (r Ruleset) nft4(helperObj, helperChain string, inside []string) string {
	return fmt.Sprintf(`table ip natlab {
	counter invalid {
	}
%s
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "%[2]s" ip daddr %[3]s tcp dport %[4]d dnat to %[5]s:%[4]d
		iifname "%[2]s" ip daddr %[3]s tcp dport %[6]d dnat to %[7]s:%[4]d
		iifname "%[2]s" ip daddr %[8]s tcp dport %[4]d dnat to numgen inc mod 2 map { 0 : %[5]s, 1 : %[7]s }
		# lab only: a server whose 227 names another host
		iifname "%[2]s" ip daddr %[9]s tcp dport %[4]d dnat to %[5]s:%[10]d
	}
%s
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "%[2]s" ip saddr { %[12]s } masquerade
	}

	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state invalid counter name "invalid" drop
		ct state established,related accept
		iifname "%[2]s" ct status dnat meta l4proto tcp ct original proto-dst { %[13]s } accept
		iifname != "%[2]s" oifname "%[2]s" accept
		meta mark & %[14]s == %[14]s accept
	}
}
`, helperObj, WanIf, Public, FTPPort, S1Addr, AltPublicPort, S2Addr, VIP, Announcer, AnnouncerPort,
		helperChain, strings.Join(inside, ", "), fmt.Sprintf("%d, %d", FTPPort, AltPublicPort),
		strings.Split(Fwmark, "/")[0])
}

// Backend is one FTP server of the lab.
type Backend struct {
	Name string
	// Host is the namespace's host name, Addr its address.
	Host string
	Addr netip.Addr
	// Banner is the text after "220 " in its greeting.
	Banner string
	// Root is its anonymous root; File (FileName there) differs per
	// server, FileSHA256 is its hash; Root/upload takes uploads.
	Root       string
	FileSHA256 string
}

// FileName is the name of every server's test file.
const FileName = "file.bin"

// Options shapes a lab.
type Options struct {
	Mode Mode
	// Ftpgate is the binary the ftpgate modes run.
	Ftpgate string
	// FileSize is each server's test file size; 0 means 256 KiB.
	FileSize int
}

// Lab is one NAT gateway with its hosts, servers and helper mode.
type Lab struct {
	t    testing.TB
	Mode Mode
	Topo *nettest.Topology
	Dir  string
	// Backends are S1, S2 (inside), O1 and O1v6 (outside), by name.
	Backends map[string]*Backend
	// Gate is the ftpgate instance of the ftpgate modes, nil otherwise.
	Gate *lab.Gate
}

// NS is the namespace name of host name.
func (l *Lab) NS(host string) string { return l.Topo.Host(host).NS }

// GatewayNS is the gateway's namespace name.
func (l *Lab) GatewayNS() string { return l.Topo.Gateway }

// New builds the lab in mode opts.Mode and registers its teardown. It
// fails the test on any error; the caller must be root (see lab.Require).
func New(t testing.TB, opts Options) *Lab {
	t.Helper()
	if opts.FileSize == 0 {
		opts.FileSize = 256 << 10
	}
	if opts.Mode.KernelHelper() {
		if err := loadNATHelper(); err != nil {
			t.Fatalf("natlab: %v", err)
		}
	}
	l := &Lab{t: t, Mode: opts.Mode, Dir: t.TempDir(), Backends: map[string]*Backend{}}
	l.Topo = nettest.NewTopology(t, nettest.Options{Prefix: "nat", Links: links})
	if err := l.addPublicAddrs(); err != nil {
		t.Fatalf("natlab: %v", err)
	}
	for _, b := range []*Backend{
		{Name: "S1", Host: HostS1, Addr: S1Addr},
		{Name: "S2", Host: HostS2, Addr: S2Addr},
		{Name: "O1", Host: HostOutside, Addr: O1Addr},
		{Name: "O1v6", Host: HostOutside, Addr: O1V6Addr},
	} {
		if err := l.startBackend(b, opts.FileSize); err != nil {
			t.Fatalf("natlab: %v", err)
		}
		l.Backends[b.Name] = b
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := lab.LoadRuleset(ctx, l.GatewayNS(), l.Dir, rulesetFor(opts.Mode).NFT()); err != nil {
		t.Fatalf("natlab: %v", err)
	}
	if opts.Mode.RunsFtpgate() {
		args := []string{"--iface", WanIf, "--allow-port", "21", "--allow-port", "2121",
			"--ftp-port", "21", "--ftp-port", "2121", "--fwmark", Fwmark}
		if opts.Mode.NAT() {
			args = append(args, "--nat")
		}
		if opts.Mode == FtpgateNATOwn {
			args = append(args, "--nat-mechanism", "own")
		}
		g, err := lab.StartGate(t, opts.Ftpgate, l.GatewayNS(), "/sys/fs/bpf/ftpgate-"+l.Topo.ID, args...)
		if err != nil {
			t.Fatalf("natlab: %v", err)
		}
		l.Gate = g
	}
	return l
}

// loadNATHelper makes sure the kernel has nf_nat_ftp: nftables loads
// nf_conntrack_ftp for a `ct helper` object, but the NAT half is a module
// of its own that nothing loads (built in on this machine's 6.18).
func loadNATHelper() error {
	if kernelHas("nf_nat_ftp") {
		return nil
	}
	if out, err := exec.Command("modprobe", "nf_nat_ftp").CombinedOutput(); err != nil {
		return fmt.Errorf("the kernel mode needs nf_nat_ftp: modprobe nf_nat_ftp: %w: %s", err, out)
	}
	return nil
}

// kernelHas says whether /proc/kallsyms lists the function fn.
func kernelHas(fn string) bool {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 3 && f[2] == fn {
			return true
		}
	}
	return false
}

// addPublicAddrs puts VIP and Announcer on wan0 beside Public.
func (l *Lab) addPublicAddrs() error {
	return nettest.Do(l.GatewayNS(), func() error {
		lk, err := netlink.LinkByName(WanIf)
		if err != nil {
			return err
		}
		for _, a := range []netip.Addr{VIP, Announcer} {
			n := &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}
			if err := netlink.AddrAdd(lk, &netlink.Addr{IPNet: n, Flags: unix.IFA_F_NODAD}); err != nil {
				return fmt.Errorf("address %s on %s: %w", a, WanIf, err)
			}
		}
		return nil
	})
}

// startBackend makes b's root and its own test file and starts vsftpd on
// b.Addr:21, greeting with "natlab <name>".
func (l *Lab) startBackend(b *Backend, size int) error {
	b.Root = filepath.Join(l.Dir, b.Name)
	// vsftpd serves no anonymous root the ftp user may write to; uploads
	// go to a world-writable directory below it.
	if err := os.MkdirAll(filepath.Join(b.Root, "upload"), 0o755); err != nil {
		return err
	}
	// t.TempDir and its parent are 0700; vsftpd's session process must
	// traverse them.
	for _, d := range []string{filepath.Dir(l.Dir), l.Dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(b.Root, "upload"), 0o777); err != nil {
		return err
	}
	data := make([]byte, size)
	_, _ = rand.Read(data)
	b.FileSHA256 = lab.SHA256Hex(data)
	if err := os.WriteFile(filepath.Join(b.Root, FileName), data, 0o644); err != nil {
		return err
	}
	b.Banner = "natlab " + b.Name
	ns := l.NS(b.Host)
	v := lab.Vsftpd{NS: ns, Port: FTPPort, ListenAddr: b.Addr, Root: b.Root, Dir: l.Dir, Name: "vsftpd-" + b.Name, Banner: b.Banner}
	return lab.StartVsftpd(l.t, v, ns, netip.AddrPortFrom(b.Addr, FTPPort))
}

// Invalid reads the forward chains' count of packets conntrack found
// INVALID, IPv4 and IPv6.
func (l *Lab) Invalid(ctx context.Context) (uint64, error) {
	var sum uint64
	for _, family := range []string{"ip", "ip6"} {
		n, err := l.invalid(ctx, family)
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}

// invalid reads the INVALID counter of the family's table.
func (l *Lab) invalid(ctx context.Context, family string) (uint64, error) {
	out, err := lab.Exec(ctx, l.GatewayNS(), "nft", "-j", "list", "counter", family, "natlab", "invalid")
	if err != nil {
		return 0, err
	}
	var v struct {
		Nftables []struct {
			Counter *struct {
				Packets uint64 `json:"packets"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return 0, fmt.Errorf("nft counter: %w: %s", err, out)
	}
	for _, o := range v.Nftables {
		if o.Counter != nil {
			return o.Counter.Packets, nil
		}
	}
	return 0, fmt.Errorf("nft counter: none in %s", out)
}

// netfilterRE picks the kernel log lines netfilter writes.
var netfilterRE = regexp.MustCompile(`(?i)nf_conntrack|nf_nat|nf_ct|netfilter|nft_|conntrack`)

// KernelLog returns the kernel log's lines, or an error if it is not
// readable here.
func KernelLog() ([]string, error) {
	out, err := exec.Command("dmesg").Output()
	if err != nil {
		return nil, fmt.Errorf("dmesg: %w", err)
	}
	return strings.Split(strings.TrimRight(string(out), "\n"), "\n"), nil
}

// NetfilterLines are the lines of after, past the len(before) first,
// that netfilter wrote.
func NetfilterLines(before, after []string) []string {
	var lines []string
	if len(after) < len(before) {
		before = nil // the ring buffer wrapped: look at all
	}
	for _, ln := range after[len(before):] {
		if netfilterRE.MatchString(ln) {
			lines = append(lines, ln)
		}
	}
	return lines
}
