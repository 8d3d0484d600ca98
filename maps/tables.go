package maps

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

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
)

func (k Kind) String() string {
	switch k {
	case KindPort:
		return "port"
	case KindEprt:
		return "eprt"
	case KindPasv:
		return "pasv"
	case KindEpsv:
		return "epsv"
	}
	return "none"
}

// MarshalText makes Kind print as its name in JSON.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads a Kind's name.
func (k *Kind) UnmarshalText(b []byte) error {
	for _, c := range []Kind{0, KindPort, KindEprt, KindPasv, KindEpsv} {
		if c.String() == string(b) {
			*k = c
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
}

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
	idle    time.Duration
}

// Idle is how long ago the flow was last seen (SYN, FIN or RST, or any packet
// with accounting on).
func (f Flow) Idle() time.Duration { return f.idle }

// Conn is a control connection and its parser state.
type Conn struct {
	Control
	AgeMs       int64  `json:"age_ms"`
	IdleMs      int64  `json:"idle_ms"`
	ClientLines uint32 `json:"client_lines"`
	ServerLines uint32 `json:"server_lines"`
	Pending     string `json:"pending"` // pasv, epsv or empty
	Closing     bool   `json:"closing"`
	idle        time.Duration
}

// Idle is how long ago the last segment of the connection was parsed.
func (c Conn) Idle() time.Duration { return c.idle }

// Now reads ftpgate's clock: the kernel's monotonic clock plus the configured offset.
func (m *Maps) Now() (uint64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, fmt.Errorf("read monotonic clock: %w", err)
	}
	c, err := m.GetConfig()
	if err != nil {
		return 0, err
	}
	return uint64(ts.Nano() + int64(c.ClockOffset)), nil
}

func since(now, then uint64) time.Duration {
	if then > now {
		return 0
	}
	return time.Duration(now - then)
}

// ListExpectations lists the live and expired-but-unreclaimed expectations.
func (m *Maps) ListExpectations() ([]Expectation, error) {
	now, err := m.Now()
	if err != nil {
		return nil, err
	}
	var out []Expectation
	var k bpf.FtpgateExpectKey
	var v bpf.FtpgateExpectVal
	it := m.Expectations.Iterate()
	for it.Next(&k, &v) {
		left := time.Duration(int64(v.ExpiresNs) - int64(now))
		out = append(out, Expectation{
			Kind:      Kind(v.Kind),
			Src:       Addr(k.Family, k.Src),
			Dst:       Addr(k.Family, k.Dst),
			DPort:     k.Dport,
			ExpiresIn: left,
			ExpiresMs: left.Milliseconds(),
			Control:   ControlFromKey(v.Ctrl),
		})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", NameExpectations, err)
	}
	return out, nil
}

// ListFlows lists the data flows.
func (m *Maps) ListFlows() ([]Flow, error) {
	now, err := m.Now()
	if err != nil {
		return nil, err
	}
	var out []Flow
	var k bpf.FtpgateFlowKey
	var v bpf.FtpgateFlowVal
	it := m.DataFlows.Iterate()
	for it.Next(&k, &v) {
		idle := since(now, v.LastSeenNs)
		out = append(out, Flow{
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
			Closed:  v.Flags != 0,
			Control: ControlFromKey(v.Ctrl),
			idle:    idle,
		})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", NameDataFlows, err)
	}
	return out, nil
}

// ListConns lists the control connections.
func (m *Maps) ListConns() ([]Conn, error) {
	now, err := m.Now()
	if err != nil {
		return nil, err
	}
	var out []Conn
	var k bpf.FtpgateCtrlKey
	var v bpf.FtpgateCtrlVal
	it := m.CtrlConns.Iterate()
	for it.Next(&k, &v) {
		cli, srv := v.Dir[bpf.FtpgateDirectionDIR_CLIENT], v.Dir[bpf.FtpgateDirectionDIR_SERVER]
		last := max(cli.LastNs, srv.LastNs)
		c := Conn{
			Control:     ControlFromKey(k),
			AgeMs:       since(now, v.CreatedNs).Milliseconds(),
			IdleMs:      since(now, last).Milliseconds(),
			ClientLines: cli.Lines,
			ServerLines: srv.Lines,
			Closing:     cli.Fin != 0 || srv.Fin != 0,
			idle:        since(now, last),
		}
		if cli.PasvKind != 0 && cli.PasvGen != srv.PasvGen {
			c.Pending = Kind(cli.PasvKind).String()
		}
		out = append(out, c)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", NameCtrlConns, err)
	}
	return out, nil
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
