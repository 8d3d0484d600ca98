// Package reference is a plain Go statement of ftpgate's control-channel
// parsing rules (docs/design.md, "Expectations" and "Trust model", and the
// decisions in the README): conformance (is it FTP at all), the client's
// commands in order and the server's replies that consume them, tentative
// commands after a gap, and what each relevant line announces. It is written for clarity, not speed, and shares only the named
// limits with the BPF program. The differential fuzzer feeds the same
// segments to both and compares the expectations they create.
package reference

import (
	"fmt"
	"net/netip"
	"strconv"
	"sync"

	"github.com/cilium/ebpf/btf"

	"github.com/ftpgate/ftpgate/bpf"
	"github.com/ftpgate/ftpgate/maps"
)

// Limits shared with the BPF program (from the generated bindings).
var (
	MaxScanBytes = maps.MaxScanBytes
	MaxLines     = maps.MaxLines
	MaxLineLen   = maps.MaxLineLen
	CmdQueue     = int(bpf.FtpgateLimitsCMD_QUEUE)
	TentCmds     = int(bpf.FtpgateLimitsTENT_CMDS)
	LineHead     = int(bpf.FtpgateLimitsLINE_HEAD)
	telnetIAC    = byte(bpf.FtpgateLimitsTELNET_IAC)
)

// ftpCommands is the set of FTP command tokens, read from the C enum
// ftp_cmd in the object's BTF: the list is written only in bpf/ftpgate.h.
var ftpCommands = sync.OnceValue(func() map[uint32]bool {
	spec, err := bpf.LoadFtpgate()
	if err != nil {
		panic(fmt.Sprintf("load embedded object: %v", err))
	}
	var e *btf.Enum
	if err := spec.Types.TypeByName("ftp_cmd", &e); err != nil {
		panic(fmt.Sprintf("find enum ftp_cmd in BTF: %v", err))
	}
	set := map[uint32]bool{}
	for _, v := range e.Values {
		set[uint32(v.Value)] = true
	}
	return set
})

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
	skipLine              // inside a line whose first bytes are in head: wait for LF, then finish it
)

// track is the FTP layer's state of one direction (struct ftp_track).
type track struct {
	handshake bool // the direction began with a SYN
	notFTP    bool
	started   bool // client: first line checked; server: a well-formed first reply line seen
	greeted   bool // server: the greeting is complete
	multi     bool // server: inside a multi-line reply
	multiCRLF bool // server: the multi-line reply opened with a CRLF line end
	tainted   bool // server: a multi-line reply answered a command with more outstanding
	multiCode string
	cr        bool   // the last byte parsed was a CR
	replyKind string // server: the kind of command the current reply answers, if known

	// client: the queue's tail, the kinds by index, the overflow mark, and
	// the generation of parse gaps; server: the head and the drained mark
	queued, unknownUntil, lostGen uint32
	cmd                           []string
	answered, lostSeen            uint32

	// client: commands after a gap, held until it is filled
	tentative, filling bool
	tent               []string
	gapSeq, tentSeq    uint32
}

type direction struct {
	seen    bool
	nextSeq uint32
	mode    mode
	carry   []byte
	head    []byte // the first bytes of a skipped line
	ftp     track
}

// Conn is one control connection as the parser sees it.
type Conn struct {
	client, server netip.Addr
	cfg            Config
	dir            [2]direction // 0: client to server, 1: server to client
	// encrypted: AUTH answered 234 (#13); nothing after it is parsed
	encrypted bool

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
	*d = direction{seen: true, nextSeq: seq + 1, mode: lineStart, ftp: track{handshake: true, cmd: make([]string, CmdQueue)}}
}

// Resume starts a direction's stream when the TCP tracker comes to trust the
// connection (embryo_promote): fresh FTP state, the stream at nextSeq, at a
// line start unless skipToLine (picked up, or bytes went by untrusted).
// handshake tells whether both SYNs were seen (tcp_handshake_seen).
func (c *Conn) Resume(fromClient bool, nextSeq uint32, skipToLine, handshake bool) {
	m := lineStart
	if skipToLine {
		m = skipping
	}
	d := &c.dir[side(fromClient)]
	*d = direction{seen: true, nextSeq: nextSeq, mode: m, ftp: track{handshake: handshake, cmd: make([]string, CmdQueue)}}
}

func (c *Conn) cli() *track { return &c.dir[0].ftp }
func (c *Conn) srv() *track { return &c.dir[1].ftp }

