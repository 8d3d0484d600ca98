// Package replay runs a packet capture through ftpgate's real BPF programs
// with BPF_PROG_TEST_RUN, offline: no interface is touched. It is how an
// operator checks a configuration against real traffic.
package replay

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/ftpgate/ftpgate/bpf"
	"github.com/ftpgate/ftpgate/internal/bpfrun"
	"github.com/ftpgate/ftpgate/maps"
)

// Options configures a replay like `ftpgate run` would the dataplane.
type Options struct {
	CtrlPorts  []uint16         // towards every server
	CtrlScopes []maps.PortScope // towards some servers only
	AllowPorts []uint16
	Config     maps.Config
	// Local prefixes, the protected side: packets from them are outbound
	// (TC egress only), unless the capture shows that they arrived from
	// outside (see spoofedFrames).
	Local []netip.Prefix
}

// Expectation is one expectation the capture made, with its fate.
type Expectation struct {
	Kind      string       `json:"kind"`
	Src       netip.Addr   `json:"src"`
	Dst       netip.Addr   `json:"dst"`
	DPort     uint16       `json:"dport"`
	Control   maps.Control `json:"control"`
	Fate      string       `json:"fate"` // consumed, evicted, closed, expired, live
	key       bpf.FtpgateExpectKey
	expiresNs uint64 // on the capture's clock
}

// Connection is the verdict on one connection attempt (SYN without ACK).
type Connection struct {
	Src     netip.Addr `json:"src"`
	SPort   uint16     `json:"sport"`
	Dst     netip.Addr `json:"dst"`
	DPort   uint16     `json:"dport"`
	Verdict string     `json:"verdict"` // pass or drop
	// allowed-port, expected, retransmit, no-expectation, dry-run; and
	// outbound for a SYN from a --local prefix, which XDP never sees
	Reason string `json:"reason"`
}

// Result is what a replay found.
type Result struct {
	// Packets counts the frames replayed, runts not included.
	Packets int `json:"packets"`
	// RuntFrames counts the frames skipped as too short for their link
	// layer or for the Ethernet header BPF_PROG_TEST_RUN needs.
	RuntFrames int `json:"runt_frames"`
	// OversizedFrames counts the frames larger than BPF_PROG_TEST_RUN takes
	// (GRO/TSO super-segments): XDP ran on their headers, TC on the pieces
	// the live parser would read (segment.go).
	OversizedFrames int               `json:"oversized_frames"`
	Expectations    []*Expectation    `json:"expectations"`
	Connections     []Connection      `json:"connections"`
	Counters        map[string]uint64 `json:"counters"`
}

// MaxTestRunFrame is the largest frame replay gives BPF_PROG_TEST_RUN: a
// page less the XDP headroom and the shared-info tailroom, with margin (an
// skb takes up to a page less NET_SKB_PAD and the tailroom, ~3700 bytes).
const MaxTestRunFrame = 3500

// player runs frames through a loaded rig.
type player struct {
	rig    *bpfrun.Rig
	ctrl   map[uint16]bool // global control ports
	scopes []maps.PortScope
	// extraSegments counts the test runs beyond the first that one
	// oversized control segment took: ctrl_segments counts it once
	extraSegments uint64
}

// tc runs a frame through TC ingress or egress.
func (p *player) tc(frame []byte, ingress bool) error {
	_, err := p.rig.TC(frame, ingress, 0)
	return err
}

// reasons map the counter a SYN moved to its verdict and reason
var synOutcomes = []struct{ counter, verdict, reason string }{
	{"syn_pass_allowed", "pass", "allowed-port"},
	{"syn_pass_expected", "pass", "expected"},
	{"syn_pass_retransmit", "pass", "retransmit"},
	{"syn_drop_unexpected", "drop", "no-expectation"},
	{"syn_dryrun_would_drop", "pass", "dry-run"},
	{"drop_unparsed", "drop", "unparsed"},
}

