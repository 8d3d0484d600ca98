package replay

import (
	"bytes"
	"encoding/binary"
	"net/netip"

	"github.com/ftpgate/ftpgate/bpf"
	"github.com/ftpgate/ftpgate/internal/inetsum"
	"github.com/ftpgate/ftpgate/maps"
)

// A capture taken with GRO or TSO holds TCP segments of up to 64 KiB. The
// live TC parser gets such a segment whole and reads the first MaxScanBytes
// of its payload (at most MaxLines lines); the rest is a gap (scan_limit),
// after which the next segment starts a line only if this one ended with LF.
// BPF_PROG_TEST_RUN takes no skb larger than about a page, so replay feeds
// a control segment as consecutive pieces (the same headers, sequence
// advanced, checksums recomputed, SYN on the first piece and PSH/FIN on the
// last) holding exactly the bytes the live parser reads, then a piece that
// claims the unread bytes but carries none, which the parser counts as the
// same gap. See README, "Replay of GRO/TSO captures".

// TCP flags and header fields the pieces rewrite
const (
	tcpFIN        = 0x01
	tcpSYN        = 0x02
	tcpRST        = 0x04
	tcpPSH        = 0x08
	tcpFlagsOff   = 13
	tcpSeqOff     = 4
	tcpCsumOff    = 16
	tcpMinHdr     = 20
	protoTCP      = 6
	ipv4MinHdr    = 20
	ipv6Hdr       = 40
	ipv4LenOff    = 2
	ipv4CsumOff   = 10
	ipv6LenOff    = 4
	ipv4FragMask  = 0x1fff
	ipv6FragMask  = 0xfff8
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
	etherTypeQ    = 0x8100
	etherTypeAD   = 0x88a8
	vlanTagLen    = 4
	csumGood      = 0xffff
)

// IPv6 extension headers the programs follow (bpf/parsing.h, ipv6_is_ext)
const (
	ipv6HopByHop = 0
	ipv6Routing  = 43
	ipv6Fragment = 44
	ipv6AH       = 51
	ipv6DstOpts  = 60
	ipv6Mobility = 135
)

// tcpSegment is a TCP segment in an Ethernet frame, located as the
// programs' parser locates it (bpf/parsing.h).
type tcpSegment struct {
	frame      []byte
	ipOff      int
	v4         bool
	tcpOff     int
	payloadOff int
	payloadLen int // from the IP header's length fields, as the programs read it
	src, dst   netip.AddrPort
	seq        uint32
	flags      uint8
}

// locateTCP finds the TCP segment in frame; false for anything the
// programs would not parse as one.
func locateTCP(frame []byte) (tcpSegment, bool) {
	s := tcpSegment{frame: frame}
	if len(frame) < etherHeaderLen {
		return s, false
	}
	off := etherHeaderLen
	proto := binary.BigEndian.Uint16(frame[12:])
	for i := 0; i <= maps.MaxVLANTags && (proto == etherTypeQ || proto == etherTypeAD); i++ {
		if i == maps.MaxVLANTags || len(frame) < off+vlanTagLen {
			return s, false
		}
		proto = binary.BigEndian.Uint16(frame[off+2:])
		off += vlanTagLen
	}
	s.ipOff = off
	var l3len int // IP header and payload, from the length field
	switch proto {
	case etherTypeIPv4:
		if len(frame) < off+ipv4MinHdr {
			return s, false
		}
		ip := frame[off:]
		ihl := int(ip[0]&0x0f) * 4
		if ihl < ipv4MinHdr || ip[9] != protoTCP || binary.BigEndian.Uint16(ip[6:])&ipv4FragMask != 0 {
			return s, false
		}
		s.v4 = true
		s.src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[12:16])), 0)
		s.dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[16:20])), 0)
		s.tcpOff = off + ihl
		l3len = int(binary.BigEndian.Uint16(ip[ipv4LenOff:]))
	case etherTypeIPv6:
		if len(frame) < off+ipv6Hdr {
			return s, false
		}
		ip := frame[off:]
		nh := ip[6]
		hoff := off + ipv6Hdr
		for i := 0; i < maps.MaxIPv6Ext && isIPv6Ext(nh); i++ {
			if len(frame) < hoff+8 {
				return s, false
			}
			ext := frame[hoff:]
			var n int
			switch nh {
			case ipv6Fragment:
				if binary.BigEndian.Uint16(ext[2:])&ipv6FragMask != 0 {
					return s, false
				}
				n = 8
			case ipv6AH:
				n = (int(ext[1]) + 2) * 4
			default:
				n = (int(ext[1]) + 1) * 8
			}
			nh = ext[0]
			hoff += n
		}
		if nh != protoTCP {
			return s, false
		}
		s.src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(ip[8:24])), 0)
		s.dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(ip[24:40])), 0)
		s.tcpOff = hoff
		l3len = ipv6Hdr + int(binary.BigEndian.Uint16(ip[ipv6LenOff:]))
	default:
		return s, false
	}
	if len(frame) < s.tcpOff+tcpMinHdr {
		return s, false
	}
	tcp := frame[s.tcpOff:]
	doff := int(tcp[12]>>4) * 4
	if doff < tcpMinHdr {
		return s, false
	}
	s.src = netip.AddrPortFrom(s.src.Addr(), binary.BigEndian.Uint16(tcp[0:]))
	s.dst = netip.AddrPortFrom(s.dst.Addr(), binary.BigEndian.Uint16(tcp[2:]))
	s.seq = binary.BigEndian.Uint32(tcp[tcpSeqOff:])
	s.flags = tcp[tcpFlagsOff]
	s.payloadOff = s.tcpOff + doff
	s.payloadLen = max(0, l3len-(s.payloadOff-s.ipOff))
	return s, s.payloadOff <= len(frame)
}

