// Package maps gives typed views of ftpgate's BPF maps: port sets, control
// connections, expectations, data flows, counters and the run-time config.
// It works on maps loaded by this process or opened from their pins, and uses
// the types bpf2go generates from the C definitions, never a copy of them.
package maps

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"

	"github.com/cilium/ebpf"

	"github.com/ftpgate/ftpgate/bpf"
)

// Pinned file names under the pin directory: an operator interface.
const (
	NameCtrlPorts    = "ctrl_ports"
	NameAllowPorts   = "allow_ports"
	NameCtrlScopes   = "ctrl_scopes"
	NameCtrlConns    = "ctrl_conns"
	NameExpectations = "expectations"
	NameDataFlows    = "data_flows"
	NameStats        = "stats"
	NameConfig       = "config"
	NameEvents       = "events"
	NameGuardedIfs   = "guarded_ifs"
	NameCtrlEmbryo   = "ctrl_embryo"
	NameEmbryoSrcs   = "embryo_sources"
	NameNATOwn       = "nat_own"
	NameTLSRanges    = "tls_ranges"
	NameTLSSessions  = "tls_sessions"
	NameSYNGate      = "syn_gate"
	NameHeld         = "held"
	NameHoldPending  = "hold_pending"
	NameHoldLease    = "hold_lease"
)

// table is one pinned map: its name, where its handle lives, and for the
// connection tables where its size lives, since only they are sized at
// creation.
type table struct {
	name   string
	handle func(*Maps) **ebpf.Map
	size   func(*TableSizes) *uint32
}

// tables is every map ftpgate pins, in a stable order; the connection tables
// come in the order status and metrics list them.
var tables = []table{
	{NameCtrlPorts, func(m *Maps) **ebpf.Map { return &m.ctrlPorts }, nil},
	{NameAllowPorts, func(m *Maps) **ebpf.Map { return &m.allowPorts }, nil},
	{NameCtrlScopes, func(m *Maps) **ebpf.Map { return &m.ctrlScopes }, nil},
	{NameCtrlConns, func(m *Maps) **ebpf.Map { return &m.CtrlConns }, func(s *TableSizes) *uint32 { return &s.CtrlConns }},
	{NameExpectations, func(m *Maps) **ebpf.Map { return &m.Expectations }, func(s *TableSizes) *uint32 { return &s.Expectations }},
	{NameDataFlows, func(m *Maps) **ebpf.Map { return &m.DataFlows }, func(s *TableSizes) *uint32 { return &s.DataFlows }},
	{NameStats, func(m *Maps) **ebpf.Map { return &m.Stats }, nil},
	{NameConfig, func(m *Maps) **ebpf.Map { return &m.Config }, nil},
	{NameEvents, func(m *Maps) **ebpf.Map { return &m.Events }, nil},
	{NameGuardedIfs, func(m *Maps) **ebpf.Map { return &m.GuardedIfs }, nil},
	{NameCtrlEmbryo, func(m *Maps) **ebpf.Map { return &m.CtrlEmbryo }, func(s *TableSizes) *uint32 { return &s.CtrlEmbryo }},
	{NameEmbryoSrcs, func(m *Maps) **ebpf.Map { return &m.EmbryoSources }, func(s *TableSizes) *uint32 { return &s.EmbryoSources }},
	{NameNATOwn, func(m *Maps) **ebpf.Map { return &m.NATOwn }, func(s *TableSizes) *uint32 { return &s.NATOwn }},
	{NameTLSRanges, func(m *Maps) **ebpf.Map { return &m.tlsRanges }, nil},
	{NameTLSSessions, func(m *Maps) **ebpf.Map { return &m.TLSSessions }, func(s *TableSizes) *uint32 { return &s.TLSSessions }},
	{NameSYNGate, func(m *Maps) **ebpf.Map { return &m.SYNGate }, nil},
	{NameHeld, func(m *Maps) **ebpf.Map { return &m.Held }, nil},
	{NameHoldPending, func(m *Maps) **ebpf.Map { return &m.HoldPending }, nil},
	{NameHoldLease, func(m *Maps) **ebpf.Map { return &m.HoldLease }, nil},
}

// Names lists every map ftpgate pins, in a stable order.
var Names = tableNames(func(table) bool { return true })

// SizedTables lists the connection tables (control connections,
// expectations, data flows, untrusted control connections and their
// per-source limiter, the data connections ftpgate translates itself): the
// ones sized by TableSizes, aged, and shown with their fill.
var SizedTables = tableNames(func(t table) bool { return t.size != nil })

func tableNames(keep func(table) bool) []string {
	var out []string
	for _, t := range tables {
		if keep(t) {
			out = append(out, t.name)
		}
	}
	return out
}

// TableSizes sets the entries of the connection tables. They are fixed when
// the maps are first created; a restart keeps the pinned sizes. A zero size
// keeps the object's default.
type TableSizes struct {
	CtrlConns     uint32
	Expectations  uint32
	DataFlows     uint32
	CtrlEmbryo    uint32
	EmbryoSources uint32
	// NATOwn: two entries per data connection ftpgate translates itself
	NATOwn uint32
	// TLSSessions: (client, server) pairs with a live encrypted control
	// connection (#13)
	TLSSessions uint32
}

