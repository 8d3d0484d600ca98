package group

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ftpgate/ftpgate/internal/group/grouptest"
	"github.com/ftpgate/ftpgate/maps"
)

func TestEncodeDecode(t *testing.T) {
	in := Msg{Node: "gw1", Entries: []Entry{{Op: OpConsumed, Kind: maps.KindEpsv, Src: client, Dst: srv, DPort: 50000,
		Control: ctrl, TTLms: 1234, SPort: 41000, Seq: 0xdeadbeef}}}
	b, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Entries) != 1 || out.Entries[0] != in.Entries[0] || out.Node != "gw1" {
		t.Fatalf("round trip: got %+v, want %+v", out, in)
	}
	for _, bad := range []string{"", "{", `{"entries":[]}`, `{"node":"x","entries":[{"kind":"nonsense"}]}`, `{"node":"x","entries":[{"src":"300.1.1.1"}]}`} {
		if _, err := Decode([]byte(bad)); !errors.Is(err, ErrMsg) {
			t.Errorf("Decode(%q) = %v, want ErrMsg", bad, err)
		}
	}
}

func TestDigestOrderFree(t *testing.T) {
	a, b := key(50000), key(50001)
	if Digest([]Key{a, b}) != Digest([]Key{b, a}) {
		t.Fatal("digest depends on order")
	}
	if Digest([]Key{a}) == Digest([]Key{a, b}) || Digest(nil) == Digest([]Key{a}) {
		t.Fatal("different sets, same digest")
	}
	if NodeHash("gw1") == 0 || NodeHash("gw1") == NodeHash("gw2") {
		t.Fatal("node hashes not distinct and non-zero")
	}
}

func TestValidate(t *testing.T) {
	ok := Entry{Op: OpCreated, Kind: maps.KindPasv, Src: client, Dst: srv, DPort: 50000, Control: ctrl, TTLms: 10_000}
	v6 := netip.MustParseAddr("2001:db8::1")
	cases := []struct {
		name string
		edit func(*Entry)
		pol  Policy
		want string
	}{
		{"valid", func(*Entry) {}, defaultPolicy(), ""},
		{"op", func(e *Entry) { e.Op = "open" }, defaultPolicy(), RejectOp},
		{"mixed families", func(e *Entry) { e.Dst = v6 }, defaultPolicy(), RejectFamily},
		{"control family", func(e *Entry) { e.Control.Server = v6 }, defaultPolicy(), RejectFamily},
		{"no source", func(e *Entry) { e.Src = netip.Addr{} }, defaultPolicy(), RejectFamily},
		{"unspecified", func(e *Entry) { e.Dst = netip.IPv4Unspecified() }, defaultPolicy(), RejectFamily},
		{"multicast", func(e *Entry) { e.Dst = netip.MustParseAddr("224.0.0.1") }, defaultPolicy(), RejectFamily},
		{"mapped v4", func(e *Entry) { e.Src = netip.MustParseAddr("::ffff:192.0.2.10") }, defaultPolicy(), RejectFamily},
		{"kind", func(e *Entry) { e.Kind = maps.KindTLSRange }, defaultPolicy(), RejectKind},
		{"low port", func(e *Entry) { e.DPort = 22 }, defaultPolicy(), RejectLowPort},
		{"low port allowed", func(e *Entry) { e.DPort = 22 }, Policy{ExpectTimeout: time.Minute, AllowLowDataPorts: true}, ""},
		{"port 0", func(e *Entry) { e.DPort = 0 }, defaultPolicy(), RejectPort},
		{"over the cap", func(e *Entry) { e.TTLms = 301_000 }, defaultPolicy(), RejectTTL},
		{"at the cap", func(e *Entry) { e.TTLms = 300_000 }, defaultPolicy(), ""},
		{"expired", func(e *Entry) { e.TTLms = 0 }, defaultPolicy(), RejectExpired},
		{"consumed without its SYN", func(e *Entry) { e.Op, e.TTLms = OpConsumed, 0 }, defaultPolicy(), RejectPort},
		{"consumed", func(e *Entry) { e.Op, e.TTLms, e.SPort = OpConsumed, 0, 41000 }, defaultPolicy(), ""},
		{"removed needs only the key", func(e *Entry) { e.Op, e.Kind, e.Control = OpRemoved, 0, maps.Control{} }, defaultPolicy(), ""},
	}
	for _, c := range cases {
		e := ok
		c.edit(&e)
		if got := c.pol.Validate(e); got != c.want {
			t.Errorf("%s: Validate = %q, want %q", c.name, got, c.want)
		}
	}
}

