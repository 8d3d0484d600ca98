package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/internal/nettest"
)

// runEnv gives `run` a veth pair fr0/fr1 in a namespace of its own, a
// private bpffs for its pins and a state directory.
func runEnv(t *testing.T) (ns, pinDir, states string) {
	t.Helper()
	if os.Geteuid() != 0 {
		bpftest.SkipOrFail(t, "run attaches programs: needs root")
	}
	return nettest.VethNS(t, "fgr", "fr0", "fr1"), filepath.Join(nettest.BPFFS(t), "ftpgate"), t.TempDir()
}

// runUntilReady starts `ftpgate run` in-process and waits for its ready
// file; early is its result when it exited before.
func runUntilReady(t *testing.T, ready string, args ...string) (done chan result, early *result) {
	t.Helper()
	done = make(chan result, 1)
	go func() { done <- ftpgate(args...) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			return done, nil
		}
		select {
		case r := <-done:
			return nil, &r
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("run not ready after 30s")
		}
	}
}

// stopRun sends SIGTERM to the in-process run and returns its result.
func stopRun(t *testing.T, done chan result) result {
	t.Helper()
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		return r
	case <-time.After(15 * time.Second):
		t.Fatal("run ignored SIGTERM")
	}
	return result{}
}

// TestRunUntilSignalled runs `ftpgate run` in-process: it attaches, writes
// its ready file, and on SIGTERM exits 0 leaving the dataplane attached;
// with --detach-on-exit it leaves nothing.
func TestRunUntilSignalled(t *testing.T) {
	ns, pinDir, states := runEnv(t)

	for _, detach := range []bool{false, true} {
		ready := filepath.Join(t.TempDir(), "ready")
		args := []string{"run", "--netns", ns, "--iface", "fr0", "--pin-dir", pinDir, "--state-dir", states, "--ready-file", ready,
			"--ctrl-conns", "1024", "--expectations", "1024", "--flows", "1024", "--log-level", "warn"}
		if detach {
			args = append(args, "--detach-on-exit")
		}
		done, early := runUntilReady(t, ready, args...)
		if early != nil {
			t.Fatalf("run exited early: %d %s", early.code, early.stderr)
		}
		if r := ftpgate("status", "--pin-dir", pinDir, "--state-dir", states); r.code != 0 || !strings.Contains(r.stdout, "fr0") {
			t.Fatalf("status while running: %d %s%s", r.code, r.stdout, r.stderr)
		}
		if r := stopRun(t, done); r.code != 0 {
			t.Fatalf("run exit %d: %s", r.code, r.stderr)
		}
		_, err := os.Stat(filepath.Join(pinDir, "config"))
		if detach != os.IsNotExist(err) {
			t.Fatalf("detach-on-exit=%v, pins present: %v", detach, err == nil)
		}
		if !detach {
			// still attached, but nothing ages: status says both, exit 4
			if r := ftpgate("status", "--pin-dir", pinDir, "--state-dir", states); r.code != 4 || !strings.Contains(r.stdout, "not running") {
				t.Fatalf("status after the daemon stopped: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
		}
	}
}

// TestRunNATRefusals: `run --nat` with a mechanism this kernel cannot
// serve (as the VM matrix measured: conntrack on 7.3.4, both on 5.10) exits
// at once with one line saying what is missing and what to use instead; a
// bad mechanism says what to use.
func TestRunNATRefusals(t *testing.T) {
	ns, pinDir, states := runEnv(t)
	t.Cleanup(func() { ftpgate("detach", "--pin-dir", pinDir, "--state-dir", states) })
	args := []string{"run", "--netns", ns, "--iface", "fr0", "--pin-dir", pinDir, "--state-dir", states,
		"--ctrl-conns", "1024", "--expectations", "1024", "--flows", "1024", "--log-level", "warn", "--nat"}

	mech := bpftest.NATMechanism()
	refused := map[string][]string{
		"":          {"own", "conntrack", "auto"},
		"own":       {"conntrack"},
		"conntrack": nil,
	}[mech]
	for _, m := range refused {
		r := ftpgate(append(args, "--nat-mechanism", m)...)
		oneLine(t, r)
		if r.code == 0 || !strings.Contains(r.stderr, "refused the") || !strings.Contains(r.stderr, "nf_nat_ftp") {
			t.Errorf("run --nat --nat-mechanism %s on a kernel measured to get %q: %s", m, mech, r.stderr)
		}
	}
	r := ftpgate(append(args, "--nat-mechanism", "kernel")...)
	oneLine(t, r)
	if !strings.Contains(r.stderr, "use auto, conntrack or own") {
		t.Errorf("run --nat-mechanism kernel: %s", r.stderr)
	}
}

// TestRunNATWithoutFwmark: `run --nat` without --fwmark starts and logs one
// warning saying what the forward chain lacks and which flag to add; with
// --fwmark it says nothing.
func TestRunNATWithoutFwmark(t *testing.T) {
	ns, pinDir, states := runEnv(t)
	t.Cleanup(func() { ftpgate("detach", "--pin-dir", pinDir, "--state-dir", states) })
	for _, mark := range []bool{false, true} {
		ready := filepath.Join(t.TempDir(), "ready")
		args := []string{"run", "--netns", ns, "--iface", "fr0", "--pin-dir", pinDir, "--state-dir", states, "--ready-file", ready,
			"--ctrl-conns", "1024", "--expectations", "1024", "--flows", "1024", "--log-level", "warn", "--nat"}
		if mark {
			args = append(args, "--fwmark", "0x100/0x100")
		}
		done, early := runUntilReady(t, ready, args...)
		if early != nil {
			if strings.Contains(early.stderr, "NAT is not available") {
				t.Skipf("this kernel refuses --nat: %s", early.stderr)
			}
			t.Fatalf("run exited early: %d %s", early.code, early.stderr)
		}
		r := stopRun(t, done)
		warned := strings.Count(r.stderr, "--nat without --fwmark")
		if r.code != 0 || warned != map[bool]int{false: 1, true: 0}[mark] {
			t.Fatalf("run --nat, fwmark %v: exit %d, %d warnings:\n%s", mark, r.code, warned, r.stderr)
		}
		if !mark && !strings.Contains(r.stderr, "--fwmark 0x100/0x100") {
			t.Errorf("the warning does not name the flag to add:\n%s", r.stderr)
		}
	}
}
