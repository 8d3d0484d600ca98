package bpf_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/ftpgate/ftpgate/bpf"

	"github.com/ftpgate/ftpgate/internal/bpfrun"
	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/maps"
)

// verdicts sends c's segments through the TC parser itself (Rig.TC refuses
// any verdict but TC_ACT_OK) and records each segment's return code: at
// ingress both ways, as a gateway guarding both its interfaces parses
// them.
func verdicts(t *testing.T, c *bpftest.Conn) *[]uint32 {
	return verdictsAt(t, c, false)
}

// verdictsAt is verdicts with the server's segments at egress when
// serverEgress: as this host would send them (no ingress device).
func verdictsAt(t *testing.T, c *bpftest.Conn, serverEgress bool) *[]uint32 {
	t.Helper()
	var got []uint32
	c.Hook = func(frame []byte, fromClient bool) error {
		prog := c.R.Objs.FtpgateTcIngress
		if serverEgress && !fromClient {
			prog = c.R.Objs.FtpgateTcEgress
		}
		ret, err := prog.Run(&ebpf.RunOptions{Data: frame, Context: bpfrun.SkbCtx{Ifindex: 1}})
		got = append(got, ret)
		return err
	}
	return &got
}

// lastVerdict returns the code of the last segment sent.
func lastVerdict(t *testing.T, got *[]uint32) uint32 {
	t.Helper()
	if len(*got) == 0 {
		t.Fatal("no segment sent")
	}
	return (*got)[len(*got)-1]
}

// holdRig is the shared rig with config.sync_hold on and run's lease on
// the hold, able to send on at ingress.
func holdRig(t *testing.T) *bpfrun.Rig {
	t.Helper()
	r := bpftest.Shared(t)
	setConfig(t, r, func(c *maps.Config) { c.SyncHold = true })
	must(t, r.Maps.RenewHoldLease(true))
	return r
}

// endHold is what run does when it sends a held segment on: the one
// record in the held ring, for the expectation want, loses its
// hold_pending entry.
func endHold(t *testing.T, r *bpfrun.Rig, want expect) maps.HeldSegment {
	t.Helper()
	held, err := r.Held()
	must(t, err)
	if len(held) != 1 {
		t.Fatalf("held ring: %d records, want 1", len(held))
	}
	h := held[0]
	if h.Src != want.Src || h.Dst != want.Dst || h.DPort != want.DPort {
		t.Fatalf("held segment names %v -> %v:%d, want %v -> %v:%d", h.Src, h.Dst, h.DPort, want.Src, want.Dst, want.DPort)
	}
	must(t, r.Maps.EndHold(h))
	return h
}

