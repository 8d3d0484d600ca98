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
	Time time.Duration `json:"-"` // ftpgate's clock (see Monotonic)
	// Wall is Time on the wall clock, set by whoever reads the event (see
	// WallClock); zero until then.
	Wall    time.Time  `json:"time,omitzero"`
	Type    string     `json:"type"`             // created, consumed, evicted, expired, closed, reject, syn_drop, nat_rewrite, tls_start, login_cleartext, tls_range_pass, tls_range_drop
	Reason  string     `json:"reason,omitempty"` // for reject, syn_drop, login_cleartext and the tls_range ones: the counter name (reject_bounce, syn_drop_unexpected, login_reset, ...)
	Kind    Kind       `json:"kind"`
	Src     netip.Addr `json:"src"`
	SPort   uint16     `json:"sport,omitempty"` // for syn_drop and consumed: the SYN's source port
	Seq     uint32     `json:"-"`               // for consumed: the SYN's sequence number (a gateway group makes the flow on its peers, #15)
	Dst     netip.Addr `json:"dst"`
	DPort   uint16     `json:"dport"`
	Control Control    `json:"control"`
	// Inside is, for nat_rewrite, the inside end behind Dst:DPort (the
	// public end the announcement now carries).
	Inside netip.AddrPort `json:"inside,omitzero"`
	// Expectation is the key of the expectation the event is about, to
	// look it up or match it against other events.
	Expectation bpf.FtpgateExpectKey `json:"-"`
	// TLS is, for tls_start, how the control connection became encrypted:
	// auth or implicit (#13)
	TLS string `json:"tls,omitempty"`
}

// Event types, as Event.Type spells them.
const (
	EventCreated  = "created"
	EventConsumed = "consumed"
	EventEvicted  = "evicted"
	EventExpired  = "expired"
	EventClosed   = "closed"
	EventReject   = "reject"
	EventSYNDrop  = "syn_drop"
	// EventNATRewrite: an announcement rewritten to the public end (#12)
	EventNATRewrite = "nat_rewrite"
	// #13 FTPS: a control connection became encrypted (Control; TLS says
	// how); USER or PASS before TLS (Control; Reason login_reset when the
	// guard reset it, else login_cleartext); a SYN admitted into a TLS
	// range or dropped there (Src, SPort, Dst, DPort; Reason as counted)
	EventTLSStart       = "tls_start"
	EventLoginCleartext = "login_cleartext"
	EventTLSRangePass   = "tls_range_pass"
	EventTLSRangeDrop   = "tls_range_drop"
)

var eventTypes = map[bpf.FtpgateEventType]string{
	bpf.FtpgateEventTypeEV_EXPECT_CREATED:  EventCreated,
	bpf.FtpgateEventTypeEV_EXPECT_CONSUMED: EventConsumed,
	bpf.FtpgateEventTypeEV_EXPECT_EVICTED:  EventEvicted,
	bpf.FtpgateEventTypeEV_EXPECT_EXPIRED:  EventExpired,
	bpf.FtpgateEventTypeEV_EXPECT_CLOSED:   EventClosed,
	bpf.FtpgateEventTypeEV_REJECT:          EventReject,
	bpf.FtpgateEventTypeEV_SYN_DROP:        EventSYNDrop,
	bpf.FtpgateEventTypeEV_NAT_REWRITE:     EventNATRewrite,
	bpf.FtpgateEventTypeEV_TLS_START:       EventTLSStart,
	bpf.FtpgateEventTypeEV_LOGIN_CLEARTEXT: EventLoginCleartext,
	bpf.FtpgateEventTypeEV_TLS_RANGE_PASS:  EventTLSRangePass,
	bpf.FtpgateEventTypeEV_TLS_RANGE_DROP:  EventTLSRangeDrop,
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
		SPort:       ev.Sport,
		Seq:         ev.Seq,
		Control:     ControlFromKey(ev.Ctrl),
		Expectation: ev.Expect,
	}
	if out.Type == "" {
		out.Type = fmt.Sprintf("unknown-%d", ev.Type)
	}
	if ev.Expect.Family != 0 {
		out.Src, out.Dst, out.DPort = Addr(ev.Expect.Family, ev.Expect.Src), Addr(ev.Expect.Family, ev.Expect.Dst), ev.Expect.Dport
	}
	if ev.Nat.Set != 0 {
		out.Inside = netip.AddrPortFrom(Addr(ev.Expect.Family, ev.Nat.Addr), ev.Nat.Port)
	}
	if out.Type == EventTLSStart {
		out.TLS, out.Kind = TLSState(ev.Kind).String(), 0
	}
	switch out.Type {
	case EventReject, EventSYNDrop, EventLoginCleartext, EventTLSRangePass, EventTLSRangeDrop:
		names, err := CounterNames()
		if err == nil && int(ev.Reason) < len(names) {
			out.Reason = names[ev.Reason]
		}
	}
	return out, nil
}

// WallClock turns ftpgate-clock times into wall-clock times: it pairs the
// ftpgate clock now (kernel monotonic plus offset) with time.Now once, so
// every event read afterwards gets the same translation.
type WallClock struct {
	ftp  time.Duration
	wall time.Time
}

// NewWallClock reads both clocks; offset is the configured clock offset.
func NewWallClock(offset time.Duration) (WallClock, error) {
	mono, err := Monotonic()
	if err != nil {
		return WallClock{}, err
	}
	return WallClock{ftp: time.Duration(mono) + offset, wall: time.Now()}, nil
}

// Now returns the ftpgate-clock time at which the two clocks were read.
func (w WallClock) Now() time.Duration { return w.ftp }

// Wall returns the wall-clock time of an ftpgate-clock time.
func (w WallClock) Wall(t time.Duration) time.Time { return w.wall.Add(t - w.ftp) }
