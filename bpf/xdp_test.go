package bpf_test

import (
	"testing"

	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/internal/packet"
	"github.com/ftpgate/ftpgate/maps"
)

func verdict(t *testing.T, r *bpftest.Rig, frame []byte) uint32 {
	t.Helper()
	v, err := r.Admit(frame)
	must(t, err)
	return v
}

func wantVerdict(t *testing.T, r *bpftest.Rig, frame []byte, want uint32) {
	t.Helper()
	if got := verdict(t, r, frame); got != want {
		name := map[uint32]string{bpftest.XDPDrop: "drop", bpftest.XDPPass: "pass"}
		t.Fatalf("verdict %s, want %s", name[got], name[want])
	}
}

// eachHook runs an admission test against the XDP program and against the
// same policy at TC ingress (--admit-hook tc): verdict and wantVerdict run
// the rig's AdmitHook.
func eachHook(t *testing.T, test func(t *testing.T, r *bpftest.Rig)) {
	for _, hook := range []string{bpftest.HookXDP, bpftest.HookTC} {
		t.Run(hook, func(t *testing.T) {
			r := bpftest.Shared(t)
			r.AdmitHook = hook
			test(t, r)
		})
	}
}

// passive sets up a PASV exchange that expects client4 -> server4:30000.
func passive(t *testing.T, r *bpftest.Rig) {
	t.Helper()
	c := open(t, r, client4, server4)
	must(t, c.ClientSends("PASV\r\n"))
	must(t, c.ServerSends("227 Entering Passive Mode (198,51,100,20,117,48)\r\n"))
}

func TestSYNAdmission(t *testing.T) {
	eachHook(t, func(t *testing.T, r *bpftest.Rig) {
		must(t, r.Maps.AllowPorts().Add(21))

		// allowed port
		wantVerdict(t, r, bpftest.SYN(ap(client4, 40000), ap(server4, 21)), bpftest.XDPPass)
		// unsolicited
		wantVerdict(t, r, bpftest.SYN(ap(client4, 40001), ap(server4, 30000)), bpftest.XDPDrop)

		passive(t, r)
		// from the wrong source address: still no
		wantVerdict(t, r, bpftest.SYN(ap(other4, 40002), ap(server4, 30000)), bpftest.XDPDrop)
		// the negotiated one, from any source port
		wantVerdict(t, r, bpftest.SYN(ap(client4, 51234), ap(server4, 30000)), bpftest.XDPPass)
		// its retransmitted SYN
		wantVerdict(t, r, bpftest.SYN(ap(client4, 51234), ap(server4, 30000)), bpftest.XDPPass)
		// the expectation was consumed: a second connection is refused
		wantVerdict(t, r, bpftest.SYN(ap(client4, 51235), ap(server4, 30000)), bpftest.XDPDrop)

		flows, err := r.Maps.ListFlows()
		must(t, err)
		if len(flows) != 1 || flows[0].SPort != 51234 || flows[0].DPort != 30000 || flows[0].Kind != maps.KindPasv {
			t.Fatalf("flows = %+v, want the one admitted connection", flows)
		}
		wantCounters(t, r, map[string]uint64{
			"syn_pass_allowed": 1, "syn_pass_expected": 1, "syn_pass_retransmit": 1,
			"syn_drop_unexpected": 3, "expect_consumed": 1,
		})
	})
}

func TestNonSYNAndNonTCPPass(t *testing.T) {
	eachHook(t, func(t *testing.T, r *bpftest.Rig) {
		src, dst := ap(client4, 40000), ap(server4, 30000)
		wantVerdict(t, r, packet.TCP{Src: src, Dst: dst, Flags: packet.ACK}.Bytes(), bpftest.XDPPass)
		wantVerdict(t, r, packet.TCP{Src: src, Dst: dst, Flags: packet.SYN | packet.ACK}.Bytes(), bpftest.XDPPass)
		wantVerdict(t, r, packet.TCP{Src: src, Dst: dst, Flags: packet.RST}.Bytes(), bpftest.XDPPass)
		wantVerdict(t, r, packet.UDP(src, dst, []byte("hello")), bpftest.XDPPass)
		wantVerdict(t, r, packet.UDP(ap(client6, 1), ap(server6, 2), []byte("hello")), bpftest.XDPPass)
		// non-first fragments carry no TCP header
		wantVerdict(t, r, packet.TCP{Src: src, Dst: dst, Flags: packet.SYN, FragOffset: 3}.Bytes(), bpftest.XDPPass)
		wantVerdict(t, r, packet.TCP{Src: ap(client6, 1), Dst: ap(server6, 2), Flags: packet.SYN, FragOffset: 3}.Bytes(), bpftest.XDPPass)
		wantCounters(t, r, map[string]uint64{"syn_drop_unexpected": 0, "drop_unparsed": 0})
	})
}

