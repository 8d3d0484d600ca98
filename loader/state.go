package loader

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// StateDir holds one small JSON file per pin directory: what run attached
// where. bpffs holds only BPF objects, so this lives in /run (gone at reboot,
// like the pins themselves).
var StateDir = "/run/ftpgate"

// State is what `run` last attached for a pin directory.
type State struct {
	PinDir  string       `json:"pin_dir"`
	NetNS   string       `json:"netns,omitempty"`
	PID     int          `json:"pid"`
	Version string       `json:"version"`
	Started time.Time    `json:"started"`
	Ifaces  []IfaceState `json:"ifaces"`
}

func statePath(pinDir string) string {
	name := strings.ReplaceAll(strings.Trim(filepath.Clean(pinDir), "/"), "/", "_")
	return filepath.Join(StateDir, name+".json")
}

// ReadState returns the state recorded for pinDir, or nil when none is.
func ReadState(pinDir string) (*State, error) {
	b, err := os.ReadFile(statePath(pinDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("parse state %s: %w", statePath(pinDir), err)
	}
	return &s, nil
}

func writeState(s *State) error {
	if err := os.MkdirAll(StateDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", StateDir, err)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	path := statePath(s.PinDir)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

func removeState(pinDir string) error {
	err := os.Remove(statePath(pinDir))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove state: %w", err)
	}
	return nil
}
