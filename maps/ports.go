package maps

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/ftpgate/ftpgate/bpf"
)

// PortSet is one of the two 65 536-entry port arrays (control ports, allowed
// ports), indexed by port number.
type PortSet struct {
	m    *ebpf.Map
	name string
	flag uint32 // the flag of an entry that makes its port a member
}

// CtrlPorts is the set of ports whose connections are FTP control channels.
func (m *Maps) CtrlPorts() PortSet { return PortSet{m.ctrlPorts, NameCtrlPorts, portGlobal} }

// AllowPorts is the set of ports that accept new connections.
func (m *Maps) AllowPorts() PortSet { return PortSet{m.allowPorts, NameAllowPorts, portGlobal} }

// FTPSPorts is the set of implicit-TLS control ports (#13): a connection
// to one is encrypted from its first byte, tracked and never parsed. The
// flag sits beside the control port's own in ctrl_ports; a port is tracked
// only while it is also a control port.
func (m *Maps) FTPSPorts() PortSet { return PortSet{m.ctrlPorts, NameCtrlPorts, portTLS} }

// ValidPort reports whether p is a port that can be put in a set.
func ValidPort(p int) error {
	if p < 1 || p > 65535 {
		return fmt.Errorf("port %d is out of range: use 1-65535", p)
	}
	return nil
}

// portGlobal and portScoped are the flags of a port entry. An allowed port
// is portGlobal; a control port is portGlobal (towards every server),
// portScoped (towards the servers of its ctrl_scopes prefixes), or both.
const (
	portGlobal = uint32(bpf.FtpgatePortFlagsPORT_GLOBAL)
	portScoped = uint32(bpf.FtpgatePortFlagsPORT_SCOPED)
	portTLS    = uint32(bpf.FtpgatePortFlagsPORT_TLS)
)

// Add puts port in the set, for every server; it takes effect for the next
// packet.
func (s PortSet) Add(port uint16) error {
	return s.change(port, s.flag, 0)
}

// Del removes port from the set (a control port's scopes stay: see
// ScopeSet.Del).
func (s PortSet) Del(port uint16) error {
	return s.change(port, 0, s.flag)
}

// change sets and clears flags of port's entry, keeping the others.
func (s PortSet) change(port uint16, set, clear uint32) error {
	if err := ValidPort(int(port)); err != nil {
		return err
	}
	v, err := s.flags(port)
	if err != nil {
		return err
	}
	if err := s.m.Put(uint32(port), bpf.FtpgatePortVal{Enabled: v&^clear | set}); err != nil {
		return fmt.Errorf("update %s[%d]: %w", s.name, port, err)
	}
	return nil
}

func (s PortSet) flags(port uint16) (uint32, error) {
	var v bpf.FtpgatePortVal
	if err := s.m.Lookup(uint32(port), &v); err != nil {
		return 0, fmt.Errorf("look up %s[%d]: %w", s.name, port, err)
	}
	return v.Enabled, nil
}

// Has reports whether port is in the set, for every server.
func (s PortSet) Has(port uint16) (bool, error) {
	v, err := s.flags(port)
	return v&s.flag != 0, err
}

// List returns the ports in the set, in ascending order. It reads the array
// in batches where the kernel can (5.6+), entry by entry otherwise.
func (s PortSet) List() ([]uint16, error) {
	var ports []uint16
	keys := make([]uint32, portBatch)
	vals := make([]bpf.FtpgatePortVal, portBatch)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := s.m.BatchLookup(&cursor, keys, vals, nil)
		for i := 0; i < n; i++ {
			if vals[i].Enabled&s.flag != 0 {
				ports = append(ports, uint16(keys[i]))
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return ports, nil
		}
		if errors.Is(err, ebpf.ErrNotSupported) {
			return s.iterate()
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", s.name, err)
		}
	}
}

// portBatch is how many entries one batch lookup reads.
const portBatch = 4096

func (s PortSet) iterate() ([]uint16, error) {
	var ports []uint16
	var key uint32
	var v bpf.FtpgatePortVal
	it := s.m.Iterate()
	for it.Next(&key, &v) {
		if v.Enabled&s.flag != 0 {
			ports = append(ports, uint16(key))
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", s.name, err)
	}
	return ports, nil
}

// Replace makes the set exactly ports.
func (s PortSet) Replace(ports []uint16) error {
	cur, err := s.List()
	if err != nil {
		return err
	}
	return replaceSet(cur, ports, s.Del, s.Add)
}

// replaceSet makes a set holding cur exactly want: it deletes what want
// lacks, then adds every member of want.
func replaceSet[T comparable](cur, want []T, del, add func(T) error) error {
	for _, v := range cur {
		if !slices.Contains(want, v) {
			if err := del(v); err != nil {
				return err
			}
		}
	}
	for _, v := range want {
		if err := add(v); err != nil {
			return err
		}
	}
	return nil
}
