package loader

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/maps"
)

// maxSocketPath is the longest path a unix socket address holds (sun_path
// less its terminating NUL).
const maxSocketPath = 107

// eventsSuffix ends the name of the events socket, beside the state file.
const eventsSuffix = ".events.sock"

// EventsSocket returns the unix socket where `run` serves the events of
// pinDir: named like the state file, with another suffix, or, where a long
// state directory makes that too long for a socket address, a hash of it in
// the same directory.
func (d StateDir) EventsSocket(pinDir string) string {
	p := d.Path(pinDir, eventsSuffix)
	if len(p) <= maxSocketPath {
		return p
	}
	sum := sha256.Sum256([]byte(p))
	return filepath.Join(d.dir(), hex.EncodeToString(sum[:8])+eventsSuffix)
}

// clientQueue is the number of events a slow monitor may fall behind before
// it misses some (and is told how many).
const clientQueue = 4096

// frameHeader precedes every record on the socket: its length and the
// number of events this client missed just before it.
const frameHeader = 8

// EventServer drains the events ring for as long as run runs, so that the
// ring never holds stale events, and hands every record to the monitors
// connected to its unix socket.
type EventServer struct {
	rd   *ringbuf.Reader
	ln   *net.UnixListener
	log  *slog.Logger
	done sync.WaitGroup

	mu        sync.Mutex
	clients   map[*eventClient]struct{}
	consumers []func(raw []byte)
	closed    bool
}

type frame struct {
	raw     []byte
	skipped uint32
}

type eventClient struct {
	conn    net.Conn
	queue   chan frame
	skipped uint32 // events dropped since the last queued one; under EventServer.mu
}

// ServeEvents starts draining m's events ring and serving it on the unix
// socket path (a stale socket there is replaced: the caller holds the pin
// directory's lock).
func ServeEvents(m *maps.Maps, path string, log *slog.Logger) (*EventServer, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("events socket %s: path longer than %d bytes", path, maxSocketPath)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale events socket: %w", err)
	}
	// Events name the hosts of every control connection: root's only. The
	// socket is born with mode 0600 (a chmod after bind leaves a moment in
	// which anyone may connect, and follows symbolic links).
	old := unix.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on events socket: %w", err)
	}
	rd, err := ringbuf.NewReader(m.Events)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("read %s: %w", maps.NameEvents, err)
	}
	s := &EventServer{rd: rd, ln: ln, log: log, clients: map[*eventClient]struct{}{}}
	s.done.Add(2)
	go s.drain()
	go s.accept()
	return s, nil
}

func (s *EventServer) drain() {
	defer s.done.Done()
	for {
		rec, err := s.rd.Read()
		if errors.Is(err, ringbuf.ErrClosed) {
			return
		}
		if err != nil {
			s.log.Warn("read events", "err", err)
			continue
		}
		s.broadcast(rec.RawSample)
	}
}

// AddConsumer hands every record drained from now on to fn, in the
// draining goroutine (fn must not block): for a consumer inside run, such
// as the gateway group (#15), beside the monitors.
func (s *EventServer) AddConsumer(fn func(raw []byte)) {
	s.mu.Lock()
	s.consumers = append(s.consumers, fn)
	s.mu.Unlock()
}

func (s *EventServer) broadcast(raw []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, fn := range s.consumers {
		fn(raw)
	}
	for c := range s.clients {
		select {
		case c.queue <- frame{raw: raw, skipped: c.skipped}:
			c.skipped = 0
		default:
			c.skipped++
		}
	}
}

func (s *EventServer) accept() {
	defer s.done.Done()
	for {
		conn, err := s.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// out of file descriptors, say: monitors must still get in later
			s.log.Warn("accept a monitor", "err", err)
			time.Sleep(acceptBackoff)
			continue
		}
		c := &eventClient{conn: conn, queue: make(chan frame, clientQueue)}
		c.queue <- frame{} // the empty record: registered, nothing missed from here on
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			conn.Close()
			return
		}
		s.clients[c] = struct{}{}
		s.mu.Unlock()
		s.log.Debug("monitor connected")
		go s.send(c)
	}
}

// send writes a client's queue to its connection until either ends.
func (s *EventServer) send(c *eventClient) {
	defer c.conn.Close()
	var hdr [frameHeader]byte
	for f := range c.queue {
		binary.LittleEndian.PutUint32(hdr[:4], uint32(len(f.raw)))
		binary.LittleEndian.PutUint32(hdr[4:], f.skipped)
		if _, err := c.conn.Write(append(hdr[:], f.raw...)); err != nil {
			break
		}
	}
	s.mu.Lock()
	if _, ok := s.clients[c]; ok {
		delete(s.clients, c)
		close(c.queue)
	}
	s.mu.Unlock()
	for range c.queue { // let a pending broadcast finish
	}
	s.log.Debug("monitor disconnected")
}

// Close stops draining, removes the socket and disconnects the monitors.
func (s *EventServer) Close() error {
	s.mu.Lock()
	s.closed = true
	for c := range s.clients {
		delete(s.clients, c)
		close(c.queue)
		c.conn.Close()
	}
	s.mu.Unlock()
	err := s.ln.Close()
	s.rd.Close()
	s.done.Wait()
	return err
}

// EventStream is a monitor's connection to run's events socket.
type EventStream struct {
	conn net.Conn
}

// DialEvents connects to the events socket of a live run and returns once
// run has registered the stream: every event after that reaches it.
func DialEvents(path string) (*EventStream, error) {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return nil, err
	}
	e := &EventStream{conn: conn}
	conn.SetReadDeadline(time.Now().Add(dialTimeout))
	raw, _, err := e.Read()
	conn.SetReadDeadline(time.Time{})
	if err == nil && len(raw) != 0 {
		err = errors.New("unexpected first record")
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("events socket %s: %w", path, err)
	}
	return e, nil
}

// acceptBackoff is the pause after a failed accept, before the next.
const acceptBackoff = 100 * time.Millisecond

// maxFrame bounds a record read from the socket: run sends ring records,
// each one struct event.
const maxFrame = 4096

// dialTimeout bounds the wait for run to register a new monitor.
const dialTimeout = 5 * time.Second

// Read returns the next raw event record and how many events this stream
// missed just before it (a monitor slower than the events); io.EOF when
// run stops.
func (e *EventStream) Read() (raw []byte, skipped uint32, err error) {
	var hdr [frameHeader]byte
	if _, err := io.ReadFull(e.conn, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = io.EOF
		}
		return nil, 0, err
	}
	n := binary.LittleEndian.Uint32(hdr[:4])
	if n > maxFrame {
		return nil, 0, fmt.Errorf("read event: a record of %d bytes is not from `ftpgate run`", n)
	}
	raw = make([]byte, n)
	if _, err := io.ReadFull(e.conn, raw); err != nil {
		return nil, 0, fmt.Errorf("read event: %w", err)
	}
	return raw, binary.LittleEndian.Uint32(hdr[4:]), nil
}

// Close ends the stream.
func (e *EventStream) Close() error { return e.conn.Close() }
