package maps

import (
	"fmt"
	"strings"
	"sync"

	"github.com/cilium/ebpf/btf"

	"github.com/ftpgate/ftpgate/bpf"
)

var (
	statNamesOnce sync.Once
	statNames     []string
	statNamesErr  error
)

// CounterNames returns the stable counter names, indexed like the stats map.
// They come from the C enum (STAT_CTRL_SEGMENTS becomes ctrl_segments) in the
// embedded object's BTF, so C and Go cannot disagree.
func CounterNames() ([]string, error) {
	statNamesOnce.Do(func() {
		spec, err := bpf.LoadFtpgate()
		if err != nil {
			statNamesErr = fmt.Errorf("load embedded object: %w", err)
			return
		}
		var enum *btf.Enum
		if err := spec.Types.TypeByName("stat", &enum); err != nil {
			statNamesErr = fmt.Errorf("find counter enum in BTF: %w", err)
			return
		}
		for _, v := range enum.Values {
			if v.Name == "STAT_MAX" {
				continue
			}
			idx := int(v.Value)
			for len(statNames) <= idx {
				statNames = append(statNames, "")
			}
			statNames[idx] = strings.ToLower(strings.TrimPrefix(v.Name, "STAT_"))
		}
	})
	return statNames, statNamesErr
}

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
