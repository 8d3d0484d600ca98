package main

import (
	"bytes"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/group"
	"github.com/ftpgate/ftpgate/internal/group/grouptest"
	"github.com/ftpgate/ftpgate/maps"
)

// fakeTable stands for a peer's dataplane: the peer here only publishes.
type fakeTable struct{}

func (fakeTable) AddExpectation(maps.Expectation, time.Duration) error { return nil }
func (fakeTable) DeleteExpectation(maps.Expectation) error             { return nil }
func (fakeTable) AddFlow(maps.Flow, uint32) error                      { return nil }

// TestRunGroup: `run --group` joins a peer; what the peer publishes lands
// in run's expectation map, shown as the peer's by `expectations`, and
// `status` shows the route and the counters; one a peer may not send (a
// low port) is refused and counted.
func TestRunGroup(t *testing.T) {
	ns, pinDir, states := runEnv(t)
	runAddr, peerAddr := grouptest.FreeAddr(t), grouptest.FreeAddr(t)
	ready := filepath.Join(t.TempDir(), "ready")
	done, early := runUntilReady(t, ready, "run", "--netns", ns, "--iface", "fr0", "--pin-dir", pinDir, "--state-dir", states,
		"--ready-file", ready, "--ctrl-conns", "1024", "--expectations", "1024", "--flows", "1024", "--log-level", "warn",
		"--group", "lab", "--node-id", "gwa", "--sync-listen", runAddr, "--peer", peerAddr, "--sync-insecure")
	if early != nil {
		t.Fatalf("run exited early: %d %s", early.code, early.stderr)
	}
	defer stopRun(t, done)

	peer, err := group.Start(group.Config{Group: "lab", NodeID: "gwb", Listen: peerAddr, Peers: []string{runAddr}, Insecure: true},
		fakeTable{}, func() group.Policy { return group.Policy{ExpectTimeout: maps.DefaultExpectTimeout} }, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	client, server := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("198.51.100.20")
	ctrl := maps.Control{Client: client, ClientPort: 40000, Server: server, ServerPort: 21}
	deadline := time.Now().Add(20 * time.Second)
	var out string
	for {
		// published until run has the route and takes it
		for _, port := range []uint16{50000, 22} {
			peer.HandleEvent(maps.Event{Type: maps.EventCreated, Kind: maps.KindPasv, Src: client, Dst: server, DPort: port, Control: ctrl})
		}
		r := ftpgate("expectations", "--pin-dir", pinDir)
		out = r.stdout
		if strings.Contains(out, "198.51.100.20:50000") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the peer's expectation never reached run's map:\n%s%s", r.stdout, r.stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if tag := fmt.Sprintf("peer %08x", group.NodeHash("gwb")); !strings.Contains(out, tag) {
		t.Fatalf("expectations do not show the origin %q:\n%s", tag, out)
	}
	if strings.Contains(out, ":22 ") {
		t.Fatalf("a low port from a peer was written:\n%s", out)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		r := ftpgate("status", "--pin-dir", pinDir, "--state-dir", states)
		if strings.Contains(r.stdout, "group:     lab, node gwa") && strings.Contains(r.stdout, "low_port") &&
			strings.Contains(r.stdout, "routes up 1, peers unreached 0") && strings.Contains(r.stdout, "gwb") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status does not show the group:\n%s%s", r.stdout, r.stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestRunGroupNeedsTLS: a group without certificates, and without the lab
// switch, is refused in one line before anything is attached.
func TestRunGroupNeedsTLS(t *testing.T) {
	r := ftpgate("run", "--iface", "lo", "--group", "lab", "--node-id", "a", "--sync-listen", "127.0.0.1:7422")
	if r.code == 0 || !strings.Contains(r.stderr, "--sync-ca") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Fatalf("exit %d, stderr %q: want one line naming --sync-ca", r.code, r.stderr)
	}
}

// TestRunGroupCertificateRefused: a certificate that does not name
// --node-id (peers would refuse everything it signs) is refused in one
// line naming the flag, before anything is attached.
func TestRunGroupCertificateRefused(t *testing.T) {
	p := grouptest.NewPKI(t, "ca")
	cert, key := p.Issue(t, "gwb", netip.MustParseAddr("127.0.0.1"))
	r := ftpgate("run", "--iface", "lo", "--group", "lab", "--node-id", "gwa", "--sync-listen", "127.0.0.1:7422",
		"--sync-ca", p.CA, "--sync-cert", cert, "--sync-key", key)
	if r.code == 0 || !strings.Contains(r.stderr, "--node-id") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Fatalf("exit %d, stderr %q: want one line naming --node-id", r.code, r.stderr)
	}
}

// TestRunSyncHoldRefused: --sync-hold outside a group, or with --nat, is
// refused in one line naming the conflict, before anything is attached.
func TestRunSyncHoldRefused(t *testing.T) {
	group := []string{"--group", "lab", "--node-id", "a", "--sync-listen", "127.0.0.1:7422", "--sync-insecure"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--sync-hold"}, "--sync-hold needs --group"},
		{append([]string{"--sync-hold", "--nat"}, group...), "--sync-hold cannot be combined with --nat"},
	} {
		r := ftpgate(append([]string{"run", "--iface", "lo"}, c.args...)...)
		if r.code == 0 || !strings.Contains(r.stderr, c.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q: want one line with %q", c.args, r.code, r.stderr, c.want)
		}
	}
}

func TestPrintGroup(t *testing.T) {
	st := &group.Status{Group: "edge", Node: "gw1", Bus: "embedded", Listen: "192.0.2.1:7422", Connected: true,
		Routes: []group.Route{{Peer: "gw2", Addr: "192.0.2.2:7422"}}, PeersDown: 1,
		Peers: []group.PeerState{{Node: "gw2", Origin: group.NodeHash("gw2"), Entries: 3, InSync: true}, {Node: "gw3", Origin: group.NodeHash("gw3"), LastSeen: 9000}},
		Counters: group.Snapshot{Sent: 5, Received: 7, Rejected: map[string]uint64{"low_port": 2}, Late: 1,
			Acks: 8, Held: map[string]uint64{group.HoldConfirmed: 4, group.HoldTimeout: 1}, HoldP50us: 900, HoldP99us: 4000}, Updated: time.Now()}
	var b bytes.Buffer
	if err := printGroup(&b, st); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"routes up 1, peers unreached 1", "rejected 2 (low_port 2)", "late 1",
		"hold:      segments 5 (confirmed 4, alone 0, timeout 1, superseded 0, closed 0, failed 0, stale 0), acks 8, wait p50 900us p99 4000us",
		fmt.Sprintf("gw2   %08x  192.0.2.2:7422", group.NodeHash("gw2")), "DOWN"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("missing %q in:\n%s", want, b.String())
		}
	}
}
