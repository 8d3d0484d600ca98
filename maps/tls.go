package maps

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/bpf"
)

// #13 FTPS: servers' declared passive ranges and the (client, server) pairs
// with live encrypted control connections. docs/ftps.md has the design.

// TLSRangesPerServer is how many ranges one server may declare.
const TLSRangesPerServer = int(bpf.FtpgateLimitsTLS_RANGES_PER_SERVER)

// TLSState says how a control connection became encrypted.
type TLSState uint8

// The states of enum tls_state.
const (
	TLSNone     = TLSState(bpf.FtpgateTlsStateTLS_NONE)
	TLSAuth     = TLSState(bpf.FtpgateTlsStateTLS_AUTH)
	TLSImplicit = TLSState(bpf.FtpgateTlsStateTLS_IMPLICIT)
)

func (t TLSState) String() string {
	switch t {
	case TLSNone:
		return "none"
	case TLSAuth:
		return "auth"
	case TLSImplicit:
		return "implicit"
	}
	return fmt.Sprintf("tls(%d)", uint8(t))
}

// TLSRange is a server's passive port range, both ends included: a SYN to
// Server on a port in it is admitted only while its client has a live
// encrypted control connection to Server.
type TLSRange struct {
	Server netip.Addr `json:"server"`
	Lo     uint16     `json:"lo"`
	Hi     uint16     `json:"hi"`
}

// String is the form ParseTLSRange reads: 198.51.100.2:30000-30099 or
// [2001:db8::2]:30000-30099.
func (r TLSRange) String() string {
	return netip.AddrPortFrom(r.Server, r.Lo).String() + "-" + strconv.Itoa(int(r.Hi))
}

// tlsRangeForm is what the one line of a refused range says to write.
const tlsRangeForm = "write SERVER:LO-HI, e.g. 198.51.100.2:30000-30099 or [2001:db8::2]:30000-30099"

// ParseTLSRange reads SERVER:LO-HI. A bad one gets one line that says what
// to write instead.
func ParseTLSRange(s string) (TLSRange, error) {
	bad := func(why string) (TLSRange, error) {
		return TLSRange{}, fmt.Errorf("tls range %q: %s: %s", s, why, tlsRangeForm)
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return bad("no port range")
	}
	host, ports := s[:i], s[i+1:]
	if strings.HasPrefix(host, "[") != strings.HasSuffix(host, "]") {
		return bad("unbalanced brackets")
	}
	bracketed := strings.HasPrefix(host, "[")
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" {
		return bad("not an IP address")
	}
	if a.Is6() && !bracketed {
		return bad("an IPv6 address goes in brackets")
	}
	if a.Is4() && bracketed {
		return bad("an IPv4 address goes without brackets")
	}
	a = a.Unmap() // the tables hold an IPv4-mapped address as IPv4, as the packets carry it
	if a.IsUnspecified() || a.IsMulticast() {
		return bad("not a server's address")
	}
	loS, hiS, ok := strings.Cut(ports, "-")
	if !ok {
		return bad("no range (LO-HI)")
	}
	lo, err1 := strconv.ParseUint(loS, 10, 16)
	hi, err2 := strconv.ParseUint(hiS, 10, 16)
	if err1 != nil || err2 != nil || lo < 1 {
		return bad("ports are 1-65535")
	}
	if lo > hi {
		return bad("LO is above HI")
	}
	if lo < 1024 {
		// a range opens its ports to every client with a session: never a system service's
		return bad("ports below 1024 are system services (FTP's own among them), never a passive range")
	}
	return TLSRange{Server: a, Lo: uint16(lo), Hi: uint16(hi)}, nil
}

// TLSRangeSet is the tls_ranges map: each server's declared ranges.
type TLSRangeSet struct {
	m    *ebpf.Map
	maps *Maps
}

// TLSRanges is the set of declared TLS ranges.
func (m *Maps) TLSRanges() TLSRangeSet { return TLSRangeSet{m.tlsRanges, m} }

// syncDeclared sets config.tls_ranges to whether any range is declared: XDP
// looks tls_ranges up only while it is set. Called after each change: a SYN
// in between meets the old bit, which at worst drops it as unexpected.
func (t TLSRangeSet) syncDeclared() error {
	var k bpf.FtpgateTlsServerKey
	var v bpf.FtpgateTlsRangeVal
	it := t.m.Iterate()
	declared := it.Next(&k, &v)
	if err := it.Err(); err != nil {
		return fmt.Errorf("read %s: %w", NameTLSRanges, err)
	}
	c, err := t.maps.GetConfig()
	if err != nil || c.TLSRanges == declared {
		return err
	}
	c.TLSRanges = declared
	return t.maps.putConfig(c)
}

func tlsServerKey(a netip.Addr) bpf.FtpgateTlsServerKey {
	fam, w := Words(a)
	return bpf.FtpgateTlsServerKey{Family: fam, Addr: w}
}

