package bpf_test

import (
	"golang.org/x/sys/unix"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/maps"
)

func events(t *testing.T, r *bpftest.Rig) []maps.Event {
	t.Helper()
	evs, err := r.Events()
	must(t, err)
	return evs
}

func countType(evs []maps.Event, typ string) int {
	n := 0
	for _, ev := range evs {
		if ev.Type == typ {
			n++
		}
	}
	return n
}

// A flood of rejected commands, with nobody reading the ring, must not push
// out the created event of the expectation that follows it (issue 10 c: 60
// segments of rejected PORTs hid an attack's created event).
func TestRejectionsCannotCrowdOutLifecycleEvents(t *testing.T) {
	r := bpftest.Shared(t)
	c := open(t, r, client4, server4)
	bounce := strings.Repeat("PORT 203,0,113,30,195,80\r\n", maps.MaxLines)
	const segments = 60
	for range segments {
		must(t, c.ClientSends(bounce))
	}
	must(t, c.ClientSends("PORT 192,0,2,10,195,80\r\n"))
	evs := events(t, r)
	if n := countType(evs, maps.EventCreated); n != 1 {
		t.Fatalf("%d created events after %d rejections, want 1 (%d events in all)", n, segments*maps.MaxLines, len(evs))
	}
	wantCounters(t, r, map[string]uint64{"reject_bounce": uint64(segments * maps.MaxLines), "expect_created": 1, "events_lost": 0})
}

// Rejections are reported at REJECT_EVENTS_BURST at once and
// REJECT_EVENTS_PER_SEC after that; the rest are counted as suppressed. The
// kernel clock runs on while the test sends, so the bucket may refill by
// what that time is worth.
func TestRejectEventsRateLimited(t *testing.T) {
	bpftest.OneCPU(t) // the bucket is per CPU
	r := bpftest.Shared(t)
	c := open(t, r, client4, server4)
	// the bucket refills from its last update: the previous batch's last send
	last := time.Now()
	rejectAll := func(n, want int) {
		t.Helper()
		before, err := r.Counters()
		must(t, err)
		for range n {
			must(t, c.ClientSends("PORT 203,0,113,30,195,80\r\n"))
		}
		// the bucket's clock started at the previous batch's last send, a
		// little before last was read (slow in an emulated VM): one token more
		refill := int(time.Since(last).Seconds()*float64(maps.RejectEventsPerSec)) + 2
		last = time.Now()
		got := countType(events(t, r), maps.EventReject)
		if got < want || got > want+refill {
			t.Fatalf("%d reject events of %d rejections, want %d (+%d for the time taken)", got, n, want, refill)
		}
		after, err := r.Counters()
		must(t, err)
		if s := after["events_suppressed"] - before["events_suppressed"]; s != uint64(n-got) {
			t.Fatalf("events_suppressed rose by %d, want %d", s, n-got)
		}
		if b := after["reject_bounce"] - before["reject_bounce"]; b != uint64(n) {
			t.Fatalf("reject_bounce rose by %d, want %d", b, n)
		}
	}
	rejectAll(maps.RejectEventsBurst+10, maps.RejectEventsBurst)
	rejectAll(10, 0)

	// a second later the bucket holds REJECT_EVENTS_PER_SEC tokens more
	must(t, r.SetClock(time.Second))
	rejectAll(maps.RejectEventsPerSec+10, maps.RejectEventsPerSec)

	// expectation events are never limited
	must(t, c.ClientSends("PORT 192,0,2,10,195,80\r\n"))
	if n := countType(events(t, r), maps.EventCreated); n != 1 {
		t.Fatalf("%d created events with an empty bucket, want 1", n)
	}
}

