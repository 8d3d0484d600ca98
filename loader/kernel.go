package loader

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/internal/nsrun"
)

// MinKernel is the oldest kernel ftpgate supports: bounded loops, global BPF
// functions, ring buffers, XDP links and BPF_PROG_TEST_RUN with skb context.
var MinKernel = KernelVersion{5, 10}

var (
	// ErrNotRoot means the process lacks the privileges to load BPF.
	ErrNotRoot = errors.New("ftpgate needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN): run it as root or with sudo")
	// ErrOldKernel means the running kernel is older than MinKernel.
	ErrOldKernel = errors.New("kernel too old")
)

// KernelVersion is a major.minor kernel release.
type KernelVersion struct{ Major, Minor int }

func (v KernelVersion) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// Less reports whether v is older than w.
func (v KernelVersion) Less(w KernelVersion) bool {
	return v.Major < w.Major || (v.Major == w.Major && v.Minor < w.Minor)
}

// RunningKernel parses uname's release ("6.1.0-18-amd64").
func RunningKernel() (KernelVersion, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return KernelVersion{}, fmt.Errorf("uname: %w", err)
	}
	return ParseKernel(unix.ByteSliceToString(u.Release[:]))
}

// ParseKernel parses a kernel release string.
func ParseKernel(release string) (KernelVersion, error) {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return KernelVersion{}, fmt.Errorf("parse kernel release %q", release)
	}
	major, err := strconv.Atoi(parts[0])
	if err != nil {
		return KernelVersion{}, fmt.Errorf("parse kernel release %q: %w", release, err)
	}
	minorStr := parts[1]
	if i := strings.IndexFunc(minorStr, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minorStr = minorStr[:i]
	}
	minor, err := strconv.Atoi(minorStr)
	if err != nil {
		return KernelVersion{}, fmt.Errorf("parse kernel release %q: %w", release, err)
	}
	return KernelVersion{major, minor}, nil
}

// CheckHost refuses to start where ftpgate cannot work, with the reason.
// The kernel floor stays a version check: MinKernel stands for several
// features at once (see there), each of which a probe would have to load a
// program for, and the refusal must name a version the operator can act on.
// Features chosen per kernel, such as TCX, are probed (HaveTCX).
func CheckHost() error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	v, err := RunningKernel()
	if err != nil {
		return err
	}
	if v.Less(MinKernel) {
		return fmt.Errorf("%w: running %s, ftpgate needs %s or newer", ErrOldKernel, v, MinKernel)
	}
	return nil
}

// inNetns runs fn inside the named network namespace (empty: here); see nsrun.
func inNetns(name string, fn func() error) error { return nsrun.Do(name, fn) }