func TestBucket(t *testing.T) {
	var b bucket
	now := time.Unix(1000, 0)
	for i := range 3 {
		if !b.take(now, 10, 3) {
			t.Fatalf("take %d within the burst refused", i)
		}
	}
	if b.take(now, 10, 3) {
		t.Fatal("take past the burst allowed")
	}
	if !b.take(now.Add(100*time.Millisecond), 10, 3) {
		t.Fatal("a token refilled after 1/rate refused")
	}
}

// TestTTLTranslation: a created event becomes its remaining lifetime on
// the sender's clock (the event's age taken off), and the receiver's
// expectation lives no longer than that.
func TestTTLTranslation(t *testing.T) {
	tbl := newFakeTable()
	eventTime := 50 * time.Second
	clock := func() (time.Duration, error) { return eventTime + 1500*time.Millisecond, nil }
	g := newEngine(Config{Group: "g", NodeID: "a"}, tbl, defaultPolicy, clock)
	ev := created(50000)
	ev.Time = eventTime
	var sent []Entry
	g.nc = nil
	g.publishHook = func(m Msg) { sent = append(sent, m.Entries...) }
	g.HandleEvent(ev)
	if len(sent) != 1 {
		t.Fatalf("sent %d entries, want 1", len(sent))
	}
	if want := int64(298_500); sent[0].TTLms != want {
		t.Fatalf("TTL %d ms, want %d (300 s less the event's 1.5 s age)", sent[0].TTLms, want)
	}
	// the receiver writes the lifetime as received, never longer
	r := newEngine(Config{Group: "g", NodeID: "b"}, newFakeTable(), defaultPolicy, nil)
	r.apply("a", sent, false)
	got, ok := r.tbl.(*fakeTable).get(key(50000))
	if !ok || got.ttl != 298_500*time.Millisecond || got.origin != NodeHash("a") {
		t.Fatalf("receiver holds %+v (present %v), want ttl 298.5s origin %d", got, ok, NodeHash("a"))
	}
	// an event older than the timeout is not sent at all
	sent = nil
	ev.Time = 0
	clock2 := eventTime + 400*time.Second
	g.clock = func() (time.Duration, error) { return clock2, nil }
	g.HandleEvent(ev)
	if len(sent) != 0 {
		t.Fatalf("an expired expectation was sent: %+v", sent)
	}
}

// TestLimits: the per-peer rate limit and cap, and a failing map write,
// are counted under their reasons.
func TestLimits(t *testing.T) {
	tbl := newFakeTable()
	g := newEngine(Config{Group: "g", NodeID: "b", PeerRate: 1, PeerBurst: 5, MaxRemotePerPeer: 3}, tbl, defaultPolicy, nil)
	var es []Entry
	for p := range uint16(6) {
		es = append(es, Entry{Op: OpCreated, Kind: maps.KindPasv, Src: client, Dst: srv, DPort: 50000 + p, Control: ctrl, TTLms: 60_000})
	}
	g.apply("a", es, false)
	rej := g.C.Rejected()
	if rej[RejectCap] != 2 || rej[RejectRate] != 1 || len(tbl.exp) != 3 {
		t.Fatalf("rejected %v, table %d; want cap 2, rate 1, table 3", rej, len(tbl.exp))
	}
	tbl.failAdd = true
	g2 := newEngine(Config{Group: "g", NodeID: "c"}, tbl, defaultPolicy, nil)
	g2.apply("a", es[:1], false)
	if g2.C.Rejected()[RejectWrite] != 1 || g2.C.Applied.Load() != 0 {
		t.Fatalf("a refused map write: rejected %v applied %d", g2.C.Rejected(), g2.C.Applied.Load())
	}
}

