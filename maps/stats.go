package maps

import (
	"fmt"
	"strings"
	"sync"

	"github.com/cilium/ebpf/btf"

	"github.com/ftpgate/ftpgate/bpf"
)

// enumNames reads a C enum from the embedded object's BTF and returns its
// names indexed by value, lower case and without prefix (STAT_CTRL_SEGMENTS
// becomes ctrl_segments), so C and Go cannot disagree. skip is a value name
// that only bounds the enum.
func enumNames(enum, prefix, skip string) ([]string, error) {
	spec, err := bpf.LoadFtpgate()
	if err != nil {
		return nil, fmt.Errorf("load embedded object: %w", err)
	}
	var e *btf.Enum
	if err := spec.Types.TypeByName(enum, &e); err != nil {
		return nil, fmt.Errorf("find enum %s in BTF: %w", enum, err)
	}
	var names []string
	for _, v := range e.Values {
		if v.Name == skip {
			continue
		}
		idx := int(v.Value)
		for len(names) <= idx {
			names = append(names, "")
		}
		names[idx] = strings.ToLower(strings.TrimPrefix(v.Name, prefix))
	}
	return names, nil
}

var counterNames = sync.OnceValues(func() ([]string, error) { return enumNames("stat", "STAT_", "STAT_MAX") })

// CounterNames returns the stable counter names, indexed like the stats map,
// from the C enum stat.
func CounterNames() ([]string, error) { return counterNames() }

// Counters sums the per-CPU counters by name.
func (m *Maps) Counters() (map[string]uint64, error) {
	names, err := CounterNames()
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint64, len(names))
	for i, name := range names {
		var perCPU []uint64
		if err := m.Stats.Lookup(uint32(i), &perCPU); err != nil {
			return nil, fmt.Errorf("read %s[%s]: %w", NameStats, name, err)
		}
		var sum uint64
		for _, v := range perCPU {
			sum += v
		}
		out[name] = sum
	}
	return out, nil
}
