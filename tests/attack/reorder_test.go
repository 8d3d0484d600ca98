package attack

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/internal/nettest"
	"github.com/ftpgate/ftpgate/internal/packet"
	"github.com/ftpgate/ftpgate/tests/lab"
)

// TestReorderedPipelining is the issue's "Reordering must not cost a
// transfer": a pipelining client's segment is lost once before the
// gateway, so its PASV reaches the gateway ahead of the earlier command's
// retransmission. The gateway sees, on the client's real connection: PASV
// (ahead of a gap), then the earlier command filling the gap exactly, then
// the PASV again; the server sees an ordinary pipelined stream. The
// transfer must work.
func TestReorderedPipelining(t *testing.T) {
	const row = "8 reordering: PASV ahead of the earlier pipelined command's retransmission"
	outcomes.note(row, "not an attack: a legitimate client must not lose its transfer; the early PASV is the client's next bytes injected on its own link before the stack sends them")
	forEachTarget(t, spec{}, func(e *env) {
		// no timestamps: the injected copy then looks like the stack's own
		err := nettest.Do(e.l.ClientNS, func() error {
			return os.WriteFile("/proc/sys/net/ipv4/tcp_timestamps", []byte("0"), 0o644)
		})
		if err != nil {
			e.t.Fatal(err)
		}
		w := e.watch(e.l.ClientNS)
		s := e.open(4)
		cliNext, srvNext, ok := w.next(s.Addr, s.Peer)
		if !ok {
			e.t.Fatalf("the control connection's sequence numbers were not seen on the client's link")
		}
		in := e.injectorOn(e.l.ClientNS, lab.GwClientIf)
		const earlier, pasv = "NOOP\r\n", "PASV\r\n"
		in.mustSend(e.t, 64, packet.TCP{Src: s.Addr, Dst: s.Peer, Seq: cliNext + uint32(len(earlier)), Ack: srvNext,
			Flags: packet.ACK | packet.PSH, Payload: []byte(pasv)})
		if err := s.send(earlier); err != nil {
			e.t.Fatal(err)
		}
		if err := s.send(pasv); err != nil {
			e.t.Fatal(err)
		}
		o := outcome{Safe: true, Detail: "the transfer worked"}
		if _, err := s.expect(200); err != nil {
			e.t.Fatalf("NOOP: %v", err)
		}
		text, err := s.expect(227)
		if err != nil {
			e.t.Fatalf("PASV: %v", err)
		}
		target, err := parse227(text)
		if err != nil {
			e.t.Fatal(err)
		}
		if err := s.retrieve(target, netip.AddrPort{}); err != nil {
			e.t.Logf("transfer: %v", err)
			o = outcome{Detail: "transfer: " + failure(err)}
		}
		e.report(row, o)
	})
}

// seqWatch follows the sequence numbers of the TCP segments on a host's
// link to the gateway, from a packet socket (ETH_P_ALL: only those see
// outgoing frames too): the test needs the next
// sequence number of each side of a connection to inject the client's own
// next bytes.
type seqWatch struct {
	mu   sync.Mutex
	ends map[[2]netip.AddrPort]uint32 // (src, dst) -> end of the last segment seen
	stop atomic.Bool
	done chan struct{}
}

func (e *env) watch(ns string) *seqWatch {
	e.t.Helper()
	w := &seqWatch{ends: map[[2]netip.AddrPort]uint32{}, done: make(chan struct{})}
	var fd int
	err := nettest.Do(ns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		tv := unix.Timeval{Usec: 100000}
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		e.t.Fatal(err)
	}
	go w.read(fd)
	e.t.Cleanup(func() { w.stop.Store(true); <-w.done; unix.Close(fd) })
	return w
}

func (w *seqWatch) read(fd int) {
	defer close(w.done)
	buf := make([]byte, 65536)
	for !w.stop.Load() {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			continue
		}
		w.account(buf[:n])
	}
}

// account notes the end sequence number of an IPv4 TCP frame.
func (w *seqWatch) account(f []byte) {
	const eth = 14
	if len(f) < eth+20 || f[eth]>>4 != 4 || f[eth+9] != 6 {
		return
	}
	ihl := int(f[eth]&0xf) * 4
	total := int(binary.BigEndian.Uint16(f[eth+2:]))
	if len(f) < eth+ihl+20 || total > len(f)-eth {
		return
	}
	tcp := f[eth+ihl:]
	doff := int(tcp[12]>>4) * 4
	src := netip.AddrPortFrom(netip.AddrFrom4([4]byte(f[eth+12:eth+16])), binary.BigEndian.Uint16(tcp[0:]))
	dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte(f[eth+16:eth+20])), binary.BigEndian.Uint16(tcp[2:]))
	end := binary.BigEndian.Uint32(tcp[4:]) + uint32(total-ihl-doff)
	if tcp[13]&(packet.SYN|packet.FIN) != 0 {
		end++
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	k := [2]netip.AddrPort{src, dst}
	if old, ok := w.ends[k]; !ok || int32(end-old) > 0 {
		w.ends[k] = end
	}
}

// next returns the next sequence number of each side of a quiet
// connection: both sides seen and nothing new for a while.
func (w *seqWatch) next(client, server netip.AddrPort) (cli, srv uint32, ok bool) {
	var last [2]uint32
	err := nettest.Poll(5*time.Second, func() error {
		w.mu.Lock()
		c, okc := w.ends[[2]netip.AddrPort{client, server}]
		s, oks := w.ends[[2]netip.AddrPort{server, client}]
		w.mu.Unlock()
		if !okc || !oks || [2]uint32{c, s} != last {
			last = [2]uint32{c, s}
			return fmt.Errorf("connection %s - %s not seen settled", client, server)
		}
		return nil
	})
	return last[0], last[1], err == nil
}