// TestLate: a SYN dropped here, then its expectation from a peer: late.
func TestLate(t *testing.T) {
	g := newEngine(Config{Group: "g", NodeID: "b"}, newFakeTable(), defaultPolicy, nil)
	g.publishHook = func(Msg) {}
	g.HandleEvent(maps.Event{Type: maps.EventSYNDrop, Src: client, SPort: 41000, Dst: srv, DPort: 50000})
	e := Entry{Op: OpCreated, Kind: maps.KindPasv, Src: client, Dst: srv, DPort: 50000, Control: ctrl, TTLms: 60_000}
	other := e
	other.DPort = 50001
	g.apply("a", []Entry{e, other}, false)
	if g.C.Late.Load() != 1 {
		t.Fatalf("late %d, want 1", g.C.Late.Load())
	}
	// past the window it is not late
	g.HandleEvent(maps.Event{Type: maps.EventSYNDrop, Src: client, Dst: srv, DPort: 50002})
	g.now = func() time.Time { return time.Now().Add(2 * LateWindow) }
	e.DPort = 50002
	g.apply("a", []Entry{e}, false)
	if g.C.Late.Load() != 1 {
		t.Fatalf("late %d after an old drop, want still 1", g.C.Late.Load())
	}
}

// TestReplication: three nodes over mutual-TLS routes. What one creates
// appears on the others, tagged with its origin; a consumption elsewhere
// removes it everywhere and leaves the data flow, with the SYN's sequence
// number, on every peer.
func TestReplication(t *testing.T) {
	p := grouptest.NewPKI(t, "ca")
	n := cluster(t, p, "a", "b", "c")
	a, b, c := n[0], n[1], n[2]
	a.HandleEvent(created(50000))
	for _, x := range []*testNode{b, c} {
		eventually(t, 5*time.Second, func() bool { _, ok := x.tbl.get(key(50000)); return ok }, "%s to hold a's expectation", x.cfg.NodeID)
		got, _ := x.tbl.get(key(50000))
		if got.origin != NodeHash("a") || got.kind != maps.KindPasv || got.ttl <= 0 || got.ttl > 300*time.Second {
			t.Fatalf("%s holds %+v", x.cfg.NodeID, got)
		}
	}
	if _, ok := a.tbl.get(key(50000)); ok {
		t.Fatal("a wrote its own expectation back")
	}
	if p50, p99, n := b.C.Delays(); n != 1 || p50 <= 0 || p99 < p50 || p99 > 5*time.Second {
		t.Fatalf("b's replication delays: p50 %v p99 %v of %d, want one, positive", p50, p99, n)
	}
	// b's dataplane admits the data connection through it
	b.HandleEvent(maps.Event{Type: maps.EventConsumed, Kind: maps.KindPasv, Src: client, SPort: 41000, Seq: 777,
		Dst: srv, DPort: 50000, Control: ctrl})
	flow := flowName(client, 41000, srv, 50000)
	for _, x := range []*testNode{a, c} {
		eventually(t, 5*time.Second, func() bool { s, ok := x.tbl.flow(flow); return ok && s == 777 }, "%s to hold the flow", x.cfg.NodeID)
	}
	if _, ok := c.tbl.get(key(50000)); ok {
		t.Fatal("c still holds the consumed expectation")
	}
	if a.Local() != 0 {
		t.Fatalf("a still publishes %d expectations after b consumed its one", a.Local())
	}
	// a removal reaches the peers too
	a.HandleEvent(created(50001))
	eventually(t, 5*time.Second, func() bool { _, ok := c.tbl.get(key(50001)); return ok }, "c to hold 50001")
	ev := created(50001)
	ev.Type = maps.EventClosed
	a.HandleEvent(ev)
	eventually(t, 5*time.Second, func() bool { _, ok := c.tbl.get(key(50001)); return !ok }, "c to drop 50001")
	if a.C.Sent.Load() != 3 || c.C.Applied.Load() < 3 {
		t.Fatalf("a sent %d (want 3), c applied %d (want >= 3)", a.C.Sent.Load(), c.C.Applied.Load())
	}
	st := a.Status()
	if len(st.Routes) != 2 || st.Routes[0].Peer != "b" || st.Routes[1].Peer != "c" || st.PeersDown != 0 {
		t.Fatalf("a's routes: %+v", st)
	}
}

// TestSnapshotOnStart: a node that joins late gets what is live from a
// snapshot, with the lifetime left.
func TestSnapshotOnStart(t *testing.T) {
	p := grouptest.NewPKI(t, "ca")
	n := cluster(t, p, "a", "b")
	n[0].HandleEvent(created(50000))
	n[1].HandleEvent(created(50001))
	eventually(t, 5*time.Second, func() bool { _, ok := n[1].tbl.get(key(50000)); return ok }, "b to hold a's expectation")

	late := grouptest.FreeAddr(t)
	cert, k := p.Issue(t, "c", loopback)
	c := startNode(t, Config{Group: "g", NodeID: "c", Listen: late, Peers: []string{n[0].cfg.Listen, n[1].cfg.Listen},
		CA: p.CA, Cert: cert, Key: k, DigestInterval: 200 * time.Millisecond})
	for _, dp := range []uint16{50000, 50001} {
		eventually(t, 10*time.Second, func() bool { _, ok := c.tbl.get(key(dp)); return ok }, "c to hold %d", dp)
	}
	if c.C.Snapshots.Load() == 0 {
		t.Fatal("c caught up without a snapshot")
	}
}

