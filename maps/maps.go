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

	"github.com/cilium/ebpf"

	"github.com/ftpgate/ftpgate/bpf"
)

// Pinned file names under the pin directory: an operator interface.
const (
	NameCtrlPorts    = "ctrl_ports"
	NameAllowPorts   = "allow_ports"
	NameCtrlConns    = "ctrl_conns"
	NameExpectations = "expectations"
	NameDataFlows    = "data_flows"
	NameStats        = "stats"
	NameConfig       = "config"
	NameEvents       = "events"
	NameGuardedIfs   = "guarded_ifs"
)

// Names lists every map ftpgate pins, in a stable order.
var Names = []string{
	NameCtrlPorts, NameAllowPorts, NameCtrlConns, NameExpectations,
	NameDataFlows, NameStats, NameConfig, NameEvents, NameGuardedIfs,
}

// ErrNotPinned means the pin directory holds no ftpgate maps.
var ErrNotPinned = errors.New("ftpgate maps are not pinned there")

// Maps holds a handle on every map.
type Maps struct {
	CtrlPorts    *ebpf.Map
	AllowPorts   *ebpf.Map
	CtrlConns    *ebpf.Map
	Expectations *ebpf.Map
	DataFlows    *ebpf.Map
	Stats        *ebpf.Map
	Config       *ebpf.Map
	Events       *ebpf.Map
	GuardedIfs   *ebpf.Map

	owned bool // Close closes the handles
}

// FromObjects views maps loaded into this process. Close does not close them:
// their owner does.
func FromObjects(o *bpf.FtpgateMaps) *Maps {
	return &Maps{
		CtrlPorts:    o.CtrlPorts,
		AllowPorts:   o.AllowPorts,
		CtrlConns:    o.CtrlConns,
		Expectations: o.Expectations,
		DataFlows:    o.DataFlows,
		Stats:        o.Stats,
		Config:       o.Config,
		Events:       o.Events,
		GuardedIfs:   o.GuardedIfs,
	}
}

// Open opens the maps pinned under dir.
func Open(dir string) (*Maps, error) {
	m := &Maps{owned: true}
	targets := map[string]**ebpf.Map{
		NameCtrlPorts: &m.CtrlPorts, NameAllowPorts: &m.AllowPorts, NameCtrlConns: &m.CtrlConns,
		NameExpectations: &m.Expectations, NameDataFlows: &m.DataFlows, NameStats: &m.Stats,
		NameConfig: &m.Config, NameEvents: &m.Events, NameGuardedIfs: &m.GuardedIfs,
	}
	for _, name := range Names {
		path := filepath.Join(dir, name)
		mp, err := ebpf.LoadPinnedMap(path, nil)
		if err != nil {
			m.Close()
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("open %s: %w (is `ftpgate run` attached with --pin-dir %s?)", path, ErrNotPinned, dir)
			}
			return nil, fmt.Errorf("open pinned map %s: %w", path, err)
		}
		*targets[name] = mp
	}
	return m, nil
}

// Close releases handles opened by Open.
func (m *Maps) Close() error {
	if m == nil || !m.owned {
		return nil
	}
	var errs []error
	for _, mp := range []*ebpf.Map{m.CtrlPorts, m.AllowPorts, m.CtrlConns, m.Expectations,
		m.DataFlows, m.Stats, m.Config, m.Events, m.GuardedIfs} {
		if mp != nil {
			errs = append(errs, mp.Close())
		}
	}
	return errors.Join(errs...)
}

// ByName returns the map pinned under name, or nil.
func (m *Maps) ByName(name string) *ebpf.Map {
	switch name {
	case NameCtrlPorts:
		return m.CtrlPorts
	case NameAllowPorts:
		return m.AllowPorts
	case NameCtrlConns:
		return m.CtrlConns
	case NameExpectations:
		return m.Expectations
	case NameDataFlows:
		return m.DataFlows
	case NameStats:
		return m.Stats
	case NameConfig:
		return m.Config
	case NameEvents:
		return m.Events
	case NameGuardedIfs:
		return m.GuardedIfs
	}
	return nil
}
