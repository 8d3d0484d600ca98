package group

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/group/grouptest"
)

func holdPolicy() Policy { p := defaultPolicy(); p.SyncHold = true; return p }

// heard waits until every node has heard a digest from every other (a
// peer not heard from is not waited for).
func heard(t *testing.T, nodes []*testNode) {
	t.Helper()
	for _, n := range nodes {
		eventually(t, 5*time.Second, func() bool {
			live := 0
			for _, p := range n.Peers() {
				if p.LastSeen >= 0 {
					live++
				}
			}
			return live == len(nodes)-1
		}, "%s to hear its peers", n.cfg.NodeID)
	}
}

// stallWrites makes n's map writes wait (so it acknowledges nothing)
// until the returned function is called.
func stallWrites(n *testNode) func() {
	gate := make(chan struct{})
	n.tbl.mu.Lock()
	n.tbl.gate = gate
	n.tbl.mu.Unlock()
	return func() { close(gate) }
}

// released returns a release function that records when it ran and what
// the peers' tables held then.
type releaseProbe struct {
	at     atomic.Pointer[time.Time]
	peers  []*testNode
	k      Key
	missed atomic.Int32 // peers without k at release
}

func (r *releaseProbe) release() error {
	now := time.Now()
	for _, p := range r.peers {
		if _, ok := p.tbl.get(r.k); !ok {
			r.missed.Add(1)
		}
	}
	r.at.Store(&now)
	return nil
}

func (r *releaseProbe) wait(t *testing.T, d time.Duration) time.Time {
	t.Helper()
	eventually(t, d, func() bool { return r.at.Load() != nil }, "the held segment to be sent on")
	return *r.at.Load()
}

// TestHoldConfirmed: a held segment is sent on once both peers wrote its
// expectation, not before; the ack may come before the segment.
func TestHoldConfirmed(t *testing.T) {
	n := clusterWith(t, grouptest.NewPKI(t, "ca"), holdPolicy, "a", "b", "c")
	a, b, c := n[0], n[1], n[2]
	heard(t, n)

	// the segment first, then the entry (two rings, either order)
	p := &releaseProbe{peers: []*testNode{b, c}, k: key(50000)}
	start := time.Now()
	a.Hold(p.k, p.release)
	if p.at.Load() != nil {
		t.Fatal("sent on before the entry was even published")
	}
	a.HandleEvent(created(50000))
	if at := p.wait(t, 5*time.Second); at.Sub(start) >= HoldWait {
		t.Fatalf("sent on after %v: the acknowledgements did not release it", at.Sub(start))
	}
	if m := p.missed.Load(); m != 0 {
		t.Fatalf("sent on while %d peers lacked the expectation", m)
	}

	// the entry first: both acks in before the segment, sent on at once
	a.HandleEvent(created(50001))
	eventually(t, 5*time.Second, func() bool { return a.C.Acks.Load() >= 4 }, "a's four acknowledgements")
	q := &releaseProbe{peers: []*testNode{b, c}, k: key(50001)}
	a.Hold(q.k, q.release)
	if q.at.Load() == nil {
		t.Fatal("acknowledged before the segment came, yet not sent on at once")
	}
	if by, _, _ := a.C.Holds(); by[HoldConfirmed] != 2 || by[HoldTimeout] != 0 {
		t.Fatalf("holds by outcome %v, want 2 confirmed", by)
	}
	// the receivers do not hold anything themselves
	if by, _, _ := b.C.Holds(); by[HoldConfirmed]+by[HoldTimeout] != 0 {
		t.Fatalf("b counted holds %v", by)
	}
}

