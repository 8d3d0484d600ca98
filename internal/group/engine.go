package group

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ftpgate/ftpgate/maps"
)

// Table is where a node writes what its peers report: the dataplane's
// maps (maps.Maps), through their one Go writer of each.
type Table interface {
	AddExpectation(e maps.Expectation, ttl time.Duration) error
	DeleteExpectation(e maps.Expectation) error
	AddFlow(f maps.Flow, seq uint32) error
}

// Defaults of the engine's limits.
const (
	DefaultDigestInterval = 2 * time.Second
	// DefaultPeerRate and DefaultPeerBurst bound the entries a second one
	// peer may send (a snapshot counts one per entry)
	DefaultPeerRate  = 5000
	DefaultPeerBurst = 20000
	// DefaultMaxRemotePerPeer caps the live expectations one peer holds here
	DefaultMaxRemotePerPeer = 16384
	// LateWindow is how long after a dropped SYN its expectation arriving
	// from a peer counts as late
	LateWindow = 3 * time.Second
	// maxRecentDrops bounds the dropped SYNs remembered for LateWindow
	maxRecentDrops = 4096
	// digestMargin: expectations this close to their expiry are left out
	// of digests, so that a sender and a receiver whose clocks of expiry
	// differ by the transit time do not disagree; those younger than one
	// digest interval are left out too (liveKeys): one made or consumed
	// between a digest and its comparison on a peer made the two differ,
	// and cost a snapshot, more often than anything was lost
	digestMargin = time.Second
	// snapshotWait bounds a snapshot request
	snapshotWait = 2 * time.Second
)

// Counters are the engine's metrics.
type Counters struct {
	Sent      atomic.Uint64 // entries published
	Received  atomic.Uint64 // entries received from peers
	Applied   atomic.Uint64 // entries written to the maps
	Snapshots atomic.Uint64 // snapshots received and applied
	Served    atomic.Uint64 // snapshots sent to peers
	Repairs   atomic.Uint64 // snapshot requests a digest mismatch caused
	Late      atomic.Uint64 // SYNs dropped here whose expectation arrived from a peer within LateWindow
	Errors    atomic.Uint64 // publish or map-write errors
	Acks      atomic.Uint64 // acknowledgements received (--sync-hold)
	mu        sync.Mutex
	rejected  map[string]uint64
	delays    samples // the latest replication delays
	holds     holdCounters
}

func (c *Counters) delay(d time.Duration) { c.delays.add(d) }

// Delays returns the p50 and p99 of the latest replication delays (from
// the 227 or PORT on the sending gateway to the expectation written here,
// by the sender's and this wall clock), and how many they are of.
func (c *Counters) Delays() (p50, p99 time.Duration, n int) { return c.delays.quantiles() }

func (c *Counters) reject(reason string) {
	c.mu.Lock()
	if c.rejected == nil {
		c.rejected = map[string]uint64{}
	}
	c.rejected[reason]++
	c.mu.Unlock()
}

// Rejected returns the rejections by reason (every reason, zeros included).
func (c *Counters) Rejected() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]uint64, len(RejectReasons))
	for _, r := range RejectReasons {
		out[r] = c.rejected[r]
	}
	return out
}

type local struct {
	e       Entry
	expires time.Time
}

type peer struct {
	entries  map[Key]time.Time // what it holds here, with local expiry
	bucket   bucket
	lastSeen time.Time
	digestOK bool
	asked    time.Time // last snapshot request
	acking   bool      // its digests say it acknowledges (hold.go)
	missed   int       // held segments in a row it left unacknowledged
}

