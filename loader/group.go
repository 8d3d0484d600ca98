package loader

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ftpgate/ftpgate/internal/group"
)

// groupSuffix ends the name of the file where run keeps its gateway
// group's state (#15) for `status`, beside the state file.
const groupSuffix = ".group.json"

// WriteGroup records run's group state for pinDir (replacing the file in
// one rename, so a reader never sees half of it).
func (d StateDir) WriteGroup(pinDir string, st group.Status) error {
	path := d.Path(pinDir, groupSuffix)
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".group-*")
	if err != nil {
		return fmt.Errorf("write group state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write group state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write group state: %w", err)
	}
	return os.Rename(tmp.Name(), path)
}

// RemoveGroup removes the group state of pinDir (run stops).
func (d StateDir) RemoveGroup(pinDir string) {
	os.Remove(d.Path(pinDir, groupSuffix))
}

// ReadGroup returns run's group state for pinDir, nil without a group.
func (d StateDir) ReadGroup(pinDir string) (*group.Status, error) {
	b, err := os.ReadFile(d.Path(pinDir, groupSuffix))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read group state: %w", err)
	}
	var st group.Status
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("group state %s: %w", d.Path(pinDir, groupSuffix), err)
	}
	return &st, nil
}
