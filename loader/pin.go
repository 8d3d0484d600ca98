package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// DefaultPinDir is where ftpgate pins its maps, programs and links.
const DefaultPinDir = "/sys/fs/bpf/ftpgate"

// defaultBPFFS is the conventional bpffs mount point.
const defaultBPFFS = "/sys/fs/bpf"

var (
	// ErrLocked means another ftpgate process holds the pin directory.
	ErrLocked = errors.New("pin directory is held by another ftpgate process")
	// ErrPrivateBPFFS means the pin directory is on a bpffs instance that
	// vanishes with this process (e.g. under `ip netns exec`).
	ErrPrivateBPFFS = errors.New("pin directory is on a private bpffs")
	// ErrNotBPFFS means the pin directory's parent is not on a bpffs.
	ErrNotBPFFS = errors.New("pin directory is not on a bpffs")
)

// isBPFFS reports whether path is on a BPF filesystem.
func isBPFFS(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, err
	}
	return st.Type == unix.BPF_FS_MAGIC, nil
}

// ensureBPFFS mounts bpffs at /sys/fs/bpf when the host has none there and the
// pin directory lives below it, then checks that the pin directory's parent is
// on a bpffs shared with the rest of the host.
func ensureBPFFS(pinDir string) error {
	parent := filepath.Dir(filepath.Clean(pinDir))
	if err := checkMountNamespace(parent); err != nil {
		return err
	}
	if strings.HasPrefix(filepath.Clean(pinDir)+"/", defaultBPFFS+"/") {
		ok, err := isBPFFS(defaultBPFFS)
		if err != nil {
			return fmt.Errorf("check %s: %w", defaultBPFFS, err)
		}
		if !ok {
			if err := unix.Mount("bpf", defaultBPFFS, "bpf", 0, "mode=0700"); err != nil {
				return fmt.Errorf("mount bpffs at %s: %w", defaultBPFFS, err)
			}
		}
	}
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", parent, err)
	}
	ok, err := isBPFFS(parent)
	if err != nil {
		return fmt.Errorf("check %s: %w", parent, err)
	}
	if !ok {
		return fmt.Errorf("%s: %w (mount one: mount -t bpf bpf %s)", parent, ErrNotBPFFS, parent)
	}
	return checkSharedBPFFS(parent)
}

// checkMountNamespace refuses to pin from a mount namespace of our own, such
// as the one `ip netns exec` creates: a bpffs there, mounted by it or by us,
// is private and its pins vanish when ftpgate exits. The parent process
// (a shell, sudo, systemd) stands for the namespace pins must live in.
func checkMountNamespace(dir string) error {
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return nil // no namespace information: nothing to compare
	}
	parent, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", os.Getppid()))
	if err != nil || parent == self {
		return nil
	}
	return fmt.Errorf("%s: %w: ftpgate runs in a mount namespace of its own (as under `ip netns exec`), "+
		"so pins would vanish when it exits; use `ftpgate run --netns NAME` instead of `ip netns exec`", dir, ErrPrivateBPFFS)
}

// checkSharedBPFFS refuses a bpffs that init (PID 1) does not see: pins there
// would vanish when this process exits. `ip netns exec` remounts /sys, and a
// bpffs mounted there is private to the command.
func checkSharedBPFFS(dir string) error {
	var mine, init unix.Stat_t
	if err := unix.Stat(dir, &mine); err != nil {
		return fmt.Errorf("stat %s: %w", dir, err)
	}
	if err := unix.Stat(filepath.Join("/proc/1/root", dir), &init); err != nil {
		// no view of init's mounts (a container without /proc/1/root): nothing to compare
		return nil
	}
	if mine.Dev != init.Dev || mine.Ino != init.Ino {
		return fmt.Errorf("%s: %w: pins would vanish when ftpgate exits; use `ftpgate run --netns NAME` instead of `ip netns exec`", dir, ErrPrivateBPFFS)
	}
	return nil
}

// pinLock is an flock on the pin directory, held for the daemon's lifetime.
type pinLock struct{ f *os.File }

func lockDir(dir string) (*pinLock, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w", dir, ErrLocked)
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return &pinLock{f}, nil
}

func (l *pinLock) Close() error {
	if l == nil {
		return nil
	}
	return l.f.Close()
}

// removeTree deletes a directory tree on bpffs. os.RemoveAll is not used: on
// bpffs its openat fallback fails with EPERM where a plain walk works.
func removeTree(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := removeTree(filepath.Join(path, e.Name())); err != nil {
				return err
			}
		}
	}
	return os.Remove(path)
}

// newDir names the temporary directory createPins builds a pin
// directory in: <pin>-new-<pid> (no dot: bpffs refuses them).
func newDir(pinDir string, pid int) string { return fmt.Sprintf("%s-new-%d", pinDir, pid) }

// removeStaleNewDirs removes the temporary pin directories of processes
// that died before renaming theirs into place (a first start killed
// half-way leaves its maps, some 95 MB at the default sizes, pinned there).
// A live process's directory is left alone: it may be creating it now.
func removeStaleNewDirs(pinDir string) error {
	prefix := filepath.Clean(pinDir) + "-new-"
	paths, err := filepath.Glob(prefix + "*")
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range paths {
		pid, err := strconv.Atoi(strings.TrimPrefix(p, prefix))
		if err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		if err := removeTree(p); err != nil {
			errs = append(errs, fmt.Errorf("remove stale %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// processAlive reports whether pid exists (EPERM: it does, owned by another user).
func processAlive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}
