package maps

import (
	"fmt"
	"time"

	"github.com/ftpgate/ftpgate/bpf"
)

// Limits shared with the BPF programs, taken from the generated bindings.
const (
	MaxScanBytes     = int(bpf.FtpgateLimitsMAX_SCAN_BYTES)
	MaxLines         = int(bpf.FtpgateLimitsMAX_LINES)
	MaxLineLen       = int(bpf.FtpgateLimitsMAX_LINE_LEN)
	MaxExpectPerConn = int(bpf.FtpgateLimitsMAX_EXPECT_PER_CONN)
	ExpectSlots      = int(bpf.FtpgateLimitsEXPECT_SLOTS)
	MaxVLANTags      = int(bpf.FtpgateLimitsMAX_VLAN_TAGS)
	MaxIPv6Ext       = int(bpf.FtpgateLimitsMAX_IPV6EXT)
	LowPortLimit     = int(bpf.FtpgateLimitsLOW_PORT_LIMIT)
	EPRTDelimMin     = byte(bpf.FtpgateLimitsEPRT_DELIM_MIN)
	EPRTDelimMax     = byte(bpf.FtpgateLimitsEPRT_DELIM_MAX)
	MaxTableEntries  = int(bpf.FtpgateLimitsMAX_TABLE_ENTRIES)
	MaxPortScopes    = int(bpf.FtpgateLimitsMAX_PORT_SCOPES)
	// rejection and dropped-SYN events: a burst, then this many a second
	RejectEventsBurst  = int(bpf.FtpgateLimitsREJECT_EVENTS_BURST)
	RejectEventsPerSec = int(bpf.FtpgateLimitsREJECT_EVENTS_PER_SEC)
)

// Defaults of the run-time settings, from the C definitions.
const (
	DefaultExpectTimeout    = time.Duration(bpf.FtpgateLimitsDEFAULT_EXPECT_TIMEOUT_SEC) * time.Second
	DefaultMaxExpectPerConn = int(bpf.FtpgateLimitsDEFAULT_MAX_EXPECT_PER_CONN)
)

// Config is the run-time configuration the programs read on every decision.
type Config struct {
	ExpectTimeout     time.Duration
	ClockOffset       time.Duration // added to the kernel clock: tests and replay
	MaxExpectPerConn  int
	FwmarkValue       uint32
	FwmarkMask        uint32
	Loose             bool
	DryRun            bool
	Accounting        bool
	AllowLowDataPorts bool
	RPCheck           RPCheck
	// ReplayPieces is set by replay only: a frame shorter than its IP
	// length is the unread tail of a super-segment, not a forgery
	ReplayPieces bool
	// NAT is how data connections of rewritten announcements reach the
	// inside end (#12); NATOff, the zero value, rewrites nothing
	NAT NATMode
	// RequireTLS resets a control connection whose USER or PASS comes
	// before TLS, both ends (#13)
	RequireTLS bool
	// TLSRanges and TLSSeen are not settings: the range set (some
	// --tls-range declared) and TC (an encrypted session began) keep them,
	// SetConfig keeps what the map holds. While clear, XDP skips its
	// tls_ranges and tls_sessions look-ups for a SYN nothing admitted (#13).
	TLSRanges bool
	TLSSeen   bool
	// SYNGateHorizon is not a setting either: the Go side keeps it
	// (syngate.go), SetConfig only ever raises it. Zero: the SYN gate is
	// off, XDP looks every SYN up (#14).
	SYNGateHorizon time.Duration
	// SyncHold is run's --sync-hold (#15, only with --group, never with
	// --nat): TC drops a control segment that makes an expectation once,
	// the sender's retransmission passes (docs/group.md, "Hold")
	SyncHold bool
}

// RPCheck is the reverse-path check of control segments; the zero value,
// the default, is strict.
type RPCheck uint8