// Engine is one node of a group: it publishes its dataplane's events and
// applies its peers'.
type Engine struct {
	node, group string
	tbl         Table
	policy      func() Policy
	clock       func() (time.Duration, error) // the ftpgate clock of event times, nil in tests
	log         *slog.Logger
	nc          *nats.Conn
	seal        *Sealer // signs and opens messages; nil without TLS (--sync-insecure)
	pubMu       sync.Mutex
	subs        []*nats.Subscription
	interval    time.Duration
	rate        float64
	burst       int
	capPerPeer  int
	now         func() time.Time
	publishHook func(Msg) // tests: instead of the bus
	// routed names the peers the embedded server has a route to (nil with
	// --nats-url: every peer heard from counts); --sync-hold waits for them
	routed func() map[string]bool

	C Counters

	mu    sync.Mutex
	local map[Key]local
	peers map[string]*peer
	drops map[Key]time.Time
	holds holds // --sync-hold (hold.go)
	// inflight counts held segments being sent on: Close waits for them
	inflight sync.WaitGroup
	stop     chan struct{}
	stopped  sync.WaitGroup
	closed   bool
}

func (g *Engine) subject(s string) string { return Subject(g.group, s) }

// attach subscribes e to the group's subjects on nc and starts the digest
// loop; the snapshot request goes out at once.
func (g *Engine) attach(nc *nats.Conn) error {
	g.nc = nc
	for subj, fn := range map[string]nats.MsgHandler{
		g.subject("x"):              g.onEntries,
		g.subject("digest"):         g.onDigest,
		g.subject("snap"):           g.onSnapshotRequest,
		g.subject("snap." + g.node): g.onSnapshotRequest,
		g.ackSubject(g.node):        g.onAcks,
	} {
		sub, err := nc.Subscribe(subj, fn)
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", subj, err)
		}
		sub.SetPendingLimits(-1, 64<<20)
		g.subs = append(g.subs, sub)
	}
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("group bus: %w", err)
	}
	g.stop = make(chan struct{})
	g.stopped.Add(1)
	go g.loop()
	g.requestSnapshot("")
	return nil
}

func (g *Engine) loop() {
	defer g.stopped.Done()
	t := time.NewTicker(g.interval)
	defer t.Stop()
	recheck := time.NewTicker(holdRecheck)
	defer recheck.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-recheck.C:
			g.recheckHolds()
		case <-t.C:
			g.publishDigest()
			g.mu.Lock()
			g.pruneHolds(g.now())
			g.mu.Unlock()
		}
	}
}

// Close stops the engine (not the bus).
func (g *Engine) Close() {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.closed = true
	g.mu.Unlock()
	if g.stop != nil {
		close(g.stop)
		g.stopped.Wait()
	}
	g.releaseAll()
	for _, s := range g.subs {
		s.Unsubscribe()
	}
}

func (g *Engine) publish(subj string, m Msg) {
	if g.publishHook != nil {
		g.publishHook(m)
		return
	}
	if err := g.transmit(subj, "", m); err != nil {
		g.C.Errors.Add(1)
		g.log.Debug("group: publish", "subject", subj, "err", err)
	}
}

// transmit seals m and publishes it on subj (reply: where answers go, ""
// for none) in one step under pubMu: receivers refuse a stamp below the
// last on its subject, so messages leave in the order they were stamped,
// whichever goroutine sends them.
func (g *Engine) transmit(subj, reply string, m Msg) error {
	g.pubMu.Lock()
	defer g.pubMu.Unlock()
	b, err := g.Seal(subj, m)
	if err != nil {
		return err
	}
	if reply == "" {
		return g.nc.Publish(subj, b)
	}
	return g.nc.PublishRequest(subj, reply, b)
}

// Seal returns m as this node publishes it on subject: signed when the
// group has TLS (seal.go).
func (g *Engine) Seal(subject string, m Msg) ([]byte, error) {
	if g.seal != nil {
		return g.seal.Seal(subject, m)
	}
	return Encode(m)
}

// entryOf turns a dataplane event about an expectation into an entry.
func entryOf(ev maps.Event) Entry {
	return Entry{Kind: ev.Kind, Src: ev.Src, Dst: ev.Dst, DPort: ev.DPort, Control: ev.Control}
}

