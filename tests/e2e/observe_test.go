package e2e

import (
	"bufio"
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
// events ring buffer around a passive transfer.
func TestMetricsAndMonitor(t *testing.T) {
	lab.Require(t)
	t.Parallel()
	l := lab.New(t, lab.Options{FileSize: 64 << 10})
	g := newGate(t, l)
	addr := fmt.Sprintf("127.0.0.1:%d", freeLoopbackPort(t))
	g.start("--metrics-addr", addr)

	mon := exec.Command(g.bin, "monitor", "--pin-dir", g.pinDir, "--json", "--count", "2")
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
		if err == nil && !strings.HasPrefix(line, "monitoring ") {
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

	var types []string
	timeout := time.After(10 * time.Second)
	for len(types) < 2 {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("monitor ended after %v", types)
			}
			var ev struct {
				Type  string `json:"type"`
				Kind  string `json:"kind"`
				Dst   string `json:"dst"`
				DPort int    `json:"dport"`
			}
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("monitor line %q: %v", line, err)
			}
			if ev.Kind != "pasv" || ev.Dst != l.ServerAddr(4).String() || ev.DPort < lab.PasvMinPort {
				t.Fatalf("event %s", line)
			}
			types = append(types, ev.Type)
		case <-timeout:
			t.Fatalf("monitor saw only %v", types)
		}
	}
	if strings.Join(types, ",") != "created,consumed" {
		t.Fatalf("events %v, want created,consumed", types)
	}

	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`ftpgate_events_total{event="syn_pass_expected"} 1`,
		`ftpgate_events_total{event="syn_drop_unexpected"} 0`,
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