// handshake tells whether the connection began with a handshake seen.
func (c *Conn) handshake() bool { return c.cli().handshake && c.srv().handshake }

// notFTP tells whether either direction found the connection is not FTP.
func (c *Conn) notFTP() bool { return c.cli().notFTP || c.srv().notFTP }

func (c *Conn) markNotFTP(t *track) {
	if !c.notFTP() {
		c.reject("ctrl_not_ftp")
	}
	t.notFTP = true
}

// verified tells whether lines may create expectations: the server has
// sent a well-formed first reply line and nothing marked it not FTP.
func (c *Conn) verified() bool { return c.srv().started && !c.notFTP() }

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
		*d = direction{seen: true, nextSeq: seq, mode: skipping, ftp: track{cmd: make([]string, CmdQueue)}}
	}
	defer func() {
		if int32(seq+uint32(len(payload))-d.nextSeq) > 0 {
			d.nextSeq = seq + uint32(len(payload))
		}
	}()
	if c.notFTP() || c.encrypted {
		return
	}
	if fromClient && d.ftp.tentative && len(payload) > 0 {
		c.fillGap(seq, payload)
	}
	start := 0
	switch delta := int32(seq - d.nextSeq); {
	case delta > 0:
		// bytes were missed: hold what follows, or resynchronise at the
		// next line start
		c.reject("parse_resync")
		if fromClient && len(payload) > 0 && c.tentativeStart(seq) {
			break
		}
		c.gap(fromClient, skipping)
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
	if fromClient && c.handshake() && !c.srv().started {
		// client bytes before the server's greeting
		c.markNotFTP(&d.ftp)
		return
	}
	// the parser reads the segment's first MaxScanBytes; of those it skips
	// the bytes it has parsed before
	scan := payload
	if len(scan) > MaxScanBytes {
		scan = scan[:MaxScanBytes]
	}
	if c.parseLines(fromClient, scan, start, len(scan)) || len(payload) > MaxScanBytes {
		// the rest is not parsed: a gap; the next segment starts a line
		// only if this one ends with a LF
		m := skipping
		if payload[len(payload)-1] == '\n' {
			m = lineStart
		}
		c.gap(fromClient, m)
	}
}

// parseLines parses buf[start:end] a line at a time, at most MaxLines
// steps; it tells whether it stopped there with bytes left.
func (c *Conn) parseLines(fromClient bool, buf []byte, start, end int) bool {
	pos, steps := start, 0
	for steps < MaxLines {
		next, done := c.step(fromClient, buf[:end], pos)
		pos = next
		steps++
		if done {
			return false
		}
	}
	return pos < end
}

// gap handles bytes the parser will never read. Lost client commands make
// the queue unknown until it drains; lost server replies answer every
// outstanding command.
func (c *Conn) gap(fromClient bool, m mode) {
	d := &c.dir[side(fromClient)]
	d.mode, d.carry = m, nil
	if fromClient {
		c.tentativeDrop()
		return
	}
	srv, cli := c.srv(), c.cli()
	srv.answered, srv.lostSeen = cli.queued, cli.lostGen
	srv.tainted, srv.greeted = false, true // a multi-line reply goes on
}

// tentativeStart holds what follows a gap at a line start as tentative.
func (c *Conn) tentativeStart(seq uint32) bool {
	d := &c.dir[0]
	if d.ftp.tentative || d.mode != lineStart {
		return false
	}
	d.ftp.tentative, d.ftp.filling, d.ftp.tent = true, false, nil
	d.ftp.gapSeq, d.ftp.tentSeq = d.nextSeq, seq
	return true
}

func (c *Conn) tentativeDrop() {
	cli := c.cli()
	if cli.tentative {
		c.reject("tentative_dropped")
	}
	cli.tentative, cli.filling, cli.tent = false, false, nil
	cli.lostGen++
}

