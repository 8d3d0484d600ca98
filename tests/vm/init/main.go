// Command init is PID 1 of the test VMs. It prepares the minimal
// environment BPF tests expect (proc, sys, bpffs, devtmpfs, tmpfs, lo up,
// modules loaded), runs the test binaries named on the kernel command line,
// prints one marker line per binary and powers the VM off.
//
// There is no shell, modprobe or ip in the guest on purpose: everything is
// done with system calls so that tests cannot grow hidden dependencies on
// guest userland.
//
// Payload spec, read from /proc/cmdline after the "--" word:
//
//	-- /bin/a.test -test.v -test.count=1 --- /bin/b.test -test.run=X
//
// Commands are separated by the word "---". /proc/cmdline is used rather
// than os.Args because the kernel also forwards unrecognized bare words
// from before "--" into init's argv.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/tests/vm/internal/marker"
)

// moduleDir holds host-decompressed modules, flattened into one directory.
const moduleDir = "/lib/modules-flat"

// commandSeparator separates payload commands on the kernel command line.
const commandSeparator = "---"

func main() {
	// All output goes to fd 1, which the kernel connected to /dev/console.
	fmt.Printf("%s kernel=%s\n", marker.Init, kernelRelease())
	setup()

	cmds, err := payload()
	if err != nil {
		setupError("payload: %v", err)
	}
	for _, argv := range cmds {
		fmt.Println(run(argv))
	}
	fmt.Println(marker.Done)
	powerOff()
}

func setupError(format string, args ...any) {
	fmt.Printf("%s %s\n", marker.SetupError, fmt.Sprintf(format, args...))
}

type mount struct {
	source, target, fstype string
	required               bool
}

func setup() {
	mounts := []mount{
		{"proc", "/proc", "proc", true},
		{"sysfs", "/sys", "sysfs", true},
		{"devtmpfs", "/dev", "devtmpfs", true},
		{"bpf", "/sys/fs/bpf", "bpf", true},
		// debugfs is optional: some tests read tracing files, none
		// should require it.
		{"debugfs", "/sys/kernel/debug", "debugfs", false},
		{"tmpfs", "/tmp", "tmpfs", true},
		{"tmpfs", "/run", "tmpfs", true},
		// Named network namespaces (ip netns, vishvananda/netns) live
		// here; /var/run is a symlink to /run in the initramfs.
		{"tmpfs", "/run/netns", "tmpfs", true},
	}
	for _, m := range mounts {
		if err := os.MkdirAll(m.target, 0o755); err != nil && m.required {
			setupError("mkdir %s: %v", m.target, err)
			continue
		}
		if err := unix.Mount(m.source, m.target, m.fstype, 0, ""); err != nil {
			if m.required {
				setupError("mount %s on %s: %v", m.fstype, m.target, err)
			} else {
				fmt.Printf("vmtest-init: optional mount %s on %s: %v\n", m.fstype, m.target, err)
			}
		}
	}
	if err := linkUp("lo"); err != nil {
		setupError("bring lo up: %v", err)
	}
	loadModules()
}

// linkUp sets IFF_UP with the classic ioctl, which needs no netlink code.
func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCSIFFLAGS: %w", err)
	}
	return nil
}

// loadModules loads every module in moduleDir. The host already picked
// dependencies, but not a load order, so loading is retried in passes
// until no further module succeeds: a module whose dependency is not yet
// loaded fails with ENOENT (unknown symbol) and succeeds in a later pass.
func loadModules() {
	paths, _ := filepath.Glob(filepath.Join(moduleDir, "*.ko"))
	sort.Strings(paths)
	pending := map[string]error{}
	for _, p := range paths {
		pending[p] = nil
	}
	for progress := true; progress && len(pending) > 0; {
		progress = false
		for _, p := range paths {
			if _, ok := pending[p]; !ok {
				continue
			}
			err := loadModule(p)
			if err == nil || errors.Is(err, unix.EEXIST) {
				delete(pending, p)
				progress = true
				continue
			}
			pending[p] = err
		}
	}
	for _, p := range paths {
		if err, ok := pending[p]; ok {
			name := strings.TrimSuffix(filepath.Base(p), ".ko")
			setupError("load module %s: %v", name, err)
			// The reason (unknown symbol, failed request_module of a
			// soft dependency...) is only in the kernel log, below the
			// console loglevel.
			for _, l := range kernelLogLines(name, 5) {
				fmt.Printf("vmtest-init:   kernel: %s\n", l)
			}
		}
	}
}