// TestDigestRepair: an update lost on the way (core NATS is at most once)
// is repaired by the next digest: a lost creation comes back, a lost
// removal goes.
func TestDigestRepair(t *testing.T) {
	p := grouptest.NewPKI(t, "ca")
	n := cluster(t, p, "a", "b")
	a, b := n[0], n[1]
	a.HandleEvent(created(50000))
	eventually(t, 5*time.Second, func() bool { _, ok := b.tbl.get(key(50000)); return ok }, "b to hold 50000")
	repairs := b.C.Repairs.Load()

	// a creation b never heard of
	a.Engine.mu.Lock()
	e := Entry{Op: OpCreated, Kind: maps.KindPasv, Src: client, Dst: srv, DPort: 50001, Control: ctrl}
	a.Engine.local[key(50001)] = local{e: e, expires: time.Now().Add(time.Minute)}
	a.Engine.mu.Unlock()
	// a removal b never heard of
	b.Engine.mu.Lock()
	b.Engine.peers["a"].entries[key(50002)] = time.Now().Add(time.Minute)
	b.Engine.mu.Unlock()
	b.tbl.AddExpectation(maps.Expectation{Src: client, Dst: srv, DPort: 50002, Origin: NodeHash("a")}, time.Minute)

	eventually(t, 5*time.Second, func() bool {
		_, have := b.tbl.get(key(50001))
		_, stale := b.tbl.get(key(50002))
		return have && !stale
	}, "b repaired")
	if b.C.Repairs.Load() == repairs {
		t.Fatal("repaired without a digest mismatch counted")
	}
	eventually(t, 5*time.Second, func() bool {
		ps := b.Peers()
		return len(ps) == 1 && ps[0].InSync && ps[0].Entries == 2
	}, "b in sync with a: %+v", b.Peers())
}

// TestDigestLeavesOutYoung: an expectation made between the sender's
// digest and the receiver's comparison is in the receiver's view and not
// in the digest. Both sides leave out what is younger than one digest
// interval, so that costs no snapshot; an expectation older than that
// which the receiver lacks still does.
func TestDigestLeavesOutYoung(t *testing.T) {
	p := grouptest.NewPKI(t, "ca")
	// digests every 5 s: this test hands b a's digests itself, well within
	n := clusterEvery(t, p, 5*time.Second, "a", "b")
	a, b := n[0], n[1]
	subject := a.Engine.subject("digest")
	// sealed when handed over: a's own digests on the bus carry rising stamps
	sealed := func(d uint64, c int) *nats.Msg {
		body, err := a.Engine.Seal(subject, Msg{Node: "a", Digest: d, Count: c})
		if err != nil {
			t.Fatal(err)
		}
		return &nats.Msg{Subject: subject, Data: body}
	}
	digest := func() *nats.Msg { return sealed(a.Engine.localDigest(time.Now())) }
	d, c := a.Engine.localDigest(time.Now()) // a's digest leaves...
	a.HandleEvent(created(50000))
	eventually(t, 5*time.Second, func() bool { _, ok := b.tbl.get(key(50000)); return ok }, "b to hold 50000")
	b.Engine.onDigest(sealed(d, c)) // ...and b compares it after 50000 arrived
	if r := b.C.Repairs.Load(); r != 0 {
		t.Fatalf("%d repairs for an expectation made while a digest was on its way", r)
	}
	if ps := b.Peers(); len(ps) != 1 || !ps[0].InSync {
		t.Fatalf("b's view of a: %+v, want in sync", ps)
	}

	// one made a minute ago (4 of its 5 minutes left) that b never heard of
	a.Engine.mu.Lock()
	e := Entry{Op: OpCreated, Kind: maps.KindPasv, Src: client, Dst: srv, DPort: 50001, Control: ctrl}
	a.Engine.local[key(50001)] = local{e: e, expires: time.Now().Add(4 * time.Minute)}
	a.Engine.mu.Unlock()
	b.Engine.onDigest(digest())
	if r := b.C.Repairs.Load(); r != 1 {
		t.Fatalf("%d repairs for an old expectation b lacks, want 1", r)
	}
	eventually(t, 5*time.Second, func() bool { _, ok := b.tbl.get(key(50001)); return ok }, "b to repair 50001")
}

