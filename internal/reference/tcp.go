package reference

import (
	"github.com/ftpgate/ftpgate/bpf"
)

// This file states, in plain Go, which segments of a control connection the
// TCP tracker (bpf/tcp.h, bpf/control.h) accepts and when it trusts the
// connection; the differential tests hold the BPF tracker to it. It models
// one connection; the per-source rate limit and the table sizes, which
// decide whether a connection is tracked at all, are not modelled.

// TCP flag bits of TCPSegment.Flags, as on the wire.
const (
	TCPFin = 0x01
	TCPSyn = 0x02
	TCPRst = 0x04
	TCPAck = 0x10
)

// NoWScale is TCPSegment.WScale of a SYN without the window-scale option.
const NoWScale = -1

// Limits of the tracker, from the C enum.
var (
	tcpMaxWScale         = int(bpf.FtpgateLimitsTCP_MAX_WSCALE)
	tcpPickupWScale      = uint(bpf.FtpgateLimitsTCP_PICKUP_WSCALE)
	tcpAckWindowFallback = uint32(bpf.FtpgateLimitsTCP_ACK_WINDOW_FALLBACK)
)

// TCPSegment is a segment as the tracker reads it.
type TCPSegment struct {
	FromClient  bool
	Seq, Ack    uint32
	Flags       uint8
	Window      uint16 // the window field, unscaled
	WScale      int    // the shift a SYN announces, or NoWScale
	Len         int    // payload bytes
	BadChecksum bool   // the receiver would drop it
	EndsLine    bool   // its last payload byte is LF
}

// TCPVerdict is what the tracker does with a segment.
type TCPVerdict int

// Verdicts; each but TCPAccepted changes nothing and names the counter it
// is counted under ("" for none).
const (
	TCPAccepted    TCPVerdict = iota
	TCPNotTracked             // no state, and the segment may not start it (a bare ACK, an RST)
	TCPBadChecksum            // ctrl_bad_checksum
	TCPOutOfWindow            // tcp_out_of_window
	TCPRSTIgnored             // tcp_rst_ignored
	TCPBadFlags               // tcp_bad_flags
)

// Counter names the counter a refused segment is counted under.
func (v TCPVerdict) Counter() string {
	switch v {
	case TCPBadChecksum:
		return "ctrl_bad_checksum"
	case TCPOutOfWindow:
		return "tcp_out_of_window"
	case TCPRSTIgnored:
		return "tcp_rst_ignored"
	case TCPBadFlags:
		return "tcp_bad_flags"
	}
	return ""
}

// TCPResult is the tracker's answer to one segment.
type TCPResult struct {
	Verdict TCPVerdict
	// Parse: the payload goes to the FTP parser (the connection is
	// trusted once this segment is in).
	Parse bool
	// BecameTrusted: this segment made the connection trusted. Then
	// SkipToLine tells, per direction (client first), whether its stream
	// resumes at the next line (picked up, or bytes went by untrusted)
	// rather than at a line start.
	BecameTrusted bool
	SkipToLine    [2]bool
	// ResumeAt tells, per direction (client first), the sequence number
	// its stream resumes at when BecameTrusted (embryo_promote's
	// next_seq): the sender's end before this segment, which is parsed
	// next, and the other direction's end.
	ResumeAt [2]uint32
	// Closed: the connection's state is gone (an accepted RST, both FINs,
	// or a FIN or RST while untrusted).
	Closed bool
}

// tcpDir is struct tcp_track: what the tracker knows of one direction.
type tcpDir struct {
	seen, synSeen, wscaleOK, window, acked, data, fin bool
	lineEnd                                           bool // its untrusted bytes so far end with LF

	isn, end, maxend, maxwin uint32
	wscale                   uint
}

// TCPTracker follows one control connection.
type TCPTracker struct {
	dir     [2]tcpDir // client, server
	tracked bool
	trusted bool
}

// NewTCPTracker returns a tracker of a connection not seen yet.
func NewTCPTracker() *TCPTracker { return &TCPTracker{} }

// Trusted tells whether the FTP layer may believe the connection's bytes.
func (t *TCPTracker) Trusted() bool { return t.trusted }

// Tracked tells whether the connection has state (trusted or not).
func (t *TCPTracker) Tracked() bool { return t.tracked }

// HandshakeSeen tells whether both SYNs were seen (tcp_handshake_seen).
func (t *TCPTracker) HandshakeSeen() bool { return t.dir[0].synSeen && t.dir[1].synSeen }

func seqBefore(a, b uint32) bool { return int32(a-b) < 0 }
func seqAfter(a, b uint32) bool  { return int32(b-a) < 0 }

func dirIndex(fromClient bool) int {
	if fromClient {
		return 0
	}
	return 1
}

