package attack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/internal/inetsum"
	"github.com/ftpgate/ftpgate/internal/nettest"
	"github.com/ftpgate/ftpgate/internal/packet"
	"github.com/ftpgate/ftpgate/tests/lab"
)

// injector puts hand-built frames on a host's link to the gateway through a
// packet socket: the host's stack neither routes nor checks them, so any
// source address, sequence number, checksum or TTL reaches the gateway.
type injector struct {
	fd       int
	ifindex  int
	src, dst net.HardwareAddr
}

// injectorOn opens a packet socket on the host end (lab.ClientIf) in hostNS
// of the link whose gateway end is gwIf.
func (e *env) injectorOn(hostNS, gwIf string) *injector {
	e.t.Helper()
	in := &injector{fd: -1}
	err := nettest.Do(e.l.GatewayNS, func() error {
		lk, err := netlink.LinkByName(gwIf)
		if err != nil {
			return fmt.Errorf("gateway interface %s: %w", gwIf, err)
		}
		in.dst = lk.Attrs().HardwareAddr
		return nil
	})
	if err == nil {
		err = nettest.Do(hostNS, func() error {
			lk, err := netlink.LinkByName(lab.ClientIf)
			if err != nil {
				return fmt.Errorf("host interface: %w", err)
			}
			in.src, in.ifindex = lk.Attrs().HardwareAddr, lk.Attrs().Index
			// protocol 0: send only, nothing is queued for reading
			if in.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0); err != nil {
				return fmt.Errorf("packet socket: %w", err)
			}
			return nil
		})
	}
	if err != nil {
		e.t.Fatalf("injector in %s: %v", hostNS, err)
	}
	e.t.Cleanup(func() { unix.Close(in.fd) })
	return in
}

// send puts one segment on the wire with the given TTL (hop limit).
func (in *injector) send(seg packet.TCP, ttl uint8) error {
	frame := seg.Bytes()
	copy(frame[0:6], in.dst)
	copy(frame[6:12], in.src)
	const eth = 14
	proto := uint16(unix.ETH_P_IP)
	if seg.Src.Addr().Is4() {
		ip := frame[eth : eth+20]
		ip[8] = ttl
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:], ^inetsum.Fold(inetsum.Sum(ip)))
	} else {
		proto = unix.ETH_P_IPV6
		frame[eth+7] = ttl
	}
	sa := &unix.SockaddrLinklayer{Ifindex: in.ifindex, Protocol: htons(proto), Halen: 6}
	copy(sa.Addr[:], in.dst)
	if err := unix.Sendto(in.fd, frame, 0, sa); err != nil {
		return fmt.Errorf("send frame: %w", err)
	}
	return nil
}

// mustSend sends segments, failing the test on an error.
func (in *injector) mustSend(t *testing.T, ttl uint8, segs ...packet.TCP) {
	t.Helper()
	for _, s := range segs {
		if err := in.send(s, ttl); err != nil {
			t.Fatal(err)
		}
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func isAddrInUse(err error) bool { return errors.Is(err, unix.EADDRINUSE) }
