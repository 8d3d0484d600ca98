package nettest

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The NAT gateway's addresses (documentation ranges only): the inside is
// 192.0.2.0/25, split into a client link and a server link; the outside is
// 198.51.100.0/24, with one host that holds an outside server and the
// outside clients.
var (
	NATInside        = netip.MustParsePrefix("192.0.2.0/25")
	NATInsideClient  = netip.MustParseAddr("192.0.2.2")
	NATInsideServer  = netip.MustParseAddr("192.0.2.66")
	NATPublic        = netip.MustParseAddr("198.51.100.1")
	NATOutsideServer = netip.MustParseAddr("198.51.100.2")
)

// NATWanIf is the NAT gateway's outside interface, the one ftpgate guards.
const NATWanIf = "wan0"

// Host names of the NAT gateway's links.
const (
	NATHostInClient = "ic"
	NATHostInServer = "is"
	NATHostOutside  = "out"
)

// NATLinks is the NAT gateway topology: every host routes everything
// through the gateway, the outside host too, so a connection to an inside
// address that nothing translated reaches the forward chain (and its
// policy drop) instead of failing for want of a route.
var NATLinks = []Link{
	{Name: NATHostInClient, GwIf: "in-c",
		GwAddrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/26")}, HostAddrs: []netip.Prefix{netip.PrefixFrom(NATInsideClient, 26)}},
	{Name: NATHostInServer, GwIf: "in-s",
		GwAddrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.65/26")}, HostAddrs: []netip.Prefix{netip.PrefixFrom(NATInsideServer, 26)}},
	{Name: NATHostOutside, GwIf: NATWanIf,
		GwAddrs: []netip.Prefix{netip.PrefixFrom(NATPublic, 24)}, HostAddrs: []netip.Prefix{netip.PrefixFrom(NATOutsideServer, 24)}},
}

// NATRuleset is an IPv4 NAT gateway's nftables configuration, applied over
// netlink (no nft binary): the shape of docs/nat.md's "ftpgate-nat"
// ruleset, without the lab-only lines.
type NATRuleset struct {
	// Table is the name of the ip table holding everything.
	Table string
	// Wan is the outside interface, Public its address.
	Wan    string
	Public netip.Addr
	// Inside is masqueraded when it leaves through Wan.
	Inside netip.Prefix
	// Publish maps public ports (Public:port, from Wan) to inside servers.
	Publish []Published
	// Mark, MarkMask: the forward chain accepts packets whose mark & mask
	// is mark (ftpgate's --fwmark on admitted data SYNs).
	Mark, MarkMask uint32
}

// Published is one DNAT rule: Public:Port to To.
type Published struct {
	Port uint16
	To   netip.AddrPort
}

// InvalidCounter is the named counter of the forward chain's
// `ct state invalid` drop.
const InvalidCounter = "invalid"

// DefaultNATRuleset is the NAT gateway of NATLinks: the inside server
// published on 21 and on 2121 (its port 21), ftpgate's mark 0x100/0x100.
func DefaultNATRuleset() NATRuleset {
	srv := netip.AddrPortFrom(NATInsideServer, 21)
	return NATRuleset{Table: "natgw", Wan: NATWanIf, Public: NATPublic, Inside: NATInside,
		Publish: []Published{{21, srv}, {2121, srv}}, Mark: 0x100, MarkMask: 0x100}
}

// publicPorts are the ports of the published servers: what `ct original
// proto-dst` of a DNATed control connection is (the port before DNAT).
func (r NATRuleset) publicPorts() []uint16 {
	var ps []uint16
	for _, p := range r.Publish {
		if !slices.Contains(ps, p.Port) {
			ps = append(ps, p.Port)
		}
	}
	return ps
}

// NFT renders the ruleset as `nft list table` prints it, for the docs and
// for a test that compares the netlink-built ruleset with its listing.
func (r NATRuleset) NFT() string {
	var pre, ports []string
	for _, p := range r.Publish {
		pre = append(pre, fmt.Sprintf("\t\tiifname %q ip daddr %s tcp dport %d dnat to %s\n", r.Wan, r.Public, p.Port, p.To))
	}
	for _, p := range r.publicPorts() {
		ports = append(ports, fmt.Sprint(p))
	}
	set := strings.Join(ports, ", ")
	if len(ports) > 1 {
		set = "{ " + set + " }"
	}
	return fmt.Sprintf(`table ip %[1]s {
	counter %[2]s {
		packets 0 bytes 0
	}

	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
%[3]s	}

	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname %[4]q ip saddr %[5]s masquerade
	}

	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state invalid counter name %[2]q drop
		ct state established,related accept
		iifname %[4]q ct status dnat meta l4proto tcp ct original proto-dst %[6]s accept
		iifname != %[4]q oifname %[4]q accept
		meta mark & 0x%08[7]x == 0x%08[8]x accept
	}
}
`, r.Table, InvalidCounter, strings.Join(pre, ""), r.Wan, r.Inside, set, r.MarkMask, r.Mark)
}

// NewNATGateway builds the NATLinks topology (namespaces named prefix-…)
// and applies r to its gateway; t.Cleanup removes everything.
func NewNATGateway(t testing.TB, prefix string, r NATRuleset) *Topology {
	t.Helper()
	tp := NewTopology(t, Options{Prefix: prefix, Links: NATLinks})
	if err := r.Apply(tp.Gateway); err != nil {
		t.Fatalf("NAT gateway %s: %v", tp.ID, err)
	}
	return tp
}

// nftConn opens a netlink connection to nf_tables in namespace ns.
func nftConn(ns string) (*nftables.Conn, func(), error) {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return nil, nil, fmt.Errorf("open namespace %s: %w", ns, err)
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		h.Close()
		return nil, nil, fmt.Errorf("nftables in %s: %w", ns, err)
	}
	return c, func() { h.Close() }, nil
}

// Apply creates r's table in namespace ns in one netlink batch.
func (r NATRuleset) Apply(ns string) error {
	if !r.Public.Is4() || !r.Inside.Addr().Is4() {
		return errors.New("NAT ruleset: IPv4 only")
	}
	c, done, err := nftConn(ns)
	if err != nil {
		return err
	}
	defer done()

	tb := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: r.Table})
	c.AddObj(&nftables.NamedObj{Table: tb, Name: InvalidCounter, Type: nftables.ObjTypeCounter, Obj: &expr.Counter{}})

	accept := nftables.ChainPolicyAccept
	drop := nftables.ChainPolicyDrop
	pre := c.AddChain(&nftables.Chain{Name: "prerouting", Table: tb, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest, Policy: &accept})
	post := c.AddChain(&nftables.Chain{Name: "postrouting", Table: tb, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept})
	fwd := c.AddChain(&nftables.Chain{Name: "forward", Table: tb, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &drop})

	for _, p := range r.Publish {
		e := slices.Concat(ifname(unix.NFT_META_IIFNAME, expr.CmpOpEq, r.Wan),
			ipField(16, r.Public), tcpDport(p.Port),
			[]expr.Any{
				&expr.Immediate{Register: 1, Data: p.To.Addr().AsSlice()},
				&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(p.To.Port())},
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
			})
		c.AddRule(&nftables.Rule{Table: tb, Chain: pre, Exprs: e})
	}

	mask := net4Mask(r.Inside.Bits())
	c.AddRule(&nftables.Rule{Table: tb, Chain: post, Exprs: slices.Concat(ifname(unix.NFT_META_OIFNAME, expr.CmpOpEq, r.Wan),
		[]expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: r.Inside.Masked().Addr().AsSlice()},
			&expr.Masq{},
		})})

	ports := &nftables.Set{Table: tb, Anonymous: true, Constant: true, KeyType: nftables.TypeInetService}
	var elems []nftables.SetElement
	for _, p := range r.publicPorts() {
		elems = append(elems, nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(p)})
	}
	if err := c.AddSet(ports, elems); err != nil {
		return fmt.Errorf("NAT ruleset: port set: %w", err)
	}
	for _, e := range [][]expr.Any{
		slices.Concat(ctBits(unix.NFT_CT_STATE, expr.CtStateBitINVALID),
			[]expr.Any{&expr.Objref{Type: int(nftables.ObjTypeCounter), Name: InvalidCounter}, &expr.Verdict{Kind: expr.VerdictDrop}}),
		slices.Concat(ctBits(unix.NFT_CT_STATE, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), acceptV()),
		slices.Concat(ifname(unix.NFT_META_IIFNAME, expr.CmpOpEq, r.Wan), ctBits(unix.NFT_CT_STATUS, ipsDstNAT),
			l4proto(unix.IPPROTO_TCP),
			[]expr.Any{
				&expr.Ct{Register: 1, Key: expr.CtKeyPROTODST, Direction: 0},
				&expr.Lookup{SourceRegister: 1, SetName: ports.Name, SetID: ports.ID},
			}, acceptV()),
		slices.Concat(ifname(unix.NFT_META_IIFNAME, expr.CmpOpNeq, r.Wan), ifname(unix.NFT_META_OIFNAME, expr.CmpOpEq, r.Wan), acceptV()),
		slices.Concat([]expr.Any{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(r.MarkMask), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(r.Mark)},
		}, acceptV()),
	} {
		c.AddRule(&nftables.Rule{Table: tb, Chain: fwd, Exprs: e})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("NAT ruleset: apply table %s in %s: %w", r.Table, ns, err)
	}
	return nil
}