// fillGap parses the bytes of a segment that fill the gap before the
// tentative commands: from the gap's start, up to a LF at or before the
// tentative bytes. Once the gap is closed the tentative commands join the
// queue after them; anything else touching the gap drops them.
func (c *Conn) fillGap(seq uint32, payload []byte) {
	d := &c.dir[0]
	f := &d.ftp
	from, upto := int32(f.gapSeq-seq), int32(f.tentSeq-seq)
	if from < 0 {
		if upto > 0 {
			c.tentativeDrop()
		}
		return
	}
	if int(from) >= len(payload) {
		return
	}
	stop := min(int(upto), len(payload))
	if stop > min(len(payload), MaxScanBytes) || stop == 0 || payload[stop-1] != '\n' {
		c.tentativeDrop()
		return
	}
	m, carry, cr := d.mode, d.carry, f.cr
	d.mode, d.carry = lineStart, nil
	f.filling = true
	cut := c.parseLines(true, payload[:min(len(payload), MaxScanBytes)], int(from), stop)
	f.filling = false
	d.mode, d.carry, f.cr = m, carry, cr
	if cut || !f.tentative {
		c.tentativeDrop()
		return
	}
	f.gapSeq = seq + uint32(stop)
	if f.gapSeq == f.tentSeq {
		c.reject("gap_filled")
		tent := f.tent
		f.tentative, f.filling, f.tent = false, false, nil
		for _, k := range tent {
			c.queuePush(k)
		}
	}
}

// step consumes the rest of a skipped line, or one line, from buf[pos:];
// it returns the new position and whether the buffer is used up.
func (c *Conn) step(fromClient bool, buf []byte, pos int) (int, bool) {
	d := &c.dir[side(fromClient)]
	if pos >= len(buf) || c.notFTP() || c.encrypted {
		return pos, true
	}
	lf := -1
	for i := pos; i < len(buf); i++ {
		if buf[i] == '\n' {
			lf = i
			break
		}
	}
	// whether the line ends with CR LF: the CR may end the previous segment
	crlf := 0
	if lf > 0 && buf[lf-1] == '\r' || lf == 0 && d.ftp.cr {
		crlf = lineCRLF
	}
	d.ftp.cr = buf[len(buf)-1] == '\r'
	if d.mode == skipping || d.mode == skipLine {
		if lf < 0 {
			return len(buf), true
		}
		if d.mode == skipLine {
			d.mode = lineStart
			c.ftpLine(fromClient, d.head, lineEnd|crlf)
		}
		d.mode = lineStart
		return lf + 1, false
	}

	end := len(buf)
	if lf >= 0 {
		end = lf + 1
	}
	line := append(append([]byte{}, d.carry...), buf[pos:end]...)
	total := len(line)
	if len(line) > MaxLineLen {
		line = line[:MaxLineLen]
	}
	rel := relevant(line, fromClient)

	if lf < 0 {
		// the line goes on in the next segment
		if total < LineHead {
			d.carry, d.mode = line, carrying
			return len(buf), true
		}
		c.ftpLine(fromClient, line, headKnown)
		if rel && total > MaxLineLen {
			c.reject("reject_overlong")
		}
		if !rel || total > MaxLineLen {
			d.head = append([]byte{}, line[:LineHead]...)
			d.mode, d.carry = skipLine, nil
			return len(buf), true
		}
		d.carry, d.mode = line, carrying
		return len(buf), true
	}

	d.mode, d.carry = lineStart, nil
	what := headKnown | lineEnd | crlf
	if rel && total > MaxLineLen {
		c.reject("reject_overlong")
	} else if rel {
		what |= lineFull
	}
	c.ftpLine(fromClient, line, what)
	return end, false
}

// what ftpLine is told about a line
const (
	headKnown = 1 << iota // its first bytes (up to LineHead) are known
	lineEnd               // it is complete
	lineFull              // all of it is at hand: a relevant line to act on
	lineCRLF              // it ends with CR LF
)

// ftpLine applies the conformance rules to a line's first bytes, and at
// its end the queue, and acts on a relevant complete line.
func (c *Conn) ftpLine(fromClient bool, line []byte, what int) {
	if c.notFTP() {
		return
	}
	if what&headKnown != 0 {
		c.head(fromClient, line)
	}
	if what&lineEnd == 0 || c.notFTP() {
		return
	}
	kind := lineKind(line, fromClient)
	if !fromClient {
		head := c.srv().answered
		if !c.reply(line, what&lineCRLF != 0) {
			return
		}
		is234 := token(line)[:3] == "234"
		if c.srv().replyKind == "auth" {
			// the reply to AUTH: after a 234 the bytes are TLS (ftp_line)
			if is234 {
				c.encrypted = true
			}
			return
		}
		if is234 {
			// a 234 the queue cannot pair: TLS when an AUTH was among the
			// commands outstanding when it came (auth_234)
			cli := c.cli()
			for i := uint32(0); i < uint32(CmdQueue) && i < cli.queued-head; i++ {
				if cli.cmd[(head+i)%uint32(CmdQueue)] == "auth" {
					c.encrypted = true
					break
				}
			}
			return
		}
		if kind != "" && what&lineFull != 0 {
			c.handleLine(false, line)
		}
		return
	}
	if kind != "" && what&lineFull != 0 && !commandEnds(line) {
		c.reject("reject_malformed")
		kind = ""
	}
	if kind != "" {
		kind = commandKind(line)
	} else if upper(token(line)) == "AUTH" && commandEnds(line) {
		kind = "auth" // queued, so that its reply is known
	}
	cli := c.cli()
	tentative := cli.tentative && !cli.filling
	c.commandLine(kind)
	if kind != "" && what&lineFull != 0 && !tentative {
		c.handleLine(true, line)
	}
}