// TestPartitionHeal: a node cut off keeps working; once the route is back,
// each side gets what the other made meanwhile.
func TestPartitionHeal(t *testing.T) {
	p := grouptest.NewPKI(t, "ca")
	n := cluster(t, p, "a", "b")
	a, b := n[0], n[1]
	b.Close()
	a.HandleEvent(created(50000))        // b is away
	cert, k := p.Issue(t, "b", loopback) // a new certificate
	b2 := startNode(t, Config{Group: "g", NodeID: "b", Listen: b.cfg.Listen, Peers: b.cfg.Peers, CA: p.CA, Cert: cert, Key: k,
		DigestInterval: 200 * time.Millisecond})
	eventually(t, 10*time.Second, func() bool { _, ok := b2.tbl.get(key(50000)); return ok }, "b to catch up")
}

// TestForeignCertificate: a server whose certificate another CA signed
// gets no route, and nothing it publishes arrives.
func TestForeignCertificate(t *testing.T) {
	p := grouptest.NewPKI(t, "ca")
	n := cluster(t, p, "a", "b")
	rogueCA := grouptest.NewPKI(t, "rogue")
	cert, k := rogueCA.Issue(t, "r", loopback)
	// it trusts the group's CA but shows a certificate the group does not
	r := startNode(t, Config{Group: "g", NodeID: "r", Listen: grouptest.FreeAddr(t), Peers: []string{n[0].cfg.Listen},
		CA: rogueCA.Trusting(t, p), Cert: cert, Key: k})
	r.HandleEvent(created(50000))
	time.Sleep(time.Second) // time for a handshake that must fail
	if st := r.Status(); len(st.Routes) != 0 || st.PeersDown != 1 {
		t.Fatalf("rogue has routes %+v", st)
	}
	for _, x := range n {
		if st := x.Status(); len(st.Routes) != 1 {
			t.Fatalf("%s routes %+v, want only its peer", x.cfg.NodeID, st.Routes)
		}
		if _, ok := x.tbl.get(key(50000)); ok {
			t.Fatalf("%s took the rogue's expectation", x.cfg.NodeID)
		}
	}
}

