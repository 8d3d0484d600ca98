package loader

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/internal/inetsum"
	"github.com/ftpgate/ftpgate/internal/nettest"
	"github.com/ftpgate/ftpgate/internal/packet"
	"github.com/ftpgate/ftpgate/maps"
)

// TestReleaser: held segments go back where TC held them, their partial
// checksums finished: one held at ingress of a device arrives at the
// stack as received there, one held at egress leaves the device (a veth:
// it arrives at its peer). A segment damaged on the way is not sent.
func TestReleaser(t *testing.T) {
	if os.Geteuid() != 0 {
		bpftest.SkipOrFail(t, "the releaser needs root")
	}
	ns := nettest.VethNS(t, "fgh", "fh0", "fh1")
	local := netip.MustParseAddr("192.0.2.1")
	var a, b netlink.Link
	var raw int
	must(t, nettest.Do(ns, func() error {
		var err error
		if a, err = netlink.LinkByName("fh0"); err != nil {
			return err
		}
		if b, err = netlink.LinkByName("fh1"); err != nil {
			return err
		}
		addr, _ := netlink.ParseAddr(local.String() + "/24")
		if err := netlink.AddrAdd(a, addr); err != nil {
			return err
		}
		// every TCP segment delivered here, before TCP reads it
		if raw, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP); err != nil {
			return err
		}
		return unix.SetsockoptTimeval(raw, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2})
	}))
	defer unix.Close(raw)
	r, err := NewReleaser(ns)
	must(t, err)
	defer r.Close()

	// frame is a 227 to fh0's address, checksum left partial by its sender
	frame := func(payload string, bad bool) []byte {
		f := packet.TCP{Src: netip.MustParseAddrPort("198.51.100.2:21"), Dst: netip.AddrPortFrom(local, 40000),
			Seq: 1000, Ack: 1, Flags: packet.PSH | packet.ACK, Payload: []byte(payload), PartialChecksum: true, BadChecksum: bad}.Bytes()
		copy(f[0:6], a.Attrs().HardwareAddr)
		return f
	}
	// received reads segments until one carries payload, and checks its checksum
	received := func(payload string) {
		t.Helper()
		buf := make([]byte, 2048)
		for {
			n, err := unix.Read(raw, buf)
			if err != nil {
				t.Fatalf("%q never arrived: %v", payload, err)
			}
			ip := buf[:n]
			hl := int(ip[0]&0xf) * 4
			if !strings.Contains(string(ip[hl:]), payload) {
				continue
			}
			src, dst := netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
			if inetsum.Fold(inetsum.Pseudo(src, dst, 6, n-hl)+inetsum.Sum(ip[hl:])) != 0xffff {
				t.Fatalf("%q arrived with checksum %#04x, not finished", payload, binary.BigEndian.Uint16(ip[hl+16:]))
			}
			return
		}
	}

	if !r.LiveFrames() {
		t.Logf("kernel without live frames: ingress not tried")
		if err := r.Release(maps.HeldSegment{Ifindex: a.Attrs().Index, Ingress: true, Frame: frame("x", false), L3Off: 14}); !errors.Is(err, ErrNoLiveFrames) {
			t.Fatalf("ingress release without live frames: %v, want ErrNoLiveFrames", err)
		}
	} else {
		in := "227 Entering Passive Mode (198,51,100,2,117,48).\r\n"
		must(t, r.Release(maps.HeldSegment{Ifindex: a.Attrs().Index, Ingress: true, Frame: frame(in, false), L3Off: 14}))
		received(in)
	}
	out := "229 Entering Extended Passive Mode (|||30001|)\r\n"
	must(t, r.Release(maps.HeldSegment{Ifindex: b.Attrs().Index, Frame: frame(out, false), L3Off: 14}))
	received(out)

	bad := "227 Entering Passive Mode (198,51,100,2,117,50).\r\n"
	if err := r.Release(maps.HeldSegment{Ifindex: b.Attrs().Index, Frame: frame(bad, true), L3Off: 14}); !errors.Is(err, maps.ErrHeldChecksum) {
		t.Fatalf("damaged segment: %v, want ErrHeldChecksum", err)
	}
	if err := r.Release(maps.HeldSegment{Ifindex: b.Attrs().Index, Frame: frame(bad, false)[14:], L3Off: 0}); !errors.Is(err, ErrHeldNotEthernet) {
		t.Fatalf("frame without Ethernet header: %v, want ErrHeldNotEthernet", err)
	}
}