// A dropped data SYN is reported with its reason and 5-tuple (issue 10 j).
func TestDroppedSYNEvent(t *testing.T) {
	eachHook(t, func(t *testing.T, r *bpftest.Rig) {
		for _, dry := range []bool{false, true} {
			name, reason := "drop", "syn_drop_unexpected"
			if dry {
				name, reason = "dry-run", "syn_dryrun_would_drop"
			}
			t.Run(name, func(t *testing.T) {
				must(t, r.Reset())
				setConfig(t, r, func(c *maps.Config) { c.DryRun = dry })
				_, err := r.Admit(bpftest.SYN(ap(client4, 50123), ap(server4, 30000)))
				must(t, err)
				evs := events(t, r)
				if len(evs) != 1 {
					t.Fatalf("events %+v, want one syn_drop", evs)
				}
				ev := evs[0]
				if ev.Type != maps.EventSYNDrop || ev.Reason != reason || ev.Src != client4 || ev.SPort != 50123 ||
					ev.Dst != server4 || ev.DPort != 30000 {
					t.Fatalf("event %+v, want syn_drop %s %s:50123 -> %s:30000", ev, reason, client4, server4)
				}
				// an admitted SYN reports nothing
				must(t, r.Maps.AllowPorts().Add(22))
				_, err = r.Admit(bpftest.SYN(ap(client4, 50124), ap(server4, 22)))
				must(t, err)
				if evs := events(t, r); len(evs) != 0 {
					t.Fatalf("events after an admitted SYN: %+v", evs)
				}
			})
		}
	})
}

// ctrl_closed counts connections, not FINs (issue 10 m).
func TestCtrlClosedOncePerConnection(t *testing.T) {
	r := bpftest.Shared(t)
	c := open(t, r, client4, server4)
	must(t, c.ClientFlags(0x11))
	must(t, c.ClientFlags(0x11)) // retransmitted
	must(t, c.ServerFlags(0x11))
	wantCounters(t, r, map[string]uint64{"ctrl_closed": 1})

	c2 := bpftest.NewConn(r, ap(client4, 40001), ap(server4, 21))
	must(t, c2.Open())
	must(t, c2.Greet())
	must(t, c2.ClientFlags(0x11))
	must(t, c2.ServerFlags(0x04)) // RST after the client's FIN
	wantCounters(t, r, map[string]uint64{"ctrl_closed": 2})
}

// pure-ftpd answers QUIT with "227 Logout.": no address, no passive reply,
// no rejection (issue 10 n). An unpaired 227 with an address stays one.
func TestUnpaired227WithoutAddress(t *testing.T) {
	r := bpftest.Shared(t)
	c := open(t, r, client4, server4)
	converse(t, c, "", "QUIT\r\n", "227 Logout.\r\n")
	if evs := events(t, r); len(evs) != 0 {
		t.Fatalf("events for 227 Logout: %+v", evs)
	}
	wantCounters(t, r, map[string]uint64{"reply_227_no_address": 1, "reject_unpaired": 0})

	converse(t, c, "", "", "227 Entering Passive Mode (198,51,100,20,117,48)\r\n")
	if evs := events(t, r); countType(evs, maps.EventReject) != 1 || evs[0].Reason != "reject_unpaired" {
		t.Fatalf("events for an unpaired 227 with an address: %+v", evs)
	}
	wantCounters(t, r, map[string]uint64{"reply_227_no_address": 1, "reject_unpaired": 1})
}

// TestSYNDropEventsLimitedOnEveryCPU: a SYN flood from several CPUs at once
// is reported at most at the per-CPU rate on each. With one bucket for all
// CPUs, a CPU that read the clock before another wrote its later time saw
// the clock go back and refilled the bucket: the flood was reported until
// the ring was half full.
func TestSYNDropEventsLimitedOnEveryCPU(t *testing.T) {
	r := bpftest.Shared(t)
	var cpus unix.CPUSet
	must(t, unix.SchedGetaffinity(0, &cpus))
	const perCPU = 20000
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	used := 0
	for cpu := 0; used < cpus.Count(); cpu++ {
		if !cpus.IsSet(cpu) {
			continue
		}
		used++
		wg.Add(1)
		go func(cpu int) {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var one unix.CPUSet
			one.Set(cpu)
			if err := unix.SchedSetaffinity(0, &one); err != nil {
				errs <- err
				return
			}
			frame := bpftest.SYN(ap(client4, uint16(10000+cpu)), ap(server4, 30000))
			for range perCPU {
				if _, err := r.XDP(frame); err != nil {
					errs <- err
					return
				}
			}
		}(cpu)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	limit := used * (maps.RejectEventsBurst + int(elapsed.Seconds()*float64(maps.RejectEventsPerSec)) + 1)
	got := countType(events(t, r), maps.EventSYNDrop)
	if got > limit {
		t.Fatalf("%d SYN drop events from %d CPUs in %v, want at most %d", got, used, elapsed, limit)
	}
	wantCounters(t, r, map[string]uint64{"syn_drop_unexpected": uint64(used * perCPU), "events_suppressed": uint64(used*perCPU - got)})
}