// TestForgedRejected: a member that sends what its dataplane could never
// have made (a hole to a low port, a lifetime past the cap, bytes that
// are not a message) gets nothing written, and each rejection is counted
// under its reason. So does anything not signed by the node it claims to
// come from: a message in another member's name (a's own, or c's), one
// signed by a certificate another CA issued, one whose bytes changed after
// signing, and one not signed at all.
func TestForgedRejected(t *testing.T) {
	p := grouptest.NewPKI(t, "ca")
	n := cluster(t, p, "a", "b")
	a, b := n[0], n[1]
	publish := func(subject string, body []byte) {
		if err := b.nc.Publish(subject, body); err != nil {
			t.Fatal(err)
		}
	}
	send := func(subject string, m Msg) {
		body, err := b.Engine.Seal(subject, m) // signed by b
		if err != nil {
			t.Fatal(err)
		}
		publish(subject, body)
	}
	good := Entry{Op: OpCreated, Kind: maps.KindPasv, Src: client, Dst: srv, DPort: 50000, Control: ctrl, TTLms: 60_000}
	low, long, mixed := good, good, good
	low.DPort = 22
	long.TTLms = 3_600_000
	mixed.Dst = netip.MustParseAddr("2001:db8::2")
	send("ftpgate.g.x", Msg{Node: "b", Entries: []Entry{low, long, mixed}})

	send("ftpgate.g.x", Msg{Node: "a", Entries: []Entry{good}}) // a's own name, b's signature
	send("ftpgate.g.x", Msg{Node: "c", Entries: []Entry{good}}) // a third member's name
	publish("ftpgate.g.x", []byte("not json"))
	unsigned, _ := Encode(Msg{Node: "b", Entries: []Entry{good}})
	publish("ftpgate.g.x", unsigned)
	// the right bytes, then one changed: a wider hole
	body, err := b.Engine.Seal("ftpgate.g.x", Msg{Node: "b", Entries: []Entry{good}})
	if err != nil {
		t.Fatal(err)
	}
	var env Envelope
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatal(err)
	}
	env.Msg = bytes.Replace(env.Msg, []byte(`"dport":50000`), []byte(`"dport":50009`), 1)
	tampered, _ := json.Marshal(env)
	publish("ftpgate.g.x", tampered)
	// signed by a "b" another CA vouches for
	other := grouptest.NewPKI(t, "other")
	cert, k := other.Issue(t, "b", loopback)
	tc, err := Config{CA: other.CA, Cert: cert, Key: k}.tlsConfig()
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := NewSealer(tc, "b")
	if err != nil {
		t.Fatal(err)
	}
	body, err = foreign.Seal("ftpgate.g.x", Msg{Node: "b", Entries: []Entry{good}})
	if err != nil {
		t.Fatal(err)
	}
	publish("ftpgate.g.x", body)
	// b's own message, valid (a removal of what nobody holds), twice: the
	// second is a replay; then on the digest subject, not signed for it
	gone := Entry{Op: OpRemoved, Kind: maps.KindPasv, Src: client, Dst: srv, DPort: 50099, Control: ctrl}
	body, err = b.Engine.Seal("ftpgate.g.x", Msg{Node: "b", Entries: []Entry{gone}})
	if err != nil {
		t.Fatal(err)
	}
	publish("ftpgate.g.x", body)
	publish("ftpgate.g.x", body)
	publish("ftpgate.g.digest", body)
	// another group's subject never reaches a
	send("ftpgate.other.x", Msg{Node: "b", Entries: []Entry{good}})
	eventually(t, 5*time.Second, func() bool {
		r := a.C.Rejected()
		return r[RejectLowPort] == 1 && r[RejectTTL] == 1 && r[RejectFamily] == 1 && r[RejectSigner] == 3 &&
			r[RejectMalformed] == 1 && r[RejectUnsigned] == 1 && r[RejectSignature] == 2 && r[RejectReplay] == 1
	}, "a's rejections: %v", a.C.Rejected())
	if _, ok := a.tbl.get(key(50000)); ok {
		t.Fatal("a wrote a forged expectation")
	}
	if len(a.tbl.exp) != 0 {
		t.Fatalf("a holds %v", a.tbl.exp)
	}
}

func TestCheck(t *testing.T) {
	base := Config{Group: "g", NodeID: "a", Listen: "127.0.0.1:7400", Peers: []string{"127.0.0.1:7401"}}
	if err := base.Check(); !errors.Is(err, ErrNoTLS) {
		t.Fatalf("no TLS, no --sync-insecure: %v", err)
	}
	ins := base
	ins.Insecure = true
	if err := ins.Check(); err != nil {
		t.Fatalf("insecure: %v", err)
	}
	half := base
	half.CA = "ca.pem"
	if err := half.Check(); !errors.Is(err, ErrNoTLS) {
		t.Fatalf("CA without cert: %v", err)
	}
	for name, c := range map[string]Config{
		"no node":       {Group: "g", Listen: "127.0.0.1:1", Insecure: true},
		"no listen":     {Group: "g", NodeID: "a", Insecure: true},
		"bad peer":      {Group: "g", NodeID: "a", Listen: "127.0.0.1:1", Peers: []string{"nope"}, Insecure: true},
		"url and peer":  {Group: "g", NodeID: "a", NATSURL: "nats://127.0.0.1:4222", Peers: []string{"127.0.0.1:2"}, Insecure: true},
		"bad group":     {Group: "g.x", NodeID: "a", Listen: "127.0.0.1:1", Insecure: true},
		"node no group": {NodeID: "a"},
	} {
		if err := c.Check(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestInsecureGroup: with --sync-insecure the routes are plain TCP, and
// work.
func TestInsecureGroup(t *testing.T) {
	la, lb := grouptest.FreeAddr(t), grouptest.FreeAddr(t)
	a := startNode(t, Config{Group: "g", NodeID: "a", Listen: la, Peers: []string{lb}, Insecure: true})
	b := startNode(t, Config{Group: "g", NodeID: "b", Listen: lb, Peers: []string{la}, Insecure: true})
	waitRoutes(t, []*testNode{a, b}, 1)
	a.HandleEvent(created(50000))
	eventually(t, 5*time.Second, func() bool { _, ok := b.tbl.get(key(50000)); return ok }, "b to hold a's expectation")
}
