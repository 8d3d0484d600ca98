package bpftest

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/ftpgate/ftpgate/bpf"
	"github.com/ftpgate/ftpgate/maps"

	"github.com/ftpgate/ftpgate/internal/packet"
)

// Conn drives one TCP control connection through the TC parser as a server
// host sees it: the client's segments at ingress, the server's at egress.
// It keeps both sequence numbers so tests speak in payloads, not numbers.
type Conn struct {
	R              *Rig
	Client, Server netip.AddrPort
	CSeq, SSeq     uint32 // next sequence number of each side
	cAcked, sAcked uint32 // what each side last acknowledged
	cEnd           uint32 // the client's highest sequence number sent, whatever the method
	cEndSet        bool
	Hook           func(frame []byte, fromClient bool) error
	// Sent, when set, is told of every segment sent (Src, Dst, Seq, Ack,
	// Flags, TCPOptions and Payload as on the wire; the window field is
	// packet.DefaultWindow), before it is sent: a model can follow the
	// same segments.
	Sent     func(seg packet.TCP, fromClient bool)
	NoWScale bool // Open's SYNs announce no window scale
}

// Initial sequence numbers: arbitrary, and close to the wrap to exercise it.
const (
	clientISN = 0xfffff000
	serverISN = 0x10000000
)

// NewConn describes a control connection; Open sends its handshake.
func NewConn(r *Rig, client, server netip.AddrPort) *Conn {
	return &Conn{R: r, Client: client, Server: server, CSeq: clientISN, SSeq: serverISN, cAcked: serverISN, sAcked: clientISN}
}

// WScale is the window scale both sides announce in Open, as Linux does for
// its usual buffer sizes: the windows then let tests send far more than 64 KiB
// one way without an ACK coming back.
const WScale = 7

// wscaleOption is NOP, then the window-scale option (kind 3, length 3).
var wscaleOption = []byte{1, 3, 3, WScale}

func (c *Conn) send(fromClient bool, seq uint32, flags uint8, payload []byte) error {
	t := packet.TCP{Seq: seq, Flags: flags, Payload: payload}
	if flags&packet.SYN != 0 && !c.NoWScale {
		t.TCPOptions = wscaleOption
	}
	if flags&packet.ACK != 0 {
		// each side acknowledges everything the other has sent
		if fromClient {
			t.Ack = c.SSeq
			c.cAcked = c.SSeq
		} else {
			t.Ack = c.CSeq
			c.sAcked = c.CSeq
		}
	}
	if fromClient {
		t.Src, t.Dst = c.Client, c.Server
		end := seq + uint32(len(payload))
		if flags&(packet.SYN|packet.FIN) != 0 {
			end++
		}
		if !c.cEndSet || int32(end-c.cEnd) > 0 {
			c.cEnd, c.cEndSet = end, true
		}
	} else {
		t.Src, t.Dst = c.Server, c.Client
	}
	return c.transmit(t, fromClient)
}

// transmit tells Sent of seg, then sends it through Hook or the rig.
func (c *Conn) transmit(seg packet.TCP, fromClient bool) error {
	if c.Sent != nil {
		c.Sent(seg, fromClient)
	}
	frame := seg.Bytes()
	if c.Hook != nil {
		return c.Hook(frame, fromClient)
	}
	_, err := c.R.TC(frame, fromClient, 0)
	return err
}

// Open sends the handshake: SYN, SYN-ACK and the client's ACK, after which
// the parser trusts the connection.
func (c *Conn) Open() error {
	if err := c.OpenHalf(); err != nil {
		return err
	}
	return c.send(true, c.CSeq, packet.ACK, nil)
}

