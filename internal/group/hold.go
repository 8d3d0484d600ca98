package group

import (
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ftpgate/ftpgate/maps"
)

// --sync-hold (#15, docs/group.md "Hold"): TC takes the control segment
// that made an expectation and hands it to run (maps.HeldSegment); the
// created entry goes out asking for acknowledgements (Msg.Ack); each peer
// answers once the entry is in its map (Msg.Acks, on the sender's ack
// subject); the segment is sent on when every peer waited for has
// answered, or after HoldWait.

// HoldWait bounds how long a held segment waits for its peers: the
// dataplane's bound (maps.HoldWait).
const HoldWait = maps.HoldWait

// maxHolds bounds the segments and acknowledgements waited for; beyond it
// a held segment is sent on at once (counted as alone).
const maxHolds = 4096

// maxMissed: a peer that left this many held segments in a row without
// its acknowledgement is no longer waited for, until it answers again (a
// member that never answers, overloaded or hostile, would cost every data
// connection HoldWait).
const maxMissed = 3

// How a held segment was sent on, as the metrics name it.
const (
	HoldConfirmed  = "confirmed"  // every peer waited for acknowledged the expectation
	HoldAlone      = "alone"      // no peer to wait for (or too many holds)
	HoldTimeout    = "timeout"    // a peer waited for had not answered within HoldWait
	HoldSuperseded = "superseded" // another segment came for the same expectation: sent on at once
	HoldClosed     = "closed"     // run left the group while it waited: sent on
	HoldFailed     = "failed"     // sending it on failed (its sender's retransmission brings it)
	HoldStale      = "stale"      // a previous run's, older than HoldWait: not sent
)

// HoldResults lists the outcomes, in the order metrics show them.
var HoldResults = []string{HoldConfirmed, HoldAlone, HoldTimeout, HoldSuperseded, HoldClosed, HoldFailed, HoldStale}

// Ack acknowledges one created entry: its key and the time it was made
// (Entry.MadeNs), which tells this expectation of the key from an earlier
// one.
type Ack struct {
	Key
	Made int64 `json:"made_ns"`
}

// hold is one expectation whose segment is (or may soon be) held.
type hold struct {
	made    int64 // the created entry's MadeNs: acknowledgements must name it
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

// pruneHolds forgets acknowledgements whose segment never came (passed,
// not held: too long, the ring full, ...); under g.mu.
func (g *Engine) pruneHolds(now time.Time) {
	for k, h := range g.holds {
		if h.release == nil && now.Sub(h.since) > 2*HoldWait {
			delete(g.holds, k)
		}
	}
}

// waitedFor returns the peers a held segment waits for; under g.mu: those
// heard from within liveWindow that say they acknowledge (Msg.Acking: not
// a member of an older version), reached by a route with the embedded
// server (a stopped daemon's route closes at once, a partitioned one's
// after three missed route pings), and not silent for maxMissed holds.
func (g *Engine) waitedFor(now time.Time) []string {
	var routed map[string]bool
	if g.routed != nil {
		routed = g.routed()
	}
	var out []string
	for name, p := range g.peers {
		if p.lastSeen.IsZero() || now.Sub(p.lastSeen) > g.liveWindow() || !p.acking || p.missed >= maxMissed ||
			routed != nil && !routed[name] {
			continue
		}
		out = append(out, name)
	}
	return out
}

// confirmed tells whether every peer waited for acknowledged h, and
// whether there was one to wait for; under g.mu.
func (g *Engine) confirmed(h *hold, now time.Time) (done, alone bool) {
	peers := g.waitedFor(now)
	for _, name := range peers {
		if !h.acked[name] {
			return false, false
		}
	}
	return true, len(peers) == 0
}

// take removes h from the waiting ones and counts it in flight (Close
// waits for it); under g.mu.
func (g *Engine) take(k Key, h *hold) {
	delete(g.holds, k)
	if h.timer != nil {
		h.timer.Stop()
	}
	g.inflight.Add(1)
}

// Hold takes a segment TC held for the expectation k: release sends it
// on, once every peer waited for has k or after HoldWait, on another
// goroutine.
func (g *Engine) Hold(k Key, release func() error) {
	now := g.now()
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		g.send(HoldClosed, now, release) // after Close's wait: not in flight
		return
	}
	h := g.holdOf(k, now)
	if h == nil {
		g.inflight.Add(1)
		g.mu.Unlock()
		g.released(HoldAlone, now, release)
		return
	}
	var prev *hold
	if h.release != nil {
		// a second segment for the key: the first goes on at once
		prev = &hold{release: h.release, since: h.since}
		if h.timer != nil {
			h.timer.Stop()
		}
		g.inflight.Add(1)
	}
	h.release, h.since = release, now
	done, alone := g.confirmed(h, now)
	if done {
		g.take(k, h)
	} else {
		h.timer = time.AfterFunc(HoldWait, func() { g.holdTimeout(k, h) })
	}
	g.mu.Unlock()
	if prev != nil {
		g.released(HoldSuperseded, prev.since, prev.release)
	}
	if done {
		g.released(map[bool]string{true: HoldAlone, false: HoldConfirmed}[alone], now, release)
	}
}

