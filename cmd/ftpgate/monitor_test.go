package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/loader"
)

// dropSYN makes the fixture's XDP program drop a SYN from port sport: one
// syn_drop event.
func (f *fixture) dropSYN(t *testing.T, sport uint16) {
	t.Helper()
	prog, err := ebpf.LoadPinnedProgram(filepath.Join(f.pinDir, "progs", "ftpgate_xdp"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	frame := bpftest.SYN(netip.AddrPortFrom(netip.MustParseAddr("192.0.2.10"), sport), netip.MustParseAddrPort("198.51.100.20:30000"))
	if _, err := prog.Run(&ebpf.RunOptions{Data: frame}); err != nil {
		t.Fatal(err)
	}
}

// startMonitor runs `monitor --count n` and returns once it says it is
// monitoring; the channel yields its stdout and its stderr when it ends.
func (f *fixture) startMonitor(t *testing.T, n string, flags ...string) <-chan result {
	t.Helper()
	pr, pw := io.Pipe()
	done := make(chan result, 1)
	go func() {
		var out bytes.Buffer
		args := append([]string{"ftpgate", "monitor", "--pin-dir", f.pinDir, "--state-dir", string(f.states), "--count", n}, flags...)
		code := run(args, &out, pw)
		pw.Close()
		done <- result{code: code, stdout: out.String()}
	}()
	var stderr strings.Builder
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		stderr.WriteString(sc.Text() + "\n")
		if strings.HasPrefix(sc.Text(), "monitoring ") {
			go io.Copy(io.Discard, pr)
			out := make(chan result, 1)
			go func() { r := <-done; r.stderr = stderr.String(); out <- r }()
			return out
		}
	}
	t.Fatalf("monitor ended before it was ready:\n%s", stderr.String())
	return nil
}

func waitMonitor(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("monitor did not see its events within 10s")
		return result{}
	}
}

// Without a live run, monitor reads the ring itself but skips what was
// left there before it started, and every event has its time (issue 10 c).
func TestMonitorSkipsStaleEvents(t *testing.T) {
	f := newFixture(t)
	f.dp.Close()        // as after run stopped: the dataplane stays, nothing drains it
	f.dropSYN(t, 40000) // stale: before the monitor starts
	mon := f.startMonitor(t, "1")
	before := time.Now()
	f.dropSYN(t, 50123)
	r := waitMonitor(t, mon)
	if r.code != 0 || !strings.Contains(r.stdout, "192.0.2.10:50123 -> 198.51.100.20:30000") || strings.Contains(r.stdout, ":40000") {
		t.Fatalf("monitor printed %q (exit %d, stderr %q), want only the SYN from port 50123", r.stdout, r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "reading the ring directly") {
		t.Errorf("monitor does not say it reads the ring itself: %q", r.stderr)
	}
	stamp, err := time.Parse(timeLayout, strings.Fields(r.stdout)[0])
	if err != nil || stamp.Before(before.Add(-time.Second)) || stamp.After(time.Now().Add(time.Second)) {
		t.Fatalf("event time %q (%v), want about %v", strings.Fields(r.stdout)[0], err, before)
	}
}

// With run live, monitors get the events from run's socket: several at
// once, each event once, with its time in JSON (issue 10 c).
func TestMonitorOverRunSocket(t *testing.T) {
	f := newFixture(t)
	stop := serveEvents(f.dp, loader.Options{PinDir: f.pinDir, StateDir: f.states}, slog.New(slog.DiscardHandler))
	defer stop()
	// An event from before the monitors: a first monitor's seeing it proves
	// run drained it (without that, a loaded machine let run read it after
	// the monitors below had registered, and they printed it).
	witness := f.startMonitor(t, "1", "--json")
	f.dropSYN(t, 40000)
	if r := waitMonitor(t, witness); !strings.Contains(r.stdout, `"sport":40000`) {
		t.Fatalf("the first monitor printed %q, want the SYN from port 40000", r.stdout)
	}
	mons := []<-chan result{f.startMonitor(t, "1", "--json"), f.startMonitor(t, "1", "--json")}
	f.dropSYN(t, 50123)
	for i, mon := range mons {
		r := waitMonitor(t, mon)
		if !strings.Contains(r.stderr, "events of `ftpgate run`") {
			t.Errorf("monitor %d does not read from run: %q", i, r.stderr)
		}
		var ev struct {
			Time   time.Time `json:"time"`
			Type   string    `json:"type"`
			Reason string    `json:"reason"`
			SPort  uint16    `json:"sport"`
			DPort  uint16    `json:"dport"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &ev); err != nil {
			t.Fatalf("monitor %d printed %q: %v", i, r.stdout, err)
		}
		if ev.Type != "syn_drop" || ev.Reason != "syn_drop_unexpected" || ev.SPort != 50123 || ev.DPort != 30000 ||
			time.Since(ev.Time) > time.Minute || time.Since(ev.Time) < -time.Second {
			t.Fatalf("monitor %d printed %s", i, r.stdout)
		}
	}
}

// With run holding the pin directory but no events socket to be found (a
// run given another --state-dir), monitor refuses rather than read the ring
// beside run: the two readers would split the events between them.
func TestMonitorRefusesToSplitRunsEvents(t *testing.T) {
	f := newFixture(t) // its dataplane holds the pin directory, as run does
	r := f.cmd([]string{"monitor"}, "--count", "1")
	if r.code == 0 || !strings.Contains(r.stderr, "serves no events") || strings.Contains(r.stderr, "reading the ring directly") {
		t.Fatalf("monitor beside a live run without its socket: exit %d, stderr %q", r.code, r.stderr)
	}
}
