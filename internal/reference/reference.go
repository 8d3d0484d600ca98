// Package reference is a plain Go statement of ftpgate's control-channel
// parsing rules (docs/design.md, "Expectations", and the decisions in the
// README). It is written for clarity, not speed, and shares only the named
// limits with the BPF program. The differential fuzzer feeds the same
// segments to both and compares the expectations they create.
package reference

import (
	"net/netip"
	"strconv"

	"github.com/ftpgate/ftpgate/maps"
)

// Limits shared with the BPF program (from the generated bindings).
var (
	MaxScanBytes = maps.MaxScanBytes
	MaxLines     = maps.MaxLines
	MaxLineLen   = maps.MaxLineLen
)

// Expectation is one negotiated data connection: TCP from Src (any port) to
// Dst:DPort.
type Expectation struct {
	Kind  string
	Src   netip.Addr
	Dst   netip.Addr
	DPort uint16
}

// Config holds the settings that change parsing outcomes.
type Config struct {
	Loose             bool
	AllowLowDataPorts bool
}

type mode int

const (
	lineStart mode = iota // the next byte starts a line
	carrying              // inside a line whose start is in carry
	skipping              // inside a line we do not parse: wait for LF
)

type direction struct {
	seen    bool
	nextSeq uint32
	mode    mode
	carry   []byte
}

// Conn is one control connection as the parser sees it.
type Conn struct {
	client, server netip.Addr
	cfg            Config
	dir            [2]direction // 0: client to server, 1: server to client

	// the client's outstanding passive request: its kind and number; the
	// server side remembers which request it answered last
	pending  string
	reqGen   uint32
	answered uint32

	// Created lists every expectation created, in order; Rejects counts
	// rejections by counter name.
	Created []Expectation
	Rejects map[string]int
}

// NewConn starts a control connection between client and server.
func NewConn(client, server netip.Addr, cfg Config) *Conn {
	return &Conn{client: client, server: server, cfg: cfg, Rejects: map[string]int{}}
}

// SYN starts a direction's byte stream: its first byte starts a line.
func (c *Conn) SYN(fromClient bool, seq uint32) {
	d := &c.dir[side(fromClient)]
	*d = direction{seen: true, nextSeq: seq + 1, mode: lineStart}
}

func side(fromClient bool) int {
	if fromClient {
		return 0
	}
	return 1
}

// Segment handles one data segment of a direction.
func (c *Conn) Segment(fromClient bool, seq uint32, payload []byte) {
	i := side(fromClient)
	d := &c.dir[i]
	if !d.seen {
		// picked up mid-stream: the first byte is not known to start a line
		*d = direction{seen: true, nextSeq: seq, mode: skipping}
	}
	start := 0
	switch delta := int32(seq - d.nextSeq); {
	case delta > 0:
		// bytes were missed: resynchronise at the next line start
		d.mode, d.carry = skipping, nil
		c.forgetPending(fromClient)
		if len(payload) == 0 {
			d.nextSeq = seq
			return
		}
	case delta < 0:
		// the first -delta bytes were parsed before
		start = int(-delta)
		if start >= len(payload) {
			return
		}
	}
	if len(payload) == 0 {
		return
	}
	// the parser reads the segment's first MaxScanBytes; of those it skips
	// the bytes it has parsed before
	scan := payload
	if len(scan) > MaxScanBytes {
		scan = scan[:MaxScanBytes]
	}
	pos, steps := start, 0
	for steps < MaxLines && pos < len(scan) {
		pos = c.step(fromClient, scan, pos)
		steps++
	}
	if pos < len(scan) || len(payload) > MaxScanBytes {
		// the rest is not parsed: a gap; the next segment starts a line
		// only if this one ends with a LF
		d.carry = nil
		d.mode = skipping
		if payload[len(payload)-1] == '\n' {
			d.mode = lineStart
		}
		c.forgetPending(fromClient)
	}
	d.nextSeq = seq + uint32(len(payload))
}

func (c *Conn) forgetPending(fromClient bool) {
	if fromClient {
		c.pending = ""
	} else {
		c.answered = c.reqGen
	}
}

