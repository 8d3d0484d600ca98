package group

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/group/grouptest"
	"github.com/ftpgate/ftpgate/maps"
)

// fakeTable records what the engine writes, as the maps would hold it.
type fakeTable struct {
	mu      sync.Mutex
	exp     map[Key]fakeExp
	flows   map[string]uint32 // "src:sport>dst:dport" -> seq
	failAdd bool
	gate    chan struct{} // when set, AddExpectation waits until it is closed
}

type fakeExp struct {
	origin uint32
	ttl    time.Duration
	kind   maps.Kind
}

func newFakeTable() *fakeTable {
	return &fakeTable{exp: map[Key]fakeExp{}, flows: map[string]uint32{}}
}

func (t *fakeTable) AddExpectation(e maps.Expectation, ttl time.Duration) error {
	t.mu.Lock()
	gate := t.gate
	t.mu.Unlock()
	if gate != nil {
		<-gate
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.failAdd {
		return errors.New("map full")
	}
	t.exp[Key{e.Src, e.Dst, e.DPort}] = fakeExp{e.Origin, ttl, e.Kind}
	return nil
}

func (t *fakeTable) DeleteExpectation(e maps.Expectation) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.exp, Key{e.Src, e.Dst, e.DPort})
	return nil
}

func flowName(src netip.Addr, sport uint16, dst netip.Addr, dport uint16) string {
	return fmt.Sprintf("%s:%d>%s:%d", src, sport, dst, dport)
}

func (t *fakeTable) AddFlow(f maps.Flow, seq uint32) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.flows[flowName(f.Src, f.SPort, f.Dst, f.DPort)] = seq
	return nil
}

func (t *fakeTable) get(k Key) (fakeExp, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v, ok := t.exp[k]
	return v, ok
}

func (t *fakeTable) flow(name string) (uint32, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v, ok := t.flows[name]
	return v, ok
}

func (t *fakeTable) drop(k Key) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.exp, k)
}

// documentation addresses (RFC 5737)
var (
	client = netip.MustParseAddr("192.0.2.10")
	srv    = netip.MustParseAddr("198.51.100.20")
	ctrl   = maps.Control{Client: client, ClientPort: 40000, Server: srv, ServerPort: 21}
)

func created(dport uint16) maps.Event {
	return maps.Event{Type: maps.EventCreated, Kind: maps.KindPasv, Src: client, Dst: srv, DPort: dport, Control: ctrl}
}

func key(dport uint16) Key { return Key{client, srv, dport} }

func defaultPolicy() Policy { return Policy{ExpectTimeout: 300 * time.Second} }

var loopback = netip.MustParseAddr("127.0.0.1")

type testNode struct {
	*Node
	tbl *fakeTable
	cfg Config
}

// cluster starts n nodes of group "g" in a full mesh with certificates of
// p, digests every 200 ms.
func cluster(t *testing.T, p *grouptest.PKI, names ...string) []*testNode {
	t.Helper()
	return clusterOf(t, p, defaultPolicy, 200*time.Millisecond, names...)
}

// clusterWith is cluster with the nodes' policy.
func clusterWith(t *testing.T, p *grouptest.PKI, policy func() Policy, names ...string) []*testNode {
	t.Helper()
	return clusterOf(t, p, policy, 200*time.Millisecond, names...)
}

// clusterEvery is cluster with digests every interval.
func clusterEvery(t *testing.T, p *grouptest.PKI, interval time.Duration, names ...string) []*testNode {
	t.Helper()
	return clusterOf(t, p, defaultPolicy, interval, names...)
}

func clusterOf(t *testing.T, p *grouptest.PKI, policy func() Policy, interval time.Duration, names ...string) []*testNode {
	t.Helper()
	addrs := make([]string, len(names))
	for i := range names {
		addrs[i] = grouptest.FreeAddr(t)
	}
	var nodes []*testNode
	for i, name := range names {
		var peers []string
		for j, a := range addrs {
			if j != i {
				peers = append(peers, a)
			}
		}
		cert, key := p.Issue(t, name, loopback)
		cfg := Config{Group: "g", NodeID: name, Listen: addrs[i], Peers: peers, CA: p.CA, Cert: cert, Key: key,
			DigestInterval: interval}
		nodes = append(nodes, startNodeWith(t, cfg, policy))
	}
	waitRoutes(t, nodes, len(names)-1)
	return nodes
}

func startNode(t *testing.T, cfg Config) *testNode {
	t.Helper()
	return startNodeWith(t, cfg, defaultPolicy)
}

func startNodeWith(t *testing.T, cfg Config, policy func() Policy) *testNode {
	t.Helper()
	tbl := newFakeTable()
	n, err := Start(cfg, tbl, policy, nil)
	if err != nil {
		t.Fatalf("start %s: %v", cfg.NodeID, err)
	}
	tn := &testNode{Node: n, tbl: tbl, cfg: cfg}
	t.Cleanup(n.Close)
	return tn
}

func waitRoutes(t *testing.T, nodes []*testNode, want int) {
	t.Helper()
	for _, n := range nodes {
		eventually(t, 10*time.Second, func() bool {
			return len(n.Status().Routes) >= want
		}, "%s: %d routes", n.cfg.NodeID, want)
	}
}

func eventually(t *testing.T, d time.Duration, cond func() bool, f string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for "+f, args...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
