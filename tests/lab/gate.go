package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BuildFtpgate builds cmd/ftpgate into dir/name (static, no cgo) with the
// given extra `go build` arguments (an -ldflags version stamp, say).
func BuildFtpgate(dir, name string, args ...string) (string, error) {
	bin := filepath.Join(dir, name)
	argv := append(append([]string{"build"}, args...), "-o", bin, "github.com/ftpgate/ftpgate/cmd/ftpgate")
	cmd := exec.Command("go", argv...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build ftpgate: %w\n%s", err, out)
	}
	return bin, nil
}

var built struct {
	once     sync.Once
	dir, bin string
	err      error
}

// FtpgateBinary builds cmd/ftpgate once per test process, into a temporary
// directory that RemoveBuilt (from TestMain, after m.Run) deletes.
func FtpgateBinary(t testing.TB) string {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "ftpgate-bin-"); built.err == nil {
			built.bin, built.err = BuildFtpgate(built.dir, "ftpgate")
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin
}

// RemoveBuilt deletes what FtpgateBinary built.
func RemoveBuilt() {
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
}

// HasRunFlag says whether the `ftpgate run` of binary bin knows flag
// ("--nat"): suites skip a mode a build does not offer yet.
func HasRunFlag(bin, flag string) (bool, error) {
	out, err := exec.Command(bin, "run", "--help").CombinedOutput()
	if err != nil {
		return false, fmt.Errorf("ftpgate run --help: %w\n%s", err, out)
	}
	return strings.Contains(string(out), flag+" "), nil
}

// Gate is one `ftpgate run` of a built binary on interfaces of a network
// namespace (--netns: pins stay in the host's bpffs).
type Gate struct {
	Bin, PinDir, NS string
	cmd             *exec.Cmd
	log             bytes.Buffer
	done            chan struct{}
}

// StartGate runs `bin run --netns ns --pin-dir pinDir` with args, waits
// for its ready file, and in t's cleanup stops it (SIGTERM to its PID) and
// detaches everything it attached.
func StartGate(t testing.TB, bin, ns, pinDir string, args ...string) (*Gate, error) {
	g := &Gate{Bin: bin, PinDir: pinDir, NS: ns, done: make(chan struct{})}
	ready := filepath.Join(t.TempDir(), "ready")
	argv := append([]string{"run", "--netns", ns, "--pin-dir", pinDir, "--ready-file", ready}, args...)
	g.cmd = exec.Command(bin, argv...)
	g.cmd.Stdout, g.cmd.Stderr = &g.log, &g.log
	if err := g.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start ftpgate: %w", err)
	}
	go func() { _ = g.cmd.Wait(); close(g.done) }()
	t.Cleanup(func() {
		Terminate(g.cmd.Process, syscall.SIGTERM, g.done, 10*time.Second)
		if out, err := g.CLI("detach"); err != nil {
			t.Errorf("ftpgate detach: %v\n%s", err, out)
		}
	})
	if err := WaitReady(ready, g.done, 30*time.Second); err != nil {
		if errors.Is(err, ErrExited) {
			return nil, fmt.Errorf("ftpgate run %s: %w: %s", strings.Join(args, " "), err, g.log.String())
		}
		return nil, fmt.Errorf("ftpgate run: %w\n%s", err, g.log.String())
	}
	return g, nil
}

// CLI runs an ftpgate command against this gate's pin dir and namespace.
func (g *Gate) CLI(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append(append([]string{}, args...), "--pin-dir", g.PinDir, "--netns", g.NS)
	out, err := exec.CommandContext(ctx, g.Bin, full...).CombinedOutput()
	return string(out), err
}

// Counters reads every counter of `ftpgate stats --json`.
func (g *Gate) Counters() (map[string]uint64, error) {
	out, err := g.CLI("stats", "--json")
	if err != nil {
		return nil, fmt.Errorf("ftpgate stats: %w\n%s", err, out)
	}
	return StatsCounters(out)
}

// LoadRuleset loads an nftables ruleset into namespace ns (`nft -f`, from
// a file in dir).
func LoadRuleset(ctx context.Context, ns, dir, ruleset string) error {
	f, err := os.CreateTemp(dir, "nft-*.conf")
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteString(ruleset); err != nil {
		return err
	}
	if out, err := Exec(ctx, ns, "nft", "-f", f.Name()); err != nil {
		return fmt.Errorf("load nftables ruleset in %s: %w\n%s\n%s", ns, err, out, ruleset)
	}
	return nil
}