// The reverse-path modes, from the C definitions.
const (
	RPStrict = RPCheck(bpf.FtpgateRpCheckRP_STRICT)
	RPLoose  = RPCheck(bpf.FtpgateRpCheckRP_LOOSE)
	RPOff    = RPCheck(bpf.FtpgateRpCheckRP_OFF)
)

var rpCheckNames = map[RPCheck]string{RPStrict: "strict", RPLoose: "loose", RPOff: "off"}

func (r RPCheck) String() string {
	if n, ok := rpCheckNames[r]; ok {
		return n
	}
	return fmt.Sprintf("rp-check(%d)", uint8(r))
}

// ParseRPCheck reads strict, loose or off.
func ParseRPCheck(s string) (RPCheck, error) {
	for r, n := range rpCheckNames {
		if n == s {
			return r, nil
		}
	}
	return 0, fmt.Errorf("rp-check %q: use strict, loose or off", s)
}

// NATMode is the NAT mechanism the programs run: the loader turns the
// operator's setting (on, off or a forced mechanism) into one of these per
// kernel.
type NATMode uint8

// The NAT mechanisms, from the C definitions.
const (
	NATOff = NATMode(bpf.FtpgateNatModeNAT_OFF)
	NATCT  = NATMode(bpf.FtpgateNatModeNAT_CT)
	NATOwn = NATMode(bpf.FtpgateNatModeNAT_OWN)
)

var natModeNames = map[NATMode]string{NATOff: "off", NATCT: "conntrack", NATOwn: "own"}

func (n NATMode) String() string {
	if s, ok := natModeNames[n]; ok {
		return s
	}
	return fmt.Sprintf("nat(%d)", uint8(n))
}

// DefaultConfig is what `ftpgate run` applies without flags.
func DefaultConfig() Config {
	return Config{ExpectTimeout: DefaultExpectTimeout, MaxExpectPerConn: DefaultMaxExpectPerConn}
}

