package lab

import (
	"encoding/json"
	"fmt"
)

// StatsCounters reads the counters from the output of `ftpgate stats --json`.
func StatsCounters(out string) (map[string]uint64, error) {
	var v struct {
		Counters map[string]uint64 `json:"counters"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return nil, fmt.Errorf("ftpgate stats --json: %w\n%s", err, out)
	}
	return v.Counters, nil
}