// HandleEvent takes one event of this node's dataplane (run's event
// server hands it every record it drains).
func (g *Engine) HandleEvent(ev maps.Event) {
	now := g.now()
	e := entryOf(ev)
	ack := false
	switch ev.Type {
	case maps.EventCreated:
		pol := g.policy()
		left, age := pol.ExpectTimeout, time.Duration(0)
		if g.clock != nil {
			if t, err := g.clock(); err == nil && t > ev.Time {
				age = t - ev.Time
				left -= age
			}
		}
		if left <= 0 {
			return
		}
		e.Op, e.TTLms, e.MadeNs = OpCreated, ttlMs(left), now.Add(-age).UnixNano()
		ack = pol.SyncHold
		g.mu.Lock()
		g.local[e.Key()] = local{e: e, expires: now.Add(left)}
		if ack {
			g.expectAcks(e.Key(), e.MadeNs, now)
		}
		g.mu.Unlock()
	case maps.EventConsumed:
		e.Op, e.SPort, e.Seq = OpConsumed, ev.SPort, ev.Seq
		g.forget(e.Key())
	case maps.EventEvicted, maps.EventExpired, maps.EventClosed:
		e.Op = OpRemoved
		g.forget(e.Key())
	case maps.EventSYNDrop:
		g.mu.Lock()
		if len(g.drops) >= maxRecentDrops {
			g.pruneDrops(now)
		}
		if len(g.drops) < maxRecentDrops {
			g.drops[Key{ev.Src, ev.Dst, ev.DPort}] = now
		}
		g.mu.Unlock()
		return
	default:
		return
	}
	g.C.Sent.Add(1)
	g.publish(g.subject("x"), Msg{Node: g.node, Entries: []Entry{e}, Ack: ack})
}

// Seed makes the live expectations made here (origin 0) part of what this
// node publishes: those a restarted run finds in the pinned map.
func (g *Engine) Seed(list []maps.Expectation) {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, x := range list {
		if x.Origin != 0 || x.Expired() || x.ExpiresIn <= 0 {
			continue
		}
		e := Entry{Op: OpCreated, Kind: x.Kind, Src: x.Src, Dst: x.Dst, DPort: x.DPort, Control: x.Control}
		g.local[e.Key()] = local{e: e, expires: now.Add(x.ExpiresIn)}
	}
}

// forget drops k from this node's own set and from every peer's.
func (g *Engine) forget(k Key) {
	g.mu.Lock()
	delete(g.local, k)
	for _, p := range g.peers {
		delete(p.entries, k)
	}
	g.mu.Unlock()
}

func (g *Engine) pruneDrops(now time.Time) {
	for k, t := range g.drops {
		if now.Sub(t) > LateWindow {
			delete(g.drops, k)
		}
	}
}

// peerOf returns the state of node, made on first contact; under g.mu.
func (g *Engine) peerOf(node string) *peer {
	p := g.peers[node]
	if p == nil {
		p = &peer{entries: map[Key]time.Time{}}
		g.peers[node] = p
	}
	return p
}

// receive decodes a message from a peer; ok false when it is rejected or
// this node's own.
func (g *Engine) receive(m *nats.Msg) (Msg, bool) {
	var msg Msg
	var err error
	why := RejectMalformed
	if g.seal != nil {
		// on the group's subjects a replay is stale; a reply comes on an
		// inbox new for each request
		fresh := strings.HasPrefix(m.Subject, g.subject(""))
		msg, why, err = g.seal.Open(m.Data, m.Subject, fresh, g.now())
	} else {
		msg, err = Decode(m.Data)
	}
	if err != nil {
		g.C.reject(why)
		g.log.Debug("group: rejected message", "reason", why, "err", err)
		return msg, false
	}
	if msg.Node == g.node {
		// NoEcho keeps our own messages away: another node uses our name
		g.C.reject(RejectImpostor)
		return msg, false
	}
	return msg, true
}

func (g *Engine) onEntries(m *nats.Msg) {
	msg, ok := g.receive(m)
	if !ok {
		return
	}
	g.acknowledge(msg, g.apply(msg.Node, msg.Entries, false))
}

