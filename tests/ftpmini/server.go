// Package ftpmini is a small FTP server and client for tests, written for
// minimal VMs where only a static test binary runs: no external programs.
//
// It implements just what a firewall/ALG test needs: anonymous-style login,
// binary RETR/STOR of in-memory files, and all four ways to set up a data
// connection (PASV, EPSV, PORT, EPRT) over IPv4 and IPv6.
package ftpmini

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Server serves in-memory files. Set the exported fields before Serve.
type Server struct {
	// PasvMinPort and PasvMaxPort bound the passive data ports; both zero
	// means any ephemeral port.
	PasvMinPort, PasvMaxPort int
	// PasvAddress, if valid, is the address a 227 announces instead of the
	// control connection's local one (vsftpd's pasv_address): a server
	// that announces another host, for tests of what a gateway believes.
	PasvAddress netip.Addr
	// RequirePeerAddress refuses a PORT or EPRT that names another
	// address than the control connection's peer, with vsftpd's "500
	// Illegal PORT command." (its default, port_promiscuous=NO): the
	// server a NAT helper must satisfy. Off, any address is taken.
	RequirePeerAddress bool
	// ActiveSourcePort, when non-zero, is the source port of active-mode
	// data connections (20 for a classic server); 0 means ephemeral.
	ActiveSourcePort int
	// Timeout bounds each control read, data accept/connect and transfer;
	// 0 means 10 s.
	Timeout time.Duration
	// Logf, if set, receives one line per command and reply.
	Logf func(format string, args ...any)
	// WrapDataSocket, if set, wraps the code that creates data sockets
	// (passive listeners, active dials). Sessions run on arbitrary OS
	// threads, so a server whose control listener lives in another network
	// namespace needs this to create its data sockets there too.
	WrapDataSocket func(create func() error) error

	mu    sync.Mutex
	files map[string][]byte
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
	done  bool
}

// NewServer returns a server holding a copy of files (name → content;
// names are used without a leading slash).
func NewServer(files map[string][]byte) *Server {
	s := &Server{files: map[string][]byte{}, conns: map[net.Conn]struct{}{}}
	for k, v := range files {
		s.files[cleanName(k)] = append([]byte(nil), v...)
	}
	return s
}

// Listen starts a server for files on addr ("127.0.0.1:0", "[::1]:2121",
// ":21" …) and serves in the background until Close.
func Listen(addr string, files map[string][]byte) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ftpmini: listen %s: %w", addr, err)
	}
	s := NewServer(files)
	// Set before returning so Addr/Port are valid at once.
	s.ln = ln
	go func() { _ = s.Serve(ln) }()
	return s, nil
}

