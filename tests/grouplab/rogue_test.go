package grouplab

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/group"
	ftpmaps "github.com/ftpgate/ftpgate/maps"
)

// groupOf reads gateway i's group state (`status --json`; run rewrites it
// every second).
func groupOf(l *Lab, i int) (group.Status, error) {
	out, err := l.CLI(i, "status", "--json")
	if err != nil {
		return group.Status{}, fmt.Errorf("gw%d status: %v: %s", i+1, err, out)
	}
	var st struct {
		Group *group.Status `json:"group"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return group.Status{}, fmt.Errorf("gw%d status: %w", i+1, err)
	}
	if st.Group == nil {
		return group.Status{}, fmt.Errorf("gw%d status: no group", i+1)
	}
	return *st.Group, nil
}

// expectationsOf lists gateway i's live expectations.
func expectationsOf(t *testing.T, l *Lab, i int) []ftpmaps.Expectation {
	t.Helper()
	out, err := l.CLI(i, "expectations", "--json")
	if err != nil {
		t.Fatalf("gw%d expectations: %v: %s", i+1, err, out)
	}
	var list []ftpmaps.Expectation
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("gw%d expectations: %v", i+1, err)
	}
	return list
}

// holding returns which of keys gateway i's expectations map holds.
func holding(t *testing.T, l *Lab, i int, keys []group.Key) []group.Key {
	t.Helper()
	var found []group.Key
	for _, e := range expectationsOf(t, l, i) {
		if k := (group.Key{Src: e.Src, Dst: e.Dst, DPort: e.DPort}); slices.Contains(keys, k) {
			found = append(found, k)
		}
	}
	return found
}

// rogueMember: a member whose route certificate the group's CA did sign
// (compromised, or misconfigured) joins the mesh from its own namespace on
// the sync bridge and publishes, on the group's entry subject, what no
// dataplane made: signed as itself, holes no parser would make; signed as
// itself but in gw1's name; unsigned; not a message at all. Every gateway
// refuses all of it, each refusal counted under its reason (docs/group.md,
// "Forged messages"). Then the rogue leaves and the group is as before.
func rogueMember(t *testing.T, l *Lab) {
	ctrl := ftpmaps.Control{Client: ClientAddr, ClientPort: 45999, Server: ServerAddr, ServerPort: 21}
	hole := func(dport uint16) group.Entry {
		return group.Entry{Op: group.OpCreated, Kind: ftpmaps.KindEpsv, Src: ClientAddr, Dst: ServerAddr, DPort: dport,
			Control: ctrl, TTLms: 60_000}
	}
	v6 := netip.MustParseAddr("2001:db8::2")
	low, long, mixed, mixedCtrl, mapped := hole(22), hole(45000), hole(45001), hole(45002), hole(45003)
	long.TTLms = 3_600_000 // against --expect-timeout 300 s
	mixed.Dst = v6
	mixedCtrl.Control.Server = v6
	mapped.Src = netip.MustParseAddr("::ffff:192.0.2.2")
	forged := []group.Entry{low, long, mixed, mixedCtrl, mapped}
	// in gw1's name, signed with the rogue's certificate (which names
	// "rogue"); and a hole in the rogue's own name, not signed
	impersonated, unsigned := hole(45100), hole(45101)
	// a burst: removals of keys nobody holds (they pass validation and
	// take a token each) empty the rogue's bucket, then holes in the same
	// message, so at one instant (no refill): each refused as rate
	var burst, overRate []group.Entry
	unused := netip.MustParseAddr("192.0.2.3")
	for i := range group.DefaultPeerBurst {
		burst = append(burst, group.Entry{Op: group.OpRemoved, Kind: ftpmaps.KindEpsv, Src: unused, Dst: ServerAddr, DPort: uint16(30000 + i)})
	}
	for p := range uint16(10) {
		overRate = append(overRate, hole(45200+p))
	}
	burst = append(burst, overRate...)

	subject := group.Subject("lab", "x")
	signed := func(node string, es []group.Entry) RawMsg {
		return RawMsg{Subject: subject, Sign: &group.Msg{Node: node, Entries: es}}
	}
	plain, err := group.Encode(group.Msg{Node: RogueNode, Entries: []group.Entry{unsigned}})
	if err != nil {
		t.Fatal(err)
	}
	msgs := []RawMsg{
		signed(RogueNode, forged),
		{Subject: subject, Data: []byte("\x00\x01 not a group message")},
		{Subject: subject, Data: []byte(`{"entries":[]}`)}, // no signature, no node
		signed("gw1", []group.Entry{impersonated}),
		{Subject: subject, Data: plain},
		signed(RogueNode, burst),
	}
	want := map[string]uint64{group.RejectLowPort: 1, group.RejectTTL: 1, group.RejectFamily: 3,
		group.RejectMalformed: 1, group.RejectUnsigned: 2, group.RejectSigner: 1, group.RejectRate: uint64(len(overRate))}
	var never []group.Key // on no gateway, ever
	for _, e := range append(forged, append(overRate, impersonated, unsigned)...) {
		never = append(never, e.Key())
	}

	var before [Gateways]group.Status
	for i := range Gateways {
		st, err := groupOf(l, i)
		if err != nil {
			t.Fatal(err)
		}
		before[i] = st
	}
	start := time.Now()
	r := l.StartRogueMember(msgs)
	// the counters, as run last wrote them
	rose := func(i int, st group.Status) map[string]uint64 {
		d := map[string]uint64{}
		for _, reason := range group.RejectReasons {
			if n := st.Counters.Rejected[reason] - before[i].Counters.Rejected[reason]; n != 0 {
				d[reason] = n
			}
		}
		return d
	}
	var after [Gateways]group.Status
	deadline := time.Now().Add(20 * time.Second)
	for i := range Gateways {
		for {
			st, err := groupOf(l, i)
			if err != nil {
				t.Fatal(err)
			}
			after[i] = st
			if maps.Equal(rose(i, st), want) || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if got := rose(i, after[i]); !maps.Equal(got, want) {
			t.Errorf("gw%d: rejections rose by %v, want %v", i+1, got, want)
		} else {
			t.Logf("gw%d: rejections rose by %v; routes up %d", i+1, got, len(after[i].Routes))
		}
	}
	for i := range Gateways {
		if found := holding(t, l, i, never); len(found) > 0 {
			t.Errorf("gw%d holds forged holes %v", i+1, found)
		}
	}
	// the rogue leaves: two routes each again, and transfers pass
	if err := r.Stop(); err != nil {
		t.Error(err)
	}
	for i := range Gateways {
		waitStatus(t, l, i, 30*time.Second, "routes up 2, peers unreached 0")
	}
	trs := l.Batch(context.Background(), 12, 4, 8, 53000, 10*time.Second)
	_, stalled, failed, _ := Summary(trs)
	t.Logf("after the rogue left: %d transfers, %d stalled, %d failed; the step took %v", len(trs), stalled, failed,
		time.Since(start).Round(100*time.Millisecond))
	if failed > 0 {
		t.Fatalf("%d transfers failed after the rogue left", failed)
	}
}