func (t TLSRangeSet) get(a netip.Addr) (bpf.FtpgateTlsRangeVal, error) {
	var v bpf.FtpgateTlsRangeVal
	err := t.m.Lookup(tlsServerKey(a), &v)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return v, nil
	}
	if err != nil {
		return v, fmt.Errorf("look up %s[%s]: %w", NameTLSRanges, a, err)
	}
	return v, nil
}

func (t TLSRangeSet) put(a netip.Addr, v bpf.FtpgateTlsRangeVal) error {
	var err error
	if v.N == 0 {
		err = t.m.Delete(tlsServerKey(a))
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			err = nil
		}
	} else {
		err = t.m.Put(tlsServerKey(a), v)
	}
	if err != nil {
		return fmt.Errorf("update %s[%s]: %w", NameTLSRanges, a, err)
	}
	return t.syncDeclared()
}

// Add declares r; it takes effect for the next SYN. A range already
// declared is not added twice.
func (t TLSRangeSet) Add(r TLSRange) error {
	ctrl, err := t.maps.CtrlPorts().List()
	if err != nil {
		return err
	}
	for _, p := range ctrl {
		if r.Lo <= p && p <= r.Hi {
			return fmt.Errorf("add tls range %s: it holds control port %d, whose connections the range would admit unparsed: leave the control ports out", r, p)
		}
	}
	v, err := t.get(r.Server)
	if err != nil {
		return err
	}
	n := int(min(v.N, uint32(TLSRangesPerServer)))
	for _, have := range v.R[:n] {
		if have.Lo == r.Lo && have.Hi == r.Hi {
			return nil
		}
	}
	if n == TLSRangesPerServer {
		return fmt.Errorf("add tls range %s: %s has %d ranges, the most one server holds: delete one first", r, r.Server, TLSRangesPerServer)
	}
	v.R[n] = bpf.FtpgateTlsPortRange{Lo: r.Lo, Hi: r.Hi}
	v.N = uint32(n + 1)
	if err := t.put(r.Server, v); err != nil {
		if errors.Is(err, unix.E2BIG) {
			return fmt.Errorf("add tls range %s: %s is full (%d servers): delete one first", r, NameTLSRanges, t.m.MaxEntries())
		}
		return err
	}
	return nil
}

// Del removes the declared range r (the same LO and HI).
func (t TLSRangeSet) Del(r TLSRange) error {
	v, err := t.get(r.Server)
	if err != nil {
		return err
	}
	n := int(min(v.N, uint32(TLSRangesPerServer)))
	i := slices.IndexFunc(v.R[:n], func(p bpf.FtpgateTlsPortRange) bool { return p.Lo == r.Lo && p.Hi == r.Hi })
	if i < 0 {
		return fmt.Errorf("delete tls range %s: not declared (`ftpgate tls-range` lists them)", r)
	}
	copy(v.R[i:n], v.R[i+1:n])
	v.R[n-1] = bpf.FtpgateTlsPortRange{}
	v.N = uint32(n - 1)
	return t.put(r.Server, v)
}

