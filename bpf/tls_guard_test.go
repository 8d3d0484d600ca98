package bpf_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/internal/bpfrun"
	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/internal/inetsum"
	"github.com/ftpgate/ftpgate/internal/nettest"
	"github.com/ftpgate/ftpgate/internal/packet"
	"github.com/ftpgate/ftpgate/maps"
)

// rst is a reset as the guard writes it, decoded.
type rst struct {
	src, dst netip.AddrPort
	seq, ack uint32
	flags    uint8
	payload  int
	ttl      uint8
}

const (
	tcpRST = 0x04
	tcpACK = 0x10
)

// decodeRST decodes an Ethernet frame holding a TCP segment and checks its
// IP and TCP checksums (partial: the TCP field holds the pseudo-header sum
// alone, as with checksum offload).
func decodeRST(t *testing.T, frame []byte, partial bool) rst {
	t.Helper()
	pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	tl, ok := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if !ok {
		t.Fatalf("no TCP segment in % x", frame)
	}
	var src, dst netip.Addr
	var ttl uint8
	if ip, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
		src, dst, ttl = addrOf(ip.SrcIP), addrOf(ip.DstIP), ip.TTL
		if inetsum.Fold(inetsum.Sum(ip.Contents)) != 0xffff {
			t.Fatalf("IPv4 header checksum wrong: % x", ip.Contents)
		}
		if int(ip.Length) != len(ip.Contents)+len(ip.Payload) {
			t.Fatalf("IPv4 total length %d, frame holds %d", ip.Length, len(ip.Contents)+len(ip.Payload))
		}
	} else if ip, ok := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ok {
		src, dst, ttl = addrOf(ip.SrcIP), addrOf(ip.DstIP), ip.HopLimit
		if int(ip.Length) != len(ip.Payload) {
			t.Fatalf("IPv6 payload length %d, frame holds %d", ip.Length, len(ip.Payload))
		}
	} else {
		t.Fatalf("no IP header in % x", frame)
	}
	seg := append(append([]byte(nil), tl.Contents...), tl.Payload...)
	pseudo := inetsum.Pseudo(src, dst, 6, len(seg))
	if partial {
		if got, want := binary.BigEndian.Uint16(seg[16:]), inetsum.Fold(pseudo); got != want {
			t.Fatalf("offloaded TCP checksum field %#x, want the pseudo-header sum %#x", got, want)
		}
	} else if inetsum.Fold(pseudo+inetsum.Sum(seg)) != 0xffff {
		t.Fatalf("TCP checksum wrong: % x", seg)
	}
	var fl uint8
	if tl.RST {
		fl |= tcpRST
	}
	if tl.ACK {
		fl |= tcpACK
	}
	if tl.SYN || tl.FIN || tl.PSH {
		fl |= 0x80 // anything else: the test fails on it
	}
	return rst{netip.AddrPortFrom(src, uint16(tl.SrcPort)), netip.AddrPortFrom(dst, uint16(tl.DstPort)), tl.Seq, tl.Ack, fl, len(tl.Payload), ttl}
}

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

// capture reads frames seen on ifindex (both ways) until one holds a TCP
// reset, or a second passes.
func capture(fd int) ([]byte, error) {
	buf := make([]byte, 2048)
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read packet socket: %w", err)
		}
		pkt := gopacket.NewPacket(buf[:n], layers.LayerTypeEthernet, gopacket.Default)
		if tl, ok := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP); ok && tl.RST {
			return append([]byte(nil), buf[:n]...), nil
		}
	}
	return nil, errors.New("no reset sent back to the client within a second")
}

// packetSocket opens a socket that sees every frame sent and received on ifindex.
// The caller closes it.
func packetSocket(ifindex int) (int, error) {
	// the protocol in network byte order, as the socket calls read it
	proto := int(binary.NativeEndian.Uint16(binary.BigEndian.AppendUint16(nil, unix.ETH_P_ALL)))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, proto)
	if err != nil {
		return -1, fmt.Errorf("packet socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifindex}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind packet socket: %w", err)
	}
	tv := unix.Timeval{Usec: 100000}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// TestLoginGuardReset: under --require-tls, a USER or PASS before TLS