// Serve accepts control connections on ln until Close.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		ln.Close()
		return net.ErrClosed
	}
	s.ln = ln
	s.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			done := s.done
			s.mu.Unlock()
			if done {
				return nil
			}
			return fmt.Errorf("ftpmini: accept: %w", err)
		}
		s.mu.Lock()
		if s.done {
			s.mu.Unlock()
			c.Close()
			return nil
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serveConn(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// Addr is the listening address (nil before Serve).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Port is the listening port (0 before Serve).
func (s *Server) Port() int {
	if a, ok := s.Addr().(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}

// Close stops listening, drops every session and waits for them to end.
func (s *Server) Close() error {
	s.mu.Lock()
	s.done = true
	var err error
	if s.ln != nil {
		err = s.ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// File returns a copy of a stored file (e.g. one a client uploaded).
func (s *Server) File(name string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.files[cleanName(name)]
	return append([]byte(nil), b...), ok
}

// PutFile adds or replaces a file.
func (s *Server) PutFile(name string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[cleanName(name)] = append([]byte(nil), data...)
}

func cleanName(n string) string { return strings.TrimLeft(n, "/") }

func (s *Server) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return 10 * time.Second
}

func (s *Server) wrap(create func() error) error {
	if s.WrapDataSocket != nil {
		return s.WrapDataSocket(create)
	}
	return create()
}

func (s *Server) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

// session is one control connection's state.
type session struct {
	s        *Server
	c        net.Conn
	r        *bufio.Reader
	user     string
	loggedIn bool
	// At most one of pasv (listener waiting for the client) and active
	// (address to connect to) is set; each is consumed by one transfer.
	pasv   net.Listener
	active *netip.AddrPort
}

func (s *Server) serveConn(c net.Conn) {
	defer c.Close()
	ss := &session{s: s, c: c, r: bufio.NewReader(c)}
	defer ss.resetData()
	if ss.reply(220, "ftpmini ready") != nil {
		return
	}
	for {
		_ = c.SetReadDeadline(time.Now().Add(s.timeout()))
		line, err := ss.r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		if verb == "PASS" {
			s.logf("ftpmini: <- PASS ****")
		} else {
			s.logf("ftpmini: <- %s", line)
		}
		if quit := ss.handle(verb, arg); quit {
			return
		}
	}
}

func (ss *session) reply(code int, msg string) error {
	ss.s.logf("ftpmini: -> %d %s", code, msg)
	_ = ss.c.SetWriteDeadline(time.Now().Add(ss.s.timeout()))
	_, err := fmt.Fprintf(ss.c, "%d %s\r\n", code, msg)
	return err
}

func (ss *session) resetData() {
	if ss.pasv != nil {
		ss.pasv.Close()
		ss.pasv = nil
	}
	ss.active = nil
}

// controlAddrs returns the control connection's local and remote IPs,
// unmapped so a dual-stack listener treats IPv4 clients as IPv4.
func (ss *session) controlAddrs() (local, remote netip.Addr) {
	if a, ok := ss.c.LocalAddr().(*net.TCPAddr); ok {
		local = a.AddrPort().Addr().Unmap()
	}
	if a, ok := ss.c.RemoteAddr().(*net.TCPAddr); ok {
		remote = a.AddrPort().Addr().Unmap()
	}
	return local, remote
}

func (ss *session) handle(verb, arg string) (quit bool) {
	switch verb {
	case "QUIT":
		_ = ss.reply(221, "bye")
		return true
	case "USER":
		ss.user, ss.loggedIn = arg, false
		_ = ss.reply(331, "any password will do")
		return false
	case "PASS":
		if ss.user == "" {
			_ = ss.reply(503, "send USER first")
			return false
		}
		ss.loggedIn = true
		_ = ss.reply(230, "logged in")
		return false
	case "SYST":
		_ = ss.reply(215, "UNIX Type: L8")
		return false
	case "FEAT":
		ss.s.logf("ftpmini: -> 211 features")
		_, _ = io.WriteString(ss.c, "211-Features:\r\n EPRT\r\n EPSV\r\n PASV\r\n SIZE\r\n211 End\r\n")
		return false
	case "NOOP":
		_ = ss.reply(200, "ok")
		return false
	}
	if !ss.loggedIn {
		_ = ss.reply(530, "log in first")
		return false
	}
	switch verb {
	case "PWD", "XPWD":
		_ = ss.reply(257, `"/" is the only directory`)
	case "CWD":
		if arg == "/" || arg == "" {
			_ = ss.reply(250, "ok")
		} else {
			_ = ss.reply(550, "no such directory")
		}
	case "TYPE":
		// Only binary transfers exist; ASCII is accepted and treated as
		// binary, which is what every test file wants anyway.
		_ = ss.reply(200, "type set to "+arg)
	case "SIZE":
		ss.s.mu.Lock()
		b, ok := ss.s.files[cleanName(arg)]
		ss.s.mu.Unlock()
		if !ok {
			_ = ss.reply(550, "no such file")
		} else {
			_ = ss.reply(213, strconv.Itoa(len(b)))
		}
	case "PASV":
		ss.cmdPasv(false)
	case "EPSV":
		if strings.EqualFold(arg, "ALL") {
			_ = ss.reply(200, "EPSV ALL ok")
			return false
		}
		ss.cmdPasv(true)
	case "PORT":
		ss.cmdPort(arg)
	case "EPRT":
		ss.cmdEprt(arg)
	case "RETR":
		ss.cmdRetr(arg)
	case "STOR":
		ss.cmdStor(arg)
	default:
		_ = ss.reply(502, "command not implemented")
	}
	return false
}

// listenPasv binds the passive listener on the control connection's local
// address, trying the configured port range in order.
func (ss *session) listenPasv(local netip.Addr) (net.Listener, error) {
	lo, hi := ss.s.PasvMinPort, ss.s.PasvMaxPort
	if lo == 0 && hi == 0 {
		return net.Listen("tcp", netip.AddrPortFrom(local, 0).String())
	}
	var lastErr error
	for p := lo; p <= hi; p++ {
		ln, err := net.Listen("tcp", netip.AddrPortFrom(local, uint16(p)).String())
		if err == nil {
			return ln, nil
		}
		lastErr = err
	}
	return nil, fmt.Errorf("no free passive port in %d-%d: %w", lo, hi, lastErr)
}

func (ss *session) cmdPasv(extended bool) {
	ss.resetData()
	local, _ := ss.controlAddrs()
	if !extended && !local.Is4() {
		// PASV can only carry an IPv4 address (RFC 2428 section 3).
		_ = ss.reply(425, "PASV needs IPv4, use EPSV")
		return
	}
	var ln net.Listener
	err := ss.s.wrap(func() error {
		var err error
		ln, err = ss.listenPasv(local)
		return err
	})
	if err != nil {
		ss.s.logf("ftpmini: passive listen: %v", err)
		_ = ss.reply(425, "cannot open passive connection")
		return
	}
	ss.pasv = ln
	port := ln.Addr().(*net.TCPAddr).Port
	if extended {
		_ = ss.reply(229, fmt.Sprintf("Entering Extended Passive Mode (|||%d|)", port))
		return
	}
	if ss.s.PasvAddress.IsValid() {
		local = ss.s.PasvAddress
	}
	a := local.As4()
	_ = ss.reply(227, fmt.Sprintf("Entering Passive Mode (%d,%d,%d,%d,%d,%d)", a[0], a[1], a[2], a[3], port>>8, port&0xff))
}

func (ss *session) cmdPort(arg string) {
	ss.resetData()
	ap, err := ParsePortArg(arg)
	if err != nil {
		_ = ss.reply(501, "bad PORT argument")
		return
	}
	if !ss.peerAnnounced(ap) {
		return
	}
	ss.active = &ap
	_ = ss.reply(200, "PORT ok")
}

func (ss *session) cmdEprt(arg string) {
	ss.resetData()
	ap, err := ParseEprtArg(arg)
	if err != nil {
		if errors.Is(err, errEprtProto) {
			_ = ss.reply(522, "network protocol not supported, use (1,2)")
		} else {
			_ = ss.reply(501, "bad EPRT argument")
		}
		return
	}
	if !ss.peerAnnounced(ap) {
		return
	}
	ss.active = &ap
	_ = ss.reply(200, "EPRT ok")
}

// peerAnnounced tells whether an active-mode address may be used, and
// refuses it otherwise (RequirePeerAddress).
func (ss *session) peerAnnounced(ap netip.AddrPort) bool {
	if _, peer := ss.controlAddrs(); ss.s.RequirePeerAddress && ap.Addr() != peer {
		ss.s.logf("ftpmini: active address %s is not the peer's %s", ap.Addr(), peer)
		_ = ss.reply(500, "Illegal PORT command.")
		return false
	}
	return true
}

// openData returns the data connection negotiated by the last
// PASV/EPSV/PORT/EPRT, consuming that negotiation.
func (ss *session) openData() (net.Conn, error) {
	defer ss.resetData()
	deadline := time.Now().Add(ss.s.timeout())
	switch {
	case ss.pasv != nil:
		if tl, ok := ss.pasv.(*net.TCPListener); ok {
			_ = tl.SetDeadline(deadline)
		}
		c, err := ss.pasv.Accept()
		if err != nil {
			return nil, fmt.Errorf("accept passive data connection: %w", err)
		}
		return c, nil
	case ss.active != nil:
		local, _ := ss.controlAddrs()
		d := net.Dialer{Deadline: deadline, LocalAddr: &net.TCPAddr{IP: local.AsSlice(), Port: ss.s.ActiveSourcePort}}
		var c net.Conn
		err := ss.s.wrap(func() error {
			var err error
			c, err = d.Dial("tcp", ss.active.String())
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("connect active data connection to %s: %w", ss.active, err)
		}
		return c, nil
	}
	return nil, errors.New("no PASV/EPSV/PORT/EPRT before transfer")
}

// startData opens the data connection and announces the transfer with
// 150 msg; on failure it replies 425 and returns nil.
func (ss *session) startData(msg string) net.Conn {
	dc, err := ss.openData()
	if err != nil {
		ss.s.logf("ftpmini: %v", err)
		_ = ss.reply(425, "cannot open data connection")
		return nil
	}
	_ = ss.reply(150, msg)
	_ = dc.SetDeadline(time.Now().Add(ss.s.timeout()))
	return dc
}

func (ss *session) cmdRetr(name string) {
	ss.s.mu.Lock()
	b, ok := ss.s.files[cleanName(name)]
	ss.s.mu.Unlock()
	if !ok {
		ss.resetData()
		_ = ss.reply(550, "no such file")
		return
	}
	dc := ss.startData(fmt.Sprintf("sending %s (%d bytes)", name, len(b)))
	if dc == nil {
		return
	}
	defer dc.Close()
	if _, err := dc.Write(b); err != nil {
		_ = ss.reply(426, "transfer aborted")
		return
	}
	// Close before 226 so the client sees EOF no later than the reply.
	if err := dc.Close(); err != nil {
		_ = ss.reply(426, "transfer aborted")
		return
	}
	_ = ss.reply(226, "transfer complete")
}

func (ss *session) cmdStor(name string) {
	if cleanName(name) == "" {
		ss.resetData()
		_ = ss.reply(501, "missing file name")
		return
	}
	dc := ss.startData("send the data")
	if dc == nil {
		return
	}
	defer dc.Close()
	b, err := io.ReadAll(dc)
	if err != nil {
		_ = ss.reply(426, "transfer aborted")
		return
	}
	ss.s.PutFile(name, b)
	_ = ss.reply(226, fmt.Sprintf("stored %d bytes", len(b)))
}

var errEprtProto = errors.New("unsupported EPRT network protocol")

// ParsePortArg parses a PORT argument "h1,h2,h3,h4,p1,p2".
func ParsePortArg(arg string) (netip.AddrPort, error) {
	parts := strings.Split(strings.TrimSpace(arg), ",")
	if len(parts) != 6 {
		return netip.AddrPort{}, fmt.Errorf("PORT %q: want 6 numbers", arg)
	}
	var n [6]byte
	for i, p := range parts {
		v, err := strconv.ParseUint(strings.TrimSpace(p), 10, 8)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("PORT %q: %w", arg, err)
		}
		n[i] = byte(v)
	}
	port := uint16(n[4])<<8 | uint16(n[5])
	if port == 0 {
		return netip.AddrPort{}, fmt.Errorf("PORT %q: port 0", arg)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{n[0], n[1], n[2], n[3]}), port), nil
}

// ParseEprtArg parses an EPRT argument "|1|192.0.2.2|5000|" (RFC 2428);
// the first character is the delimiter.
func ParseEprtArg(arg string) (netip.AddrPort, error) {
	arg = strings.TrimSpace(arg)
	if len(arg) < 2 {
		return netip.AddrPort{}, fmt.Errorf("EPRT %q: too short", arg)
	}
	f := strings.Split(arg[1:], arg[:1])
	if len(f) != 4 || f[3] != "" {
		return netip.AddrPort{}, fmt.Errorf("EPRT %q: want |proto|addr|port|", arg)
	}
	// The protocol is checked first: an unknown one gets its own reply
	// (522) whatever its address looks like.
	if f[0] != "1" && f[0] != "2" {
		return netip.AddrPort{}, fmt.Errorf("EPRT %q: %w", arg, errEprtProto)
	}
	addr, err := netip.ParseAddr(f[1])
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("EPRT %q: %w", arg, err)
	}
	switch f[0] {
	case "1":
		if !addr.Is4() {
			return netip.AddrPort{}, fmt.Errorf("EPRT %q: protocol 1 needs an IPv4 address", arg)
		}
	case "2":
		if !addr.Is6() || addr.Is4In6() {
			return netip.AddrPort{}, fmt.Errorf("EPRT %q: protocol 2 needs an IPv6 address", arg)
		}
	}
	port, err := strconv.ParseUint(f[2], 10, 16)
	if err != nil || port == 0 {
		return netip.AddrPort{}, fmt.Errorf("EPRT %q: bad port", arg)
	}
	return netip.AddrPortFrom(addr, uint16(port)), nil
}