// OpenHalf sends SYN and SYN-ACK only: the connection is not yet trusted.
//
// Tests open connections from one client address far faster than the
// per-source limit of untrusted connections allows (EMBRYO_PER_SRC_*, which
// has tests of its own): each Conn starts with its source's bucket full.
func (c *Conn) OpenHalf() error {
	if c.R != nil {
		fam, words := maps.Words(c.Client.Addr())
		err := c.R.Objs.EmbryoSources.Delete(bpf.FtpgateSrcKey{Family: fam, Addr: words})
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("refill the source's bucket: %w", err)
		}
	}
	if err := c.send(true, c.CSeq, packet.SYN, nil); err != nil {
		return err
	}
	c.CSeq++
	if err := c.send(false, c.SSeq, packet.SYN|packet.ACK, nil); err != nil {
		return err
	}
	c.SSeq++
	return nil
}

// Greeting is the server's first reply line that Greet sends.
const Greeting = "220 ftpgate test server\r\n"

// Greet sends the server's greeting: after a handshake the server speaks
// first, or the parser takes the connection for something other than FTP.
func (c *Conn) Greet() error {
	return c.ServerSends(Greeting)
}

// ackEvery is how much one side sends before the other acknowledges it with
// a bare ACK, as a receiver does: the sender stays inside the window.
const ackEvery = 32 << 10

// ClientSends sends payload from the client as the next segment.
func (c *Conn) ClientSends(payload string) error {
	if c.CSeq+uint32(len(payload))-c.sAcked > ackEvery {
		if err := c.send(false, c.SSeq, packet.ACK, nil); err != nil {
			return err
		}
	}
	err := c.send(true, c.CSeq, packet.ACK|packet.PSH, []byte(payload))
	c.CSeq += uint32(len(payload))
	return err
}

// ServerSends sends payload from the server as the next segment.
func (c *Conn) ServerSends(payload string) error {
	if c.SSeq+uint32(len(payload))-c.cAcked > ackEvery {
		if err := c.send(true, c.CSeq, packet.ACK, nil); err != nil {
			return err
		}
	}
	err := c.send(false, c.SSeq, packet.ACK|packet.PSH, []byte(payload))
	c.SSeq += uint32(len(payload))
	return err
}

// ClientAt sends payload from the client at an explicit sequence number
// (retransmissions, gaps), without moving CSeq.
func (c *Conn) ClientAt(seq uint32, payload string) error {
	return c.send(true, seq, packet.ACK|packet.PSH, []byte(payload))
}

// ServerAt is ClientAt for the server side.
func (c *Conn) ServerAt(seq uint32, payload string) error {
	return c.send(false, seq, packet.ACK|packet.PSH, []byte(payload))
}

// ClientFlags sends an empty segment from the client with the given flags.
func (c *Conn) ClientFlags(flags uint8) error {
	err := c.send(true, c.CSeq, flags, nil)
	if flags&packet.FIN != 0 {
		c.CSeq++
	}
	return err
}

// ServerFlags sends an empty segment from the server with the given flags.
func (c *Conn) ServerFlags(flags uint8) error {
	err := c.send(false, c.SSeq, flags, nil)
	if flags&packet.FIN != 0 {
		c.SSeq++
	}
	return err
}

// SYN returns a data-connection SYN frame from src to dst.
func SYN(src, dst netip.AddrPort) []byte {
	return packet.TCP{Src: src, Dst: dst, Seq: 1, Flags: packet.SYN}.Bytes()
}

// Forge sends seg as if from the client (or the server) of the connection:
// Src and Dst are filled in, everything else (sequence and acknowledgement
// numbers, flags, checksum) is as given. Nothing of the Conn moves.
func (c *Conn) Forge(fromClient bool, seg packet.TCP) error {
	if fromClient {
		seg.Src, seg.Dst = c.Client, c.Server
	} else {
		seg.Src, seg.Dst = c.Server, c.Client
	}
	return c.transmit(seg, fromClient)
}

// Close resets the connection from the client side (an RST after the
// highest byte the client sent, however it was sent), which removes its
// state: ctrl_conns is a plain hash that refuses new connections when full,
// so a test that opens more than the test table holds (1024) must close what
// it is done with.
func (c *Conn) Close() error {
	seq := c.CSeq
	if c.cEndSet && int32(c.cEnd-seq) > 0 {
		seq = c.cEnd
	}
	return c.send(true, seq, packet.RST|packet.ACK, nil)
}