// head checks a line's first bytes: after a handshake the server's first
// line is a greeting (220, 120, 421) and the client's first line an FTP
// command; a picked-up connection is verified by the server's first reply
// line, and an HTTP line marks it not FTP.
func (c *Conn) head(fromClient bool, line []byte) {
	hs := c.handshake()
	if fromClient {
		cli := c.cli()
		if cli.tentative && !cli.filling {
			return
		}
		switch {
		case !clientLineOK(line, hs && !cli.started):
			c.markNotFTP(cli)
		case hs:
			cli.started = true
		}
		return
	}
	srv := c.srv()
	if srv.started {
		return
	}
	if hs {
		code := string(line[:min(3, len(line))])
		if replyLine(line) && (code == "220" || code == "120" || code == "421") {
			srv.started = true
		} else {
			c.markNotFTP(srv)
		}
		return
	}
	if replyLine(line) {
		srv.started, srv.greeted = true, true
	} else if httpLine(line, false) {
		c.markNotFTP(srv)
	}
}

// reply takes a complete server line: inner lines of a multi-line reply
// are text; a final reply consumes the head of the queue and, when the
// queue is known, notes the kind of command it answers. The first final
// reply after a handshake is the greeting. It tells whether the line ends
// a reply.
func (c *Conn) reply(line []byte, crlf bool) bool {
	srv, cli := c.srv(), c.cli()
	srv.replyKind = ""
	tok := token(line)
	multi := srv.multi
	switch {
	case multi:
		// a server that ends its lines with CRLF ends the reply with one
		// too: an echoed name cut by a bare LF cannot end it early
		if tok != srv.multiCode || srv.multiCRLF && !crlf {
			return false
		}
		srv.multi = false
	case !replyLine(line):
		return false
	case at(line, 3) == '-':
		srv.multi, srv.multiCRLF, srv.multiCode = true, crlf, tok[:3]+" "
		return false
	}
	if at(line, 0) == '1' {
		return true
	}
	if !srv.greeted {
		srv.greeted = true
		return true
	}
	h, q := srv.answered, cli.queued
	if h == q {
		c.reject("reply_unsolicited")
		srv.lostSeen, srv.tainted = cli.lostGen, false
		return true
	}
	// a multi-line reply to one of several outstanding commands taints the
	// queue until it drains (ftp_reply)
	known := h >= cli.unknownUntil && srv.lostSeen == cli.lostGen && !srv.tainted
	kind := cli.cmd[h%uint32(CmdQueue)]
	srv.answered = h + 1
	if h+1 == q {
		srv.lostSeen, srv.tainted = cli.lostGen, false
	} else if multi {
		srv.tainted = true
	}
	if known {
		srv.replyKind = kind
	}
	return true
}

// commandLine puts a complete client line in the queue, or holds it as
// tentative after a gap.
func (c *Conn) commandLine(kind string) {
	if kind != "pasv" && kind != "epsv" && kind != "auth" {
		kind = ""
	}
	cli := c.cli()
	if cli.tentative && !cli.filling {
		if len(cli.tent) >= TentCmds {
			c.tentativeDrop()
			return
		}
		c.reject("cmd_tentative")
		cli.tent = append(cli.tent, kind)
		return
	}
	c.queuePush(kind)
}

// queuePush appends a command to the queue; with CmdQueue outstanding its
// kind is not kept and pairing waits until it is answered.
func (c *Conn) queuePush(kind string) {
	cli := c.cli()
	q := cli.queued
	if q-c.srv().answered >= uint32(CmdQueue) {
		c.reject("cmd_queue_full")
		cli.unknownUntil = q + 1
	} else {
		cli.cmd[q%uint32(CmdQueue)] = kind
	}
	cli.queued = q + 1
}

