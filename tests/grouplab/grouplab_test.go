package grouplab

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	ftpmaps "github.com/ftpgate/ftpgate/maps"
	"github.com/ftpgate/ftpgate/tests/lab"
)

func TestMain(m *testing.M) {
	if orders := os.Getenv(RogueEnv); orders != "" { // this binary again, as the rogue member
		if err := RunRogue(orders); err != nil {
			fmt.Fprintln(os.Stderr, "rogue:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	lab.RemoveBuilt()
	os.Exit(code)
}

const parallel = 16

// passiveN and activeN are the transfers of each batch; FTPGATE_GROUPLAB_SCALE
// divides them (a quick look while debugging the lab).
var passiveN, activeN = scaled(200), scaled(50)

func scaled(n int) int {
	if d, err := strconv.Atoi(os.Getenv("FTPGATE_GROUPLAB_SCALE")); err == nil && d > 1 {
		return max(n/d, 1)
	}
	return n
}

// waitStatus polls gateway i's status until it contains every want.
func waitStatus(t *testing.T, l *Lab, i int, timeout time.Duration, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, _ := l.CLI(i, "status")
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(out, w)
		}
		if ok {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("gw%d status lacks %q after %v:\n%s", i+1, want, timeout, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestGroupLab: through an L4 ECMP group of three gateways, without sync a
// data connection whose hash picks another gateway than its control
// connection's is dropped; with sync every transfer succeeds with no
// retransmission stall. Then failover, partition and heal, restart, a
// rogue member, a foreign certificate.
// Set FTPGATE_GROUPLAB=1 (make grouplab): it takes minutes.
func TestGroupLab(t *testing.T) {
	if os.Getenv("FTPGATE_GROUPLAB") == "" {
		t.Skip("the group lab takes minutes: make grouplab (FTPGATE_GROUPLAB=1)")
	}
	l := New(t)
	ctx := context.Background()

	t.Run("sync off", func(t *testing.T) {
		l.Start(Options{})
		trs := l.Batch(ctx, passiveN, activeN, parallel, 20000, 3*time.Second)
		ok, stalled, failed, _ := Summary(trs)
		per, drops := l.Counter("syn_drop_unexpected")
		_, consumed := l.Counter("expect_consumed")
		t.Logf("sync off: %d transfers, %d ok, %d stalled or failed (%d failed); first SYNs dropped (syn_drop_unexpected) %d per gateway %v; expectations consumed %d",
			len(trs), ok, stalled, failed, drops, per, consumed)
		for i := range Gateways {
			t.Logf("gw%d counters: %s", i+1, l.NonZero(i))
		}
		if stalled == 0 || drops == 0 {
			t.Fatalf("no transfer stalled without sync: the ECMP hash did not split control and data connections")
		}
		for i := range Gateways {
			l.StopGateway(i)
			if out, err := l.CLI(i, "detach"); err != nil {
				t.Fatalf("detach gw%d: %v %s", i+1, err, out)
			}
		}
	})

	t.Run("sync on", func(t *testing.T) {
		l.Start(Options{Sync: true})
		for i := range Gateways {
			waitStatus(t, l, i, 30*time.Second, "routes up 2, peers unreached 0")
		}
		trs := l.Batch(ctx, passiveN, activeN, parallel, 21000, 10*time.Second)
		ok, stalled, failed, worst := Summary(trs)
		p50, p50Fast := StartP50(trs)
		_, drops := l.Counter("syn_drop_unexpected")
		late := 0
		for i := range Gateways {
			out, _ := l.CLI(i, "status")
			t.Logf("gw%d:\n%s", i+1, statusGroupLines(out))
			late += lateOf(out)
		}
		t.Logf("sync on: %d transfers, %d ok, %d stalled (time_starttransfer >= 1 s), %d failed, slowest %v, time_starttransfer p50 %v (%v of those not stalled), syn_drop_unexpected %d, late %d",
			len(trs), ok, stalled, failed, worst, p50, p50Fast, drops, late)
		for _, tr := range trs {
			if !tr.OK {
				t.Errorf("transfer from port %d (active %v) failed: %s", tr.Port, tr.Active, tr.Out)
			}
		}
		// Not asserted: no stall. A first SYN may beat the replication of
		// the 227 it answers (each such is counted as late where the
		// syn_drop event was not rate-limited away), and on this shared
		// machine a session may start a second late without any drop; the
		// figures are logged and in docs/group.md.
		if drops == 0 && stalled > 0 {
			t.Logf("%d stalls without a dropped SYN: machine load, not the group", stalled)
		}
	})
	if t.Failed() {
		return
	}

	// --sync-hold, on by default in a group: the segment that makes an
	// expectation (227/229, PORT/EPRT) is held until both peers acknowledge
	// the expectation, then sent on where TC held it; the data SYN that
	// answers it passes whichever gateway it reaches (docs/group.md,
	// "Hold"). The gateways keep it for the steps after.
	t.Run("sync hold", func(t *testing.T) {
		for i := range Gateways {
			l.StopGateway(i)
		}
		_, dropsStopped := l.Counter("syn_drop_unexpected")
		l.Start(Options{Sync: true, Hold: true})
		rec := l.Monitor() // what became of the ports of any SYN dropped
		for i := range Gateways {
			waitStatus(t, l, i, 30*time.Second, "routes up 2, peers unreached 0")
		}
		// counted from here: CI twice saw 2-3 SYNs dropped in this step with
		// no transfer stalled; they came while the daemons started, before
		// any transfer of this step: an earlier step's server still trying
		// an active-mode connection its client gave up
		_, dropsBefore := l.Counter("syn_drop_unexpected")
		t.Logf("SYNs dropped while the daemons started, before any transfer of this step: %d", dropsBefore-dropsStopped)
		trs := l.Batch(ctx, passiveN, activeN, parallel, 22000, 10*time.Second)
		ok, stalled, failed, worst := Summary(trs)
		p50, p50Fast := StartP50(trs)
		_, drops := l.Counter("syn_drop_unexpected")
		drops -= dropsBefore
		_, held := l.Counter("group_hold")
		_, heldBack := l.Counter("group_hold_retransmit")
		statuses := settledHolds(l, int(held))
		outcomes := map[string]int{}
		late := 0 // the daemons started with this step
		for i, out := range statuses {
			t.Logf("gw%d counters: %s\n%s", i+1, l.NonZero(i), statusGroupLines(out))
			for o, n := range holdOutcomes(out) {
				outcomes[o] += n
			}
			late += lateOf(out)
		}
		for _, why := range ExplainDrops(rec.Stop()) {
			t.Log(why)
		}
		t.Logf("sync hold: %d transfers, %d ok, %d stalled (time_starttransfer >= 1 s), %d failed, slowest %v, time_starttransfer p50 %v (%v of those not stalled), group_hold %d, held segments sent on %v, retransmissions held back %d, syn_drop_unexpected %d, late %d",
			len(trs), ok, stalled, failed, worst, p50, p50Fast, held, outcomes, heldBack, drops, late)
		if failed > 0 {
			t.Fatalf("%d transfers failed with --sync-hold", failed)
		}
		if held < uint64(len(trs)) {
			t.Fatalf("group_hold %d: want at least one hold per transfer (%d): is --sync-hold on by default in a group?", held, len(trs))
		}
		if n := outcomes["confirmed"] + outcomes["timeout"] + outcomes["alone"]; n < len(trs) {
			t.Fatalf("%d held segments sent on by run, want one per transfer (%d)", n, len(trs))
		}
		// the point: no data SYN beats its expectation to a gateway (late:
		// a SYN dropped here whose expectation a peer sent after it). CI
		// once saw 2 SYNs dropped with none late and no transfer stalled:
		// not the race; logged above, not asserted
		if late > 0 {
			t.Errorf("%d data SYNs dropped before their expectation arrived from a peer, with --sync-hold (hold timeouts %d): want none", late, outcomes["timeout"])
		}
		// A transfer may still start a second late with no SYN dropped
		// anywhere: sixteen sessions at once on two shared cores (1 of 250
		// once, with another lab running beside); at most one in a hundred.
		if stalled*100 > len(trs) {
			t.Errorf("%d of %d transfers stalled with --sync-hold: want at most one in a hundred", stalled, len(trs))
		}
	})
	if t.Failed() {
		return
	}

	t.Run("failover", func(t *testing.T) {
		done := make(chan []Transfer)
		go func() { done <- l.Batch(ctx, 150, 0, 8, 40000, 10*time.Second) }() // ports 40000-40599
		time.Sleep(2 * time.Second)
		l.StopGateway(1)
		l.SetRoutes([]int{0, 2})
		during := <-done
		ok, stalled, failed, _ := Summary(during)
		t.Logf("failover: gw2's daemon stopped and its routes withdrawn mid-batch: %d transfers, %d ok, %d stalled, %d failed", len(during), ok, stalled, failed)
		after := l.Batch(ctx, 50, 10, 8, 50000, 10*time.Second)
		ok, stalled, failed, _ = Summary(after)
		t.Logf("failover: after it, %d transfers, %d ok, %d stalled, %d failed", len(after), ok, stalled, failed)
		if failed > 0 {
			t.Fatalf("%d transfers after the failover failed", failed)
		}
		if ok, _, _, _ := Summary(during); ok < len(during)*9/10 {
			t.Fatalf("only %d of %d transfers survived the failover", ok, len(during))
		}
	})

	t.Run("restart catches up", func(t *testing.T) {
		l.StartGateway(1, true)
		out := waitStatus(t, l, 1, 30*time.Second, "routes up 2, peers unreached 0")
		if counted(out, "snapshots") == 0 {
			t.Fatalf("restarted gw2 took no snapshot:\n%s", statusGroupLines(out))
		}
		l.SetRoutes([]int{0, 1, 2})
		allSucceed(t, l, "after gw2's restart", 51000)
	})

	t.Run("partition and heal", func(t *testing.T) {
		before, _ := l.CLI(2, "status")
		l.ip(l.Syn, "link", "set", "y3", "down")
		waitStatus(t, l, 2, 30*time.Second, "routes up 0, peers unreached 2")
		waitStatus(t, l, 0, 30*time.Second, "routes up 1, peers unreached 1")
		l.ip(l.Syn, "link", "set", "y3", "up")
		for i := range Gateways {
			waitStatus(t, l, i, 60*time.Second, "routes up 2, peers unreached 0")
		}
		// the healed side asked its peers again (silence longer than three
		// digest intervals reads as a reconnection)
		deadline := time.Now().Add(20 * time.Second)
		for {
			after, _ := l.CLI(2, "status")
			if counted(after, "snapshots") > counted(before, "snapshots") {
				t.Logf("gw3 snapshots: %d before the partition, %d after the heal", counted(before, "snapshots"), counted(after, "snapshots"))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("gw3 took no snapshot after the heal:\n%s", statusGroupLines(after))
			}
			time.Sleep(200 * time.Millisecond)
		}
		allSucceed(t, l, "after the heal", 52000)
	})

	t.Run("rogue member", func(t *testing.T) { rogueMember(t, l) })

	t.Run("foreign certificate", func(t *testing.T) {
		l.StopGateway(2)
		l.StartRogue(2)
		time.Sleep(3 * time.Second) // handshakes that must fail
		waitStatus(t, l, 2, 10*time.Second, "routes up 0, peers unreached 2")
		waitStatus(t, l, 0, 10*time.Second, "routes up 1, peers unreached 1")
	})
}

// settledHolds returns every gateway's status once the held segments sent
// on, by any outcome, add up to held (the dataplane's group_hold), or after
// a few seconds. status shows the group as run last recorded it, once a
// second (CI once read 249 of 250: the last transfer's segment went on
// after the record), and a segment may wait HoldWait before it goes on.
func settledHolds(l *Lab, held int) []string {
	deadline := time.Now().Add(2*ftpmaps.HoldWait + 3*time.Second)
	for {
		outs, sent := make([]string, Gateways), 0
		for i := range Gateways {
			outs[i], _ = l.CLI(i, "status")
			for _, n := range holdOutcomes(outs[i]) {
				sent += n
			}
		}
		if sent >= held || time.Now().After(deadline) {
			return outs
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// holdOutcomes reads the held segments sent on, by outcome, from status's
// "hold:" line.
func holdOutcomes(status string) map[string]int {
	out := map[string]int{}
	for _, line := range strings.Split(status, "\n") {
		rest, ok := strings.CutPrefix(line, "hold:")
		if !ok {
			continue
		}
		if i, j := strings.Index(rest, "("), strings.Index(rest, ")"); i >= 0 && j > i {
			for _, part := range strings.Split(rest[i+1:j], ", ") {
				if name, n, ok := strings.Cut(part, " "); ok {
					v, _ := strconv.Atoi(n)
					out[name] += v
				}
			}
		}
	}
	return out
}

// statusGroupLines is the group part of a status.
func statusGroupLines(out string) string {
	var keep []string
	on := false
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "group:") {
			on = true
		}
		if on && strings.HasPrefix(line, "INTERFACE") {
			break
		}
		if on {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}

// lateOf reads the late count from a status's sync line.
func lateOf(status string) int { return counted(status, "late") }

// counted reads the number after name in a status's sync line.
func counted(status, name string) int {
	for _, line := range strings.Split(status, "\n") {
		if !strings.HasPrefix(line, "sync:") {
			continue
		}
		f := strings.Fields(strings.ReplaceAll(line, ",", ""))
		for i, w := range f {
			if w == name && i+1 < len(f) {
				n, _ := strconv.Atoi(f[i+1])
				return n
			}
		}
	}
	return 0
}

// allSucceed runs 60 passive and 15 active transfers from firstPort on and
// fails the test if any fails; stalls are logged.
func allSucceed(t *testing.T, l *Lab, what string, firstPort int) {
	t.Helper()
	trs := l.Batch(context.Background(), 60, 15, 8, firstPort, 10*time.Second)
	_, stalled, failed, _ := Summary(trs)
	t.Logf("%s: %d transfers, %d stalled, %d failed", what, len(trs), stalled, failed)
	if failed > 0 {
		t.Fatalf("%s %d transfers failed", what, failed)
	}
}
