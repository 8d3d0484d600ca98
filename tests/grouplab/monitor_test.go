package grouplab

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/maps"
)

// TestExplainDrops: the recorder reads monitor's JSON lines, and a dropped
// SYN is explained by the events for its port around it, on any gateway.
func TestExplainDrops(t *testing.T) {
	at := time.Date(2026, 11, 30, 19, 33, 55, 0, time.UTC)
	lines := func(evs ...maps.Event) string {
		var b strings.Builder
		for _, e := range evs {
			j, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			b.Write(append(j, '\n'))
		}
		return b.String()
	}
	drop := maps.Event{Wall: at, Type: maps.EventSYNDrop, Reason: "syn_drop_unexpected", Src: ClientAddr, SPort: 22025, Dst: ServerAddr, DPort: 35805}
	made := maps.Event{Wall: at.Add(-time.Second), Type: maps.EventCreated, Kind: maps.KindEpsv, Src: ClientAddr, Dst: ServerAddr, DPort: 35805}
	other := maps.Event{Wall: at, Type: maps.EventSYNDrop, Reason: "syn_drop_unexpected", Src: ServerAddr, SPort: 40701, Dst: ClientAddr, DPort: 36453}
	r := &Recorder{}
	r.read(1, strings.NewReader(lines(drop, other)+"not json\n"))
	r.read(2, strings.NewReader(lines(made)))
	got := ExplainDrops(r.Stop())
	if len(got) != 2 {
		t.Fatalf("explained %d drops, want 2: %q", len(got), got)
	}
	if !strings.Contains(got[0], "gw2") || !strings.Contains(got[0], "-1.000s gw3") || !strings.Contains(got[0], "created") {
		t.Errorf("the drop with an expectation a second earlier on gw3:\n%s", got[0])
	}
	if !strings.Contains(got[1], "no gateway made or consumed") {
		t.Errorf("the drop with nothing for its port:\n%s", got[1])
	}
}
