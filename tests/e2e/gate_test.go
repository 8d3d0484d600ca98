package e2e

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

	"github.com/ftpgate/ftpgate/tests/lab"
)

// binaries built once per test run: two builds that differ only in their
// version stamp, so that a restart really swaps in another binary
var (
	buildOnce      sync.Once
	buildErr       error
	binA, binB     string
	buildDirForAll string
)

func ftpgateBinaries(t *testing.T) (string, string) {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ftpgate-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildDirForAll = dir
		for i, out := range []*string{&binA, &binB} {
			*out, buildErr = lab.BuildFtpgate(dir, fmt.Sprintf("ftpgate-%c", 'a'+i),
				"-ldflags", fmt.Sprintf("-X github.com/ftpgate/ftpgate/loader.Version=e2e-%c", 'a'+i))
			if buildErr != nil {
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binA, binB
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDirForAll != "" {
		os.RemoveAll(buildDirForAll)
	}
	os.Exit(code)
}

// gate is one `ftpgate run` guarding both gateway interfaces of a lab.
type gate struct {
	t      *testing.T
	l      *lab.Lab
	bin    string
	pinDir string
	cmd    *exec.Cmd
	log    *bytes.Buffer
	done   chan struct{}
}

func newGate(t *testing.T, l *lab.Lab) *gate {
	bin, _ := ftpgateBinaries(t)
	g := &gate{t: t, l: l, bin: bin, pinDir: "/sys/fs/bpf/ftpgate-e2e-" + l.ID}
	t.Cleanup(func() {
		g.stop()
		if out, err := g.cli("detach"); err != nil {
			t.Errorf("detach: %v\n%s", err, out)
		}
	})
	return g
}

// guardedLab is what most tests start with: a lab of their own, in
// parallel with the others, whose gateway runs ftpgate with the defaults
// plus extra flags.
func guardedLab(t *testing.T, opts lab.Options, extra ...string) (*lab.Lab, *gate) {
	t.Helper()
	lab.Require(t)
	t.Parallel()
	l := lab.New(t, opts)
	g := newGate(t, l)
	g.start(extra...)
	return l, g
}

// start runs `ftpgate run` with the lab's defaults plus extra flags and
// waits for its ready file.
func (g *gate) start(extra ...string) {
	g.t.Helper()
	ready := filepath.Join(g.t.TempDir(), "ready")
	args := []string{"run", "--netns", g.l.GatewayNS, "--iface", lab.GwClientIf, "--iface", lab.GwServerIf,
		"--pin-dir", g.pinDir, "--ready-file", ready, "--allow-port", "21", "--allow-port", "2121", "--log-level", "debug"}
	g.cmd = exec.Command(g.bin, append(args, extra...)...)
	g.log = &bytes.Buffer{}
	g.cmd.Stdout, g.cmd.Stderr = g.log, g.log
	if err := g.cmd.Start(); err != nil {
		g.t.Fatalf("start ftpgate: %v", err)
	}
	g.done = make(chan struct{})
	go func() { g.cmd.Wait(); close(g.done) }()

	switch err := lab.WaitReady(ready, g.done, 30*time.Second); {
	case errors.Is(err, lab.ErrExited):
		g.t.Fatalf("ftpgate run exited before it was ready: %v\n%s", g.cmd.ProcessState, g.log)
	case err != nil:
		g.t.Fatalf("ftpgate run not ready after 30s\n%s", g.log)
	}
}

// stop sends SIGTERM and waits: the dataplane stays attached.
func (g *gate) stop() {
	if g.cmd == nil || g.cmd.Process == nil {
		return
	}
	if lab.Terminate(g.cmd.Process, syscall.SIGTERM, g.done, 15*time.Second) {
		g.t.Errorf("ftpgate run ignored SIGTERM for 15s\n%s", g.log)
	}
	g.cmd = nil
}

// cli runs an ftpgate command against this gate's pin dir.
func (g *gate) cli(args ...string) (string, error) {
	full := append([]string{args[0], "--pin-dir", g.pinDir, "--netns", g.l.GatewayNS}, args[1:]...)
	if len(args) > 1 && (args[0] == "ports" || args[0] == "allow") && (args[1] == "add" || args[1] == "del") {
		// subcommand flags go after the subcommand
		full = append([]string{args[0], args[1], "--pin-dir", g.pinDir}, args[2:]...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, g.bin, full...).CombinedOutput()
	return string(out), err
}

func (g *gate) counters() map[string]uint64 {
	g.t.Helper()
	out, err := g.cli("stats", "--json")
	if err != nil {
		g.t.Fatalf("stats: %v\n%s", err, out)
	}
	c, err := lab.StatsCounters(out)
	if err != nil {
		g.t.Fatal(err)
	}
	return c
}

func transfer(t *testing.T, l *lab.Lab, mode lab.Mode, family, port int, tool lab.Tool) lab.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	return l.Download(ctx, mode, family, port, tool)
}

func wantTransfer(t *testing.T, l *lab.Lab, mode lab.Mode, family, port int, tool lab.Tool) {
	t.Helper()
	r := transfer(t, l, mode, family, port, tool)
	if err := r.Check(); err != nil {
		t.Fatalf("%s %s v%d port %d: %v\n%s", tool, mode, family, port, err, lastLines(r.Output, 15))
	}
}

func wantNoTransfer(t *testing.T, l *lab.Lab, mode lab.Mode, family, port int, tool lab.Tool) {
	t.Helper()
	r := transfer(t, l, mode, family, port, tool)
	if r.Err == nil && r.HashOK {
		t.Fatalf("%s %s v%d port %d: transfer succeeded, want it blocked", tool, mode, family, port)
	}
	if errors.Is(r.Err, lab.ErrUnsupported) {
		t.Fatalf("%s %s v%d: not a supported combination", tool, mode, family)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