// TestSyncHoldPassive: with config.sync_hold (#15 --sync-hold) the 227 that
// makes an expectation is dropped once, counted and handed to run through
// the held ring; its retransmissions are dropped until run sends it on,
// then pass, are not parsed again and make no second expectation; the
// next 227 on the connection, new bytes, is held in its turn.
func TestSyncHoldPassive(t *testing.T) {
	r := holdRig(t)
	c := open(t, r, client4, server4)
	got := verdicts(t, c)
	must(t, c.ClientSends("PASV\r\n"))
	if v := lastVerdict(t, got); v != bpftest.TCOK {
		t.Fatalf("PASV: verdict %d, want TC_ACT_OK", v)
	}
	seq := c.SSeq
	must(t, c.ServerSends(pasvReply))
	if v := lastVerdict(t, got); v != bpfrun.TCShot {
		t.Fatalf("first 227: verdict %d, want TC_ACT_SHOT", v)
	}
	wantCounters(t, r, map[string]uint64{"group_hold": 1, "expect_created": 1, "reply_227": 1})
	wantExpect(t, r, expect{"pasv", client4, server4, 30000})

	// the server's retransmission while run waits for the peers
	must(t, c.ServerAt(seq, pasvReply))
	if v := lastVerdict(t, got); v != bpfrun.TCShot {
		t.Fatalf("227 retransmitted while held: verdict %d, want TC_ACT_SHOT", v)
	}
	wantCounters(t, r, map[string]uint64{"group_hold": 1, "group_hold_retransmit": 1, "expect_created": 1})

	// run sends it on: the copy (and any later retransmission) passes
	h := endHold(t, r, expect{"pasv", client4, server4, 30000})
	if !strings.Contains(string(h.Frame), pasvReply) || h.L3Off != 14 || !h.Ingress {
		t.Fatalf("held segment: %d bytes, IP header at %d, ingress %v, lacks the 227", len(h.Frame), h.L3Off, h.Ingress)
	}
	must(t, maps.FinishChecksum(h.Frame, h.L3Off))
	must(t, c.ServerAt(seq, pasvReply))
	if v := lastVerdict(t, got); v != bpftest.TCOK {
		t.Fatalf("retransmitted 227: verdict %d, want TC_ACT_OK", v)
	}
	must(t, c.ServerAt(seq, pasvReply))
	if v := lastVerdict(t, got); v != bpftest.TCOK {
		t.Fatalf("227 retransmitted again: verdict %d, want TC_ACT_OK", v)
	}
	wantCounters(t, r, map[string]uint64{"group_hold": 1, "group_hold_retransmit": 1, "expect_created": 1, "reply_227": 1, "ctrl_retransmit": 2})
	wantExpect(t, r, expect{"pasv", client4, server4, 30000})

	// a retransmission that carries new bytes after the held ones: never held again
	must(t, c.ClientSends("PASV\r\n"))
	second := "227 Entering Passive Mode (198,51,100,20,117,49)\r\n"
	must(t, c.ServerAt(seq, pasvReply+second))
	if v := lastVerdict(t, got); v != bpftest.TCOK {
		t.Fatalf("227 retransmitted with a new 227: verdict %d, want TC_ACT_OK", v)
	}
	c.SSeq += uint32(len(second))
	wantCounters(t, r, map[string]uint64{"group_hold": 1, "expect_created": 2})

	// a new 227 on its own is held
	must(t, c.ClientSends("PASV\r\n"))
	must(t, c.ServerSends("227 Entering Passive Mode (198,51,100,20,117,50)\r\n"))
	if v := lastVerdict(t, got); v != bpfrun.TCShot {
		t.Fatalf("third 227: verdict %d, want TC_ACT_SHOT", v)
	}
	wantCounters(t, r, map[string]uint64{"group_hold": 2, "expect_created": 3})
}

// TestSyncHoldActive: the client's PORT that makes an expectation is held
// at ingress the same way; the reply that follows is not.
func TestSyncHoldActive(t *testing.T) {
	r := holdRig(t)
	c := open(t, r, client4, server4)
	got := verdicts(t, c)
	seq := c.CSeq
	must(t, c.ClientSends("PORT 192,0,2,10,156,64\r\n"))
	if v := lastVerdict(t, got); v != bpfrun.TCShot {
		t.Fatalf("PORT: verdict %d, want TC_ACT_SHOT", v)
	}
	if h := endHold(t, r, expect{"port", server4, client4, 40000}); !h.Ingress {
		t.Fatalf("PORT held at egress, want ingress")
	}
	must(t, c.ClientAt(seq, "PORT 192,0,2,10,156,64\r\n"))
	if v := lastVerdict(t, got); v != bpftest.TCOK {
		t.Fatalf("retransmitted PORT: verdict %d, want TC_ACT_OK", v)
	}
	must(t, c.ServerSends("200 PORT command successful\r\n"))
	if v := lastVerdict(t, got); v != bpftest.TCOK {
		t.Fatalf("200: verdict %d, want TC_ACT_OK", v)
	}
	wantCounters(t, r, map[string]uint64{"group_hold": 1, "expect_created": 1, "cmd_port": 1})
	wantExpect(t, r, expect{"port", server4, client4, 40000})
}

// TestSyncHoldWaitBound: a held segment run never sends on (run is gone)
// stops holding back its sender's retransmissions after HOLD_WAIT_MS.
func TestSyncHoldWaitBound(t *testing.T) {
	r := holdRig(t)
	c := open(t, r, client4, server4)
	got := verdicts(t, c)
	seq := c.CSeq
	port := "PORT 192,0,2,10,156,64\r\n"
	must(t, c.ClientSends(port))
	must(t, c.ClientAt(seq, port))
	if v := lastVerdict(t, got); v != bpfrun.TCShot {
		t.Fatalf("PORT retransmitted while held: verdict %d, want TC_ACT_SHOT", v)
	}
	wait := time.Duration(bpf.FtpgateLimitsHOLD_WAIT_MS) * time.Millisecond
	t.Cleanup(func() { r.SetClock(0) })
	must(t, r.SetClock(wait+time.Millisecond))
	must(t, c.ClientAt(seq, port))
	if v := lastVerdict(t, got); v != bpftest.TCOK {
		t.Fatalf("PORT retransmitted after %v: verdict %d, want TC_ACT_OK", wait, v)
	}
	wantCounters(t, r, map[string]uint64{"group_hold": 1, "group_hold_retransmit": 1, "ctrl_retransmit": 1, "expect_created": 1})
	var k bpf.FtpgateHoldKey
	var v bpf.FtpgateHoldVal
	if r.Maps.HoldPending.Iterate().Next(&k, &v) {
		t.Fatalf("hold_pending still holds %+v after the bound", k)
	}
}