// apply validates and writes entries from node; a snapshot (full) also
// removes what node no longer holds. It returns the created entries it
// wrote, for their acknowledgement.
func (g *Engine) apply(node string, entries []Entry, full bool) (written []Ack) {
	now := g.now()
	pol := g.policy()
	g.mu.Lock()
	p := g.peerOf(node)
	p.lastSeen = now
	seen := map[Key]bool{}
	type write struct {
		e    Entry
		drop bool // a SYN was dropped here for it shortly before
	}
	var writes []write
	for _, e := range entries {
		g.C.Received.Add(1)
		if full {
			// a snapshot's entries are old news: no replication delay
			e.Op, e.MadeNs = OpCreated, 0
		}
		if r := pol.Validate(e); r != "" {
			g.C.reject(r)
			continue
		}
		if !p.bucket.take(now, g.rate, g.burst) {
			g.C.reject(RejectRate)
			continue
		}
		k := e.Key()
		switch e.Op {
		case OpCreated:
			seen[k] = true
			if _, held := p.entries[k]; !held && len(p.entries) >= g.capPerPeer {
				g.expire(p, now)
				if len(p.entries) >= g.capPerPeer {
					g.C.reject(RejectCap)
					continue
				}
			}
			p.entries[k] = now.Add(e.TTL())
			t, dropped := g.drops[k]
			late := dropped && now.Sub(t) <= LateWindow
			if late {
				delete(g.drops, k)
			}
			writes = append(writes, write{e, late})
		case OpConsumed, OpRemoved:
			if l, ok := g.local[k]; ok && l.e.Control == e.Control {
				delete(g.local, k) // not a later expectation of the key made here
			}
			for _, q := range g.peers {
				delete(q.entries, k)
			}
			writes = append(writes, write{e: e})
		}
	}
	var gone []Key
	if full {
		for k := range p.entries {
			if !seen[k] {
				gone = append(gone, k)
				delete(p.entries, k)
			}
		}
	}
	g.mu.Unlock()

	origin := NodeHash(node)
	for _, w := range writes {
		e := w.e
		x := maps.Expectation{Kind: e.Kind, Src: e.Src, Dst: e.Dst, DPort: e.DPort, Control: e.Control, Origin: origin}
		var err error
		switch e.Op {
		case OpCreated:
			if err = g.tbl.AddExpectation(x, e.TTL()); err == nil && w.drop {
				g.C.Late.Add(1)
			}
			if err == nil {
				written = append(written, Ack{Key: e.Key(), Made: e.MadeNs})
			}
			if err == nil && e.MadeNs != 0 {
				g.C.delay(time.Since(time.Unix(0, e.MadeNs)))
			}
		case OpConsumed:
			err = errors.Join(g.tbl.DeleteExpectation(x),
				g.tbl.AddFlow(maps.Flow{Kind: e.Kind, Src: e.Src, SPort: e.SPort, Dst: e.Dst, DPort: e.DPort, Control: e.Control}, e.Seq))
		case OpRemoved:
			err = g.tbl.DeleteExpectation(x)
		}
		if err != nil {
			g.C.reject(RejectWrite)
			g.log.Warn("group: write a peer's entry", "peer", node, "op", e.Op, "err", err)
			continue
		}
		g.C.Applied.Add(1)
	}
	for _, k := range gone {
		if err := g.tbl.DeleteExpectation(maps.Expectation{Src: k.Src, Dst: k.Dst, DPort: k.DPort, Origin: origin}); err != nil {
			g.log.Warn("group: remove what a peer no longer holds", "peer", node, "err", err)
		}
	}
	return written
}

// expire drops p's entries past their expiry (the dataplane refuses them
// already); under g.mu.
func (g *Engine) expire(p *peer, now time.Time) {
	for k, t := range p.entries {
		if !now.Before(t) {
			delete(p.entries, k)
		}
	}
}