// DefaultTableSizes suits a busy gateway. The untrusted-connection tables
// are left at zero: they keep the object's sizes (DEFAULT_CTRL_EMBRYO,
// DEFAULT_EMBRYO_SOURCES), which no setting changes yet.
var DefaultTableSizes = TableSizes{
	CtrlConns:    uint32(bpf.FtpgateLimitsDEFAULT_CTRL_CONNS),
	Expectations: uint32(bpf.FtpgateLimitsDEFAULT_EXPECTATIONS),
	DataFlows:    uint32(bpf.FtpgateLimitsDEFAULT_DATA_FLOWS),
	NATOwn:       uint32(bpf.FtpgateLimitsDEFAULT_NAT_OWN),
	TLSSessions:  uint32(bpf.FtpgateLimitsDEFAULT_TLS_SESSIONS),
}

// Resize sets the sizes in spec; a zero size keeps the object's.
func (s TableSizes) Resize(spec *ebpf.CollectionSpec) {
	for _, t := range tables {
		if t.size == nil {
			continue
		}
		if n := *t.size(&s); n > 0 {
			spec.Maps[t.name].MaxEntries = n
		}
	}
}

// ErrOlderPins means the pin directory lacks a map this build has.
var ErrOlderPins = errors.New("map missing")

// ErrNotPinned means the pin directory holds no ftpgate maps.
var ErrNotPinned = errors.New("ftpgate maps are not pinned there")

// Maps holds a handle on every map.
type Maps struct {
	ctrlPorts    *ebpf.Map // through CtrlPorts()
	allowPorts   *ebpf.Map // through AllowPorts()
	ctrlScopes   *ebpf.Map // through CtrlScopes()
	CtrlConns    *ebpf.Map
	Expectations *ebpf.Map
	DataFlows    *ebpf.Map
	Stats        *ebpf.Map
	Config       *ebpf.Map
	Events       *ebpf.Map
	GuardedIfs   *ebpf.Map
	// untrusted control connections and the per-source limiter of their creation
	CtrlEmbryo    *ebpf.Map
	EmbryoSources *ebpf.Map
	// the data connections ftpgate translates itself (#12 NAT_OWN)
	NATOwn *ebpf.Map
	// #13 FTPS: declared passive ranges (through TLSRanges()) and the
	// pairs with live encrypted control connections
	tlsRanges   *ebpf.Map
	TLSSessions *ebpf.Map
	// #14 the ftpgate clock of the last write a SYN to each port could
	// need (syngate.go)
	SYNGate *ebpf.Map
	// #15 --sync-hold: the control segments TC held, for run to send on
	// (held.go)
	Held        *ebpf.Map
	HoldPending *ebpf.Map
	HoldLease   *ebpf.Map

	owned bool // Close closes the handles
}

// FromObjects views maps loaded into this process. Close does not close them:
// their owner does. The generated struct is matched by its `ebpf` tags, the
// pinned names, so this needs no edit when a map is added to the table.
func FromObjects(o *bpf.FtpgateMaps) *Maps {
	m := &Maps{}
	v := reflect.ValueOf(o).Elem()
	for i := range v.NumField() {
		if h := m.handle(v.Type().Field(i).Tag.Get("ebpf")); h != nil {
			*h = v.Field(i).Interface().(*ebpf.Map)
		}
	}
	return m
}

// Open opens the maps pinned under dir.
func Open(dir string) (*Maps, error) {
	m := &Maps{owned: true}
	for _, t := range tables {
		path := filepath.Join(dir, t.name)
		mp, err := ebpf.LoadPinnedMap(path, nil)
		if err != nil {
			m.Close()
			if errors.Is(err, os.ErrNotExist) && t.name != tables[0].name {
				// the others are there: pinned by a build that lacked this map
				return nil, fmt.Errorf("open %s: %w: pinned by an older build; `ftpgate detach --pin-dir %s` removes them, losing their state", path, ErrOlderPins, dir)
			}
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("open %s: %w (is `ftpgate run` attached with --pin-dir %s?)", path, ErrNotPinned, dir)
			}
			return nil, fmt.Errorf("open pinned map %s: %w", path, err)
		}
		*t.handle(m) = mp
	}
	return m, nil
}

// Close releases handles opened by Open.
func (m *Maps) Close() error {
	if m == nil || !m.owned {
		return nil
	}
	var errs []error
	for _, t := range tables {
		if mp := *t.handle(m); mp != nil {
			errs = append(errs, mp.Close())
		}
	}
	return errors.Join(errs...)
}

// ByName returns the map pinned under name, or nil.
func (m *Maps) ByName(name string) *ebpf.Map {
	if h := m.handle(name); h != nil {
		return *h
	}
	return nil
}

func (m *Maps) handle(name string) **ebpf.Map {
	for _, t := range tables {
		if t.name == name {
			return t.handle(m)
		}
	}
	return nil
}