func isIPv6Ext(nh byte) bool {
	switch nh {
	case ipv6HopByHop, ipv6Routing, ipv6Fragment, ipv6DstOpts, ipv6AH, ipv6Mobility:
		return true
	}
	return false
}

// captured is the part of the payload the capture holds
func (s tcpSegment) captured() []byte {
	return s.frame[s.payloadOff:min(len(s.frame), s.payloadOff+s.payloadLen)]
}

// piece builds a segment with this one's headers that carries payload
// from sequence number seq, with the given flags; its IP length claims
// claim payload bytes (more than it carries for a gap).
func (s tcpSegment) piece(seq uint32, flags uint8, payload []byte, claim int) []byte {
	f := make([]byte, s.payloadOff, s.payloadOff+len(payload))
	copy(f, s.frame[:s.payloadOff])
	f = append(f, payload...)
	ip := f[s.ipOff:]
	l3 := s.payloadOff - s.ipOff + claim
	if s.v4 {
		binary.BigEndian.PutUint16(ip[ipv4LenOff:], uint16(l3))
		ihl := int(ip[0]&0x0f) * 4
		binary.BigEndian.PutUint16(ip[ipv4CsumOff:], 0)
		binary.BigEndian.PutUint16(ip[ipv4CsumOff:], ^inetsum.Fold(inetsum.Sum(ip[:ihl])))
	} else {
		binary.BigEndian.PutUint16(ip[ipv6LenOff:], uint16(l3-ipv6Hdr))
	}
	tcp := f[s.tcpOff:]
	binary.BigEndian.PutUint32(tcp[tcpSeqOff:], seq)
	tcp[tcpFlagsOff] = flags
	binary.BigEndian.PutUint16(tcp[tcpCsumOff:], 0)
	binary.BigEndian.PutUint16(tcp[tcpCsumOff:], ^inetsum.Fold(s.pseudoSum(len(tcp))+inetsum.Sum(tcp)))
	return f
}

// trusted is segment_trusted (bpf/checksum.h) for an skb whose checksum
// nobody verified, as in a test run: a segment longer than the parser
// reads is not checked; otherwise its checksum field must hold either the
// pseudo-header sum alone (checksum offload, what GRO and TSO leave) or
// the right checksum. tcp is the TCP header and payload.
func (s tcpSegment) trusted(tcp []byte) bool {
	n := len(tcp) - (s.payloadOff - s.tcpOff)
	if n > maps.MaxScanBytes {
		return true
	}
	pseudo := s.pseudoSum(len(tcp))
	if inetsum.Fold(pseudo) == binary.BigEndian.Uint16(tcp[tcpCsumOff:]) {
		return true
	}
	return inetsum.Fold(pseudo+inetsum.Sum(tcp)) == csumGood
}

// pseudoSum is the one's-complement sum of the TCP pseudo-header
func (s tcpSegment) pseudoSum(tcpLen int) uint64 {
	return inetsum.Pseudo(s.src.Addr(), s.dst.Addr(), protoTCP, tcpLen)
}

// reach is where the live parser stops reading payload from start: each
// parse step reads through the next LF, and there are MaxLines steps.
func reach(payload []byte, start int) int {
	pos := start
	for i := 0; i < maps.MaxLines && pos < len(payload); i++ {
		lf := bytes.IndexByte(payload[pos:], '\n')
		if lf < 0 {
			return len(payload)
		}
		pos += lf + 1
	}
	return pos
}

