package group

import (
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ftpgate/ftpgate/bpf"
)

// --sync-hold (#15, docs/group.md "Hold"): TC drops the control segment
// that made an expectation and hands it to run (maps.HeldSegment); the
// created entry goes out asking for acknowledgements (Msg.Ack); each peer
// answers once the entry is in its map (Msg.Acks, on the sender's ack
// subject); the segment is sent on when every live peer has answered, or
// after HoldWait.

// HoldWait bounds how long a held segment waits for its peers: the
// dataplane drops its sender's retransmissions for as long (hold_pending),
// then lets them pass, so it is the dataplane's bound (HOLD_WAIT_MS).
const HoldWait = time.Duration(bpf.FtpgateLimitsHOLD_WAIT_MS) * time.Millisecond

// maxHolds bounds the segments and acknowledgements waited for; beyond it
// a held segment is sent on at once (counted as alone).
const maxHolds = 4096

// How a held segment was sent on, as the metrics name it.
const (
	HoldConfirmed = "confirmed" // every live peer acknowledged the expectation
	HoldAlone     = "alone"     // no live peer to wait for (or too many holds)
	HoldTimeout   = "timeout"   // a live peer had not answered within HoldWait
	HoldFailed    = "failed"    // sending it on failed (its sender's retransmission brings it)
	HoldClosed    = "closed"    // run left the group while it waited: sent on
)

// HoldResults lists the outcomes, in the order metrics show them.
var HoldResults = []string{HoldConfirmed, HoldAlone, HoldTimeout, HoldClosed, HoldFailed}

// hold is one expectation whose segment is (or may soon be) held.
type hold struct {
	acked   map[string]bool
	release func() error // nil until the held segment arrives
	since   time.Time    // when the entry or the segment first came
	timer   *time.Timer
}

// holds is the engine's waiting segments, under Engine.mu.
type holds map[Key]*hold

// liveWindow is how long after last hearing from a peer it is waited for.
func (g *Engine) liveWindow() time.Duration { return 3 * g.interval }

// holdOf returns k's hold, made on first use; nil when maxHolds are
// waiting. Under g.mu.
func (g *Engine) holdOf(k Key, now time.Time) *hold {
	h := g.holds[k]
	if h == nil {
		if len(g.holds) >= maxHolds {
			g.pruneHolds(now)
			if len(g.holds) >= maxHolds {
				return nil
			}
		}
		h = &hold{acked: map[string]bool{}, since: now}
		g.holds[k] = h
	}
	return h
}

// pruneHolds forgets acknowledgements whose segment never came (too long
// for the ring, or the ring was full); under g.mu.
func (g *Engine) pruneHolds(now time.Time) {
	for k, h := range g.holds {
		if h.release == nil && now.Sub(h.since) > 2*HoldWait {
			delete(g.holds, k)
		}
	}
}

// confirmed tells whether every live peer acknowledged h, and whether
// there was one to wait for; under g.mu. A peer is live when heard from
// within liveWindow and, with the embedded server, reached by a route: a
// stopped daemon's route closes at once, a partitioned one's after three
// missed route pings.
func (g *Engine) confirmed(h *hold, now time.Time) (done, alone bool) {
	var routed map[string]bool
	if g.routed != nil {
		routed = g.routed()
	}
	alone = true
	for name, p := range g.peers {
		if p.lastSeen.IsZero() || now.Sub(p.lastSeen) > g.liveWindow() || routed != nil && !routed[name] {
			continue
		}
		alone = false
		if !h.acked[name] {
			return false, false
		}
	}
	return true, alone
}

// Hold takes a segment TC held for the expectation k: release sends it
// on, once every live peer has k or after HoldWait, on another goroutine.
func (g *Engine) Hold(k Key, release func() error) {
	now := g.now()
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		g.released(HoldClosed, now, release)
		return
	}
	h := g.holdOf(k, now)
	if h == nil {
		g.mu.Unlock()
		g.released(HoldAlone, now, release)
		return
	}
	h.release, h.since = release, now
	done, alone := g.confirmed(h, now)
	if done {
		delete(g.holds, k)
		g.mu.Unlock()
		g.released(map[bool]string{true: HoldAlone, false: HoldConfirmed}[alone], now, release)
		return
	}
	h.timer = time.AfterFunc(HoldWait, func() { g.holdTimeout(k, h) })
	g.mu.Unlock()
}