// Run replays frames: each through XDP as if it arrived on a guarded
// interface and, if it passed, through TC ingress; frames from a Local
// prefix through TC egress only. The programs' clock follows the capture.
func Run(frames []Frame, opts Options) (*Result, error) {
	// tables large enough for any capture one would replay by hand
	rig, err := bpfrun.Load(16384, 65536, 65536)
	if err != nil {
		return nil, err
	}
	defer rig.Close()
	m := rig.Maps
	ctrl := opts.CtrlPorts
	if len(ctrl) == 0 && len(opts.CtrlScopes) == 0 {
		ctrl = []uint16{21}
	}
	if err := m.CtrlPorts().Replace(ctrl); err != nil {
		return nil, err
	}
	if err := m.CtrlScopes().Replace(opts.CtrlScopes); err != nil {
		return nil, err
	}
	allow := opts.AllowPorts
	if len(allow) == 0 {
		allow = slices.Clone(ctrl)
		for _, sc := range opts.CtrlScopes {
			if !slices.Contains(allow, sc.Port) {
				allow = append(allow, sc.Port)
			}
		}
	}
	if err := m.AllowPorts().Replace(allow); err != nil {
		return nil, err
	}
	cfg := opts.Config
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// the programs' FIB is this host's, not the captured network's: the
	// reverse-path check is emulated from the capture instead
	rpCheck := cfg.RPCheck
	cfg.RPCheck = maps.RPOff
	// the tail of a super-segment is fed as a frame that claims it (segment.go)
	cfg.ReplayPieces = true
	var spoofed []bool
	if rpCheck == maps.RPStrict {
		spoofed = spoofedFrames(frames, opts.Local)
	}

	p := &player{rig: rig, ctrl: map[uint16]bool{}, scopes: opts.CtrlScopes}
	for _, port := range ctrl {
		p.ctrl[port] = true
	}
	var spoofedSegments uint64
	// tcFrame runs a frame through TC, in pieces if it is too large
	tcFrame := func(frame []byte, ingress bool) error {
		if len(frame) > MaxTestRunFrame {
			return p.oversized(frame, ingress)
		}
		return p.tc(frame, ingress)
	}

	res := &Result{}
	var last time.Time
	for i, f := range frames {
		if len(f.Data) < etherHeaderLen {
			res.RuntFrames++
			continue
		}
		res.Packets++
		// XDP needs only the headers
		xdpFrame := f.Data
		if len(f.Data) > MaxTestRunFrame {
			xdpFrame = f.Data[:MaxTestRunFrame]
			res.OversizedFrames++
		}
		// the clock offset makes the kernel clock read the packet's time
		mono, err := maps.Monotonic()
		if err != nil {
			return nil, err
		}
		cfg.ClockOffset = time.Duration(f.Time.UnixNano() - int64(mono))
		if err := m.SetConfig(cfg); err != nil {
			return nil, err
		}
		last = f.Time

		syn, conn := connectionAttempt(f.Data)
		arrived := spoofed != nil && spoofed[i]
		outbound := isLocal(opts.Local, f.Data) && !arrived
		if outbound {
			if err := tcFrame(f.Data, false); err != nil {
				return nil, err
			}
			if syn {
				conn.Verdict, conn.Reason = "pass", "outbound"
				res.Connections = append(res.Connections, conn)
			}
		} else {
			var before map[string]uint64
			if syn {
				if before, err = m.Counters(); err != nil {
					return nil, err
				}
			}
			v, err := rig.XDP(xdpFrame)
			if err != nil {
				return nil, err
			}
			if syn {
				after, err := m.Counters()
				if err != nil {
					return nil, err
				}
				conn.Verdict, conn.Reason = "pass", "other"
				if v == bpfrun.XDPDrop {
					conn.Verdict = "drop"
				}
				for _, o := range synOutcomes {
					if after[o.counter] > before[o.counter] {
						conn.Verdict, conn.Reason = o.verdict, o.reason
					}
				}
				res.Connections = append(res.Connections, conn)
			}
			if v == bpfrun.XDPPass && arrived {
				if seg, ok := locateTCP(f.Data); ok && p.controlDir(seg) >= 0 {
					// counted as source_routed counts it, never parsed
					spoofedSegments++
				}
			} else if v == bpfrun.XDPPass && len(f.Data) > etherHeaderLen {
				if err := tcFrame(f.Data, true); err != nil {
					return nil, err
				}
			}
		}
		if err := collectEvents(rig, res); err != nil {
			return nil, err
		}
	}

	for _, e := range res.Expectations {
		if e.Fate != "" {
			continue
		}
		e.Fate = "live"
		if maps.Expired(uint64(last.UnixNano()), e.expiresNs) {
			e.Fate = "expired"
		}
	}
	if res.Counters, err = m.Counters(); err != nil {
		return nil, err
	}
	res.Counters["ctrl_segments"] += spoofedSegments - p.extraSegments
	res.Counters["ctrl_spoofed"] += spoofedSegments
	if res.Expectations == nil {
		res.Expectations = []*Expectation{}
	}
	if res.Connections == nil {
		res.Connections = []Connection{}
	}
	return res, nil
}

