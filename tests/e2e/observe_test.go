package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/tests/lab"
)

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestMetricsAndMonitor scrapes the Prometheus endpoint and streams the
// events, served by run, around a passive transfer and a dropped SYN.
func TestMetricsAndMonitor(t *testing.T) {
	lab.Require(t)
	t.Parallel()
	l := lab.New(t, lab.Options{FileSize: 64 << 10})
	g := newGate(t, l)
	addr := fmt.Sprintf("127.0.0.1:%d", freeLoopbackPort(t))
	g.start("--metrics-addr", addr)

	// three events, and curl's USER and PASS in clear before them (#13)
	mon := exec.Command(g.bin, "monitor", "--pin-dir", g.pinDir, "--json", "--count", "5")
	out, err := mon.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errOut, err := mon.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := mon.Start(); err != nil {
		t.Fatal(err)
	}
	defer mon.Process.Kill()
	lines := make(chan string, 8)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()

	// the monitor must be reading before the events happen: it says so
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(errOut).ReadString('\n')
		if err == nil && !strings.HasPrefix(line, "monitoring the events of `ftpgate run`") {
			err = fmt.Errorf("unexpected %q", line)
		}
		ready <- err
		io.Copy(io.Discard, errOut)
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("monitor not ready: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("monitor not ready after 10s")
	}
	wantTransfer(t, l, lab.PASV, 4, lab.FTPPort, lab.Curl)
	// a SYN nothing admits: monitor shows it dropped, with its 5-tuple
	if out, err := l.ConnectTimesOut(context.Background(), l.ClientNS, l.ServerAddr(4), 40000, time.Second); err != nil || out != lab.TimedOut {
		t.Fatalf("unsolicited connect: %v %v, want timed out", out, err)
	}

	var types []string
	timeout := time.After(10 * time.Second)
	for len(types) < 3 {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("monitor ended after %v", types)
			}
			var ev struct {
				Time   time.Time `json:"time"`
				Type   string    `json:"type"`
				Reason string    `json:"reason"`
				Kind   string    `json:"kind"`
				Src    string    `json:"src"`
				Dst    string    `json:"dst"`
				DPort  int       `json:"dport"`
			}
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("monitor line %q: %v", line, err)
			}
			if age := time.Since(ev.Time); age < -time.Second || age > time.Minute {
				t.Fatalf("event time %v is not now: %s", ev.Time, line)
			}
			if ev.Type == "login_cleartext" {
				// #13: curl's USER and PASS in clear, reported (and passed: no --require-tls)
				if ev.Reason != "login_cleartext" {
					t.Fatalf("event %s", line)
				}
				continue
			}
			if ev.Type == "syn_drop" {
				if ev.Reason != "syn_drop_unexpected" || ev.Src != l.ClientAddr(4).String() || ev.Dst != l.ServerAddr(4).String() || ev.DPort != 40000 {
					t.Fatalf("event %s", line)
				}
			} else if ev.Kind != "pasv" || ev.Dst != l.ServerAddr(4).String() || ev.DPort < lab.PasvMinPort {
				t.Fatalf("event %s", line)
			}
			types = append(types, ev.Type)
		case <-timeout:
			t.Fatalf("monitor saw only %v", types)
		}
	}
	if strings.Join(types, ",") != "created,consumed,syn_drop" {
		t.Fatalf("events %v, want created,consumed,syn_drop", types)
	}

	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`ftpgate_events_total{event="syn_pass_expected"} 1`,
		`ftpgate_events_total{event="events_lost"} 0`,
		`ftpgate_events_total{event="events_suppressed"} 0`,
		`ftpgate_map_capacity{map="expectations"} 262144`,
		`ftpgate_map_entries{map="data_flows"}`,
		`ftpgate_attach_info{iface="gw-c",tc_mode="tcx",xdp_mode="generic"} 1`,
		`ftpgate_build_info{goversion="go`,
		`ftpgate_scrape_errors 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", body)
	}
}
