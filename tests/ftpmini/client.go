package ftpmini

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Mode selects how the client sets up data connections.
type Mode string

const (
	PASV Mode = "pasv"
	EPSV Mode = "epsv"
	PORT Mode = "port"
	EPRT Mode = "eprt"
)

// Modes lists all four modes.
var Modes = []Mode{PASV, EPSV, PORT, EPRT}

// Command returns the FTP verb the mode sends ("PASV", ...).
func (m Mode) Command() string { return strings.ToUpper(string(m)) }

// Config tunes a client.
type Config struct {
	// Timeout bounds each control exchange, data connect/accept and
	// transfer; 0 means 10 s. A context deadline, if sooner, wins.
	Timeout time.Duration
	// ActiveAddr is the local address the client listens on and announces
	// in PORT/EPRT; invalid (zero) means the control connection's local
	// address. ActivePort 0 means an ephemeral port.
	ActiveAddr netip.Addr
	ActivePort int
	// LocalAddr, if valid, is the source address of the control connection.
	LocalAddr netip.Addr
	// SkipPasvAddress connects a PASV data connection to the control
	// connection's peer with the 227's port, ignoring its address (curl's
	// default since 7.74, --ftp-skip-pasv-ip); off, the client trusts the
	// 227 address, which is what a NAT helper must rewrite.
	SkipPasvAddress bool
	// Announce shapes how the PORT/EPRT line reaches the socket; the zero
	// value writes it alone in one write.
	Announce Shape
}

// Shape is how a command line is cut into writes, to put it where a
// middlebox does not expect it: after another command in the same segment,
// or split across segments.
type Shape struct {
	// Before is one whole command sent in the same write ahead of the
	// line ("TYPE I"); its reply is read and must be a 2xx.
	Before string
	// SplitAt, when between 0 and the line's length, writes the first
	// SplitAt bytes, waits Pause, then writes the rest (TCP_NODELAY is on,
	// as Go sets it, so each write leaves as its own segment).
	SplitAt int
	Pause   time.Duration
}

// ReplyError is a reply with an unexpected code.
type ReplyError struct {
	Command string
	Code    int
	Msg     string
}

func (e *ReplyError) Error() string {
	return fmt.Sprintf("ftpmini: %s: server replied %d %s", e.Command, e.Code, e.Msg)
}

// Client is one FTP control connection. It is not safe for concurrent use.
type Client struct {
	cfg  Config
	conn net.Conn
	r    *bufio.Reader
	// Sent records every command line sent (PASS masked), so tests can
	// assert which data command was really used.
	Sent []string
}

// Dial connects to an FTP server at addr ("host:port") and reads its greeting.
func Dial(ctx context.Context, addr string, cfg Config) (*Client, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	d := net.Dialer{Timeout: cfg.Timeout}
	if cfg.LocalAddr.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: cfg.LocalAddr.AsSlice()}
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ftpmini: dial %s: %w", addr, err)
	}
	c := &Client{cfg: cfg, conn: conn, r: bufio.NewReader(conn)}
	if _, _, err := c.expect(ctx, "greeting", 220); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// Close drops the control connection without QUIT.
func (c *Client) Close() error { return c.conn.Close() }

// Quit says goodbye and closes the connection.
func (c *Client) Quit(ctx context.Context) error {
	defer c.conn.Close()
	_, _, err := c.cmd(ctx, "QUIT", 221)
	return err
}

// Login sends USER and, when asked for it, PASS; then switches to binary.
func (c *Client) Login(ctx context.Context, user, pass string) error {
	code, _, err := c.cmd(ctx, "USER "+user, 230, 331)
	if err != nil {
		return err
	}
	if code == 331 {
		if _, _, err := c.cmd(ctx, "PASS "+pass, 230); err != nil {
			return err
		}
	}
	_, _, err = c.cmd(ctx, "TYPE I", 200)
	return err
}

// Size returns the size the server reports for name.
func (c *Client) Size(ctx context.Context, name string) (int64, error) {
	_, msg, err := c.cmd(ctx, "SIZE "+name, 213)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(msg), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("ftpmini: SIZE reply %q: %w", msg, err)
	}
	return n, nil
}

