package attack

import (
	"context"
	"fmt"
	"github.com/ftpgate/ftpgate/internal/nettest"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/packet"
	"github.com/ftpgate/ftpgate/tests/lab"
)

// victimPort is the inside service an attacker wants to reach (a database:
// any port of 1024 or more would do). 3306 = 12*256 + 234.
const (
	victimPort   = 3306
	victimPortHi = victimPort >> 8
	victimPortLo = victimPort & 0xff
)

// attemptTimeout bounds a connect whose SYN a gateway should drop.
const attemptTimeout = 2 * time.Second

// serve keeps a listener on addr:port in ns that accepts and closes: the
// service the attacker tries to reach.
func (e *env) serve(ns string, addr netip.Addr, port int) {
	e.t.Helper()
	var ln net.Listener
	// a port a server just closed may take a moment to be free
	err := nettest.Poll(5*time.Second, func() error {
		var err error
		ln, err = e.l.Listen(ns, "tcp", netip.AddrPortFrom(addr, uint16(port)).String())
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { ln.Close() })
	go nettest.AcceptAndClose(ln)
}

// attempt is the attacker's connection from ns to addr:port: safe unless
// it connects.
func (e *env) attempt(ns string, addr netip.Addr, port int) outcome {
	e.t.Helper()
	to := netip.AddrPortFrom(addr, uint16(port))
	got, err := e.l.ConnectTimesOut(context.Background(), ns, addr, port, attemptTimeout)
	if err != nil {
		e.t.Fatalf("connect to %s: %v", to, err)
	}
	if got == lab.Connected {
		return outcome{Detail: fmt.Sprintf("attacker connected to %s", to)}
	}
	return outcome{Safe: true, Detail: fmt.Sprintf("connect to %s %s", to, got)}
}

// portArg is the PORT argument for addr:port.
func portArg(addr netip.Addr, port int) string {
	a := addr.As4()
	return fmt.Sprintf("%d,%d,%d,%d,%d,%d", a[0], a[1], a[2], a[3], port>>8, port&0xff)
}

// forged is a data segment with random sequence numbers, as an attacker
// who sees nothing of the connection must guess them.
func forged(src, dst netip.AddrPort, payload string) packet.TCP {
	return packet.TCP{Src: src, Dst: dst, Seq: rand.Uint32(), Ack: rand.Uint32(),
		Flags: packet.ACK | packet.PSH, Payload: []byte(payload)}
}

// ephemeral is a source port an attacker picks.
func ephemeral() uint16 { return uint16(40000 + rand.IntN(20000)) }

// TestSpoofedSegment is finding 1: forged control segments, each dying at
// the gateway (TTL 1) right after the gateway saw it, must not open a hole.
func TestSpoofedSegment(t *testing.T) {
	// one segment from outside, "from" the inside client, announcing the
	// client's port 3306; the outside host then connects to it
	for _, tc := range []struct {
		name, row, note string
		family          int
		command         func(c netip.Addr) string
	}{
		{"port-v4", "1a spoofed PORT, one segment, TTL 1 (IPv4, from outside)",
			"one segment from outside with the inside client's source address; then the outside host connects to client:3306", 4,
			func(c netip.Addr) string { return "PORT " + portArg(c, victimPort) }},
		{"eprt-v6", "1c spoofed EPRT |2|, one segment, hop limit 1 (IPv6, from outside)",
			"netfilter's IPv6 reverse-path check is the nftables fib expression (no rp_filter sysctl for IPv6)", 6,
			func(c netip.Addr) string { return fmt.Sprintf("EPRT |2|%s|%d|", c, victimPort) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outcomes.note(tc.row, tc.note)
			forEachTarget(t, spec{spoofing: true}, func(e *env) {
				c, s := e.l.ClientAddr(tc.family), e.l.ServerAddr(tc.family)
				e.serve(e.l.ClientNS, c, victimPort)
				before := e.counters()
				in := e.injectorOn(e.l.ServerNS, lab.GwServerIf)
				in.mustSend(e.t, 1, forged(netip.AddrPortFrom(c, ephemeral()), netip.AddrPortFrom(s, 21), "\r\n"+tc.command(c)+"\r\n"))
				e.report(tc.row, e.attempt(e.l.ServerNS, c, victimPort))
				e.wantRefusalCounted(before, countSpoofed)
			})
		})
	}
	t.Run("pasv-v4", func(t *testing.T) {
		const row = "1b spoofed PASV + forged 227 \"from\" the server, TTL 1 (IPv4, from inside)"
		outcomes.note(row, "PASV with no connection, then a 227 with the server's source address injected on the client's link; then the client connects to server:3306")
		forEachTarget(t, spec{spoofing: true}, func(e *env) {
			c, s := e.l.ClientAddr(4), e.l.ServerAddr(4)
			e.serve(e.l.ServerNS, s, victimPort)
			before := e.counters()
			in := e.injectorOn(e.l.ClientNS, lab.GwClientIf)
			cp := netip.AddrPortFrom(c, ephemeral())
			sp := netip.AddrPortFrom(s, 21)
			in.mustSend(e.t, 1, forged(cp, sp, "\r\nPASV\r\n"),
				forged(sp, cp, "\r\n227 Entering Passive Mode ("+portArg(s, victimPort)+").\r\n"))
			e.report(row, e.attempt(e.l.ClientNS, s, victimPort))
			e.wantRefusalCounted(before, countSpoofed)
		})
	})
	t.Run("port-v4-handshake", func(t *testing.T) {
		const row = "1d spoofed PORT after a forged handshake, line-aligned (IPv4, from outside)"
		outcomes.note(row, "SYN, SYN-ACK (TTL 1), ACK, a first line, then PORT in its own segment: what the kernel's helper needs; the outside host drops the spoofed segments it receives itself")
		forEachTarget(t, spec{spoofing: true}, func(e *env) {
			c, s := e.l.ClientAddr(4), e.l.ServerAddr(4)
			e.serve(e.l.ClientNS, c, victimPort)
			// The attacker's own host must not answer the segments it
			// forges "to" itself (a RST would end the fake connection).
			e.nft(e.l.ServerNS, fmt.Sprintf("table inet attacker {\n\tchain drop_own {\n\t\ttype filter hook input priority raw;\n\t\tip saddr %s tcp dport 21 drop\n\t}\n}\n", c))
			before := e.counters()
			in := e.injectorOn(e.l.ServerNS, lab.GwServerIf)
			cp, sp := netip.AddrPortFrom(c, ephemeral()), netip.AddrPortFrom(s, 21)
			cs, ss := rand.Uint32(), rand.Uint32()
			first := "USER anonymous\r\n"
			port := "PORT " + portArg(c, victimPort) + "\r\n"
			in.mustSend(e.t, 64, packet.TCP{Src: cp, Dst: sp, Seq: cs, Flags: packet.SYN})
			in.mustSend(e.t, 1, packet.TCP{Src: sp, Dst: cp, Seq: ss, Ack: cs + 1, Flags: packet.SYN | packet.ACK})
			in.mustSend(e.t, 64,
				packet.TCP{Src: cp, Dst: sp, Seq: cs + 1, Ack: ss + 1, Flags: packet.ACK},
				packet.TCP{Src: cp, Dst: sp, Seq: cs + 1, Ack: ss + 1, Flags: packet.ACK | packet.PSH, Payload: []byte(first)},
				packet.TCP{Src: cp, Dst: sp, Seq: cs + 1 + uint32(len(first)), Ack: ss + 1, Flags: packet.ACK | packet.PSH, Payload: []byte(port)})
			// the last segment reached the outside host only after the gateway parsed it
			time.Sleep(100 * time.Millisecond)
			e.report(row, e.attempt(e.l.ServerNS, c, victimPort))
			e.wantRefusalCounted(before, countSpoofed)
		})
	})
}
