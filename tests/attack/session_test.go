package attack

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ftpgate/ftpgate/internal/nettest"
	"github.com/ftpgate/ftpgate/tests/lab"
)

// session is a hand-driven FTP control connection from the client
// namespace: the attacks need its addresses and ports, and steps no client
// program lets a test pause between.
type session struct {
	l    *lab.Lab
	c    *net.TCPConn
	r    *bufio.Reader
	Addr netip.AddrPort // the client's end
	Peer netip.AddrPort // the server's end
}

const stepTimeout = 10 * time.Second

// openSession connects to the lab's vsftpd on port over family and logs
// in anonymously.
func openSession(l *lab.Lab, family, port int) (*session, error) {
	addr := netip.AddrPortFrom(l.ServerAddr(family), uint16(port)).String()
	c, err := l.Dial(context.Background(), l.ClientNS, "tcp", addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("control connection to %s: %w", addr, err)
	}
	s := &session{l: l, c: c.(*net.TCPConn), r: bufio.NewReader(c),
		Addr: c.LocalAddr().(*net.TCPAddr).AddrPort(), Peer: c.RemoteAddr().(*net.TCPAddr).AddrPort()}
	s.Addr = netip.AddrPortFrom(s.Addr.Addr().Unmap(), s.Addr.Port())
	s.Peer = netip.AddrPortFrom(s.Peer.Addr().Unmap(), s.Peer.Port())
	if err := s.login(); err != nil {
		c.Close()
		return nil, err
	}
	return s, nil
}

func (s *session) Close() { s.c.Close() }

func (s *session) login() error {
	if _, err := s.expect(220); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	code, _, err := s.cmd("USER anonymous")
	if err == nil && code == 331 {
		code, _, err = s.cmd("PASS attack@example.org")
	}
	if err != nil || code != 230 {
		return fmt.Errorf("login: %d %v", code, err)
	}
	if _, err := s.cmdWant("TYPE I", 200); err != nil {
		return err
	}
	return nil
}

// send writes raw bytes (one or more command lines) in one write.
func (s *session) send(raw string) error {
	_ = s.c.SetDeadline(time.Now().Add(stepTimeout))
	_, err := io.WriteString(s.c, raw)
	return err
}

// reply reads one reply, multi-line replies whole, and returns its code
// and all of its text.
func (s *session) reply() (int, string, error) {
	_ = s.c.SetDeadline(time.Now().Add(stepTimeout))
	var text strings.Builder
	var first string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return 0, text.String(), fmt.Errorf("read reply: %w", err)
		}
		text.WriteString(line)
		if first == "" {
			if len(line) < 4 {
				return 0, text.String(), fmt.Errorf("short reply line %q", line)
			}
			first = line
		}
		if len(line) >= 4 && line[:3] == first[:3] && line[3] == ' ' {
			break
		}
	}
	code, _ := strconv.Atoi(first[:3])
	return code, text.String(), nil
}

func (s *session) expect(code int) (string, error) {
	got, text, err := s.reply()
	if err == nil && got != code {
		err = fmt.Errorf("reply %q, want %d", strings.TrimSpace(text), code)
	}
	return text, err
}

func (s *session) cmd(line string) (int, string, error) {
	if err := s.send(line + "\r\n"); err != nil {
		return 0, "", fmt.Errorf("send %s: %w", line, err)
	}
	return s.reply()
}

func (s *session) cmdWant(line string, code int) (string, error) {
	if err := s.send(line + "\r\n"); err != nil {
		return "", fmt.Errorf("send %s: %w", line, err)
	}
	text, err := s.expect(code)
	if err != nil {
		return text, fmt.Errorf("%s: %w", strings.Fields(line)[0], err)
	}
	return text, nil
}

var pasvRE = regexp.MustCompile(`\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)`)

