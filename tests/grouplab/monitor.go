package grouplab

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ftpgate/ftpgate/maps"
	"github.com/ftpgate/ftpgate/tests/lab"
)

// Event is one line of `ftpgate monitor --json`, with the gateway that
// printed it.
type Event struct {
	maps.Event
	GW int
}

func (e Event) String() string {
	s := fmt.Sprintf("gw%d %s %s", e.GW+1, e.Wall.Format("15:04:05.000"), e.Type)
	if e.Reason != "" {
		s += " " + e.Reason
	}
	return s + fmt.Sprintf(" %v:%d -> %v:%d", e.Src, e.SPort, e.Dst, e.DPort)
}

// Recorder keeps what `ftpgate monitor` prints on every gateway, from
// Monitor to Stop.
type Recorder struct {
	mu     sync.Mutex
	events []Event
	procs  []*exec.Cmd
	done   []chan struct{}
}

// Monitor starts `ftpgate monitor --json` on every gateway (through each
// run's events socket).
func (l *Lab) Monitor() *Recorder {
	l.t.Helper()
	r := &Recorder{}
	for i, g := range l.GW {
		cmd := exec.Command("nsenter", "--net=/run/netns/"+g.NS, l.Bin, "monitor", "--json",
			"--pin-dir", g.PinDir, "--state-dir", g.States)
		out, err := cmd.StdoutPipe()
		if err != nil {
			l.t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			l.t.Fatalf("monitor gw%d: %v", i+1, err)
		}
		done := make(chan struct{})
		go func() { r.read(i, out); _ = cmd.Wait(); close(done) }()
		r.procs, r.done = append(r.procs, cmd), append(r.done, done)
	}
	l.t.Cleanup(func() { r.Stop() })
	return r
}

func (r *Recorder) read(gw int, out io.Reader) {
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		e := Event{GW: gw}
		if json.Unmarshal(sc.Bytes(), &e.Event) != nil {
			continue
		}
		r.mu.Lock()
		r.events = append(r.events, e)
		r.mu.Unlock()
	}
}

// Stop ends the monitors (by PID) and returns every event, oldest first.
func (r *Recorder) Stop() []Event {
	for i, p := range r.procs {
		lab.Terminate(p.Process, syscall.SIGTERM, r.done[i], 5*time.Second)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.events)
	slices.SortStableFunc(out, func(a, b Event) int { return a.Wall.Compare(b.Wall) })
	return out
}

// ExplainDrops tells, for each dropped data SYN, what the gateways did
// with the port it went to around it: which made or consumed an
// expectation for it, and when.
func ExplainDrops(events []Event) []string {
	var out []string
	for _, d := range events {
		if d.Type != "syn_drop" {
			continue
		}
		lines := []string{"dropped: " + d.String()}
		for _, e := range events {
			if e != d && e.Type != "reject" && e.DPort == d.DPort && e.Wall.Sub(d.Wall).Abs() < 5*time.Second &&
				(e.Dst == d.Dst || e.Src == d.Dst) {
				lines = append(lines, fmt.Sprintf("  %+.3fs %s", e.Wall.Sub(d.Wall).Seconds(), e))
			}
		}
		if len(lines) == 1 {
			lines = append(lines, "  no gateway made or consumed an expectation for the port within 5 s")
		}
		out = append(out, strings.Join(lines, "\n"))
	}
	return out
}