// collectEvents turns the programs' events into expectations and fates.
func collectEvents(rig *bpfrun.Rig, res *Result) error {
	events, err := rig.Events()
	if err != nil {
		return err
	}
	for _, ev := range events {
		switch ev.Type {
		case maps.EventCreated:
			var val bpf.FtpgateExpectVal
			if err := rig.Maps.Expectations.Lookup(ev.Expectation, &val); err != nil {
				val.ExpiresNs = 0 // already gone: expired whenever the capture ends
			}
			res.Expectations = append(res.Expectations, &Expectation{
				Kind: ev.Kind.String(), Src: ev.Src, Dst: ev.Dst, DPort: ev.DPort,
				Control: ev.Control, key: ev.Expectation, expiresNs: val.ExpiresNs,
			})
		case maps.EventConsumed, maps.EventEvicted, maps.EventClosed, maps.EventExpired:
			// the fates are the event types' names
			setFate(res, ev.Expectation, ev.Type)
		}
	}
	return nil
}

// setFate gives the newest open expectation with this key its fate.
func setFate(res *Result, key bpf.FtpgateExpectKey, fate string) {
	for i := len(res.Expectations) - 1; i >= 0; i-- {
		if e := res.Expectations[i]; e.key == key && e.Fate == "" {
			e.Fate = fate
			return
		}
	}
}

// connectionAttempt reports whether a frame is a TCP SYN without ACK, and
// its addresses.
func connectionAttempt(frame []byte) (bool, Connection) {
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.DecodeOptions{NoCopy: true, Lazy: true})
	tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if !ok || !tcp.SYN || tcp.ACK {
		return false, Connection{}
	}
	src, dst := addrs(p)
	return true, Connection{Src: src, SPort: uint16(tcp.SrcPort), Dst: dst, DPort: uint16(tcp.DstPort)}
}

func addrs(p gopacket.Packet) (netip.Addr, netip.Addr) {
	if ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
		s, _ := netip.AddrFromSlice(ip.SrcIP.To4())
		d, _ := netip.AddrFromSlice(ip.DstIP.To4())
		return s, d
	}
	if ip, ok := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ok {
		s, _ := netip.AddrFromSlice(ip.SrcIP)
		d, _ := netip.AddrFromSlice(ip.DstIP)
		return s, d
	}
	return netip.Addr{}, netip.Addr{}
}

// spoofedFrames emulates the reverse-path check (strict) on a capture: it
// marks the frames whose source is local (the protected side) but which
// arrived from outside. A capture holds no routes; its Ethernet addresses
// show where a frame came from. The protected side's MAC addresses are the
// ones frames from outside are sent to (a frame from a non-local source to
// a local destination: its destination MAC is the gateway's, or the
// guarded host's); a frame from a local source sent by any other MAC
// arrived from outside: its source is forged. Frames without a captured
// Ethernet header (Linux cooked or raw IP captures), and captures with no
// frame from outside, carry no such evidence and are never marked. Nil
// without local prefixes.
func spoofedFrames(frames []Frame, local []netip.Prefix) []bool {
	if len(local) == 0 {
		return nil
	}
	inside := map[[6]byte]bool{}
	for _, f := range frames {
		if !f.Ethernet || len(f.Data) < etherHeaderLen || f.Data[0]&1 != 0 /* group address */ {
			continue
		}
		src, dst := addrs(gopacket.NewPacket(f.Data, layers.LayerTypeEthernet, gopacket.DecodeOptions{NoCopy: true, Lazy: true}))
		if src.IsValid() && !contains(local, src) && contains(local, dst) {
			inside[[6]byte(f.Data[0:6])] = true
		}
	}
	if len(inside) == 0 {
		return nil
	}
	marks := make([]bool, len(frames))
	for i, f := range frames {
		marks[i] = f.Ethernet && len(f.Data) >= etherHeaderLen && !inside[[6]byte(f.Data[6:12])] && isLocal(local, f.Data)
	}
	return marks
}

func contains(prefixes []netip.Prefix, a netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func isLocal(local []netip.Prefix, frame []byte) bool {
	if len(local) == 0 {
		return false
	}
	src, _ := addrs(gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.DecodeOptions{NoCopy: true, Lazy: true}))
	return src.IsValid() && contains(local, src)
}

// String gives a readable one-line summary of a connection.
func (c Connection) String() string {
	return fmt.Sprintf("%s %s -> %s: %s", c.Verdict, netip.AddrPortFrom(c.Src, c.SPort), netip.AddrPortFrom(c.Dst, c.DPort), c.Reason)
}