// Retrieve downloads name using mode.
func (c *Client) Retrieve(ctx context.Context, name string, mode Mode) ([]byte, error) {
	var buf bytes.Buffer
	err := c.transfer(ctx, "RETR "+name, mode, func(dc net.Conn) error {
		_, err := io.Copy(&buf, dc)
		return err
	})
	return buf.Bytes(), err
}

// Store uploads data as name using mode.
func (c *Client) Store(ctx context.Context, name string, data []byte, mode Mode) error {
	return c.transfer(ctx, "STOR "+name, mode, func(dc net.Conn) error {
		if _, err := dc.Write(data); err != nil {
			return err
		}
		// The close is the end-of-file marker for the server.
		return dc.Close()
	})
}

// deadline is the sooner of ctx's deadline and now+Timeout.
func (c *Client) deadline(ctx context.Context) time.Time {
	d := time.Now().Add(c.cfg.Timeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		return cd
	}
	return d
}

// watch makes conn's I/O fail as soon as ctx is cancelled; call the
// returned stop when done.
func watch(ctx context.Context, conn interface{ SetDeadline(time.Time) error }) (stop func() bool) {
	return context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
}

func (c *Client) send(ctx context.Context, line string) error {
	logged := line
	if strings.HasPrefix(strings.ToUpper(line), "PASS ") {
		logged = "PASS ****"
	}
	c.Sent = append(c.Sent, logged)
	_ = c.conn.SetWriteDeadline(c.deadline(ctx))
	stop := watch(ctx, c.conn)
	defer stop()
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		return fmt.Errorf("ftpmini: send %s: %w", strings.Fields(logged)[0], err)
	}
	return nil
}

