package loader

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/cilium/ebpf"

	"github.com/ftpgate/ftpgate/internal/group"
	"github.com/ftpgate/ftpgate/maps"
)

// IfaceStatus is one guarded interface as the kernel shows it now: the
// embedded IfaceState is what run recorded, the rest what the kernel says.
type IfaceStatus struct {
	IfaceState
	Present     bool    `json:"present"`                 // an interface of this name exists
	IndexSeen   int     `json:"ifindex_seen,omitempty"`  // its ifindex now
	XDPAttached bool    `json:"xdp_attached"`            // ftpgate's XDP program is on it
	XDPSeen     XDPMode `json:"xdp_mode_seen,omitempty"` // in this mode
	TCAttached  bool    `json:"tc_attached"`             // ftpgate's TC programs are on both hooks
	TCSeen      TCMode  `json:"tc_mode_seen,omitempty"`  // with this mechanism
	// TCAdmitAttached: ftpgate's TC admission is at ingress (--admit-hook tc)
	TCAdmitAttached bool `json:"tc_admit_attached,omitempty"`
}

// Admitting reports whether the admission is on the hook run chose: the
// XDP program, or the TC admission.
func (s IfaceStatus) Admitting() bool {
	if s.AdmitHook == AdmitTC {
		return s.TCAdmitAttached
	}
	return s.XDPAttached
}

// ProgramStatus names a pinned program.
type ProgramStatus struct {
	Name string `json:"name"`
	ID   uint32 `json:"id"`
	Tag  string `json:"tag"`
}

// MapStatus is a map's fill level.
type MapStatus struct {
	Name     string `json:"name"`
	Entries  int    `json:"entries"`
	Capacity uint32 `json:"capacity"`
}

// Status describes a pin directory and what it guards.
type Status struct {
	PinDir   string           `json:"pin_dir"`
	State    *State           `json:"run,omitempty"`
	Daemon   DaemonStatus     `json:"daemon"`
	Attached bool             `json:"attached"`
	Ifaces   []IfaceStatus    `json:"ifaces"`
	Programs []ProgramStatus  `json:"programs"`
	Maps     []MapStatus      `json:"maps"`
	Config   maps.Config      `json:"-"`
	Ctrl     []uint16         `json:"ftp_ports"`
	Scoped   []maps.PortScope `json:"ftp_port_scopes"`
	Allow    []uint16         `json:"allow_ports"`
	// Group is run's gateway group (#15), as run last recorded it (every
	// second); nil without a group or when run is not running
	Group *group.Status `json:"group,omitempty"`
}

// ReadStatus inspects what is attached and pinned for pinDir, as recorded
// in states.
func ReadStatus(pinDir string, states StateDir, netnsName string) (*Status, error) {
	m, err := maps.Open(pinDir)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	st := &Status{PinDir: pinDir}
	if st.State, err = states.Read(pinDir); err != nil {
		return nil, err
	}
	if st.Config, err = m.GetConfig(); err != nil {
		return nil, err
	}
	if st.Group, err = states.ReadGroup(pinDir); err != nil {
		return nil, err
	}
	if st.Ctrl, err = m.CtrlPorts().List(); err != nil {
		return nil, err
	}
	if st.Scoped, err = m.CtrlScopes().List(); err != nil {
		return nil, err
	}
	if st.Allow, err = m.AllowPorts().List(); err != nil {
		return nil, err
	}
	var ours ourPrograms
	for i, name := range progPins {
		p, err := ebpf.LoadPinnedProgram(filepath.Join(pinDir, progsDir, name), nil)
		if err != nil {
			continue
		}
		info, err := p.Info()
		p.Close()
		if err != nil {
			continue
		}
		id, _ := info.ID()
		ours[i] = id
		st.Programs = append(st.Programs, ProgramStatus{Name: name, ID: uint32(id), Tag: info.Tag})
	}
	for _, name := range maps.SizedTables {
		n, err := m.Fill(name)
		if err != nil {
			return nil, err
		}
		st.Maps = append(st.Maps, MapStatus{Name: name, Entries: n, Capacity: m.ByName(name).MaxEntries()})
	}

	if st.State == nil {
		return st, nil
	}
	st.Daemon = daemonStatus(pinDir, st.State)
	ns := st.State.NetNS
	if netnsName != "" {
		ns = netnsName
	}
	st.Attached = len(st.State.Ifaces) > 0
	err = inNetns(ns, func() error {
		for _, ifc := range st.State.Ifaces {
			is := observe(ifc, ours)
			st.Attached = st.Attached && is.Admitting() && is.TCAttached
			st.Ifaces = append(st.Ifaces, is)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}

var (
	// ErrNotAttached means status found the dataplane detached (wholly or in part).
	ErrNotAttached = errors.New("not attached")
	// ErrNoDaemon means the dataplane is attached but no `ftpgate run`
	// holds it: it filters, but nothing ages entries, serves metrics or
	// re-attaches a re-created interface.
	ErrNoDaemon = errors.New("attached, but no `ftpgate run` is running")
)

// Check returns ErrNotAttached with the first missing piece.
func (s *Status) Check() error {
	if s.State == nil {
		return fmt.Errorf("%w: no `ftpgate run` recorded for %s", ErrNotAttached, s.PinDir)
	}
	for _, i := range s.Ifaces {
		if !i.Present {
			return fmt.Errorf("%w: interface %q is gone (a running `ftpgate run` re-attaches it when it is created again)", ErrNotAttached, i.Name)
		}
		if !i.Admitting() {
			what := "XDP is"
			if i.AdmitHook == AdmitTC {
				what = "the TC admission is"
			}
			return fmt.Errorf("%w: %s missing on %q", ErrNotAttached, what, i.Name)
		}
		if !i.TCAttached {
			return fmt.Errorf("%w: TC is missing on %q", ErrNotAttached, i.Name)
		}
	}
	return nil
}

// CheckDaemon returns ErrNoDaemon, with the reason, when no run holds the
// pin directory.
func (s *Status) CheckDaemon() error {
	if s.State == nil || s.Daemon.Running {
		return nil
	}
	return fmt.Errorf("%w (%s): start it again to age entries and re-attach re-created interfaces", ErrNoDaemon, s.Daemon.Reason)
}