// lineKind is what a line starting with its token asks for: "pasv",
// "epsv", "port", "eprt" from the client, "pasv" (227) or "epsv" (229)
// from the server, or "".
func lineKind(line []byte, fromClient bool) string {
	tok := token(line)
	if !fromClient {
		switch tok {
		case "227 ":
			return "pasv"
		case "229 ":
			return "epsv"
		}
		return ""
	}
	switch upper(tok) {
	case "PASV":
		return "pasv"
	case "EPSV":
		return "epsv"
	case "PORT":
		return "port"
	case "EPRT":
		return "eprt"
	}
	return ""
}

// commandEnds: a command is its letters followed by a space or the line end.
func commandEnds(line []byte) bool {
	switch at(line, 4) {
	case ' ', '\r', '\n', 0:
		return true
	}
	return false
}

// commandKind is what a command line asks for; "EPSV ALL" asks for no port.
func commandKind(line []byte) string {
	kind := lineKind(line, true)
	if kind == "" || !commandEnds(line) {
		return ""
	}
	if kind == "epsv" {
		p := &cursor{line: line, pos: 4}
		p.spaces()
		if p.peek()|0x20 == 'a' {
			return ""
		}
	}
	return kind
}

// ftpCommand tells whether the line is an FTP command: three letters then a
// space or the line end, or four letters then the same, in any case.
// clientLineOK tells whether a client line may stand in an FTP control
// connection: the first after a handshake an FTP command, every later one
// a command's form (three or four letters, then a space or the line end),
// an empty line or one that starts with Telnet IAC (client_line_ok).
func clientLineOK(line []byte, first bool) bool {
	if first {
		return ftpCommand(line)
	}
	c0 := at(line, 0)
	return commandForm(line) || c0 == telnetIAC || c0 == '\r' || c0 == '\n'
}

// commandForm tells whether the line has a command's form (command_form).
func commandForm(line []byte) bool {
	letter := func(c byte) bool { c |= 0x20; return c >= 'a' && c <= 'z' }
	if !letter(at(line, 0)) || !letter(at(line, 1)) || !letter(at(line, 2)) {
		return false
	}
	end := func(c byte) bool { return c == ' ' || c == '\r' || c == '\n' || c == 0 }
	if c3 := at(line, 3); end(c3) {
		return true
	} else if !letter(c3) {
		return false
	}
	return end(at(line, 4))
}

func ftpCommand(line []byte) bool {
	up := func(b byte) uint32 {
		if b >= 'a' && b <= 'z' {
			b -= 'a' - 'A'
		}
		return uint32(b)
	}
	t := up(at(line, 0)) | up(at(line, 1))<<8 | up(at(line, 2))<<16
	switch at(line, 3) {
	case ' ', '\r', '\n', 0:
	default:
		if !commandEnds(line) {
			return false
		}
		t |= up(at(line, 3)) << 24
	}
	return ftpCommands()[t]
}

// httpLine tells whether the line is an HTTP request line (a method and a
// space) or, from the server, a status line.
func httpLine(line []byte, fromClient bool) bool {
	s := string(line[:min(len(line), LineHead)])
	if !fromClient {
		return len(s) >= 5 && s[:5] == "HTTP/"
	}
	for _, m := range []string{"GET ", "PUT ", "POST ", "HEAD ", "PATCH ", "TRACE ", "DELETE ", "OPTIONS ", "CONNECT "} {
		if len(s) >= len(m) && s[:len(m)] == m {
			return true
		}
	}
	return false
}

// replyLine tells whether the line starts a reply: three digits, the first
// 1-5, then a space or '-'.
func replyLine(line []byte) bool {
	c0, c3 := at(line, 0), at(line, 3)
	return c0 >= '1' && c0 <= '5' && isDigit(at(line, 1)) && isDigit(at(line, 2)) && (c3 == ' ' || c3 == '-')
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
	switch upper(token(line)) {
	case "PORT", "EPRT":
		if !c.verified() {
			c.reject("reject_unverified")
			return
		}
		if upper(token(line)) == "PORT" {
			c.cmdPort(p)
		} else {
			c.cmdEprt(p)
		}
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

// paired tells whether the reply being read is the final reply to a
// passive request of kind want at the head of the queue.
func (c *Conn) paired(want string) bool {
	return c.srv().replyKind == want
}

func (c *Conn) reply227(p *cursor) {
	// the numbers start at the first digit after the code
	for p.pos < len(p.line) && !isDigit(p.line[p.pos]) && p.line[p.pos] != 0 {
		p.pos++
	}
	if !c.verified() {
		c.reject("reject_unverified")
		return
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
	if !c.verified() {
		c.reject("reject_unverified")
		return
	}
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
