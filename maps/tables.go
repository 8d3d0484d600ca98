package maps

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/bpf"
)

const (
	afInet  = unix.AF_INET
	afInet6 = unix.AF_INET6
)

// Kind names the command or reply that created an expectation.
type Kind uint8

// Kinds, as in the C enum kind.
const (
	KindPort = Kind(bpf.FtpgateKindKIND_PORT)
	KindEprt = Kind(bpf.FtpgateKindKIND_EPRT)
	KindPasv = Kind(bpf.FtpgateKindKIND_PASV)
	KindEpsv = Kind(bpf.FtpgateKindKIND_EPSV)
	// KindTLSRange: a data flow admitted through a TLS range (#13)
	KindTLSRange = Kind(bpf.FtpgateKindKIND_TLS_RANGE)
)

// kindNames are the C enum kind's names (KIND_PASV becomes pasv), indexed by value.
var kindNames = sync.OnceValues(func() ([]string, error) { return enumNames("kind", "KIND_", "") })

// String names the kind as the C enum does; "none" for no kind or one this
// build does not know.
func (k Kind) String() string {
	names, err := kindNames()
	if err != nil || int(k) >= len(names) || names[k] == "" {
		return "none"
	}
	return names[k]
}

// MarshalText makes Kind print as its name in JSON.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads a Kind's name.
func (k *Kind) UnmarshalText(b []byte) error {
	names, err := kindNames()
	if err != nil {
		return err
	}
	for i, name := range names {
		if name != "" && name == string(b) {
			*k = Kind(i)
			return nil
		}
	}
	return fmt.Errorf("unknown expectation kind %q", b)
}

