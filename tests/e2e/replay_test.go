package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/tests/lab"
)

// updateEnv, when 1, copies the capture this test records into the CLI's
// testdata, where TestReplayTestdata replays it without a lab.
const updateEnv = "FTPGATE_UPDATE_TESTDATA"

// TestReplayLabCapture records, on the client's interface, a passive and an
// active transfer through the gateway and an unsolicited attempt, then
// replays the capture offline: replay must reach the gateway's verdicts. (A
// capture on a guarded interface itself would lack what XDP dropped: XDP
// runs before packet sockets see anything.)
func TestReplayLabCapture(t *testing.T) {
	l, g := guardedLab(t, lab.Options{FileSize: 2048})
	pcap := filepath.Join(t.TempDir(), "client.pcap")
	capture, err := l.StartCapture(l.ClientNS, lab.ClientIf, pcap, "tcp")
	if err != nil {
		t.Fatal(err)
	}
	wantTransfer(t, l, lab.PASV, 4, lab.FTPPort, lab.Curl)
	wantTransfer(t, l, lab.PORT, 4, lab.FTPPort, lab.Curl)
	if out, err := l.ConnectTimesOut(context.Background(), l.ClientNS, l.ServerAddr(4), 40000, time.Second); err != nil || out != lab.TimedOut {
		t.Fatalf("unsolicited: %v %v", out, err)
	}
	if err := capture.WaitPackets(20, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := capture.Stop(); err != nil {
		t.Fatal(err)
	}
	live := g.counters()

	// the server side is behind the gateway: its packets are outbound here
	out, err := exec.Command(g.bin, "replay", "--pcap", pcap, "--local", "198.51.100.0/24", "--allow-port", "21", "--json").CombinedOutput()
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	var res struct {
		Expectations []struct {
			Kind, Fate string
		} `json:"expectations"`
		Connections []struct {
			DPort   int    `json:"dport"`
			Verdict string `json:"verdict"`
			Reason  string `json:"reason"`
		} `json:"connections"`
		Counters map[string]uint64 `json:"counters"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(res.Expectations) != 2 || res.Expectations[0].Kind != "pasv" || res.Expectations[1].Kind != "port" {
		t.Fatalf("expectations: %s", out)
	}
	for _, e := range res.Expectations {
		if e.Fate != "consumed" && !(e.Kind == "port" && e.Fate == "closed") {
			// the active-mode SYN comes from the server: outbound in this
			// capture, so its expectation ends with its control connection
			t.Errorf("expectation %+v", e)
		}
	}
	for _, name := range []string{"syn_pass_expected", "cmd_pasv", "reply_227", "cmd_port"} {
		if res.Counters[name] == 0 {
			t.Errorf("replay counter %s is 0 (live: %d)", name, live[name])
		}
	}
	dropped := false
	for _, c := range res.Connections {
		if c.DPort == 40000 && c.Verdict == "drop" && c.Reason == "no-expectation" {
			dropped = true
		}
	}
	if !dropped {
		t.Errorf("the unsolicited attempt is not a drop in the replay: %s", out)
	}

	if os.Getenv(updateEnv) == "1" {
		b, err := os.ReadFile(pcap)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile("../../cmd/ftpgate/testdata/lab-client.pcap", b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