// Segment takes one segment.
func (t *TCPTracker) Segment(seg TCPSegment) TCPResult {
	if seg.BadChecksum {
		return TCPResult{Verdict: TCPBadChecksum}
	}
	if !flagsValid(seg.Flags) {
		return TCPResult{Verdict: TCPBadFlags}
	}
	if !t.tracked {
		// only a SYN or payload starts tracking: the last ACK of a closed
		// connection must not bring it back
		if seg.Flags&TCPRst != 0 || (seg.Flags&TCPSyn == 0 && seg.Len == 0) {
			return TCPResult{Verdict: TCPNotTracked}
		}
		*t = TCPTracker{tracked: true}
	}
	d := dirIndex(seg.FromClient)
	S, R := &t.dir[d], &t.dir[1-d]

	end := seg.Seq + uint32(seg.Len)
	if seg.Flags&TCPSyn != 0 {
		end++
	}
	if seg.Flags&TCPFin != 0 {
		end++
	}

	fresh := false
	if seg.Flags&TCPSyn != 0 {
		switch {
		case S.synSeen:
			if seg.Seq != S.isn {
				return TCPResult{Verdict: TCPOutOfWindow}
			}
		case !seg.FromClient && seg.Flags&TCPAck == 0 && R.seen:
			// only the client opens: a server SYN must not wipe its tracking
			return TCPResult{Verdict: TCPOutOfWindow}
		case seg.Flags&TCPAck != 0 && R.synSeen && seg.Ack != R.isn+1:
			// a SYN-ACK must acknowledge the SYN seen
			return TCPResult{Verdict: TCPOutOfWindow}
		case S.seen && t.trusted:
			return TCPResult{Verdict: TCPOutOfWindow}
		default:
			if S.seen {
				*S = tcpDir{}
			}
			if seg.Flags&TCPAck == 0 && !t.trusted {
				*R = tcpDir{} // a new connection on the 5-tuple
			}
			S.synSeen = true
			if seg.WScale >= 0 {
				S.wscaleOK = true
				S.wscale = uint(min(seg.WScale, tcpMaxWScale))
			}
			fresh = true
		}
	}
	if !fresh && !inWindow(S, R, seg, end) {
		if seg.Flags&TCPRst != 0 {
			return TCPResult{Verdict: TCPRSTIgnored}
		}
		return TCPResult{Verdict: TCPOutOfWindow}
	}
	if seg.Flags&TCPRst != 0 && (!S.seen || seg.Seq != S.end) {
		return TCPResult{Verdict: TCPRSTIgnored}
	}
	prevEnd := seg.Seq // s->seg_prev_end
	if S.seen {
		prevEnd = S.end
	}
	update(S, R, seg, end)

	res := TCPResult{Verdict: TCPAccepted}
	if seg.Flags&TCPRst != 0 {
		*t, res.Closed = TCPTracker{}, true
		return res
	}
	if !t.trusted {
		if seg.Flags&TCPFin != 0 {
			// an untrusted connection that closes leaves nothing
			*t, res.Closed = TCPTracker{}, true
			return res
		}
		if !(S.acked && R.acked) || seg.Flags&TCPSyn != 0 {
			if seg.Len > 0 {
				S.data = true
				if seg.Seq+uint32(seg.Len) == S.end {
					S.lineEnd = seg.EndsLine
				}
			}
			return res
		}
		t.trusted, res.BecameTrusted = true, true
		for i := range t.dir {
			res.SkipToLine[i] = !t.dir[i].resumeAtLine()
			res.ResumeAt[i] = t.dir[i].end
		}
		res.ResumeAt[d] = prevEnd
	}
	if seg.Flags&TCPSyn != 0 {
		return res
	}
	res.Parse = seg.Len > 0
	if seg.Flags&TCPFin != 0 {
		S.fin = true
		if R.fin {
			*t, res.Closed = TCPTracker{}, true
		}
	}
	return res
}

// flagsValid is tcp_flags_valid (bpf/control.h): every segment but a SYN or
// an RST carries ACK, and SYN, FIN and RST exclude one another.
func flagsValid(f uint8) bool {
	switch {
	case f&TCPSyn != 0 && f&(TCPFin|TCPRst) != 0, f&TCPFin != 0 && f&TCPRst != 0:
		return false
	}
	return f&(TCPAck|TCPSyn|TCPRst) != 0
}

// inWindow is tcp_in_window (bpf/tcp.h).
func inWindow(S, R *tcpDir, seg TCPSegment, end uint32) bool {
	if R.window && seqAfter(seg.Seq, R.maxend) {
		return false
	}
	if S.seen {
		win := R.maxwin
		if win == 0 {
			win = tcpAckWindowFallback
		}
		if seqBefore(end, S.end-win) {
			return false
		}
	}
	if seg.Flags&TCPAck != 0 && R.seen {
		if seqAfter(seg.Ack, R.end) {
			return false
		}
		aw := S.maxwin
		if aw == 0 {
			aw = tcpAckWindowFallback
		}
		if seqBefore(seg.Ack, R.end-aw) {
			return false
		}
	}
	return true
}

// window is tcp_window (bpf/tcp.h): the segment's window in bytes.
func window(S, R *tcpDir, seg TCPSegment) uint32 {
	win := uint32(seg.Window)
	switch {
	case seg.Flags&TCPSyn != 0:
		return win
	case S.synSeen && R.synSeen:
		if S.wscaleOK && R.wscaleOK {
			return win << S.wscale
		}
		return win
	}
	return win << tcpPickupWScale
}

// update is tcp_update (bpf/tcp.h).
func update(S, R *tcpDir, seg TCPSegment, end uint32) {
	if !S.seen {
		S.isn, S.end, S.seen = seg.Seq, end, true
	} else if seqAfter(end, S.end) {
		S.end = end
	}
	win := window(S, R, seg)
	S.maxwin = max(S.maxwin, win)
	if seg.Flags&TCPAck == 0 {
		return
	}
	edge := seg.Ack + max(win, 1)
	if !S.window || seqAfter(edge, S.maxend) {
		S.maxend = edge
	}
	S.window = true
	if R.seen && seqAfter(seg.Ack, R.isn) && !seqAfter(seg.Ack, R.end) {
		S.acked = true
	}
}

// resumeAtLine tells whether the direction's stream resumes at a line start
// when trust comes (tcp_resume_at_line): after its SYN with nothing sent, or
// when its untrusted bytes ended with LF.
func (d *tcpDir) resumeAtLine() bool {
	if d.data {
		return d.lineEnd
	}
	return d.synSeen
}