// kernelLogLines returns the last n kernel log lines mentioning name.
func kernelLogLines(name string, n int) []string {
	buf := make([]byte, 1<<20)
	k, err := unix.Klogctl(unix.SYSLOG_ACTION_READ_ALL, buf)
	if err != nil {
		return []string{"(cannot read kernel log: " + err.Error() + ")"}
	}
	var out []string
	for _, l := range strings.Split(string(buf[:k]), "\n") {
		if strings.Contains(l, name) {
			out = append(out, l)
		}
	}
	return out[max(0, len(out)-n):]
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.FinitModule(int(f.Fd()), "", 0)
}

// payload parses the commands after "--" on the kernel command line.
func payload() ([][]string, error) {
	raw, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return nil, err
	}
	return parsePayload(splitCmdline(string(raw)))
}

func parsePayload(words []string) ([][]string, error) {
	i := 0
	for i < len(words) && words[i] != "--" {
		i++
	}
	if i == len(words) {
		return nil, errors.New(`no "--" on the kernel command line`)
	}
	var cmds [][]string
	var cur []string
	for _, w := range words[i+1:] {
		if w == commandSeparator {
			if len(cur) > 0 {
				cmds = append(cmds, cur)
			}
			cur = nil
			continue
		}
		cur = append(cur, w)
	}
	if len(cur) > 0 {
		cmds = append(cmds, cur)
	}
	if len(cmds) == 0 {
		return nil, errors.New(`nothing after "--"`)
	}
	return cmds, nil
}

// splitCmdline splits like the kernel does: on spaces, with double quotes
// grouping words (the quotes themselves are dropped).
func splitCmdline(s string) []string {
	var words []string
	var b strings.Builder
	inQuote, inWord := false, false
	for _, r := range strings.TrimSpace(s) {
		switch {
		case r == '"':
			inQuote = !inQuote
			inWord = true
		case (r == ' ' || r == '\t' || r == '\n') && !inQuote:
			if inWord {
				words = append(words, b.String())
				b.Reset()
				inWord = false
			}
		default:
			b.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, b.String())
	}
	return words
}

// run executes one test binary, streaming its output to the console while
// counting verdict lines.
func run(argv []string) marker.Result {
	name := strings.TrimSuffix(filepath.Base(argv[0]), ".test")
	res := marker.Result{Name: name, Exit: -1}
	// Each binary gets its own scratch working directory, like go test
	// gives each package its own directory.
	dir := filepath.Join("/tmp/vmtest", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		setupError("%s: mkdir %s: %v", name, dir, err)
		return res
	}
	var counter marker.Counter
	out := io.MultiWriter(os.Stdout, &counter)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.Env = append(os.Environ(),
		"FTPGATE_REQUIRE_BPF=1",
		// tells tests they run inside a harness VM (selftest, VM-only tests)
		"FTPGATE_VM_GUEST=1",
		"PATH=/bin",
		"HOME=/tmp",
		"TMPDIR=/tmp",
	)
	start := time.Now()
	fmt.Printf("vmtest-init: running %s\n", strings.Join(argv, " "))
	err := cmd.Run()
	counter.Flush()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		res.Exit = 0
	case errors.As(err, &exitErr):
		res.Exit = exitErr.ExitCode()
		// ExitCode is -1 for a signal death; report it the way a shell
		// would so that a crash never looks like success.
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Exit = 128 + int(ws.Signal())
		}
	default:
		setupError("%s: %v", name, err)
	}
	res.Pass, res.Fail, res.Skip = counter.Pass, counter.Fail, counter.Skip
	fmt.Printf("vmtest-init: %s finished in %.1fs\n", name, time.Since(start).Seconds())
	return res
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

func powerOff() {
	unix.Sync()
	err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	// If ACPI power-off is unavailable, a restart also ends qemu because
	// the runner passes -no-reboot.
	fmt.Printf("vmtest-init: power off: %v; restarting instead\n", err)
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	select {}
}
