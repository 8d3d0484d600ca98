package loader

import (
	"crypto/sha256"
	"encoding/hex"
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
	PinDir string `json:"pin_dir"`
	NetNS  string `json:"netns,omitempty"`
	PID    int    `json:"pid"`
	// PIDStart is the process's start time (clock ticks after boot), so
	// that status tells the run from a later process with the same pid.
	PIDStart uint64       `json:"pid_start,omitempty"`
	Version  string       `json:"version"`
	Started  time.Time    `json:"started"`
	Ifaces   []IfaceState `json:"ifaces"`
	// Object is the build of the programs run loaded (#12)
	Object Object `json:"object"`
	// NATMechanism is the --nat-mechanism run was given, which `config set
	// --nat` keeps: it must not switch a daemon running own translation to
	// conntrack entries
	NATMechanism NATMechanism `json:"nat_mechanism,omitempty"`
}

func (d StateDir) dir() string {
	if d == "" {
		return string(DefaultStateDir)
	}
	return string(d)
}

// Path names the file of kind ext (".json" for the state; other per-pin-dir
// files, such as sockets, take their own extension) that belongs to pinDir
// in this state directory. The name is the pin dir's last element, for the
// reader, and a hash of its clean absolute path, so that two pin dirs never
// share a name (…/a_b and …/a/b did when '/' became '_'). It stays short
// enough for a unix socket path.
func (d StateDir) Path(pinDir, ext string) string {
	clean := cleanPinDir(pinDir)
	base := filepath.Base(clean)
	if len(base) > maxReadableName {
		base = base[:maxReadableName]
	}
	sum := sha256.Sum256([]byte(clean))
	return filepath.Join(d.dir(), base+"-"+hex.EncodeToString(sum[:stateHashBytes])+ext)
}

// readable part and hash length of a state name
const (
	maxReadableName = 32
	stateHashBytes  = 8
)

func cleanPinDir(pinDir string) string {
	if abs, err := filepath.Abs(pinDir); err == nil {
		return abs
	}
	return filepath.Clean(pinDir)
}

// oldPath is the name builds before collision-free names used: it is read
// when the new name is absent, so that an upgrade keeps track of what the
// previous build attached.
func (d StateDir) oldPath(pinDir string) string {
	name := strings.ReplaceAll(strings.Trim(filepath.Clean(pinDir), "/"), "/", "_")
	return filepath.Join(d.dir(), name+".json")
}

// Read returns the state recorded for pinDir, or nil when none is.
func (d StateDir) Read(pinDir string) (*State, error) {
	s, err := readState(d.Path(pinDir, ".json"))
	if s != nil || err != nil {
		return s, err
	}
	// an old-style name may belong to another pin dir that mapped to it
	s, err = readState(d.oldPath(pinDir))
	if s == nil || err != nil || cleanPinDir(s.PinDir) != cleanPinDir(pinDir) {
		return nil, err
	}
	return s, nil
}

func readState(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("parse state %s: %w", path, err)
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
	path := d.Path(s.PinDir, ".json")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return d.removeOld(s.PinDir)
}

// remove removes pinDir's state file and the events socket a killed run may
// have left beside it.
func (d StateDir) remove(pinDir string) error {
	for _, p := range []string{d.Path(pinDir, ".json"), d.EventsSocket(pinDir)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove state: %w", err)
		}
	}
	return d.removeOld(pinDir)
}

// removeOld removes pinDir's old-style state file, and only when it is
// pinDir's.
func (d StateDir) removeOld(pinDir string) error {
	old, err := readState(d.oldPath(pinDir))
	if err != nil || old == nil || cleanPinDir(old.PinDir) != cleanPinDir(pinDir) {
		return nil
	}
	if err := os.Remove(d.oldPath(pinDir)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove old state: %w", err)
	}
	return nil
}