func (g *Engine) holdTimeout(k Key, h *hold) {
	g.mu.Lock()
	if g.holds[k] != h {
		g.mu.Unlock()
		return // released already
	}
	delete(g.holds, k)
	g.mu.Unlock()
	g.released(HoldTimeout, h.since, h.release)
}

// released sends a segment on and counts how.
func (g *Engine) released(how string, since time.Time, release func() error) {
	if err := release(); err != nil {
		how = HoldFailed
		g.log.Debug("group: send a held segment on", "err", err)
	}
	g.C.hold(how, g.now().Sub(since))
}

// expectAcks notes that k's created entry goes out asking for
// acknowledgements; under g.mu.
func (g *Engine) expectAcks(k Key, now time.Time) {
	g.holdOf(k, now)
}

// ackSubject is where node receives acknowledgements.
func (g *Engine) ackSubject(node string) string { return g.subject("ack." + node) }

// acknowledge answers a message asking for acknowledgements: the keys of
// its created entries, once apply has written (or refused) them.
func (g *Engine) acknowledge(msg Msg) {
	if !msg.Ack || !validToken(msg.Node) {
		return
	}
	var keys []Key
	for _, e := range msg.Entries {
		if e.Op == OpCreated {
			keys = append(keys, e.Key())
		}
	}
	if len(keys) > 0 {
		g.publish(g.ackSubject(msg.Node), Msg{Node: g.node, Acks: keys})
	}
}

// onAcks takes a peer's acknowledgements and sends on the segments they
// complete.
func (g *Engine) onAcks(m *nats.Msg) {
	msg, ok := g.receive(m)
	if !ok {
		return
	}
	now := g.now()
	type ready struct {
		h   *hold
		how string
	}
	var out []ready
	g.mu.Lock()
	g.C.Acks.Add(uint64(len(msg.Acks)))
	for _, k := range msg.Acks {
		h := g.holds[k]
		if h == nil {
			continue
		}
		h.acked[msg.Node] = true
		if h.release == nil {
			continue
		}
		if done, _ := g.confirmed(h, now); done {
			delete(g.holds, k)
			if h.timer != nil {
				h.timer.Stop()
			}
			out = append(out, ready{h, HoldConfirmed})
		}
	}
	g.mu.Unlock()
	for _, r := range out {
		g.released(r.how, r.h.since, r.h.release)
	}
}

// releaseAll sends on every segment still waiting (run leaves the group).
func (g *Engine) releaseAll() {
	g.mu.Lock()
	var out []*hold
	for k, h := range g.holds {
		delete(g.holds, k)
		if h.release != nil {
			if h.timer != nil {
				h.timer.Stop()
			}
			out = append(out, h)
		}
	}
	g.mu.Unlock()
	for _, h := range out {
		g.released(HoldClosed, h.since, h.release)
	}
}

// holdCounters are the outcomes of held segments and how long they waited.
type holdCounters struct {
	mu    sync.Mutex
	by    map[string]uint64
	waits samples
}

func (c *Counters) hold(how string, wait time.Duration) {
	c.holds.mu.Lock()
	if c.holds.by == nil {
		c.holds.by = map[string]uint64{}
	}
	c.holds.by[how]++
	c.holds.mu.Unlock()
	if how != HoldFailed {
		c.holds.waits.add(wait)
	}
}

// Holds returns the held segments sent on by outcome (every outcome,
// zeros included) and the p50 and p99 of how long the latest waited.
func (c *Counters) Holds() (by map[string]uint64, p50, p99 time.Duration) {
	c.holds.mu.Lock()
	by = make(map[string]uint64, len(HoldResults))
	for _, r := range HoldResults {
		by[r] = c.holds.by[r]
	}
	c.holds.mu.Unlock()
	p50, p99, _ = c.holds.waits.quantiles()
	return by, p50, p99
}

// samples keeps the latest sampleCount durations.
type samples struct {
	mu sync.Mutex
	d  [sampleCount]time.Duration
	n  int
}

const sampleCount = 1024

func (s *samples) add(d time.Duration) {
	s.mu.Lock()
	s.d[s.n%sampleCount] = d
	s.n++
	s.mu.Unlock()
}

// quantiles returns the p50 and p99 of the samples kept, and their number.
func (s *samples) quantiles() (p50, p99 time.Duration, n int) {
	s.mu.Lock()
	n = min(s.n, sampleCount)
	d := slices.Clone(s.d[:n])
	s.mu.Unlock()
	if n == 0 {
		return 0, 0, 0
	}
	slices.Sort(d)
	return d[(n-1)/2], d[(n-1)*99/100], n
}