// becomes a reset towards the server (the skb, at the segment's sequence
// number, no payload) and a clone turned round resets the client: out of
// the device when the segment arrived from an outside client, into its
// ingress when an inside client's segment was leaving. Both checksums are
// right, or, for an offloaded segment, the pseudo-header sum is left for
// the device.
func TestLoginGuardReset(t *testing.T) {
	r := bpftest.Shared(t)
	ns := nettest.VethNS(t, "fgt-guard", "fgta", "fgtb")
	cases := []struct {
		name           string
		client, server netip.Addr
		clientIngress  bool // the client's segments are seen at ingress
		partial        bool
		line           string
	}{
		{"outside client v4", client4, server4, true, false, "USER alice\r\n"},
		{"inside client v4 offloaded", client4, server4, false, true, "PASS secret\r\n"},
		{"outside client v6 offloaded", client6, server6, true, true, "user alice\r\n"},
		{"inside client v6", client6, server6, false, false, "PASS secret\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			must(t, r.Reset())
			setConfig(t, r, func(c *maps.Config) { c.RequireTLS = true })
			// inside the namespace nothing may call t.Fatal: fn runs on another goroutine
			var c *bpftest.Conn
			var ret uint32
			var server, client, clientAgain []byte
			var again ebpf.RunOptions
			var retAgain uint32
			err := nettest.Do(ns, func() error {
				ifc, err := net.InterfaceByName("fgta")
				if err != nil {
					return err
				}
				fd, err := packetSocket(ifc.Index)
				if err != nil {
					return err
				}
				defer unix.Close(fd)
				c = bpftest.NewConn(r, ap(tc.client, 40000), ap(tc.server, 21))
				c.Hook = func(frame []byte, fromClient bool) error {
					_, err := r.TCOn(frame, fromClient == tc.clientIngress, uint32(ifc.Index), 0)
					return err
				}
				if err := c.Open(); err != nil {
					return err
				}
				if err := c.Greet(); err != nil {
					return err
				}
				seg := packet.TCP{Src: c.Client, Dst: c.Server, Seq: c.CSeq, Ack: c.SSeq, Flags: packet.ACK | packet.PSH,
					Payload: []byte(tc.line), PartialChecksum: tc.partial}
				prog := r.Objs.FtpgateTcEgress
				if tc.clientIngress {
					prog = r.Objs.FtpgateTcIngress
				}
				opts := ebpf.RunOptions{Data: seg.Bytes(), DataOut: make([]byte, 256), Context: bpfrun.SkbCtx{Ifindex: uint32(ifc.Index)}}
				if ret, err = prog.Run(&opts); err != nil {
					return err
				}
				server = opts.DataOut
				if client, err = capture(fd); err != nil {
					return err
				}
				// the same segment again (its reset lost): reset again, not picked up
				again = ebpf.RunOptions{Data: seg.Bytes(), DataOut: make([]byte, 256), Context: bpfrun.SkbCtx{Ifindex: uint32(ifc.Index)}}
				if retAgain, err = prog.Run(&again); err != nil {
					return err
				}
				clientAgain, err = capture(fd)
				return err
			})
			if err != nil {
				cs, _ := r.Counters()
				t.Fatalf("%v (verdict %d, counters %v)", err, ret, nonZero(cs))
			}
			if ret != bpftest.TCOK {
				t.Fatalf("verdict %d, want TC_ACT_OK (the reset goes on)", ret)
			}
			toServer := decodeRST(t, server, tc.partial)
			want := rst{c.Client, c.Server, c.CSeq, c.SSeq, tcpRST | tcpACK, 0, 64}
			if toServer != want {
				t.Fatalf("towards the server %+v, want %+v", toServer, want)
			}
			toClient := decodeRST(t, client, tc.partial)
			want = rst{c.Server, c.Client, c.SSeq, c.CSeq + uint32(len(tc.line)), tcpRST | tcpACK, 0, 64}
			if toClient != want {
				t.Fatalf("towards the client %+v, want %+v", toClient, want)
			}
			if retAgain != bpftest.TCOK {
				t.Fatalf("retransmission: verdict %d, want TC_ACT_OK (the reset goes on)", retAgain)
			}
			if got := decodeRST(t, again.DataOut, tc.partial); got != toServer {
				t.Fatalf("retransmission towards the server %+v, want %+v", got, toServer)
			}
			if got := decodeRST(t, clientAgain, tc.partial); got != toClient {
				t.Fatalf("retransmission towards the client %+v, want %+v", got, toClient)
			}
			wantCounters(t, r, map[string]uint64{"login_cleartext": 1, "login_reset": 2, "login_reset_again": 1,
				"login_reset_failed": 0, "ctrl_closed": 1, "tcp_untrusted": 0})
			conns, err := r.Maps.ListConns()
			must(t, err)
			if len(conns) != 1 || !conns[0].LoginReset || !conns[0].Closing {
				t.Fatalf("want the reset connection kept as a tombstone (closed, login_reset), have %+v", conns)
			}
			evs, err := r.Events()
			must(t, err)
			n := 0
			for _, e := range evs {
				if e.Type == maps.EventLoginCleartext && e.Reason == "login_reset" && e.Control.Client == tc.client {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("%d login_reset events for %s in %+v, want 1", n, tc.client, evs)
			}
		})
	}
}

// TestLoginGuardSparesTLS: under --require-tls a login after AUTH TLS is
// inside TLS and untouched, and commands that are not logins pass.
func TestLoginGuardSparesTLS(t *testing.T) {
	r := bpftest.Shared(t)
	setConfig(t, r, func(c *maps.Config) { c.RequireTLS = true })
	c := open(t, r, client4, server4)
	converse(t, c, "", "FEAT\r\n", "211 End\r\n")
	converse(t, c, "", "AUTH TLS\r\n", "234 Proceed\r\n")
	converse(t, c, "", "USER alice\r\n", "331 Password\r\n")
	wantCounters(t, r, map[string]uint64{"login_cleartext": 0, "login_reset": 0, "tls_auth": 1})
	if enc, _ := encrypted(t, r); !enc {
		t.Fatal("the connection is gone or not encrypted")
	}
}