// oversized runs a frame larger than a test run takes through TC: a
// control segment in pieces, as described above; anything else cut to
// MaxTestRunFrame (TC then needs only its headers).
func (p *player) oversized(frame []byte, ingress bool) error {
	s, ok := locateTCP(frame)
	dir := -1
	if ok && s.flags&tcpRST == 0 && s.payloadOff < MaxTestRunFrame {
		dir = p.controlDir(s)
	}
	if dir < 0 {
		return p.tc(frame[:MaxTestRunFrame], ingress)
	}

	var key bpf.FtpgateCtrlKey
	if dir == int(bpf.FtpgateDirectionDIR_CLIENT) {
		key = maps.Control{Client: s.src.Addr(), ClientPort: s.src.Port(), Server: s.dst.Addr(), ServerPort: s.dst.Port()}.Key()
	} else {
		key = maps.Control{Client: s.dst.Addr(), ClientPort: s.dst.Port(), Server: s.src.Addr(), ServerPort: s.src.Port()}.Key()
	}
	payload := s.captured()
	total := s.payloadLen
	maxPiece := MaxTestRunFrame - s.payloadOff
	first := true
	// run feeds one piece; the live parser counts the segment once
	run := func(seq uint32, flags uint8, data []byte, claim int) error {
		if !first {
			p.extraSegments++
		}
		keep := s.flags &^ (tcpSYN | tcpFIN | tcpPSH)
		if first && s.flags&tcpSYN != 0 {
			keep |= tcpSYN
			seq-- // the SYN takes the sequence number before the payload
		}
		first = false
		return p.tc(s.piece(seq, keep|flags, data, claim), ingress)
	}
	last := s.flags & (tcpFIN | tcpPSH)

	// a segment whose checksum the live parser checks and refuses is
	// ignored whole: one piece with a wrong checksum says so
	if len(payload) == total && !s.trusted(frame[s.tcpOff:s.payloadOff+total]) {
		f := s.piece(s.seq, s.flags, payload[:min(len(payload), maxPiece)], min(len(payload), maxPiece))
		csum := f[s.tcpOff+tcpCsumOff:]
		for s.trusted(f[s.tcpOff:]) {
			binary.BigEndian.PutUint16(csum, binary.BigEndian.Uint16(csum)+1)
		}
		return p.tc(f, ingress)
	}

	// where the stream stands decides where the parser starts reading
	base := s.seq
	start := 0
	var cv bpf.FtpgateCtrlVal
	known := p.rig.Maps.CtrlConns.Lookup(&key, &cv) == nil
	if s.flags&tcpSYN != 0 {
		base++
	} else if st := cv.Dir[dir]; known {
		if d := int32(base - st.NextSeq); d < 0 {
			old := int(uint32(-d)) // as sync_stream reads it
			if old >= total {
				// all old: a retransmission, parsed by no one
				return run(base, last, nil, total)
			}
			start = old
		}
	}

	end := reach(payload[:min(len(payload), maps.MaxScanBytes, total)], start)
	for off := start; off < end; {
		n := min(end-off, maxPiece)
		if off+n < end {
			// cut after a line so that no piece splits one
			if lf := bytes.LastIndexByte(payload[off:off+n], '\n'); lf >= 0 {
				n = lf + 1
			}
		}
		flags := uint8(0)
		if off+n == total {
			flags = last
		}
		if err := run(base+uint32(off), flags, payload[off:off+n], n); err != nil {
			return err
		}
		if p.rig.Maps.CtrlConns.Lookup(&key, &cv) != nil {
			return nil // not tracked (table full): the rest changes nothing
		}
		off += n
	}
	if end == total {
		return nil
	}

	// the unread bytes are a gap; the next segment starts a line only if
	// this one ended with LF
	endsLine := len(payload) == total && payload[total-1] == '\n'
	flags := last
	if endsLine {
		flags = 0
	}
	if err := run(base+uint32(end), flags, nil, total-end); err != nil {
		return err
	}
	if !endsLine || p.rig.Maps.CtrlConns.Lookup(&key, &cv) != nil {
		return nil
	}
	// what stream_gap does with MODE_LINE_START in place of MODE_SKIP
	cv.Dir[dir].Mode = uint8(bpf.FtpgateParseModeMODE_LINE_START)
	cv.Dir[dir].CarryLen = 0
	if err := p.rig.Maps.CtrlConns.Put(&key, &cv); err != nil {
		return err
	}
	if last&tcpFIN != 0 {
		return run(base+uint32(total), last, nil, 0)
	}
	return nil
}

// controlDir is control_dir (bpf/control.h): the direction of a control
// segment, -1 for another segment
func (p *player) controlDir(s tcpSegment) int {
	switch {
	case p.serves(s.dst.Port(), s.dst.Addr()):
		return int(bpf.FtpgateDirectionDIR_CLIENT)
	case p.serves(s.src.Port(), s.src.Addr()):
		return int(bpf.FtpgateDirectionDIR_SERVER)
	}
	return -1
}

// serves is port_serves (bpf/scope.h): port is a control port towards server
func (p *player) serves(port uint16, server netip.Addr) bool {
	if p.ctrl[port] {
		return true
	}
	for _, sc := range p.scopes {
		if sc.Port == port && sc.Prefix.Contains(server.Unmap()) {
			return true
		}
	}
	return false
}