// step consumes the rest of a skipped line, or one line, from buf[pos:];
// it returns the new position.
func (c *Conn) step(fromClient bool, buf []byte, pos int) int {
	d := &c.dir[side(fromClient)]
	lf := -1
	for i := pos; i < len(buf); i++ {
		if buf[i] == '\n' {
			lf = i
			break
		}
	}
	if d.mode == skipping {
		if lf < 0 {
			return len(buf)
		}
		d.mode = lineStart
		return lf + 1
	}

	end := len(buf)
	if lf >= 0 {
		end = lf + 1
	}
	line := append(append([]byte{}, d.carry...), buf[pos:end]...)
	rel := relevant(line, fromClient)

	if lf < 0 {
		// the line goes on in the next segment: keep it if it may matter
		if len(line) >= 4 && !rel {
			d.mode, d.carry = skipping, nil
			return len(buf)
		}
		if len(line) > MaxLineLen {
			c.reject("reject_overlong")
			d.mode, d.carry = skipping, nil
			return len(buf)
		}
		d.carry, d.mode = line, carrying
		return len(buf)
	}

	d.mode, d.carry = lineStart, nil
	if !rel {
		return end
	}
	if len(line) > MaxLineLen {
		c.reject("reject_overlong")
		return end
	}
	c.handleLine(fromClient, line)
	return end
}

// relevant tells whether a line is a command or reply the parser reads:
// PORT, EPRT, PASV, EPSV in any case from the client; "227 " and "229 "
// from the server.
func relevant(line []byte, fromClient bool) bool {
	tok := token(line)
	if !fromClient {
		return tok == "227 " || tok == "229 "
	}
	switch upper(tok) {
	case "PORT", "EPRT", "PASV", "EPSV":
		return true
	}
	return false
}