// passive asks for a passive data port (PASV on IPv4, EPSV on IPv6).
func (s *session) passive() (netip.AddrPort, error) {
	if s.Peer.Addr().Is4() {
		text, err := s.cmdWant("PASV", 227)
		if err != nil {
			return netip.AddrPort{}, err
		}
		return parse227(text)
	}
	text, err := s.cmdWant("EPSV", 229)
	if err != nil {
		return netip.AddrPort{}, err
	}
	i := strings.Index(text, "(|||")
	j := strings.LastIndex(text, "|)")
	if i < 0 || j < i+4 {
		return netip.AddrPort{}, fmt.Errorf("no port in %q", text)
	}
	p, err := strconv.Atoi(text[i+4 : j])
	return netip.AddrPortFrom(s.Peer.Addr(), uint16(p)), err
}

func parse227(text string) (netip.AddrPort, error) {
	m := pasvRE.FindStringSubmatch(text)
	if m == nil {
		return netip.AddrPort{}, fmt.Errorf("no address in %q", strings.TrimSpace(text))
	}
	var b [6]byte
	for i := range b {
		n, _ := strconv.Atoi(m[i+1])
		b[i] = byte(n)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[:4])), uint16(b[4])<<8|uint16(b[5])), nil
}

// errDataBlocked: the data connection the server offered could not be made.
var errDataBlocked = errors.New("data connection blocked")

// retrieve fetches the lab's test file over a data connection to target,
// made from local (zero: any port), and checks its content.
func (s *session) retrieve(target netip.AddrPort, local netip.AddrPort) error {
	var dc net.Conn
	err := nettest.Do(s.l.ClientNS, func() error {
		d := net.Dialer{Timeout: 3 * time.Second}
		if local.IsValid() {
			d.LocalAddr = net.TCPAddrFromAddrPort(local)
		}
		var err error
		dc, err = d.Dial("tcp", target.String())
		return err
	})
	if err != nil {
		return fmt.Errorf("%w: %s: %v", errDataBlocked, target, err)
	}
	defer dc.Close()
	if err := s.send("RETR " + s.l.FileName + "\r\n"); err != nil {
		return err
	}
	if code, text, err := s.reply(); err != nil || (code != 150 && code != 125) {
		return fmt.Errorf("RETR: %d %q %v", code, strings.TrimSpace(text), err)
	}
	_ = dc.SetDeadline(time.Now().Add(stepTimeout))
	h := sha256.New()
	if _, err := io.Copy(h, dc); err != nil {
		return fmt.Errorf("read data: %w", err)
	}
	dc.Close()
	if got := hex.EncodeToString(h.Sum(nil)); got != s.l.FileSHA256 {
		return fmt.Errorf("data hash %s, want %s", got, s.l.FileSHA256)
	}
	_, err = s.expect(226)
	return err
}

// passiveGet is a whole passive download on this session.
func (s *session) passiveGet() error {
	target, err := s.passive()
	if err != nil {
		return err
	}
	return s.retrieve(target, netip.AddrPort{})
}

// store uploads data as name (relative to the current directory) over a
// passive data connection.
func (s *session) store(name string, data []byte) error {
	target, err := s.passive()
	if err != nil {
		return err
	}
	var dc net.Conn
	err = nettest.Do(s.l.ClientNS, func() error {
		var err error
		dc, err = net.DialTimeout("tcp", target.String(), 3*time.Second)
		return err
	})
	if err != nil {
		return fmt.Errorf("%w: %s: %v", errDataBlocked, target, err)
	}
	defer dc.Close()
	if err := s.send("STOR " + name + "\r\n"); err != nil {
		return err
	}
	if code, text, err := s.reply(); err != nil || (code != 150 && code != 125) {
		return fmt.Errorf("STOR: %d %q %v", code, strings.TrimSpace(text), err)
	}
	_ = dc.SetDeadline(time.Now().Add(stepTimeout))
	if _, err := dc.Write(data); err != nil {
		return fmt.Errorf("write data: %w", err)
	}
	dc.Close()
	_, err = s.expect(226)
	return err
}