// Validate checks the ranges the programs rely on.
func (c Config) Validate() error {
	if c.ExpectTimeout <= 0 {
		return fmt.Errorf("expect timeout %v must be positive", c.ExpectTimeout)
	}
	if c.MaxExpectPerConn < 1 || c.MaxExpectPerConn > MaxExpectPerConn {
		return fmt.Errorf("max expectations per connection %d is out of range: use 1-%d", c.MaxExpectPerConn, MaxExpectPerConn)
	}
	if _, ok := rpCheckNames[c.RPCheck]; !ok {
		return fmt.Errorf("%v is not a reverse-path mode: use strict, loose or off", c.RPCheck)
	}
	if _, ok := natModeNames[c.NAT]; !ok {
		return fmt.Errorf("%v is not a NAT mechanism: use off, conntrack or own", c.NAT)
	}
	return nil
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// configToBPF and configFromBPF are the one mapping between Config and the
// struct the programs read; a field added to struct config_val gets its line
// in both (TestConfigRoundTrip fails until it has).
func configToBPF(c Config) bpf.FtpgateConfigVal {
	return bpf.FtpgateConfigVal{
		ExpectTimeoutNs:   uint64(c.ExpectTimeout),
		ClockOffsetNs:     int64(c.ClockOffset),
		MaxExpectPerConn:  uint32(c.MaxExpectPerConn),
		FwmarkValue:       c.FwmarkValue,
		FwmarkMask:        c.FwmarkMask,
		Loose:             b2u(c.Loose),
		DryRun:            b2u(c.DryRun),
		Accounting:        b2u(c.Accounting),
		AllowLowDataPorts: b2u(c.AllowLowDataPorts),
		RpCheck:           uint8(c.RPCheck),
		ReplayPieces:      b2u(c.ReplayPieces),
		Nat:               uint8(c.NAT),
		RequireTls:        b2u(c.RequireTLS),
		TlsRanges:         b2u(c.TLSRanges),
		TlsSeen:           b2u(c.TLSSeen),
		SynGateHorizonS:   uint16(c.SYNGateHorizon / time.Second),
		SyncHold:          b2u(c.SyncHold),
	}
}

func configFromBPF(v bpf.FtpgateConfigVal) Config {
	return Config{
		ExpectTimeout:     time.Duration(v.ExpectTimeoutNs),
		ClockOffset:       time.Duration(v.ClockOffsetNs),
		MaxExpectPerConn:  int(v.MaxExpectPerConn),
		FwmarkValue:       v.FwmarkValue,
		FwmarkMask:        v.FwmarkMask,
		Loose:             v.Loose != 0,
		DryRun:            v.DryRun != 0,
		Accounting:        v.Accounting != 0,
		AllowLowDataPorts: v.AllowLowDataPorts != 0,
		RPCheck:           RPCheck(v.RpCheck),
		ReplayPieces:      v.ReplayPieces != 0,
		NAT:               NATMode(v.Nat),
		RequireTLS:        v.RequireTls != 0,
		TLSRanges:         v.TlsRanges != 0,
		TLSSeen:           v.TlsSeen != 0,
		SYNGateHorizon:    time.Duration(v.SynGateHorizonS) * time.Second,
		SyncHold:          v.SyncHold != 0,
	}
}

// SetConfig writes the configuration; the programs use it from the next packet.
func (m *Maps) SetConfig(c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	cur, err := m.GetConfig()
	if err != nil {
		return err
	}
	c.TLSRanges, c.TLSSeen = cur.TLSRanges, cur.TLSSeen
	c.SYNGateHorizon = raiseHorizon(cur.SYNGateHorizon, c.ExpectTimeout)
	return m.putConfig(c)
}

// putConfig writes c over a fresh read of what the programs and the other
// writers keep: the SYN gate's horizon is never lowered here (off, zero,
// wins: it only costs look-ups) and tls_seen, which TC sets, is never
// cleared. A writer that read the config long before, such as a command
// that met a `config set` raising the expect timeout in between, can then
// put back its other fields but not a horizon too short for the
// expectations made since (review of #14, finding 3). A read and a write
// of the one array entry still leave microseconds between them.
func (m *Maps) putConfig(c Config) error {
	cur, err := m.GetConfig()
	if err != nil {
		return err
	}
	if c.SYNGateHorizon == 0 || cur.SYNGateHorizon == 0 {
		c.SYNGateHorizon = 0
	} else {
		c.SYNGateHorizon = max(c.SYNGateHorizon, cur.SYNGateHorizon)
	}
	c.TLSSeen = c.TLSSeen || cur.TLSSeen
	return m.writeConfig(c)
}

// writeConfig writes c as it is: for EnableSYNGate, which turns the gate
// on, and for tests that set the bits putConfig keeps.
func (m *Maps) writeConfig(c Config) error {
	if err := m.Config.Put(uint32(0), configToBPF(c)); err != nil {
		return fmt.Errorf("update %s: %w", NameConfig, err)
	}
	return nil
}

// SetTLSLookups writes config.tls_ranges and config.tls_seen, which the range
// set and TC keep otherwise: for tests and benchmarks that fill tls_ranges
// and tls_sessions directly.
func (m *Maps) SetTLSLookups(ranges, seen bool) error {
	c, err := m.GetConfig()
	if err != nil {
		return err
	}
	c.TLSRanges, c.TLSSeen = ranges, seen
	return m.writeConfig(c)
}

// GetConfig reads the configuration.
func (m *Maps) GetConfig() (Config, error) {
	var v bpf.FtpgateConfigVal
	if err := m.Config.Lookup(uint32(0), &v); err != nil {
		return Config{}, fmt.Errorf("read %s: %w", NameConfig, err)
	}
	return configFromBPF(v), nil
}

// SetClockOffset changes only the clock offset (replay and tests move time).
// It does not validate: a config never written holds zeros, which the
// programs read as the defaults, and must stay so.
func (m *Maps) SetClockOffset(d time.Duration) error {
	c, err := m.GetConfig()
	if err != nil {
		return err
	}
	c.ClockOffset = d
	return m.putConfig(c)
}
