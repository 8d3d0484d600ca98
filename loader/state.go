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
// like the pins themselves). Tests and side-by-side instances give their own;
// the empty StateDir is DefaultStateDir.
type StateDir string

// DefaultStateDir is where run records its state unless told otherwise.
const DefaultStateDir StateDir = "/run/ftpgate"

// State is what `run` last attached for a pin directory.
type State struct {
	PinDir  string       `json:"pin_dir"`
	NetNS   string       `json:"netns,omitempty"`
	PID     int          `json:"pid"`
	Version string       `json:"version"`
	Started time.Time    `json:"started"`
	Ifaces  []IfaceState `json:"ifaces"`
}

func (d StateDir) dir() string {
	if d == "" {
		return string(DefaultStateDir)
	}
	return string(d)
}

func (d StateDir) path(pinDir string) string {
	name := strings.ReplaceAll(strings.Trim(filepath.Clean(pinDir), "/"), "/", "_")
	return filepath.Join(d.dir(), name+".json")
}

// Read returns the state recorded for pinDir, or nil when none is.
func (d StateDir) Read(pinDir string) (*State, error) {
	b, err := os.ReadFile(d.path(pinDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("parse state %s: %w", d.path(pinDir), err)
	}
	return &s, nil
}

func (d StateDir) write(s *State) error {
	if err := os.MkdirAll(d.dir(), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", d.dir(), err)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	path := d.path(s.PinDir)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

func (d StateDir) remove(pinDir string) error {
	err := os.Remove(d.path(pinDir))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove state: %w", err)
	}
	return nil
}
