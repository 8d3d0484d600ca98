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
	for _, fam := range []struct {
		name          string
		local, remote string
	}{
		{"ipv4", "192.0.2.1", "198.51.100.2"},
		{"ipv6", "2001:db8:1::1", "2001:db8:2::2"},
	} {
		t.Run(fam.name, func(t *testing.T) { testReleaser(t, netip.MustParseAddr(fam.local), netip.MustParseAddr(fam.remote)) })
	}
}

func testReleaser(t *testing.T, local, remote netip.Addr) {
	ns := nettest.VethNS(t, "fgh", "fh0", "fh1")
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
		domain, bits := unix.AF_INET, "/24"
		if local.Is6() {
			domain, bits = unix.AF_INET6, "/64"
		}
		addr, _ := netlink.ParseAddr(local.String() + bits)
		addr.Flags = unix.IFA_F_NODAD
		if err := netlink.AddrAdd(a, addr); err != nil {
			return err
		}
		// every TCP segment delivered here, before TCP reads it (IPv6:
		// without its IP header)
		if raw, err = unix.Socket(domain, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP); err != nil {
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
		f := packet.TCP{Src: netip.AddrPortFrom(remote, 21), Dst: netip.AddrPortFrom(local, 40000),
			Seq: 1000, Ack: 1, Flags: packet.PSH | packet.ACK, Payload: []byte(payload), PartialChecksum: true, BadChecksum: bad}.Bytes()
		copy(f[0:6], a.Attrs().HardwareAddr)
		return f
	}
	// received reads segments until one carries payload, and checks its
	// checksum
	received := func(payload string) {
		t.Helper()
		buf := make([]byte, 2048)
		for {
			n, err := unix.Read(raw, buf)
			if err != nil {
				t.Fatalf("%q never arrived: %v", payload, err)
			}
			seg := buf[:n]
			if local.Is4() {
				seg = seg[int(seg[0]&0xf)*4:]
			}
			if !strings.Contains(string(seg), payload) {
				continue
			}
			if inetsum.Fold(inetsum.Pseudo(remote, local, 6, len(seg))+inetsum.Sum(seg)) != 0xffff {
				t.Fatalf("%q arrived with checksum %#04x, not finished", payload, binary.BigEndian.Uint16(seg[16:]))
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

	if local.Is4() {
		// a tag the device kept outside the frame goes back in: fh0.100
		// receives it
		tagged := netip.MustParseAddr("203.0.113.1")
		err := nettest.Do(ns, func() error {
			v := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: "fh0.100", ParentIndex: a.Attrs().Index}, VlanId: 100}
			if err := netlink.LinkAdd(v); err != nil {
				return err
			}
			addr, _ := netlink.ParseAddr(tagged.String() + "/24")
			if err := netlink.AddrAdd(v, addr); err != nil {
				return err
			}
			return netlink.LinkSetUp(v)
		})
		if errors.Is(err, unix.EOPNOTSUPP) {
			t.Logf("no VLAN devices in this kernel (8021q): the tag put back is checked by TestWithVLAN only")
		} else {
			must(t, err)
		}
		vlan := "229 Entering Extended Passive Mode (|||30100|)\r\n"
		f := packet.TCP{Src: netip.AddrPortFrom(remote, 21), Dst: netip.AddrPortFrom(tagged, 40000),
			Seq: 1000, Ack: 1, Flags: packet.PSH | packet.ACK, Payload: []byte(vlan), PartialChecksum: true}.Bytes()
		copy(f[0:6], a.Attrs().HardwareAddr)
		var proto [2]byte
		binary.BigEndian.PutUint16(proto[:], 0x8100)
		must(t, r.Release(maps.HeldSegment{Ifindex: b.Attrs().Index, Frame: f, L3Off: 14,
			VLANProto: binary.NativeEndian.Uint16(proto[:]), VLANTCI: 100}))
		if err == nil {
			local = tagged
			received(vlan)
		}
	}

	bad := "227 Entering Passive Mode (198,51,100,2,117,50).\r\n"
	if err := r.Release(maps.HeldSegment{Ifindex: b.Attrs().Index, Frame: frame(bad, true), L3Off: 14}); !errors.Is(err, maps.ErrHeldChecksum) {
		t.Fatalf("damaged segment: %v, want ErrHeldChecksum", err)
	}
	if err := r.Release(maps.HeldSegment{Ifindex: b.Attrs().Index, Frame: frame(bad, false)[14:], L3Off: 0}); !errors.Is(err, ErrHeldNotEthernet) {
		t.Fatalf("frame without Ethernet header: %v, want ErrHeldNotEthernet", err)
	}
}

// TestWithVLAN: the tag goes after the two addresses, type then TCI.
func TestWithVLAN(t *testing.T) {
	frame := []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x08, 0x00, 0x45}
	var proto [2]byte
	binary.BigEndian.PutUint16(proto[:], 0x8100)
	got := withVLAN(frame, binary.NativeEndian.Uint16(proto[:]), 0x2064)
	want := []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x81, 0x00, 0x20, 0x64, 0x08, 0x00, 0x45}
	if string(got) != string(want) || frame[12] != 0x08 {
		t.Fatalf("withVLAN = % x, want % x (input kept)", got, want)
	}
	if got := withVLAN(frame, 0, 5); string(got) != string(frame) {
		t.Fatalf("no tag: % x", got)
	}
}