// Addr decodes an address as stored by the programs (network order words,
// IPv4 in the first word).
func Addr(family uint8, words [4]uint32) netip.Addr {
	var b [16]byte
	for i, w := range words {
		binary.NativeEndian.PutUint32(b[4*i:], w)
	}
	if family == afInet {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16(b)
}

// Words encodes an address the way the programs store it.
func Words(a netip.Addr) (family uint8, words [4]uint32) {
	var b []byte
	if a.Is4() {
		family = afInet
		v := a.As4()
		b = v[:]
	} else {
		family = afInet6
		v := a.As16()
		b = v[:]
	}
	for i := 0; i*4 < len(b); i++ {
		words[i] = binary.NativeEndian.Uint32(b[4*i:])
	}
	return family, words
}

// Inside decodes the inside end of a NAT target (#12): where a data
// connection keyed on a public address really goes. It is the zero AddrPort
// when the target is not set (no NAT).
func Inside(family uint8, n bpf.FtpgateNatTarget) netip.AddrPort {
	if n.Set == 0 {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(Addr(family, n.Addr), n.Port)
}

// NATTarget encodes an inside end the way expectations and flows hold it;
// the zero AddrPort is no target.
func NATTarget(inside netip.AddrPort) bpf.FtpgateNatTarget {
	if !inside.IsValid() {
		return bpf.FtpgateNatTarget{}
	}
	_, w := Words(inside.Addr())
	return bpf.FtpgateNatTarget{Addr: w, Port: inside.Port(), Set: 1}
}

// Control identifies a control connection.
type Control struct {
	Client     netip.Addr `json:"client"`
	ClientPort uint16     `json:"client_port"`
	Server     netip.Addr `json:"server"`
	ServerPort uint16     `json:"server_port"`
}

// ControlFromKey decodes a control-connection key.
func ControlFromKey(k bpf.FtpgateCtrlKey) Control {
	return Control{
		Client:     Addr(k.Family, k.Client),
		ClientPort: k.ClientPort,
		Server:     Addr(k.Family, k.Server),
		ServerPort: k.ServerPort,
	}
}

// Key encodes a control connection as the map key.
func (c Control) Key() bpf.FtpgateCtrlKey {
	fam, cw := Words(c.Client)
	_, sw := Words(c.Server)
	return bpf.FtpgateCtrlKey{Family: fam, ClientPort: c.ClientPort, ServerPort: c.ServerPort, Client: cw, Server: sw}
}

// Expectation is a data connection the control channel negotiated.
type Expectation struct {
	Kind      Kind          `json:"kind"`
	Src       netip.Addr    `json:"src"`
	Dst       netip.Addr    `json:"dst"`
	DPort     uint16        `json:"dport"`
	ExpiresIn time.Duration `json:"-"`
	ExpiresMs int64         `json:"expires_in_ms"`
	Control   Control       `json:"control"`
	// Inside is where the data connection really goes when ftpgate
	// rewrote the announcement (NAT): Dst:DPort is the public end
	Inside netip.AddrPort `json:"inside,omitzero"`
	// Origin is 0 for an expectation made here, else the hash of the
	// gateway-group peer that sent it (#15, group.NodeHash)
	Origin  uint32 `json:"origin,omitempty"`
	expired bool
}

// Expired is the XDP filter's rule: an expectation admits nothing from its
// expiry on, whether or not it has been reclaimed yet.
func Expired(now, expiresNs uint64) bool { return now >= expiresNs }

// Expired reports whether the expectation can admit nothing any more.
func (e Expectation) Expired() bool { return e.expired }

// Flow is a data connection admitted through an expectation.
type Flow struct {
	Kind    Kind          `json:"kind"`
	Src     netip.Addr    `json:"src"`
	SPort   uint16        `json:"sport"`
	Dst     netip.Addr    `json:"dst"`
	DPort   uint16        `json:"dport"`
	Age     time.Duration `json:"-"`
	AgeMs   int64         `json:"age_ms"`
	IdleMs  int64         `json:"idle_ms"`
	Packets uint64        `json:"packets"`
	Bytes   uint64        `json:"bytes"`
	Closed  bool          `json:"closed"`
	Control Control       `json:"control"`
	// Inside is the inside end of a NATed data connection: Dst:DPort is
	// the public end the SYN was sent to
	Inside netip.AddrPort `json:"inside,omitzero"`
}

// Conn is a control connection and its parser state.
type Conn struct {
	Control
	AgeMs       int64  `json:"age_ms"`
	IdleMs      int64  `json:"idle_ms"`
	ClientLines uint32 `json:"client_lines"`
	ServerLines uint32 `json:"server_lines"`
	Pending     string `json:"pending"` // pasv, epsv, auth or empty
	Closing     bool   `json:"closing"`
	// Encrypted: TLS began (#13), the connection is no longer parsed;
	// TLS says how: auth (AUTH answered 234) or implicit (--ftps-port)
	Encrypted bool   `json:"encrypted"`
	TLS       string `json:"tls,omitempty"`
	// LoginReset: the login guard reset the connection (#13); it stays,
	// closed, until the closed linger, so that a retransmitted login is
	// reset again
	LoginReset bool `json:"login_reset,omitempty"`
}

// reclaimable is the one rule for when a data flow or control connection is
// finished with: closing (FIN or RST seen) and quiet for linger, which leaves
// time for listings and retransmissions, or quiet for idleLimit whatever its
// state.
func reclaimable(idle time.Duration, closing bool, linger, idleLimit time.Duration) bool {
	return (closing && idle >= linger) || idle >= idleLimit
}

// Monotonic reads CLOCK_MONOTONIC, the clock bpf_ktime_get_ns reads.
func Monotonic() (uint64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, fmt.Errorf("read monotonic clock: %w", err)
	}
	return uint64(ts.Nano()), nil
}

// Now reads ftpgate's clock: the kernel's monotonic clock plus the configured offset.
func (m *Maps) Now() (uint64, error) {
	mono, err := Monotonic()
	if err != nil {
		return 0, err
	}
	c, err := m.GetConfig()
	if err != nil {
		return 0, err
	}
	return uint64(int64(mono) + int64(c.ClockOffset)), nil
}

func since(now, then uint64) time.Duration {
	if then > now {
		return 0
	}
	return time.Duration(now - then)
}

// list decodes every entry of a table, reading the clock once.
// each passes every entry of the table name to fn, with the clock read once.
func each[K, V any](m *Maps, name string, fn func(now uint64, k K, v *V)) error {
	now, err := m.Now()
	if err != nil {
		return err
	}
	var k K
	var v V
	it := m.ByName(name).Iterate()
	for it.Next(&k, &v) {
		fn(now, k, &v)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	return nil
}

func list[K, V, E any](m *Maps, name string, decode func(now uint64, k K, v *V) E) ([]E, error) {
	var out []E
	err := each(m, name, func(now uint64, k K, v *V) { out = append(out, decode(now, k, v)) })
	return out, err
}

// stale returns the keys of the table name whose entries done says are
// finished with, without decoding the rest: the ager sweeps tables of
// hundreds of thousands of entries every few seconds.
func stale[K, V any](m *Maps, name string, done func(now uint64, v *V) bool) ([]K, error) {
	var keys []K
	err := each(m, name, func(now uint64, k K, v *V) {
		if done(now, v) {
			keys = append(keys, k)
		}
	})
	return keys, err
}

// flowState is how long a flow has been idle (since its SYN, FIN or RST, or
// any packet with accounting on) and whether it has closed.
func flowState(now uint64, v *bpf.FtpgateFlowVal) (idle time.Duration, closed bool) {
	return since(now, v.LastSeenNs), v.Flags != 0
}

// connState is how long ago a control connection's last segment was parsed
// and whether it is closing (FIN or RST seen).
func connState(now uint64, v *bpf.FtpgateCtrlVal) (idle time.Duration, closing bool) {
	cli, srv := v.Dir[bpf.FtpgateDirectionDIR_CLIENT], v.Dir[bpf.FtpgateDirectionDIR_SERVER]
	return since(now, max(cli.LastNs, srv.LastNs)), cli.Fin != 0 || srv.Fin != 0
}

// StaleExpectations returns the keys of the expired expectations.
func (m *Maps) StaleExpectations() ([]bpf.FtpgateExpectKey, error) {
	return stale[bpf.FtpgateExpectKey](m, NameExpectations, func(now uint64, v *bpf.FtpgateExpectVal) bool {
		return Expired(now, v.ExpiresNs)
	})
}

// StaleFlows returns the keys of the data flows closed for linger or idle
// for idleLimit.
func (m *Maps) StaleFlows(linger, idleLimit time.Duration) ([]bpf.FtpgateFlowKey, error) {
	return stale[bpf.FtpgateFlowKey](m, NameDataFlows, func(now uint64, v *bpf.FtpgateFlowVal) bool {
		idle, closed := flowState(now, v)
		return reclaimable(idle, closed, linger, idleLimit)
	})
}

// StaleNATOwn returns the keys of the nat_own pairs (the two directions of
// a data connection ftpgate translates itself) whose inside end sent FIN or
// RST and that carried no packet either way for linger, or none for
// idleLimit: both keys of a pair, so that the ager never leaves one half
// (an ingress half without its egress one is dropped, nat_own_half). An
// entry without its partner is judged alone.
func (m *Maps) StaleNATOwn(linger, idleLimit time.Duration) ([]bpf.FtpgateFlowKey, error) {
	entries := map[bpf.FtpgateFlowKey]bpf.FtpgateNatOwnVal{}
	var now uint64
	err := each(m, NameNATOwn, func(n uint64, k bpf.FtpgateFlowKey, v *bpf.FtpgateNatOwnVal) {
		now = n
		entries[k] = *v
	})
	if err != nil {
		return nil, err
	}
	var keys []bpf.FtpgateFlowKey
	for k, v := range entries {
		last, closed := v.LastSeenNs, v.Flags != 0
		if pk, ok := natOwnPartner(k, v); ok {
			if pv, ok := entries[pk]; ok {
				last, closed = max(last, pv.LastSeenNs), closed || pv.Flags != 0
			}
		}
		if reclaimable(since(now, last), closed, linger, idleLimit) {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// natOwnPartner gives the key of the other entry of k's pair: B (inside
// end -> peer) for an ingress entry A (peer -> public end), A for B.
func natOwnPartner(k bpf.FtpgateFlowKey, v bpf.FtpgateNatOwnVal) (bpf.FtpgateFlowKey, bool) {
	p := bpf.FtpgateFlowKey{Family: k.Family}
	switch v.Side {
	case uint8(bpf.FtpgateNatOwnSideNAT_OWN_IN):
		p.Src, p.Sport, p.Dst, p.Dport = v.Addr, v.Port, k.Src, k.Sport
	case uint8(bpf.FtpgateNatOwnSideNAT_OWN_OUT):
		p.Src, p.Sport, p.Dst, p.Dport = k.Dst, k.Dport, v.Addr, v.Port
	default:
		return p, false
	}
	return p, true
}

// StaleConns returns the keys of the control connections closing for
// linger or silent for idleLimit.
func (m *Maps) StaleConns(linger, idleLimit time.Duration) ([]bpf.FtpgateCtrlKey, error) {
	return stale[bpf.FtpgateCtrlKey](m, NameCtrlConns, func(now uint64, v *bpf.FtpgateCtrlVal) bool {
		idle, closing := connState(now, v)
		return reclaimable(idle, closing, linger, idleLimit)
	})
}

// StaleEmbryos returns the keys of the untrusted control connections silent
// for idle: a handshake that never completed, a pickup that never agreed.
func (m *Maps) StaleEmbryos(idle time.Duration) ([]bpf.FtpgateCtrlKey, error) {
	return stale[bpf.FtpgateCtrlKey](m, NameCtrlEmbryo, func(now uint64, v *bpf.FtpgateEmbryoVal) bool {
		return since(now, v.LastNs) >= idle
	})
}

// EmbryoRefill is how long a source's bucket of untrusted connections takes
// to fill up again: a bucket idle this long is full, the same as none.
var EmbryoRefill = time.Second * time.Duration(bpf.FtpgateLimitsEMBRYO_PER_SRC_BURST) /
	time.Duration(bpf.FtpgateLimitsEMBRYO_PER_SRC_PER_SEC)

// StaleSources returns the keys of the per-source buckets that are full again.
func (m *Maps) StaleSources() ([]bpf.FtpgateSrcKey, error) {
	return stale[bpf.FtpgateSrcKey](m, NameEmbryoSrcs, func(now uint64, v *bpf.FtpgateSrcBudget) bool {
		return since(now, v.LastNs) >= EmbryoRefill
	})
}

// ListExpectations lists the live and expired-but-unreclaimed expectations.
func (m *Maps) ListExpectations() ([]Expectation, error) {
	return list(m, NameExpectations, func(now uint64, k bpf.FtpgateExpectKey, v *bpf.FtpgateExpectVal) Expectation {
		left := time.Duration(int64(v.ExpiresNs) - int64(now))
		return Expectation{
			Kind:      Kind(v.Kind),
			Src:       Addr(k.Family, k.Src),
			Dst:       Addr(k.Family, k.Dst),
			DPort:     k.Dport,
			ExpiresIn: left,
			ExpiresMs: left.Milliseconds(),
			Control:   ControlFromKey(v.Ctrl),
			Inside:    Inside(k.Family, v.Nat),
			Origin:    v.Origin,
			expired:   Expired(now, v.ExpiresNs),
		}
	})
}

// AddExpectation writes e as the parser writes one, expiring ttl from now
// (e.ExpiresIn and e.ExpiresMs are ignored): for tests and tools that stand
// in for a control connection, such as the NAT rewrite's expectations with
// an inside end.
func (m *Maps) AddExpectation(e Expectation, ttl time.Duration) error {
	now, err := m.Now()
	if err != nil {
		return err
	}
	k := ExpectKey(e)
	v := bpf.FtpgateExpectVal{ExpiresNs: now + uint64(ttl), CreatedNs: now, Kind: uint8(e.Kind), Ctrl: e.Control.Key(), Nat: NATTarget(e.Inside), Origin: e.Origin}
	// #14 the gate first, as every writer of what a SYN may need, with a
	// horizon that covers ttl (syngate.go)
	if err := m.coverSYNGate(ttl); err != nil {
		return err
	}
	if err := m.MarkSYNGate(e.DPort); err != nil {
		return err
	}
	if err := m.Expectations.Put(k, v); err != nil {
		return fmt.Errorf("update %s: %w", NameExpectations, err)
	}
	return nil
}

// ExpectKey is the map key of e.
func ExpectKey(e Expectation) bpf.FtpgateExpectKey {
	fam, src := Words(e.Src)
	_, dst := Words(e.Dst)
	return bpf.FtpgateExpectKey{Family: fam, Dport: e.DPort, Src: src, Dst: dst}
}

// DeleteExpectation removes the expectation of e's key if it is still the
// one e means (a gateway-group peer consumed or removed it, #15): made by
// e's control connection, or, when e names none, tagged with e's origin.
// Keys come back (a server's next passive port may be one it used before),
// and a removal from one peer may arrive after the key's next expectation
// came from another, or was made here: that one stays. A write between the
// look-up and the delete (microseconds) is not guarded.
func (m *Maps) DeleteExpectation(e Expectation) error {
	k := ExpectKey(e)
	var v bpf.FtpgateExpectVal
	err := m.Expectations.Lookup(k, &v)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", NameExpectations, err)
	}
	if e.Control.Client.IsValid() {
		if v.Ctrl != e.Control.Key() {
			return nil
		}
	} else if v.Origin != e.Origin {
		return nil
	}
	if err := m.Expectations.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete from %s: %w", NameExpectations, err)
	}
	return nil
}

// AddFlow records f as a data flow admitted by a SYN with sequence number
// seq, as the XDP filter does when it consumes an expectation, so that
// this SYN retransmitted passes here too (a gateway-group peer admitted
// it, #15). The flow ages as any other; f's counters and ages are ignored.
func (m *Maps) AddFlow(f Flow, seq uint32) error {
	now, err := m.Now()
	if err != nil {
		return err
	}
	fam, src := Words(f.Src)
	_, dst := Words(f.Dst)
	k := bpf.FtpgateFlowKey{Family: fam, Sport: f.SPort, Dport: f.DPort, Src: src, Dst: dst}
	v := bpf.FtpgateFlowVal{CreatedNs: now, LastSeenNs: now, Kind: uint8(f.Kind), SynSeq: seq, Ctrl: f.Control.Key(), Nat: NATTarget(f.Inside)}
	// #14 the gate first: a retransmission of the flow's SYN must find the
	// port recent (syngate.go)
	if err := m.MarkSYNGate(f.DPort); err != nil {
		return err
	}
	if err := m.DataFlows.Put(k, v); err != nil {
		return fmt.Errorf("update %s: %w", NameDataFlows, err)
	}
	return nil
}

// ListFlows lists the data flows.
func (m *Maps) ListFlows() ([]Flow, error) {
	return list(m, NameDataFlows, func(now uint64, k bpf.FtpgateFlowKey, v *bpf.FtpgateFlowVal) Flow {
		idle, closed := flowState(now, v)
		return Flow{
			Kind:    Kind(v.Kind),
			Src:     Addr(k.Family, k.Src),
			SPort:   k.Sport,
			Dst:     Addr(k.Family, k.Dst),
			DPort:   k.Dport,
			Age:     since(now, v.CreatedNs),
			AgeMs:   since(now, v.CreatedNs).Milliseconds(),
			IdleMs:  idle.Milliseconds(),
			Packets: v.Packets,
			Bytes:   v.Bytes,
			Closed:  closed,
			Control: ControlFromKey(v.Ctrl),
			Inside:  Inside(k.Family, v.Nat),
		}
	})
}

// ListConns lists the control connections.
func (m *Maps) ListConns() ([]Conn, error) {
	return list(m, NameCtrlConns, func(now uint64, k bpf.FtpgateCtrlKey, v *bpf.FtpgateCtrlVal) Conn {
		cli, srv := v.Dir[bpf.FtpgateDirectionDIR_CLIENT], v.Dir[bpf.FtpgateDirectionDIR_SERVER]
		idle, closing := connState(now, v)
		c := Conn{
			Control:     ControlFromKey(k),
			AgeMs:       since(now, v.CreatedNs).Milliseconds(),
			IdleMs:      idle.Milliseconds(),
			ClientLines: cli.Lines,
			ServerLines: srv.Lines,
			Closing:     closing,
			LoginReset:  cli.LoginReset != 0,
		}
		if t := max(cli.Tls, srv.Tls); t != 0 {
			c.Encrypted, c.TLS = true, TLSState(t).String()
		}
		// the passive request at the head of the reply queue, if any
		if h := srv.Ftp.Answered; h != cli.Ftp.Queued {
			if k := cli.Ftp.Cmd[h%uint32(len(cli.Ftp.Cmd))]; k != 0 {
				c.Pending = Kind(k).String()
			}
		}
		return c
	})
}

// Embryo is a control connection not (yet) trusted: a handshake in
// progress, or one picked up mid-stream whose directions have not agreed.
type Embryo struct {
	Control
	AgeMs  int64 `json:"age_ms"`
	IdleMs int64 `json:"idle_ms"`
	// SYN: the client's SYN was seen (a handshake, not a pickup)
	SYN bool `json:"syn"`
}

// ListEmbryos lists the untrusted control connections.
func (m *Maps) ListEmbryos() ([]Embryo, error) {
	return list(m, NameCtrlEmbryo, func(now uint64, k bpf.FtpgateCtrlKey, v *bpf.FtpgateEmbryoVal) Embryo {
		return Embryo{
			Control: ControlFromKey(k),
			AgeMs:   since(now, v.CreatedNs).Milliseconds(),
			IdleMs:  since(now, v.LastNs).Milliseconds(),
			SYN:     v.Tcp[bpf.FtpgateDirectionDIR_CLIENT].Flags&uint8(bpf.FtpgateTcpTrackFlagsTCP_SYN_SEEN) != 0,
		}
	})
}

// Fill counts the entries of a hash map (for status and metrics).
func (m *Maps) Fill(name string) (int, error) {
	mp := m.ByName(name)
	if mp == nil {
		return 0, fmt.Errorf("no map %q", name)
	}
	n := 0
	it := mp.Iterate()
	var k, v []byte
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("count %s: %w", name, err)
	}
	return n, nil
}