// liveKeys returns the keys of set a digest covers: those expiring after
// now+digestMargin, and older than one interval. The age is read from the
// expiry, on both sides: an expectation lives timeout (--expect-timeout,
// which the members share) from when its parser made it, so one expiring
// after now+timeout-interval was made less than an interval ago; a
// receiver's expiry is its arrival plus the lifetime left when it was
// sent, so there the age runs from its arrival. The digest travels the
// same bus: the two sides disagree only on an entry whose age crosses the
// interval within the difference between its transit and the digest's.
// Without a timeout (0: no cap) ages cannot be read and none is left out.
func liveKeys[V any](set map[Key]V, expires func(V) time.Time, now time.Time, timeout, interval time.Duration) []Key {
	from, to := now.Add(digestMargin), now.Add(timeout-interval)
	var keys []Key
	for k, v := range set {
		if x := expires(v); x.After(from) && (timeout <= 0 || !x.After(to)) {
			keys = append(keys, k)
		}
	}
	return keys
}

func (g *Engine) localDigest(now time.Time) (uint64, int) {
	timeout := g.policy().ExpectTimeout
	g.mu.Lock()
	for k, l := range g.local {
		if !now.Before(l.expires) {
			delete(g.local, k)
		}
	}
	keys := liveKeys(g.local, func(l local) time.Time { return l.expires }, now, timeout, g.interval)
	g.mu.Unlock()
	return Digest(keys), len(keys)
}

func (g *Engine) publishDigest() {
	now := g.now()
	d, n := g.localDigest(now)
	g.publish(g.subject("digest"), Msg{Node: g.node, Digest: d, Count: n, Acking: true})
	g.mu.Lock()
	g.pruneDrops(now)
	g.mu.Unlock()
}

func (g *Engine) onDigest(m *nats.Msg) {
	msg, ok := g.receive(m)
	if !ok {
		return
	}
	now := g.now()
	timeout := g.policy().ExpectTimeout
	g.mu.Lock()
	p := g.peerOf(msg.Node)
	absent := p.lastSeen.IsZero() || now.Sub(p.lastSeen) > 3*g.interval
	p.lastSeen = now
	p.acking = msg.Acking
	g.expire(p, now)
	keys := liveKeys(p.entries, func(t time.Time) time.Time { return t }, now, timeout, g.interval)
	p.digestOK = Digest(keys) == msg.Digest && len(keys) == msg.Count
	// one request per interval at most: the reply may still be on its way
	ask := (absent || !p.digestOK) && now.Sub(p.asked) >= g.interval
	if ask {
		p.asked = now
	}
	g.mu.Unlock()
	if ask {
		if !absent {
			g.C.Repairs.Add(1)
		}
		g.log.Debug("group: snapshot request", "peer", msg.Node, "digest_mismatch", !absent)
		go g.requestSnapshot(msg.Node)
	}
}

// snapshot returns this node's live expectations, with their remaining
// lifetimes now.
func (g *Engine) snapshot() Msg {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	out := Msg{Node: g.node}
	for k, l := range g.local {
		left := l.expires.Sub(now)
		if left <= 0 {
			delete(g.local, k)
			continue
		}
		e := l.e
		e.Op, e.TTLms = "", ttlMs(left)
		out.Entries = append(out.Entries, e)
	}
	slices.SortFunc(out.Entries, func(a, b Entry) int { return compareKeys(a.Key(), b.Key()) })
	return out
}

func (g *Engine) onSnapshotRequest(m *nats.Msg) {
	msg, ok := g.receive(m)
	if !ok || m.Reply == "" {
		return
	}
	snap := g.snapshot()
	b, err := g.Seal(m.Reply, snap)
	if err == nil {
		err = m.Respond(b)
	}
	if err != nil {
		g.C.Errors.Add(1)
		g.log.Debug("group: answer a snapshot request", "peer", msg.Node, "err", err)
		return
	}
	g.C.Served.Add(1)
}