func TestEncapsulations(t *testing.T) {
	eachHook(t, func(t *testing.T, r *bpftest.Rig) {
		passive(t, r)
		must(t, r.Maps.AllowPorts().Add(22))
		cases := []struct {
			name string
			pkt  packet.TCP
			want uint32
		}{
			{"one VLAN tag, allowed", packet.TCP{Src: ap(client4, 1), Dst: ap(server4, 22), Flags: packet.SYN, VLANs: []uint16{10}}, bpftest.XDPPass},
			{"two VLAN tags, dropped", packet.TCP{Src: ap(client4, 1), Dst: ap(server4, 23), Flags: packet.SYN, VLANs: []uint16{10, 20}}, bpftest.XDPDrop},
			{"two VLAN tags, expected", packet.TCP{Src: ap(client4, 2), Dst: ap(server4, 30000), Flags: packet.SYN, VLANs: []uint16{10, 20}}, bpftest.XDPPass},
			{"IPv6 with extension headers, dropped", packet.TCP{Src: ap(client6, 1), Dst: ap(server6, 23), Flags: packet.SYN, IPv6Ext: maps.MaxIPv6Ext}, bpftest.XDPDrop},
			{"IPv6 with extension headers, allowed", packet.TCP{Src: ap(client6, 1), Dst: ap(server6, 22), Flags: packet.SYN, IPv6Ext: 2}, bpftest.XDPPass},
			{"IPv6 first fragment, dropped", packet.TCP{Src: ap(client6, 1), Dst: ap(server6, 23), Flags: packet.SYN, MoreFrags: true}, bpftest.XDPDrop},
			{"TCP options", packet.TCP{Src: ap(client4, 3), Dst: ap(server4, 23), Flags: packet.SYN, TCPOptions: []byte{2, 4, 5, 0xb4, 1, 1, 1, 0}}, bpftest.XDPDrop},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				wantVerdict(t, r, tc.pkt.Bytes(), tc.want)
			})
		}
	})
}

func TestUnparsableTCPIsDropped(t *testing.T) {
	eachHook(t, func(t *testing.T, r *bpftest.Rig) {
		must(t, r.Maps.AllowPorts().Add(22))
		cases := []struct {
			name  string
			frame []byte
		}{
			{"three VLAN tags", packet.TCP{Src: ap(client4, 1), Dst: ap(server4, 22), Flags: packet.SYN, VLANs: []uint16{1, 2, 3}}.Bytes()},
			{"too many IPv6 extension headers", packet.TCP{Src: ap(client6, 1), Dst: ap(server6, 22), Flags: packet.SYN, IPv6Ext: maps.MaxIPv6Ext + 1}.Bytes()},
		}
		// a first fragment cut inside the TCP header, at every length short of the flags
		full := packet.TCP{Src: ap(client4, 1), Dst: ap(server4, 22), Flags: packet.SYN, MoreFrags: true}.Bytes()
		for cut := 14 + 20; cut < len(full); cut++ {
			cases = append(cases, struct {
				name  string
				frame []byte
			}{"truncated TCP header", full[:cut]})
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				wantVerdict(t, r, tc.frame, bpftest.XDPDrop)
			})
		}
		got, err := r.Counters()
		must(t, err)
		if got["drop_unparsed"] != uint64(len(cases)) {
			t.Fatalf("drop_unparsed = %d, want %d", got["drop_unparsed"], len(cases))
		}
	})
}

func TestTruncatedFramesNeverPanic(t *testing.T) {
	r := bpftest.Shared(t)
	frames := []struct {
		frame []byte
		ipEnd int // the kernel refuses skb test runs cut inside the IP header
	}{
		{packet.TCP{Src: ap(client4, 1), Dst: ap(server4, 21), Flags: packet.SYN, Payload: []byte("PORT 1,2,3,4,5,6\r\n")}.Bytes(), 14 + 20},
		{packet.TCP{Src: ap(client6, 1), Dst: ap(server6, 21), Flags: packet.SYN, IPv6Ext: 2}.Bytes(), 14 + 40},
		{packet.TCP{Src: ap(client6, 1), Dst: ap(server6, 21), Flags: packet.SYN, IPv6Ext: 2, VLANs: []uint16{5}}.Bytes(), 15},
	}
	for _, f := range frames {
		// BPF_PROG_TEST_RUN needs at least an Ethernet header
		for n := 14; n <= len(f.frame); n++ {
			if _, err := r.XDP(f.frame[:n]); err != nil {
				t.Fatalf("xdp on %d bytes: %v", n, err)
			}
			if n < f.ipEnd {
				continue
			}
			if _, err := r.TC(f.frame[:n], true, 0); err != nil {
				t.Fatalf("tc on %d bytes: %v", n, err)
			}
		}
	}
}