// TestSyncHoldNotTaken: a segment run could not send on, or none would, is
// passed and counted: without run's lease (a run that died), held at
// ingress where run cannot inject there, while another of the connection's
// waits in run.
func TestSyncHoldNotTaken(t *testing.T) {
	r := bpftest.Shared(t)
	setConfig(t, r, func(c *maps.Config) { c.SyncHold = true })
	c := open(t, r, client4, server4)
	got := verdicts(t, c)
	port := func(p uint16) string { return fmt.Sprintf("PORT 192,0,2,10,%d,%d\r\n", p>>8, p&0xff) }

	must(t, c.ClientSends(port(40000))) // no lease
	if v := lastVerdict(t, got); v != bpftest.TCOK {
		t.Fatalf("PORT without run's lease: verdict %d, want TC_ACT_OK", v)
	}
	must(t, r.Maps.RenewHoldLease(false)) // run cannot inject at ingress
	must(t, c.ClientSends(port(40001)))
	if v := lastVerdict(t, got); v != bpftest.TCOK {
		t.Fatalf("PORT at ingress without live frames: verdict %d, want TC_ACT_OK", v)
	}
	must(t, r.Maps.RenewHoldLease(true))
	seq := c.CSeq
	must(t, c.ClientSends(port(40002)))
	if v := lastVerdict(t, got); v != bpfrun.TCShot {
		t.Fatalf("PORT with the lease: verdict %d, want TC_ACT_SHOT", v)
	}
	must(t, c.ClientSends(port(40003))) // the first still waits in run
	if v := lastVerdict(t, got); v != bpftest.TCOK {
		t.Fatalf("second PORT while the first waits: verdict %d, want TC_ACT_OK", v)
	}
	// a retransmission of bytes before the held segment is not its
	must(t, c.ClientAt(seq-uint32(len(port(40001))), port(40001)))
	if v := lastVerdict(t, got); v != bpftest.TCOK {
		t.Fatalf("retransmission of earlier bytes: verdict %d, want TC_ACT_OK", v)
	}
	wantCounters(t, r, map[string]uint64{"group_hold": 1, "group_hold_no_run": 1, "group_hold_unsendable": 1,
		"group_hold_busy": 1, "group_hold_retransmit": 0, "expect_created": 4})
	endHold(t, r, expect{"port", server4, client4, 40002})
}

// TestSyncHoldNotLocal: a 227 this host sends (egress, no ingress device)
// is not held: its TCP, told it was dropped, would count it unsent.
func TestSyncHoldNotLocal(t *testing.T) {
	r := holdRig(t)
	c := open(t, r, client4, server4)
	got := verdictsAt(t, c, true)
	must(t, c.ClientSends("PASV\r\n"))
	must(t, c.ServerSends(pasvReply))
	if v := lastVerdict(t, got); v != bpftest.TCOK {
		t.Fatalf("227 sent by this host: verdict %d, want TC_ACT_OK", v)
	}
	wantCounters(t, r, map[string]uint64{"group_hold": 0, "group_hold_unsendable": 1, "expect_created": 1})
}

// TestSyncHoldOff: without the bit, and with it while NAT is on, nothing is
// held.
func TestSyncHoldOff(t *testing.T) {
	for _, c := range []struct {
		name string
		set  func(*maps.Config)
	}{
		{"off", func(*maps.Config) {}},
		{"nat", func(c *maps.Config) { c.SyncHold, c.NAT = true, maps.NATCT }},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := bpftest.Shared(t)
			setConfig(t, r, c.set)
			conn := open(t, r, client4, server4)
			got := verdicts(t, conn)
			must(t, conn.ClientSends("PASV\r\n"))
			must(t, conn.ServerSends(pasvReply))
			if v := lastVerdict(t, got); v != bpftest.TCOK {
				t.Fatalf("227: verdict %d, want TC_ACT_OK", v)
			}
			wantCounters(t, r, map[string]uint64{"group_hold": 0, "expect_created": 1})
			wantExpect(t, r, expect{"pasv", client4, server4, 30000})
		})
	}
}
