package maps

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/ftpgate/ftpgate/bpf"
)

// Event is one record of the events ring buffer.
type Event struct {
	Time    time.Duration `json:"-"`
	Type    string        `json:"type"`             // created, consumed, evicted, expired, closed, reject
	Reason  string        `json:"reason,omitempty"` // for reject: the counter name (reject_bounce, ...)
	Kind    Kind          `json:"kind"`
	Src     netip.Addr    `json:"src"`
	Dst     netip.Addr    `json:"dst"`
	DPort   uint16        `json:"dport"`
	Control Control       `json:"control"`
	// Expectation is the key of the expectation the event is about, to
	// look it up or match it against other events.
	Expectation bpf.FtpgateExpectKey `json:"-"`
}

// Event types, as Event.Type spells them.
const (
	EventCreated  = "created"
	EventConsumed = "consumed"
	EventEvicted  = "evicted"
	EventExpired  = "expired"
	EventClosed   = "closed"
	EventReject   = "reject"
)

var eventTypes = map[bpf.FtpgateEventType]string{
	bpf.FtpgateEventTypeEV_EXPECT_CREATED:  EventCreated,
	bpf.FtpgateEventTypeEV_EXPECT_CONSUMED: EventConsumed,
	bpf.FtpgateEventTypeEV_EXPECT_EVICTED:  EventEvicted,
	bpf.FtpgateEventTypeEV_EXPECT_EXPIRED:  EventExpired,
	bpf.FtpgateEventTypeEV_EXPECT_CLOSED:   EventClosed,
	bpf.FtpgateEventTypeEV_REJECT:          EventReject,
}

// DecodeEvent decodes a raw ring-buffer record.
func DecodeEvent(raw []byte) (Event, error) {
	var ev bpf.FtpgateEvent
	if err := binary.Read(bytes.NewReader(raw), binary.NativeEndian, &ev); err != nil {
		return Event{}, fmt.Errorf("decode event: %w", err)
	}
	out := Event{
		Time:        time.Duration(ev.TsNs),
		Type:        eventTypes[bpf.FtpgateEventType(ev.Type)],
		Kind:        Kind(ev.Kind),
		Control:     ControlFromKey(ev.Ctrl),
		Expectation: ev.Expect,
	}
	if out.Type == "" {
		out.Type = fmt.Sprintf("unknown-%d", ev.Type)
	}
	if ev.Expect.Family != 0 {
		out.Src, out.Dst, out.DPort = Addr(ev.Expect.Family, ev.Expect.Src), Addr(ev.Expect.Family, ev.Expect.Dst), ev.Expect.Dport
	}
	if out.Type == EventReject {
		names, err := CounterNames()
		if err == nil && int(ev.Reason) < len(names) {
			out.Reason = names[ev.Reason]
		}
	}
	return out, nil
}