// readReply reads one (possibly multi-line) reply.
func (c *Client) readReply(ctx context.Context) (int, string, error) {
	_ = c.conn.SetReadDeadline(c.deadline(ctx))
	stop := watch(ctx, c.conn)
	defer stop()
	line, err := c.r.ReadString('\n')
	if err != nil {
		return 0, "", fmt.Errorf("ftpmini: read reply: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if len(line) < 3 {
		return 0, "", fmt.Errorf("ftpmini: malformed reply %q", line)
	}
	code, err := strconv.Atoi(line[:3])
	if err != nil {
		return 0, "", fmt.Errorf("ftpmini: malformed reply %q", line)
	}
	msg := strings.TrimSpace(line[3:])
	if len(line) > 3 && line[3] == '-' {
		// Multi-line: runs until a line starting with the same code and a space.
		end := line[:3] + " "
		for {
			l, err := c.r.ReadString('\n')
			if err != nil {
				return 0, "", fmt.Errorf("ftpmini: read multi-line reply: %w", err)
			}
			l = strings.TrimRight(l, "\r\n")
			if strings.HasPrefix(l, end) {
				msg = strings.TrimSpace(l[3:])
				break
			}
		}
	}
	return code, msg, nil
}

func (c *Client) expect(ctx context.Context, what string, codes ...int) (int, string, error) {
	code, msg, err := c.readReply(ctx)
	if err != nil {
		return 0, "", err
	}
	for _, want := range codes {
		if code == want {
			return code, msg, nil
		}
	}
	return code, msg, &ReplyError{Command: what, Code: code, Msg: msg}
}

// Command sends line and reads its reply, which must have one of codes:
// for tests that drive a session by hand (a bounce PORT, say).
func (c *Client) Command(ctx context.Context, line string, codes ...int) (int, string, error) {
	return c.cmd(ctx, line, codes...)
}

// sendShaped writes line as sh says, then reads the reply to sh.Before.
func (c *Client) sendShaped(ctx context.Context, line string, sh Shape) error {
	_ = c.conn.SetWriteDeadline(c.deadline(ctx))
	stop := watch(ctx, c.conn)
	defer stop()
	data := line + "\r\n"
	if sh.Before != "" {
		c.Sent = append(c.Sent, sh.Before)
		data = sh.Before + "\r\n" + data
	}
	c.Sent = append(c.Sent, line)
	cut := len(data) - len(line) - 2 + sh.SplitAt
	pieces := []string{data}
	if sh.SplitAt > 0 && sh.SplitAt < len(line) {
		pieces = []string{data[:cut], data[cut:]}
	}
	for i, p := range pieces {
		if i > 0 {
			select {
			case <-time.After(sh.Pause):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if _, err := io.WriteString(c.conn, p); err != nil {
			return fmt.Errorf("ftpmini: send %s: %w", strings.Fields(line)[0], err)
		}
	}
	if sh.Before != "" {
		verb := strings.Fields(sh.Before)[0]
		if code, msg, err := c.readReply(ctx); err != nil {
			return err
		} else if code/100 != 2 {
			return &ReplyError{Command: verb, Code: code, Msg: msg}
		}
	}
	return nil
}

func (c *Client) cmd(ctx context.Context, line string, codes ...int) (int, string, error) {
	if err := c.send(ctx, line); err != nil {
		return 0, "", err
	}
	verb := strings.Fields(line)[0]
	return c.expect(ctx, verb, codes...)
}

// transfer negotiates a data connection with mode, sends xferCmd and runs
// move on the data connection.
func (c *Client) transfer(ctx context.Context, xferCmd string, mode Mode, move func(net.Conn) error) error {
	verb := strings.Fields(xferCmd)[0]
	var (
		dc  net.Conn
		ln  net.Listener
		err error
	)
	switch mode {
	case PASV, EPSV:
		target, err := c.passive(ctx, mode)
		if err != nil {
			return err
		}
		// Connect before sending the transfer command, as real clients do:
		// the server's 150 may wait for the connection.
		d := net.Dialer{Deadline: c.deadline(ctx)}
		dc, err = d.DialContext(ctx, "tcp", target.String())
		if err != nil {
			return fmt.Errorf("ftpmini: %s data connection to %s: %w", mode, target, err)
		}
		defer dc.Close()
	case PORT, EPRT:
		ln, err = c.active(ctx, mode)
		if err != nil {
			return err
		}
		defer ln.Close()
	default:
		return fmt.Errorf("ftpmini: unknown mode %q", mode)
	}
	if _, _, err := c.cmd(ctx, xferCmd, 150, 125); err != nil {
		return err
	}
	if ln != nil {
		tl := ln.(*net.TCPListener)
		_ = tl.SetDeadline(c.deadline(ctx))
		stop := watch(ctx, tl)
		dc, err = tl.Accept()
		stop()
		if err != nil {
			return fmt.Errorf("ftpmini: %s: accept active data connection: %w", mode, err)
		}
		defer dc.Close()
	}
	_ = dc.SetDeadline(c.deadline(ctx))
	stop := watch(ctx, dc)
	err = move(dc)
	stop()
	dc.Close()
	if err != nil {
		return fmt.Errorf("ftpmini: %s data: %w", verb, err)
	}
	_, _, err = c.expect(ctx, verb, 226, 250)
	return err
}

func (c *Client) controlAddrs() (local, remote netip.Addr) {
	local = c.conn.LocalAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
	remote = c.conn.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
	return local, remote
}

// passive sends PASV or EPSV and returns where to connect.
func (c *Client) passive(ctx context.Context, mode Mode) (netip.AddrPort, error) {
	_, remote := c.controlAddrs()
	if mode == PASV {
		_, msg, err := c.cmd(ctx, "PASV", 227)
		if err != nil {
			return netip.AddrPort{}, err
		}
		ap, err := parsePasvReply(msg)
		if err == nil && c.cfg.SkipPasvAddress {
			ap = netip.AddrPortFrom(remote, ap.Port())
		}
		return ap, err
	}
	_, msg, err := c.cmd(ctx, "EPSV", 229)
	if err != nil {
		return netip.AddrPort{}, err
	}
	port, err := parseEpsvReply(msg)
	if err != nil {
		return netip.AddrPort{}, err
	}
	// EPSV gives only a port; the host is the control connection's peer.
	return netip.AddrPortFrom(remote, port), nil
}

// active opens the local data listener and announces it with PORT or EPRT.
func (c *Client) active(ctx context.Context, mode Mode) (net.Listener, error) {
	addr := c.cfg.ActiveAddr
	if !addr.IsValid() {
		addr, _ = c.controlAddrs()
	}
	addr = addr.Unmap()
	if mode == PORT && !addr.Is4() {
		return nil, fmt.Errorf("ftpmini: PORT needs an IPv4 address, have %s (use EPRT)", addr)
	}
	ln, err := net.Listen("tcp", netip.AddrPortFrom(addr, uint16(c.cfg.ActivePort)).String())
	if err != nil {
		return nil, fmt.Errorf("ftpmini: active listen on %s: %w", addr, err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	var line string
	if mode == PORT {
		a := addr.As4()
		line = fmt.Sprintf("PORT %d,%d,%d,%d,%d,%d", a[0], a[1], a[2], a[3], port>>8, port&0xff)
	} else {
		proto := 1
		if addr.Is6() {
			proto = 2
		}
		line = fmt.Sprintf("EPRT |%d|%s|%d|", proto, addr, port)
	}
	err = c.sendShaped(ctx, line, c.cfg.Announce)
	if err == nil {
		_, _, err = c.expect(ctx, strings.Fields(line)[0], 200)
	}
	if err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// parsePasvReply extracts h1,h2,h3,h4,p1,p2 from a 227 reply text; servers
// differ on the surrounding text, so it takes the first run of six numbers.
func parsePasvReply(msg string) (netip.AddrPort, error) {
	start := strings.IndexAny(msg, "0123456789")
	for start >= 0 && start < len(msg) {
		end := start
		for end < len(msg) && (msg[end] == ',' || (msg[end] >= '0' && msg[end] <= '9')) {
			end++
		}
		if ap, err := ParsePortArg(msg[start:end]); err == nil {
			return ap, nil
		}
		next := strings.IndexAny(msg[end:], "0123456789")
		if next < 0 {
			break
		}
		start = end + next
	}
	return netip.AddrPort{}, fmt.Errorf("ftpmini: no address in PASV reply %q", msg)
}

// parseEpsvReply extracts the port from "... (|||port|)".
func parseEpsvReply(msg string) (uint16, error) {
	open := strings.IndexByte(msg, '(')
	closeIdx := strings.LastIndexByte(msg, ')')
	if open < 0 || closeIdx <= open+1 {
		return 0, fmt.Errorf("ftpmini: malformed EPSV reply %q", msg)
	}
	inner := msg[open+1 : closeIdx]
	f := strings.Split(inner[1:], inner[:1])
	if len(f) != 4 {
		return 0, fmt.Errorf("ftpmini: malformed EPSV reply %q", msg)
	}
	p, err := strconv.ParseUint(f[2], 10, 16)
	if err != nil || p == 0 {
		return 0, fmt.Errorf("ftpmini: bad port in EPSV reply %q", msg)
	}
	return uint16(p), nil
}

// Get logs in anonymously to addr, downloads name with mode and quits.
func Get(ctx context.Context, addr, name string, mode Mode, cfg Config) ([]byte, error) {
	c, err := Dial(ctx, addr, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.Login(ctx, "anonymous", "test@example.org"); err != nil {
		return nil, err
	}
	b, err := c.Retrieve(ctx, name, mode)
	if err != nil {
		return b, err
	}
	return b, ignoreQuitErr(c.Quit(ctx))
}

// Put logs in anonymously to addr, uploads data as name with mode and quits.
func Put(ctx context.Context, addr, name string, data []byte, mode Mode, cfg Config) error {
	c, err := Dial(ctx, addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Login(ctx, "anonymous", "test@example.org"); err != nil {
		return err
	}
	if err := c.Store(ctx, name, data, mode); err != nil {
		return err
	}
	return ignoreQuitErr(c.Quit(ctx))
}

// ignoreQuitErr: the transfer already succeeded, a server closing without
// a 221 does not change that.
func ignoreQuitErr(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return nil
	}
	var re *ReplyError
	if errors.As(err, &re) {
		return nil
	}
	return err
}