func TestDryRunPassesAndCounts(t *testing.T) {
	eachHook(t, func(t *testing.T, r *bpftest.Rig) {
		setConfig(t, r, func(c *maps.Config) { c.DryRun = true })
		wantVerdict(t, r, bpftest.SYN(ap(client4, 40001), ap(server4, 30000)), bpftest.XDPPass)
		wantVerdict(t, r, packet.TCP{Src: ap(client4, 1), Dst: ap(server4, 22), Flags: packet.SYN, VLANs: []uint16{1, 2, 3}}.Bytes(), bpftest.XDPPass)
		wantCounters(t, r, map[string]uint64{"syn_dryrun_would_drop": 1, "syn_drop_unexpected": 0, "drop_unparsed": 1})
	})
}

func TestActiveModeSYNFromServer(t *testing.T) {
	eachHook(t, func(t *testing.T, r *bpftest.Rig) {
		c := open(t, r, client6, server6)
		must(t, c.ClientSends("EPRT |2|2001:db8:1::10|50002|\r\n"))
		// the server connects from any port (often 20) to the announced port
		wantVerdict(t, r, bpftest.SYN(ap(server6, 20), ap(client6, 50002)), bpftest.XDPPass)
		// the reverse direction is not what was negotiated
		wantVerdict(t, r, bpftest.SYN(ap(client6, 50002), ap(server6, 20)), bpftest.XDPDrop)
	})
}

func TestFlowCloseAndAccounting(t *testing.T) {
	eachHook(t, func(t *testing.T, r *bpftest.Rig) {
		setConfig(t, r, func(c *maps.Config) { c.Accounting = true })
		passive(t, r)
		src, dst := ap(client4, 51234), ap(server4, 30000)
		wantVerdict(t, r, bpftest.SYN(src, dst), bpftest.XDPPass)
		data := packet.TCP{Src: dst, Dst: src, Flags: packet.ACK, Payload: make([]byte, 1000)}.Bytes()
		for i := 0; i < 3; i++ {
			wantVerdict(t, r, data, bpftest.XDPPass)
		}
		wantVerdict(t, r, packet.TCP{Src: src, Dst: dst, Flags: packet.FIN | packet.ACK}.Bytes(), bpftest.XDPPass)
		flows, err := r.Maps.ListFlows()
		must(t, err)
		if len(flows) != 1 {
			t.Fatalf("flows = %+v", flows)
		}
		f := flows[0]
		// SYN, three data segments, FIN
		if f.Packets != 5 || f.Bytes != 40+3*(40+1000)+40 || !f.Closed {
			t.Fatalf("flow = %+v, want 5 packets, %d bytes, closed", f, 40+3*1040+40)
		}
	})
}

func TestFwmarkOnAdmittedSYN(t *testing.T) {
	r := bpftest.Shared(t)
	passive(t, r)
	syn := bpftest.SYN(ap(client4, 51234), ap(server4, 30000))

	// without a configured mark nothing is marked
	wantVerdict(t, r, syn, bpftest.XDPPass)
	mark, err := r.TC(syn, true, 0)
	must(t, err)
	if mark != 0 {
		t.Fatalf("mark %#x without fwmark configured", mark)
	}

	setConfig(t, r, func(c *maps.Config) { c.FwmarkValue = 0x100; c.FwmarkMask = 0xff00 })
	mark, err = r.TC(syn, true, 0)
	must(t, err)
	if mark != 0x100 {
		t.Fatalf("mark %#x, want 0x100", mark)
	}
	// a SYN that was not admitted through an expectation is not marked
	mark, err = r.TC(bpftest.SYN(ap(client4, 1), ap(server4, 22)), true, 0)
	must(t, err)
	if mark != 0 {
		t.Fatalf("unrelated SYN marked %#x", mark)
	}
	wantCounters(t, r, map[string]uint64{"syn_fwmark": 1})
}