// requestSnapshot asks node (every peer when "") for its expectations and
// applies each answer that arrives within snapshotWait.
func (g *Engine) requestSnapshot(node string) {
	subj := g.subject("snap")
	if node != "" {
		subj += "." + node
	}
	inbox := g.nc.NewRespInbox()
	replies := make(chan *nats.Msg, 64)
	sub, err := g.nc.ChanSubscribe(inbox, replies)
	if err != nil {
		g.C.Errors.Add(1)
		return
	}
	defer sub.Unsubscribe()
	if err := g.transmit(subj, inbox, Msg{Node: g.node}); err != nil {
		g.C.Errors.Add(1)
		return
	}
	timeout := time.NewTimer(snapshotWait)
	defer timeout.Stop()
	for {
		select {
		case m := <-replies:
			if len(m.Data) == 0 {
				continue // no responders (no peer yet): a status, not an answer
			}
			msg, ok := g.receive(m)
			if !ok {
				continue
			}
			if node != "" && msg.Node != node {
				g.C.reject(RejectUnexpected)
				continue
			}
			g.apply(msg.Node, msg.Entries, true)
			g.C.Snapshots.Add(1)
			if node != "" {
				return
			}
		case <-timeout.C:
			return
		case <-g.stop:
			return
		}
	}
}

// Snapshot is the counters at one moment, for status and metrics.
type Snapshot struct {
	Sent      uint64            `json:"sent"`
	Received  uint64            `json:"received"`
	Applied   uint64            `json:"applied"`
	Snapshots uint64            `json:"snapshots"`
	Served    uint64            `json:"snapshots_served"`
	Repairs   uint64            `json:"repairs"`
	Late      uint64            `json:"late"`
	Errors    uint64            `json:"errors"`
	Rejected  map[string]uint64 `json:"rejected"`
	// DelayP50us and DelayP99us: the latest replication delays (Counters.Delays)
	DelayP50us int64 `json:"delay_p50_us"`
	DelayP99us int64 `json:"delay_p99_us"`
	// --sync-hold (hold.go): acknowledgements received, held segments
	// sent on by outcome, and the p50 and p99 of how long they waited
	Acks      uint64            `json:"acks"`
	Held      map[string]uint64 `json:"held"`
	HoldP50us int64             `json:"hold_p50_us"`
	HoldP99us int64             `json:"hold_p99_us"`
}

// Snapshot reads the counters.
func (c *Counters) Snapshot() Snapshot {
	p50, p99, _ := c.Delays()
	held, h50, h99 := c.Holds()
	return Snapshot{Sent: c.Sent.Load(), Received: c.Received.Load(), Applied: c.Applied.Load(), Snapshots: c.Snapshots.Load(),
		Served: c.Served.Load(), Repairs: c.Repairs.Load(), Late: c.Late.Load(), Errors: c.Errors.Load(), Rejected: c.Rejected(),
		DelayP50us: p50.Microseconds(), DelayP99us: p99.Microseconds(),
		Acks: c.Acks.Load(), Held: held, HoldP50us: h50.Microseconds(), HoldP99us: h99.Microseconds()}
}

// PeerState is what status shows of one peer node.
type PeerState struct {
	Node     string `json:"node"`
	Origin   uint32 `json:"origin"` // the tag its expectations carry here
	Entries  int    `json:"entries"`
	LastSeen int64  `json:"last_seen_ms"` // ago
	InSync   bool   `json:"in_sync"`      // its last digest matched what it holds here
}

// Peers returns the nodes heard from, by name.
func (g *Engine) Peers() []PeerState {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []PeerState
	for n, p := range g.peers {
		g.expire(p, now)
		out = append(out, PeerState{Node: n, Origin: NodeHash(n), Entries: len(p.entries),
			LastSeen: now.Sub(p.lastSeen).Milliseconds(), InSync: p.digestOK})
	}
	slices.SortFunc(out, func(a, b PeerState) int { return strings.Compare(a.Node, b.Node) })
	return out
}

// Local returns the number of live expectations this node publishes.
func (g *Engine) Local() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.local)
}