func token(line []byte) string {
	var t [4]byte
	for i := range t {
		t[i] = at(line, i)
	}
	return string(t[:])
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// at reads a byte of the line; past its end it reads as NUL.
func at(line []byte, i int) byte {
	if i < 0 || i >= len(line) {
		return 0
	}
	return line[i]
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

func isHexLetter(b byte) bool {
	b |= 0x20
	return b >= 'a' && b <= 'f'
}

func (c *Conn) reject(counter string) { c.Rejects[counter]++ }

// handleLine acts on one complete relevant line (CRLF included).
func (c *Conn) handleLine(fromClient bool, line []byte) {
	p := &cursor{line: line, pos: 4}
	if !fromClient {
		if token(line) == "227 " {
			c.reply227(p)
		} else {
			c.reply229(p)
		}
		return
	}
	// a command is its four letters followed by a space or the line end
	switch at(line, 4) {
	case ' ', '\r', '\n', 0:
	default:
		c.reject("reject_malformed")
		return
	}
	switch upper(token(line)) {
	case "PASV":
		c.pending = "pasv"
		c.reqGen++
	case "EPSV":
		p.spaces()
		if at(line, p.pos)|0x20 == 'a' { // EPSV ALL asks for no port
			c.pending = ""
		} else {
			c.pending = "epsv"
			c.reqGen++
		}
	case "PORT":
		c.pending = ""
		c.cmdPort(p)
	case "EPRT":
		c.pending = ""
		c.cmdEprt(p)
	}
}

func (c *Conn) cmdPort(p *cursor) {
	if p.peek() != ' ' {
		c.reject("reject_malformed")
		return
	}
	p.spaces()
	addr, port, ok := p.hostPort()
	if !ok || !p.atEnd() {
		c.reject("reject_malformed")
		return
	}
	if !c.client.Is4() {
		c.reject("reject_family")
		return
	}
	c.active("port", addr, port)
}

func (c *Conn) cmdEprt(p *cursor) {
	if p.peek() != ' ' {
		c.reject("reject_malformed")
		return
	}
	p.spaces()
	d, af := p.peekAt(0), p.peekAt(1)
	if d < maps.EPRTDelimMin || d > maps.EPRTDelimMax || isDigit(d) || p.peekAt(2) != d {
		c.reject("reject_malformed")
		return
	}
	p.pos += 3
	var addr netip.Addr
	var ok bool
	switch {
	case af == '1' && d != '.':
		addr, ok = p.ipv4()
	case af == '2' && d != ':' && !isHexLetter(d):
		// a delimiter that can stand inside the address is ambiguous
		addr, ok = p.ipv6()
	default:
		c.reject("reject_malformed")
		return
	}
	if !ok || p.peek() != d {
		c.reject("reject_malformed")
		return
	}
	p.pos++
	port := p.decimal(5)
	if port < 0 || p.peek() != d {
		c.reject("reject_malformed")
		return
	}
	p.pos++
	if !p.atEnd() {
		c.reject("reject_malformed")
		return
	}
	if addr.Is4() != c.client.Is4() {
		c.reject("reject_family")
		return
	}
	c.active("eprt", addr, port)
}

// active checks and creates an active-mode expectation: from the server to
// the announced address.
func (c *Conn) active(kind string, addr netip.Addr, port int) {
	if !c.portOK(port) {
		return
	}
	if addr != c.client && !c.cfg.Loose {
		c.reject("reject_bounce")
		return
	}
	c.Created = append(c.Created, Expectation{kind, c.server, addr, uint16(port)})
}

func (c *Conn) portOK(port int) bool {
	if port <= 0 || port > 65535 {
		c.reject("reject_malformed")
		return false
	}
	if port < maps.LowPortLimit && !c.cfg.AllowLowDataPorts {
		c.reject("reject_low_port")
		return false
	}
	return true
}

// paired consumes the client's outstanding request if it is of kind want.
func (c *Conn) paired(want string) bool {
	if c.pending != want || c.reqGen == c.answered {
		return false
	}
	c.answered = c.reqGen
	return true
}

func (c *Conn) reply227(p *cursor) {
	// the numbers start at the first digit after the code
	for p.pos < len(p.line) && !isDigit(p.line[p.pos]) && p.line[p.pos] != 0 {
		p.pos++
	}
	if !c.paired("pasv") {
		// without a digit there is no address: not a passive reply at all
		// (pure-ftpd's "227 Logout."), counted but not a rejection
		if !isDigit(p.peek()) {
			c.reject("reply_227_no_address")
			return
		}
		c.reject("reject_unpaired")
		return
	}
	addr, port, ok := p.hostPort()
	if !ok {
		c.reject("reject_malformed")
		return
	}
	if !c.client.Is4() {
		c.reject("reject_family")
		return
	}
	if !c.portOK(port) {
		return
	}
	dst := c.server
	if addr != c.server {
		c.reject("reply_addr_mismatch")
		if c.cfg.Loose {
			dst = addr
		}
	}
	c.Created = append(c.Created, Expectation{"pasv", c.client, dst, uint16(port)})
}

func (c *Conn) reply229(p *cursor) {
	if !c.paired("epsv") {
		c.reject("reject_unpaired")
		return
	}
	for p.pos < len(p.line) && p.line[p.pos] != '(' && p.line[p.pos] != 0 {
		p.pos++
	}
	d := p.peekAt(1)
	if p.peek() != '(' || d < maps.EPRTDelimMin || d > maps.EPRTDelimMax || isDigit(d) || p.peekAt(2) != d || p.peekAt(3) != d {
		c.reject("reject_malformed")
		return
	}
	p.pos += 4
	port := p.decimal(5)
	if port < 0 || p.peek() != d || p.peekAt(1) != ')' {
		c.reject("reject_malformed")
		return
	}
	if !c.portOK(port) {
		return
	}
	c.Created = append(c.Created, Expectation{"epsv", c.client, c.server, uint16(port)})
}

// cursor reads numbers and addresses from a line.
type cursor struct {
	line []byte
	pos  int
}

func (p *cursor) peek() byte        { return at(p.line, p.pos) }
func (p *cursor) peekAt(i int) byte { return at(p.line, p.pos+i) }
func (p *cursor) spaces() {
	for p.peek() == ' ' {
		p.pos++
	}
}
func (p *cursor) atEnd() bool        { p.spaces(); b := p.peek(); return b == '\r' || b == '\n' || b == 0 }
func (p *cursor) expect(b byte) bool { ok := p.peek() == b; p.pos++; return ok }

// decimal reads 1 to max digits; a number with more digits is malformed.
func (p *cursor) decimal(max int) int {
	n, v := 0, 0
	for n < max && isDigit(p.peekAt(n)) {
		v = v*10 + int(p.peekAt(n)-'0')
		n++
	}
	if n == 0 || (n == max && isDigit(p.peekAt(n))) {
		return -1
	}
	p.pos += n
	return v
}

// hostPort reads h1,h2,h3,h4,p1,p2 (each 0-255, at most three digits).
func (p *cursor) hostPort() (netip.Addr, int, bool) {
	var b [6]int
	for i := range b {
		if i > 0 && !p.expect(',') {
			return netip.Addr{}, 0, false
		}
		if b[i] = p.decimal(3); b[i] < 0 || b[i] > 255 {
			return netip.Addr{}, 0, false
		}
	}
	return netip.AddrFrom4([4]byte{byte(b[0]), byte(b[1]), byte(b[2]), byte(b[3])}), b[4]<<8 | b[5], true
}

// ipv4 reads a.b.c.d.
func (p *cursor) ipv4() (netip.Addr, bool) {
	var b [4]byte
	for i := range b {
		if i > 0 && !p.expect('.') {
			return netip.Addr{}, false
		}
		v := p.decimal(3)
		if v < 0 || v > 255 {
			return netip.Addr{}, false
		}
		b[i] = byte(v)
	}
	return netip.AddrFrom4(b), true
}

// hexGroup reads 1 to 4 hex digits; a fifth makes it malformed.
func (p *cursor) hexGroup() int {
	n, v := 0, 0
	for ; isHex(p.peekAt(n)); n++ {
		if n == 4 {
			return -1
		}
		d, _ := strconv.ParseUint(string(p.peekAt(n)), 16, 8)
		v = v<<4 | int(d)
	}
	if n == 0 {
		return -1
	}
	p.pos += n
	return v
}

func isHex(b byte) bool { return isDigit(b) || isHexLetter(b) }

// ipv6 reads an IPv6 address in text form (groups, one "::", an optional
// dotted IPv4 tail). It stops where the address cannot go on.
func (p *cursor) ipv6() (netip.Addr, bool) {
	var groups []uint16
	gap := -1
	if p.peek() == ':' {
		if p.peekAt(1) != ':' {
			return netip.Addr{}, false
		}
		gap = 0
		p.pos += 2
	}
	for len(groups) < 8 {
		start := p.pos
		v := p.hexGroup()
		if v < 0 {
			break
		}
		if p.peek() == '.' {
			if len(groups) > 6 {
				return netip.Addr{}, false
			}
			p.pos = start
			a4, ok := p.ipv4()
			if !ok {
				return netip.Addr{}, false
			}
			b := a4.As4()
			groups = append(groups, uint16(b[0])<<8|uint16(b[1]), uint16(b[2])<<8|uint16(b[3]))
			break
		}
		groups = append(groups, uint16(v))
		if len(groups) == 8 || p.peek() != ':' {
			break
		}
		if p.peekAt(1) == ':' {
			if gap >= 0 {
				return netip.Addr{}, false
			}
			gap = len(groups)
			p.pos += 2
			continue
		}
		p.pos++
		if c := p.peek(); !isDigit(c) && !isHexLetter(c) {
			return netip.Addr{}, false
		}
	}
	n := len(groups)
	if (gap < 0 && n != 8) || (gap >= 0 && n >= 8) {
		return netip.Addr{}, false
	}
	var full [8]uint16
	if gap < 0 {
		copy(full[:], groups)
	} else {
		copy(full[:], groups[:gap])
		copy(full[8-(n-gap):], groups[gap:])
	}
	var b [16]byte
	for i, g := range full {
		b[2*i], b[2*i+1] = byte(g>>8), byte(g)
	}
	return netip.AddrFrom16(b), true
}