// TestHoldTimeout: a live peer that does not answer (its map write
// stalls) holds the segment back HoldWait, not longer; one that is gone
// (its route closed) is not waited for.
func TestHoldTimeout(t *testing.T) {
	n := clusterWith(t, grouptest.NewPKI(t, "ca"), holdPolicy, "a", "b", "c")
	a, b, c := n[0], n[1], n[2]
	heard(t, n)
	defer stallWrites(c)()

	p := &releaseProbe{peers: []*testNode{b}, k: key(50010)}
	a.HandleEvent(created(50010))
	start := time.Now()
	a.Hold(p.k, p.release)
	at := p.wait(t, 5*time.Second)
	if w := at.Sub(start); w < HoldWait || w > HoldWait+time.Second {
		t.Fatalf("sent on after %v, want HoldWait (%v)", w, HoldWait)
	}
	if by, _, _ := a.C.Holds(); by[HoldTimeout] != 1 {
		t.Fatalf("holds by outcome %v, want 1 timeout", by)
	}

	// c's daemon stops: its route closes and a no longer waits for it
	c.Close()
	eventually(t, 5*time.Second, func() bool { return len(a.Status().Routes) == 1 }, "a's route to c to close")
	q := &releaseProbe{peers: []*testNode{b}, k: key(50011)}
	a.HandleEvent(created(50011))
	start = time.Now()
	a.Hold(q.k, q.release)
	if w := q.wait(t, 5*time.Second).Sub(start); w >= HoldWait {
		t.Fatalf("waited %v for a peer without a route", w)
	}
}

// TestHoldAloneAndClose: with no live peer a segment is sent on at once;
// one still waiting when the node leaves the group is sent on then.
func TestHoldAloneAndClose(t *testing.T) {
	p := grouptest.NewPKI(t, "ca")
	cert, k := p.Issue(t, "solo", loopback)
	solo := startNodeWith(t, Config{Group: "g", NodeID: "solo", Listen: grouptest.FreeAddr(t), CA: p.CA, Cert: cert, Key: k}, holdPolicy)
	r := &releaseProbe{k: key(50020)}
	solo.HandleEvent(created(50020))
	solo.Hold(r.k, r.release)
	if r.at.Load() == nil {
		t.Fatal("alone, yet not sent on at once")
	}
	if by, _, _ := solo.C.Holds(); by[HoldAlone] != 1 {
		t.Fatalf("holds by outcome %v, want 1 alone", by)
	}

	n := clusterWith(t, p, holdPolicy, "a", "b")
	a, b := n[0], n[1]
	heard(t, n)
	defer stallWrites(b)()
	w := &releaseProbe{k: key(50021)}
	a.HandleEvent(created(50021))
	a.Hold(w.k, w.release)
	a.Close()
	if w.at.Load() == nil {
		t.Fatal("left the group with a segment still held")
	}
	if by, _, _ := a.C.Holds(); by[HoldClosed] != 1 {
		t.Fatalf("holds by outcome %v, want 1 closed", by)
	}
}

// TestHoldSilentPeer: a peer that leaves maxMissed held segments in a row
// unacknowledged (its map write stalls) is no longer waited for; an entry
// a peer refuses is not acknowledged (the segment must not go on before
// the peer has the expectation).
func TestHoldSilentPeer(t *testing.T) {
	n := clusterWith(t, grouptest.NewPKI(t, "ca"), holdPolicy, "a", "b", "c")
	a, b, c := n[0], n[1], n[2]
	heard(t, n)
	defer stallWrites(c)()
	for i := range maxMissed {
		p := &releaseProbe{k: key(uint16(50030 + i))}
		a.HandleEvent(created(p.k.DPort))
		a.Hold(p.k, p.release)
		p.wait(t, 3*HoldWait)
	}
	if by, _, _ := a.C.Holds(); by[HoldTimeout] != maxMissed {
		t.Fatalf("holds by outcome %v, want %d timeouts", by, maxMissed)
	}
	q := &releaseProbe{peers: []*testNode{b}, k: key(50040)}
	a.HandleEvent(created(q.k.DPort))
	start := time.Now()
	a.Hold(q.k, q.release)
	if w := q.wait(t, 3*HoldWait).Sub(start); w >= HoldWait {
		t.Fatalf("waited %v for a peer silent %d times", w, maxMissed)
	}
	if m := q.missed.Load(); m != 0 {
		t.Fatalf("sent on before b had the expectation")
	}

	// b refuses a port below 1024: no acknowledgement, the hold runs out
	low := &releaseProbe{k: key(22)}
	a.HandleEvent(created(22))
	start = time.Now()
	a.Hold(low.k, low.release)
	if w := low.wait(t, 3*HoldWait).Sub(start); w < HoldWait {
		t.Fatalf("sent on after %v: a refused entry was acknowledged", w)
	}
}