func (g *Engine) holdTimeout(k Key, h *hold) {
	now := g.now()
	g.mu.Lock()
	if g.holds[k] != h {
		g.mu.Unlock()
		return // released already
	}
	for _, name := range g.waitedFor(now) {
		if !h.acked[name] {
			g.peers[name].missed++
		}
	}
	g.take(k, h)
	g.mu.Unlock()
	g.released(HoldTimeout, h.since, h.release)
}

// released sends a segment on and counts how; the caller counted it in
// flight.
func (g *Engine) released(how string, since time.Time, release func() error) {
	defer g.inflight.Done()
	g.send(how, since, release)
}

func (g *Engine) send(how string, since time.Time, release func() error) {
	if err := release(); err != nil {
		how = HoldFailed
		g.log.Debug("group: send a held segment on", "err", err)
	}
	g.C.hold(how, g.now().Sub(since))
}

// expectAcks notes that k's created entry, made at made, goes out asking
// for acknowledgements: any the key had are an earlier expectation's.
// Under g.mu.
func (g *Engine) expectAcks(k Key, made int64, now time.Time) {
	if h := g.holdOf(k, now); h != nil {
		h.made, h.acked = made, map[string]bool{}
	}
}

// ackSubject is where node receives acknowledgements.
func (g *Engine) ackSubject(node string) string { return g.subject("ack." + node) }

// acknowledge answers a message asking for acknowledgements with the
// created entries apply wrote (not those it refused: the sender's segment
// must not go on before this node has the expectation).
func (g *Engine) acknowledge(msg Msg, written []Ack) {
	if !msg.Ack || len(written) == 0 || !validToken(msg.Node) {
		return
	}
	g.publish(g.ackSubject(msg.Node), Msg{Node: g.node, Acks: written})
}

// onAcks takes a peer's acknowledgements and sends on the segments they
// complete.
func (g *Engine) onAcks(m *nats.Msg) {
	msg, ok := g.receive(m)
	if !ok {
		return
	}
	now := g.now()
	var ready []*hold
	g.mu.Lock()
	g.C.Acks.Add(uint64(len(msg.Acks)))
	if p := g.peers[msg.Node]; p != nil {
		p.missed = 0
	}
	for _, a := range msg.Acks {
		h := g.holds[a.Key]
		if h == nil || h.made != a.Made {
			continue // an earlier expectation of the key
		}
		h.acked[msg.Node] = true
		if h.release == nil {
			continue
		}
		if done, _ := g.confirmed(h, now); done {
			g.take(a.Key, h)
			ready = append(ready, h)
		}
	}
	g.mu.Unlock()
	for _, h := range ready {
		g.released(HoldConfirmed, h.since, h.release)
	}
}

// holdRecheck is how often waiting segments are checked again: a peer
// whose route closed (its daemon stopped) is no longer waited for.
const holdRecheck = 100 * time.Millisecond

// recheckHolds sends on the waiting segments that no longer wait for
// anyone.
func (g *Engine) recheckHolds() {
	now := g.now()
	var ready []*hold
	g.mu.Lock()
	for k, h := range g.holds {
		if h.release == nil {
			continue
		}
		if done, _ := g.confirmed(h, now); done {
			g.take(k, h)
			ready = append(ready, h)
		}
	}
	g.mu.Unlock()
	for _, h := range ready {
		g.released(HoldConfirmed, h.since, h.release)
	}
}

// releaseAll sends on every segment still waiting (run leaves the group)
// and waits for those in flight.
func (g *Engine) releaseAll() {
	g.mu.Lock()
	var out []*hold
	for k, h := range g.holds {
		if h.release != nil {
			g.take(k, h)
			out = append(out, h)
		} else {
			delete(g.holds, k)
		}
	}
	g.mu.Unlock()
	for _, h := range out {
		g.released(HoldClosed, h.since, h.release)
	}
	g.inflight.Wait()
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
	if how != HoldFailed && how != HoldStale {
		c.holds.waits.add(wait)
	}
}

// HoldStale counts a held segment a previous run left, not sent on.
func (c *Counters) HoldStale() { c.hold(HoldStale, 0) }

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