// List returns the declared ranges, by server, then port.
func (t TLSRangeSet) List() ([]TLSRange, error) {
	var out []TLSRange
	var k bpf.FtpgateTlsServerKey
	var v bpf.FtpgateTlsRangeVal
	it := t.m.Iterate()
	for it.Next(&k, &v) {
		a := Addr(k.Family, k.Addr)
		for _, p := range v.R[:min(v.N, uint32(TLSRangesPerServer))] {
			out = append(out, TLSRange{Server: a, Lo: p.Lo, Hi: p.Hi})
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", NameTLSRanges, err)
	}
	slices.SortFunc(out, func(a, b TLSRange) int {
		return cmp.Or(a.Server.Compare(b.Server), cmp.Compare(a.Lo, b.Lo), cmp.Compare(a.Hi, b.Hi))
	})
	return out, nil
}

// Replace makes the declared ranges exactly rs.
func (t TLSRangeSet) Replace(rs []TLSRange) error {
	cur, err := t.List()
	if err != nil {
		return err
	}
	if err := replaceSet(cur, rs, t.Del, t.Add); err != nil {
		return err
	}
	return t.syncDeclared()
}

// TLSSession is a (client, server) pair with encrypted control connections.
type TLSSession struct {
	Client netip.Addr `json:"client"`
	Server netip.Addr `json:"server"`
	// Live is how many of their encrypted control connections have not
	// closed; zero when the ager has not yet removed the pair
	Live   uint32 `json:"live"`
	IdleMs int64  `json:"idle_ms"`
}

// ListTLSSessions lists the pairs.
func (m *Maps) ListTLSSessions() ([]TLSSession, error) {
	return list(m, NameTLSSessions, func(now uint64, k bpf.FtpgateTlsSessionKey, v *bpf.FtpgateTlsSessionVal) TLSSession {
		return TLSSession{Client: Addr(k.Family, k.Client), Server: Addr(k.Family, k.Server), Live: v.Live, IdleMs: since(now, v.LastNs).Milliseconds()}
	})
}

// tlsPair is the tls_sessions key of a control connection.
func tlsPair(k bpf.FtpgateCtrlKey) bpf.FtpgateTlsSessionKey {
	return bpf.FtpgateTlsSessionKey{Family: k.Family, Client: k.Client, Server: k.Server}
}

// RecountTLSSessions makes tls_sessions agree with ctrl_conns for the pairs
// TC has not touched for settle: TC counts a connection in when it becomes
// encrypted and out at its first FIN or RST, but a connection the ager
// reclaimed while silent, or one whose entry was lost, is never counted out
// by TC. A pair with no live encrypted connection is deleted; a pair whose
// count is wrong gets the right one; a pair with live encrypted connections
// but no entry (a race below, or a full table then) gets one. Pairs changed
// within settle are left alone: TC may be counting them this instant.
//
// BPF counts with atomic adds and stamps last_ns at each change, and this
// read-then-write cannot be atomic with them: each write is preceded by a
// fresh read, and skipped when the entry changed since the scan (TC's count
// is then newer than ours); a change in the microseconds between that read
// and the write can still be lost. Every such loss closes, never opens: a
// live pair deleted or counted low loses its ranges until the next pass
// recreates or corrects it (an entry is only created with BPF_NOEXIST,
// after the connection is read again as live and encrypted). Returns how
// many entries were deleted, corrected or created.
func (m *Maps) RecountTLSSessions(settle time.Duration) (int, error) {
	type pair struct {
		live uint32
		conn bpf.FtpgateCtrlKey // one of its live encrypted connections
	}
	live := map[bpf.FtpgateTlsSessionKey]pair{}
	err := each(m, NameCtrlConns, func(_ uint64, k bpf.FtpgateCtrlKey, v *bpf.FtpgateCtrlVal) {
		if liveEncrypted(v) {
			p := live[tlsPair(k)]
			live[tlsPair(k)] = pair{p.live + 1, k}
		}
	})
	if err != nil {
		return 0, err
	}
	type fix struct {
		k    bpf.FtpgateTlsSessionKey
		live uint32
		seen bpf.FtpgateTlsSessionVal // as the scan read it
	}
	var fixes []fix
	have := map[bpf.FtpgateTlsSessionKey]bool{}
	err = each(m, NameTLSSessions, func(now uint64, k bpf.FtpgateTlsSessionKey, v *bpf.FtpgateTlsSessionVal) {
		have[k] = true
		if since(now, v.LastNs) < settle || v.Live == live[k].live && v.Live != 0 {
			return
		}
		fixes = append(fixes, fix{k, live[k].live, *v})
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, f := range fixes {
		var v bpf.FtpgateTlsSessionVal
		err := m.TLSSessions.Lookup(f.k, &v)
		if err == nil && (v.LastNs != f.seen.LastNs || v.Live != f.seen.Live) {
			continue // TC changed it since the scan
		}
		if err == nil {
			if f.live == 0 {
				err = m.TLSSessions.Delete(f.k)
			} else {
				v.Live = f.live
				err = m.TLSSessions.Update(f.k, v, ebpf.UpdateExist)
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("recount %s: %w", NameTLSSessions, err)
		}
		n++
	}
	now, err := m.Now()
	if err != nil {
		return n, err
	}
	for k, p := range live {
		if have[k] {
			continue
		}
		var cv bpf.FtpgateCtrlVal
		if err := m.CtrlConns.Lookup(p.conn, &cv); err != nil || !liveEncrypted(&cv) {
			continue
		}
		err := m.TLSSessions.Update(k, bpf.FtpgateTlsSessionVal{Live: p.live, LastNs: now}, ebpf.UpdateNoExist)
		if errors.Is(err, ebpf.ErrKeyExist) || errors.Is(err, unix.E2BIG) {
			continue // TC made it first, or the table is full (tls_session_full)
		}
		if err != nil {
			return n, fmt.Errorf("recount %s: %w", NameTLSSessions, err)
		}
		n++
	}
	return n, nil
}

// liveEncrypted tells whether a control connection counts in its pair's
// live sessions: encrypted, and neither direction closed.
func liveEncrypted(v *bpf.FtpgateCtrlVal) bool {
	cli, srv := v.Dir[bpf.FtpgateDirectionDIR_CLIENT], v.Dir[bpf.FtpgateDirectionDIR_SERVER]
	return (cli.Tls != 0 || srv.Tls != 0) && cli.Fin == 0 && srv.Fin == 0
}