// ipsDstNAT is conntrack's IPS_DST_NAT status bit (`ct status dnat`).
const ipsDstNAT = 1 << 5

// ifname matches the input or output interface name (meta iifname/oifname),
// padded to IFNAMSIZ as the kernel stores it.
func ifname(key expr.MetaKey, op expr.CmpOp, name string) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return []expr.Any{&expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: op, Register: 1, Data: b}}
}

// ipField matches 4 bytes of the IPv4 header at off (12 saddr, 16 daddr).
func ipField(off uint32, a netip.Addr) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a.AsSlice()},
	}
}

func l4proto(p byte) []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}}}
}

func tcpDport(port uint16) []expr.Any {
	return append(l4proto(unix.IPPROTO_TCP),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)})
}

// ctBits matches when any of bits is set in the conntrack state or status
// (both host byte order).
func ctBits(key expr.CtKey, bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: key},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

func acceptV() []expr.Any { return []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}} }

// net4Mask is the netmask of an IPv4 prefix of length bits.
func net4Mask(bits int) []byte {
	b := make([]byte, 4)
	for i := 0; i < bits; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return b
}

// NATInvalid reads the packets counted by the forward chain's
// `ct state invalid` counter of table in namespace ns.
func NATInvalid(ns, table string) (uint64, error) {
	c, done, err := nftConn(ns)
	if err != nil {
		return 0, err
	}
	defer done()
	tb := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: table}
	o, err := c.GetObject(&nftables.NamedObj{Table: tb, Name: InvalidCounter, Type: nftables.ObjTypeCounter})
	if err != nil {
		return 0, fmt.Errorf("read counter %s of table %s in %s: %w", InvalidCounter, table, ns, err)
	}
	if n, ok := o.(*nftables.NamedObj); ok {
		if ctr, ok := n.Obj.(*expr.Counter); ok {
			return ctr.Packets, nil
		}
	}
	return 0, fmt.Errorf("counter %s of table %s in %s: unexpected object %T", InvalidCounter, table, ns, o)
}
