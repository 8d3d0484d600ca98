package maps

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/bpf"
)

// PortScope is a control port parsed only towards the servers of Prefix:
// "2121@198.51.100.0/24".
type PortScope struct {
	Port   uint16       `json:"port"`
	Prefix netip.Prefix `json:"prefix"`
}

func (p PortScope) String() string { return fmt.Sprintf("%d@%s", p.Port, p.Prefix) }

// ScopeExample is the form a scoped port is written in, for error messages.
const ScopeExample = "PORT@ADDR/LEN, e.g. 2121@198.51.100.0/24"

// ParsePortScopes reads PORT (global: ok false) or PORT@PREFIX[@PREFIX...].
// Errors say what was wrong with s, not where it came from.
func ParsePortScopes(s string) (port uint16, scopes []PortScope, err error) {
	ps, rest, scoped := strings.Cut(s, "@")
	n, err := strconv.Atoi(ps)
	if err != nil {
		return 0, nil, fmt.Errorf("%q is not a port; write PORT or %s", ps, ScopeExample)
	}
	if err := ValidPort(n); err != nil {
		return 0, nil, err
	}
	if !scoped {
		return uint16(n), nil, nil
	}
	for _, a := range strings.Split(rest, "@") {
		pfx, err := netip.ParsePrefix(a)
		if err != nil {
			return 0, nil, fmt.Errorf("%q is not a prefix; write %s", a, ScopeExample)
		}
		scopes = append(scopes, PortScope{uint16(n), pfx.Masked()})
	}
	return uint16(n), scopes, nil
}

// ScopeSet is the server prefixes of scoped control ports: the LPM trie
// ctrl_scopes, with PORT_SCOPED set in ctrl_ports while a port has one.
type ScopeSet struct {
	trie  *ebpf.Map
	ports PortSet
}

// CtrlScopes is the set of scoped control ports.
func (m *Maps) CtrlScopes() ScopeSet { return ScopeSet{m.ctrlScopes, m.CtrlPorts()} }

func scopeKey(p PortScope) bpf.FtpgateScopeKey {
	family, words := Words(p.Prefix.Addr())
	return bpf.FtpgateScopeKey{
		Prefixlen: uint32(bpf.FtpgateLimitsSCOPE_KEY_BASE_BITS) + uint32(p.Prefix.Bits()),
		Port:      p.Port,
		Family:    family,
		Addr:      words,
	}
}

func scopeOf(k bpf.FtpgateScopeKey) PortScope {
	a := Addr(k.Family, k.Addr)
	return PortScope{k.Port, netip.PrefixFrom(a, int(k.Prefixlen)-int(bpf.FtpgateLimitsSCOPE_KEY_BASE_BITS))}
}

// Add makes p.Port a control port towards the servers of p.Prefix; it takes
// effect for the next packet.
func (s ScopeSet) Add(p PortScope) error {
	if err := ValidPort(int(p.Port)); err != nil {
		return err
	}
	if !p.Prefix.IsValid() {
		return fmt.Errorf("port %d: no prefix; write %s", p.Port, ScopeExample)
	}
	p.Prefix = p.Prefix.Masked()
	if err := s.trie.Put(scopeKey(p), bpf.FtpgatePortVal{Enabled: portScoped}); err != nil {
		if errors.Is(err, unix.ENOSPC) {
			return fmt.Errorf("add %s: %s is full (%d prefixes): delete one first", p, NameCtrlScopes, MaxPortScopes)
		}
		return fmt.Errorf("update %s[%s]: %w", NameCtrlScopes, p, err)
	}
	return s.ports.change(p.Port, portScoped, 0)
}

// Del removes one prefix of a scoped port; the port stops being scoped with
// its last prefix. A prefix that is not there is not an error.
func (s ScopeSet) Del(p PortScope) error {
	p.Prefix = p.Prefix.Masked()
	if err := s.trie.Delete(scopeKey(p)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete %s[%s]: %w", NameCtrlScopes, p, err)
	}
	all, err := s.List()
	if err != nil {
		return err
	}
	if slices.ContainsFunc(all, func(q PortScope) bool { return q.Port == p.Port }) {
		return nil
	}
	return s.ports.change(p.Port, 0, portScoped)
}

// List returns every scoped port and prefix, by port, then IPv4 before IPv6,
// then address.
func (s ScopeSet) List() ([]PortScope, error) {
	var out []PortScope
	var k bpf.FtpgateScopeKey
	var v bpf.FtpgatePortVal
	it := s.trie.Iterate()
	for it.Next(&k, &v) {
		out = append(out, scopeOf(k))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", NameCtrlScopes, err)
	}
	slices.SortFunc(out, func(a, b PortScope) int {
		return cmp.Or(cmp.Compare(a.Port, b.Port), a.Prefix.Addr().Compare(b.Prefix.Addr()), cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()))
	})
	return out, nil
}

// Replace makes the scopes exactly scopes.
func (s ScopeSet) Replace(scopes []PortScope) error {
	cur, err := s.List()
	if err != nil {
		return err
	}
	return replaceSet(cur, scopes, s.Del, s.Add)
}
