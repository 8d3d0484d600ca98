package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/internal/nettest"
	"github.com/ftpgate/ftpgate/internal/packet"
	"github.com/ftpgate/ftpgate/internal/replay"
	"github.com/ftpgate/ftpgate/loader"
	"github.com/ftpgate/ftpgate/maps"
)

// a timed frame of a synthetic capture
type timed struct {
	at    time.Duration
	frame []byte
	// raw: frame is written as it is, whatever the capture's link type
	raw bool
}

func seg(at time.Duration, src, dst netip.AddrPort, seq uint32, flags uint8, payload string) timed {
	return timed{at: at, frame: packet.TCP{Src: src, Dst: dst, Seq: seq, Ack: ackFor(src, dst, seq, flags, payload),
		Flags: flags, Payload: []byte(payload)}.Bytes()}
}

// sentUpTo holds, per direction of a synthetic connection, the sequence
// number after the last byte built so far: what the peer acknowledges.
var sentUpTo = map[[2]netip.AddrPort]uint32{}

// ackFor returns the acknowledgement number a segment from src to dst,
// built in capture order, carries (the parser checks it against the window),
// and notes what the segment itself sends. A SYN without ACK starts afresh.
func ackFor(src, dst netip.AddrPort, seq uint32, flags uint8, payload string) uint32 {
	end := seq + uint32(len(payload))
	if flags&packet.SYN != 0 {
		end++
		if flags&packet.ACK == 0 {
			delete(sentUpTo, [2]netip.AddrPort{dst, src})
		}
	}
	if last, ok := sentUpTo[[2]netip.AddrPort{src, dst}]; !ok || flags&packet.SYN != 0 || int32(end-last) > 0 {
		sentUpTo[[2]netip.AddrPort{src, dst}] = end
	}
	if flags&packet.ACK == 0 {
		return 0
	}
	return sentUpTo[[2]netip.AddrPort{dst, src}]
}

// session: a PASV that is used, an unsolicited SYN, a retransmitted data
// SYN, and a second PASV whose data connection comes too late.
// greeting is the server's first line: it speaks first, or it is not FTP.
const greeting = "220 ready\r\n"

func session() []timed {
	c, s := netip.AddrPortFrom(cli4, 40000), netip.AddrPortFrom(srv4, 21)
	pasv := "PASV\r\n"
	r1 := "227 Entering Passive Mode (198,51,100,2,117,48).\r\n"
	r2 := "227 Entering Passive Mode (198,51,100,2,117,49).\r\n"
	data := netip.AddrPortFrom(srv4, 30000)
	late := netip.AddrPortFrom(srv4, 30001)
	s1 := 501 + uint32(len(greeting))
	return []timed{
		seg(0, c, s, 100, packet.SYN, ""),
		seg(time.Millisecond, s, c, 500, packet.SYN|packet.ACK, ""),
		seg(1200*time.Microsecond, c, s, 101, packet.ACK, ""),
		seg(1500*time.Microsecond, s, c, 501, packet.ACK|packet.PSH, greeting),
		seg(2*time.Millisecond, c, s, 101, packet.ACK|packet.PSH, pasv),
		seg(3*time.Millisecond, s, c, s1, packet.ACK|packet.PSH, r1),
		seg(4*time.Millisecond, netip.AddrPortFrom(cli4, 50000), data, 1, packet.SYN, ""),
		seg(5*time.Millisecond, netip.AddrPortFrom(cli4, 50000), data, 1, packet.SYN, ""),
		seg(6*time.Millisecond, netip.AddrPortFrom(cli4, 50001), netip.AddrPortFrom(srv4, 31337), 1, packet.SYN, ""),
		seg(7*time.Millisecond, c, s, 101+uint32(len(pasv)), packet.ACK|packet.PSH, pasv),
		seg(8*time.Millisecond, s, c, s1+uint32(len(r1)), packet.ACK|packet.PSH, r2),
		// six minutes later: the 300 s expectation has expired
		seg(6*time.Minute, netip.AddrPortFrom(cli4, 50002), late, 1, packet.SYN, ""),
	}
}

// writeCaptureFile writes frames as pcap or pcapng with the given link
// type, converting the Ethernet frames where needed, and returns its path.
func writeCaptureFile(t *testing.T, frames []timed, ng bool, lt layers.LinkType) string {
	t.Helper()
	var buf bytes.Buffer
	var write func(ci gopacket.CaptureInfo, data []byte) error
	var flush func() error
	if ng {
		w, err := pcapgo.NewNgWriter(&buf, lt)
		if err != nil {
			t.Fatal(err)
		}
		write, flush = w.WritePacket, w.Flush
	} else {
		w := pcapgo.NewWriter(&buf)
		if err := w.WriteFileHeader(65535, lt); err != nil {
			t.Fatal(err)
		}
		write, flush = w.WritePacket, func() error { return nil }
	}
	base := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for _, f := range frames {
		data := f.frame
		switch {
		case f.raw:
		case lt == layers.LinkTypeLinuxSLL:
			h := make([]byte, 16)
			binary.BigEndian.PutUint16(h[2:], 1) // ARPHRD_ETHER
			binary.BigEndian.PutUint16(h[14:], binary.BigEndian.Uint16(data[12:14]))
			data = append(h, data[14:]...)
		case lt == layers.LinkTypeRaw:
			data = data[14:]
		}
		ci := gopacket.CaptureInfo{Timestamp: base.Add(f.at), CaptureLength: len(data), Length: len(data)}
		if err := write(ci, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := flush(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "capture")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

type replayJSON struct {
	Packets      int `json:"packets"`
	RuntFrames   int `json:"runt_frames"`
	Oversized    int `json:"oversized_frames"`
	Expectations []struct {
		Kind  string `json:"kind"`
		Src   string `json:"src"`
		Dst   string `json:"dst"`
		DPort int    `json:"dport"`
		Fate  string `json:"fate"`
	} `json:"expectations"`
	Connections []struct {
		DPort   int    `json:"dport"`
		Verdict string `json:"verdict"`
		Reason  string `json:"reason"`
	} `json:"connections"`
	Counters map[string]uint64 `json:"counters"`
}

func TestReplay(t *testing.T) {
	if os.Geteuid() != 0 {
		bpftest.SkipOrFail(t, "replay loads BPF programs: needs root")
	}
	for _, c := range []struct {
		name string
		ng   bool
		lt   layers.LinkType
	}{
		{"pcap ethernet", false, layers.LinkTypeEthernet},
		{"pcap linux cooked", false, layers.LinkTypeLinuxSLL},
		{"pcap raw ip", false, layers.LinkTypeRaw},
		{"pcapng ethernet", true, layers.LinkTypeEthernet},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeCaptureFile(t, session(), c.ng, c.lt)
			r := ftpgate("replay", "--pcap", path, "--json")
			if r.code != 0 {
				t.Fatalf("replay: %s", r.stderr)
			}
			var got replayJSON
			if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
				t.Fatalf("%v\n%s", err, r.stdout)
			}
			if got.Packets != 12 || len(got.Expectations) != 2 || len(got.Connections) != 5 {
				t.Fatalf("replay: %s", r.stdout)
			}
			if e := got.Expectations[0]; e.Kind != "pasv" || e.Dst != "198.51.100.2" || e.DPort != 30000 || e.Fate != "consumed" {
				t.Errorf("first expectation %+v", e)
			}
			if e := got.Expectations[1]; e.DPort != 30001 || e.Fate != "expired" {
				t.Errorf("second expectation %+v", e)
			}
			want := []string{"21 pass allowed-port", "30000 pass expected", "30000 pass retransmit", "31337 drop no-expectation", "30001 drop no-expectation"}
			for i, k := range got.Connections {
				if s := strings.Join([]string{strconv.Itoa(k.DPort), k.Verdict, k.Reason}, " "); s != want[i] {
					t.Errorf("connection %d: %s, want %s", i, s, want[i])
				}
			}
			if got.Counters["expect_expired"] != 1 || got.Counters["reply_227"] != 2 {
				t.Errorf("counters %v", got.Counters)
			}
		})
	}

	t.Run("readable summary", func(t *testing.T) {
		r := ftpgate("replay", "--pcap", writeCaptureFile(t, session(), false, layers.LinkTypeEthernet))
		for _, want := range []string{"12 packets replayed", "consumed", "no-expectation", "syn_pass_expected"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("summary lacks %q:\n%s", want, r.stdout)
			}
		}
	})
}

func TestReplayBadCaptures(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage")
	os.WriteFile(garbage, []byte("this is not a capture at all"), 0o644)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o644)
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	w.WriteFileHeader(65535, layers.LinkTypeIEEE802_11)
	w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Now(), CaptureLength: 4, Length: 4}, []byte{1, 2, 3, 4})
	wifi := filepath.Join(dir, "wifi")
	os.WriteFile(wifi, buf.Bytes(), 0o644)

	for file, want := range map[string]string{
		garbage:                  "not a pcap or pcapng",
		empty:                    "too short",
		wifi:                     "unsupported link type",
		filepath.Join(dir, "no"): "no such file",
	} {
		r := ftpgate("replay", "--pcap", file)
		oneLine(t, r)
		if !strings.Contains(r.stderr, want) {
			t.Errorf("%s: %q does not say %q", filepath.Base(file), r.stderr, want)
		}
	}
}

// TestReplayTestdata replays a capture recorded in the lab (tests/e2e,
// FTPGATE_UPDATE_TESTDATA=1) on the client's interface: a passive and an
// active download through the gateway and an unsolicited attempt.
func TestReplayTestdata(t *testing.T) {
	if os.Geteuid() != 0 {
		bpftest.SkipOrFail(t, "replay loads BPF programs: needs root")
	}
	r := ftpgate("replay", "--pcap", "testdata/lab-client.pcap", "--local", "198.51.100.0/24", "--allow-port", "21", "--json")
	if r.code != 0 {
		t.Fatalf("replay: %s", r.stderr)
	}
	var got replayJSON
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatal(err)
	}
	var fates, verdicts []string
	for _, e := range got.Expectations {
		fates = append(fates, e.Kind+" "+e.Fate)
	}
	for _, c := range got.Connections {
		if c.DPort == 21 || c.DPort == 40000 || c.Reason == "expected" {
			verdicts = append(verdicts, c.Verdict+" "+c.Reason)
		}
	}
	if strings.Join(fates, ",") != "pasv consumed,port closed" {
		t.Errorf("expectations: %v", fates)
	}
	if strings.Join(verdicts, ",") != "pass allowed-port,pass expected,pass allowed-port,drop no-expectation" {
		t.Errorf("connections: %v\n%s", verdicts, r.stdout)
	}
}

// TestReplayGarbageFrames: frames of random bytes are counted, not fatal.
func TestReplayGarbageFrames(t *testing.T) {
	if os.Geteuid() != 0 {
		bpftest.SkipOrFail(t, "replay loads BPF programs: needs root")
	}
	var frames []timed
	seed := uint32(7)
	for n := 14; n < 300; n += 7 {
		f := make([]byte, n)
		for i := range f {
			seed = seed*1664525 + 1013904223
			f[i] = byte(seed >> 24)
		}
		if n%2 == 0 {
			f[12], f[13] = 0x08, 0x00 // claims IPv4
		}
		frames = append(frames, timed{at: time.Duration(n) * time.Millisecond, frame: f})
	}
	r := ftpgate("replay", "--pcap", writeCaptureFile(t, frames, false, layers.LinkTypeEthernet), "--json")
	if r.code != 0 {
		t.Fatalf("replay of garbage: %s", r.stderr)
	}
	var got replayJSON
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || got.Packets != len(frames) {
		t.Fatalf("%v: %s", err, r.stdout)
	}
}

// replayJSONOf replays a capture with --json and decodes the result.
func replayJSONOf(t *testing.T, path string, flags ...string) replayJSON {
	t.Helper()
	r := ftpgate(append([]string{"replay", "--pcap", path, "--json"}, flags...)...)
	if r.code != 0 {
		t.Fatalf("replay: %s", r.stderr)
	}
	var got replayJSON
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	return got
}

// TestReplayRuntFrames: a frame too short for its link layer or for the
// 14-byte Ethernet header BPF_PROG_TEST_RUN needs is skipped and counted;
// the rest of the capture is replayed, expectations after it included.
func TestReplayRuntFrames(t *testing.T) {
	if os.Geteuid() != 0 {
		bpftest.SkipOrFail(t, "replay loads BPF programs: needs root")
	}
	// runts go in after the PASV, before the 227 that answers it
	withRunts := func(runts ...[]byte) []timed {
		s := session()
		out := append([]timed{}, s[:4]...)
		for _, r := range runts {
			out = append(out, timed{at: 2500 * time.Microsecond, frame: r, raw: true})
		}
		return append(out, s[4:]...)
	}
	ipv4Stub := append(append([]byte{}, session()[2].frame[:14]...), 0x45, 0, 0, 40, 0, 0) // 6 bytes of an IPv4 header
	for _, c := range []struct {
		name    string
		lt      layers.LinkType
		frames  []timed
		runts   int
		packets int
	}{
		{"ethernet", layers.LinkTypeEthernet, withRunts(make([]byte, 10), nil, make([]byte, 13), ipv4Stub), 3, 13},
		{"linux cooked", layers.LinkTypeLinuxSLL, withRunts(make([]byte, 10)), 1, 12},
		{"raw ip", layers.LinkTypeRaw, withRunts(nil, []byte{0x45, 0, 0}), 1, 13},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeCaptureFile(t, c.frames, false, c.lt)
			got := replayJSONOf(t, path)
			if got.RuntFrames != c.runts || got.Packets != c.packets {
				t.Errorf("runt_frames %d, packets %d; want %d, %d", got.RuntFrames, got.Packets, c.runts, c.packets)
			}
			if len(got.Expectations) != 2 || got.Expectations[0].DPort != 30000 || got.Expectations[0].Fate != "consumed" {
				t.Errorf("expectations after the runts: %+v", got.Expectations)
			}
			r := ftpgate("replay", "--pcap", path)
			if want := strconv.Itoa(c.runts) + " runt frame"; !strings.Contains(r.stdout, want) {
				t.Errorf("summary lacks %q:\n%s%s", want, r.stdout, r.stderr)
			}
		})
	}
}

// lines returns n bytes of CRLF-terminated lines of at most width bytes
// that no parser cares about (NOOPs from a client, a listing from a server)
func lines(fromClient bool, n, width int) string {
	var b strings.Builder
	word := "-rw-r--r-- 1 ftp ftp "
	if fromClient {
		word = "NOOP "
	}
	for n > 0 {
		w := min(width, n)
		if n-w == 1 {
			w--
		}
		line := word + strings.Repeat("x", width)
		switch {
		case w == 1:
			b.WriteString("\n")
		case w <= len(word)+2:
			b.WriteString(strings.Repeat("x", w-2) + "\r\n")
		default:
			b.WriteString(line[:w-2] + "\r\n")
		}
		n -= w
	}
	return b.String()
}

// TestReplayGROSegment: a capture taken with GRO or TSO holds control
// segments far larger than BPF_PROG_TEST_RUN takes. Replay parses what the
// live parser would (the first MAX_SCAN_BYTES of the segment, at most
// MAX_LINES lines) and counts the rest as a gap, as live.
func TestReplayGROSegment(t *testing.T) {
	if os.Geteuid() != 0 {
		bpftest.SkipOrFail(t, "replay loads BPF programs: needs root")
	}
	c, s := netip.AddrPortFrom(cli4, 40000), netip.AddrPortFrom(srv4, 21)
	c6, s6 := netip.AddrPortFrom(cli6, 40000), netip.AddrPortFrom(srv6, 21)
	port := "PORT 192,0,2,2,195,80\r\n" // 192.0.2.2:50000
	eprt := "EPRT |2|2001:db8:1::2|50000|\r\n"
	reply := "227 Entering Passive Mode (198,51,100,2,117,48).\r\n"
	// a super-segment as a capture after GRO holds it: checksum offload form
	big := func(at time.Duration, src, dst netip.AddrPort, seq uint32, payload string) timed {
		return timed{at: at, frame: packet.TCP{Src: src, Dst: dst, Seq: seq, Ack: ackFor(src, dst, seq, packet.ACK, payload),
			Flags: packet.ACK | packet.PSH, Payload: []byte(payload), PartialChecksum: true}.Bytes()}
	}
	forged := func(at time.Duration, src, dst netip.AddrPort, seq uint32, payload string) timed {
		return timed{at: at, frame: packet.TCP{Src: src, Dst: dst, Seq: seq, Ack: ackFor(src, dst, seq, packet.ACK, payload),
			Flags: packet.ACK | packet.PSH, Payload: []byte(payload), BadChecksum: true}.Bytes()}
	}
	open := func(c, s netip.AddrPort) []timed {
		return []timed{
			seg(0, c, s, 100, packet.SYN, ""),
			seg(time.Millisecond, s, c, 500, packet.SYN|packet.ACK, ""),
			seg(1200*time.Microsecond, c, s, 101, packet.ACK, ""),
			seg(1500*time.Microsecond, s, c, 501, packet.ACK|packet.PSH, greeting),
		}
	}
	activeSYN := func(cli netip.Addr, srv netip.Addr) timed {
		return seg(10*time.Millisecond, netip.AddrPortFrom(srv, 20), netip.AddrPortFrom(cli, 50000), 1, packet.SYN, "")
	}
	// the client sends payload in one super-segment, then more
	fromClient := func(payload string, more ...timed) []timed {
		return append(append(open(c, s), big(2*time.Millisecond, c, s, 101, payload)), append(more, activeSYN(cli4, srv4))...)
	}
	// built before the segments it follows (an argument of fromClient): it
	// acknowledges the server's SYN-ACK explicitly
	after := func(n int, payload string) timed {
		return timed{at: 5 * time.Millisecond, frame: packet.TCP{Src: c, Dst: s, Seq: 101 + uint32(n), Ack: 501,
			Flags: packet.ACK | packet.PSH, Payload: []byte(payload)}.Bytes()}
	}
	head := lines(true, 1000, 100)

	for _, tc := range []struct {
		name    string
		frames  []timed
		want    string // kind and port of the expectation, empty for none
		scanCut uint64 // scan_limit
		badSum  uint64 // ctrl_bad_checksum
	}{
		{"PORT at 3000 of 8 KiB", fromClient(lines(true, 3000, 100) + port + lines(true, 8192-3000-len(port), 100)), "port 50000", 1, 0},
		{"PORT past 4096", fromClient(lines(true, 4100, 100) + port + lines(true, 4000, 100)), "", 1, 0},
		{"PORT as the 64th line", fromClient(lines(true, 63*56, 56) + port + lines(true, 4000, 56)), "port 50000", 1, 0},
		{"PORT as the 65th line", fromClient(lines(true, 64*56, 56) + port + lines(true, 4000, 56)), "", 1, 0},
		{"PORT at 3500 of 4000", fromClient(lines(true, 3500, 100) + port + lines(true, 4000-3500-len(port), 100)), "port 50000", 0, 0},
		{"227 at 3000 of 8 KiB", append(open(c, s),
			seg(2*time.Millisecond, c, s, 101, packet.ACK|packet.PSH, "PASV\r\n"),
			big(3*time.Millisecond, s, c, 501+uint32(len(greeting)), lines(false, 3000, 100)+reply+lines(false, 8192-3000-len(reply), 100))), "pasv 30000", 1, 0},
		{"EPRT at 3000 of 8 KiB over IPv6", append(open(c6, s6),
			big(2*time.Millisecond, c6, s6, 101, lines(true, 3000, 100)+eprt+lines(true, 8192-3000-len(eprt), 100)),
			activeSYN(cli6, srv6)), "eprt 50000", 1, 0},
		{"PORT after 8 KiB that end a line", fromClient(lines(true, 8192, 100), after(8192, port)), "port 50000", 1, 0},
		{"PORT after 4097 bytes that end a line", fromClient(lines(true, 4095, 100)+"\r\n", after(4097, port)), "port 50000", 1, 0},
		{"PORT after 8 KiB that end mid-line", fromClient(lines(true, 8192, 100)+"NOOP", after(8196, port)), "", 1, 0},
		// the live parser checks the checksum of a segment it reads whole
		{"PORT at 3000 of 3800, bad checksum", append(append(open(c, s),
			forged(2*time.Millisecond, c, s, 101, lines(true, 3000, 100)+port+lines(true, 800-len(port), 100))), activeSYN(cli4, srv4)), "", 0, 1},
		{"PORT at 3000 of 8 KiB, bad checksum", append(append(open(c, s),
			forged(2*time.Millisecond, c, s, 101, lines(true, 3000, 100)+port+lines(true, 8192-3000-len(port), 100))), activeSYN(cli4, srv4)), "port 50000", 1, 0},
		// retransmitted bytes are passed over: the 64 lines count from the new ones
		{"PORT as the 64th new line of a partly retransmitted segment", append(append(open(c, s),
			seg(2*time.Millisecond, c, s, 101, packet.ACK, head),
			big(3*time.Millisecond, c, s, 101, head+lines(true, 63*40, 40)+port+lines(true, 5000, 40))), activeSYN(cli4, srv4)), "port 50000", 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := replayJSONOf(t, writeCaptureFile(t, tc.frames, false, layers.LinkTypeEthernet))
			var exps []string
			for _, e := range got.Expectations {
				exps = append(exps, e.Kind+" "+strconv.Itoa(e.DPort))
			}
			if strings.Join(exps, ",") != tc.want {
				t.Errorf("expectations %v, want %q", exps, tc.want)
			}
			if got.Counters["scan_limit"] != tc.scanCut {
				t.Errorf("scan_limit %d, want %d", got.Counters["scan_limit"], tc.scanCut)
			}
			// each captured control segment counts once, as live
			if ctrlSegs := ctrlFrames(tc.frames); got.Counters["ctrl_segments"] != ctrlSegs {
				t.Errorf("ctrl_segments %d, want %d", got.Counters["ctrl_segments"], ctrlSegs)
			}
			if tc.want == "port 50000" && (len(got.Connections) < 2 || got.Connections[len(got.Connections)-1].Reason != "expected") {
				t.Errorf("the data connection was not admitted: %+v", got.Connections)
			}
			if got.Oversized != 1 || got.Counters["ctrl_bad_checksum"] != tc.badSum {
				t.Errorf("oversized_frames %d, ctrl_bad_checksum %d", got.Oversized, got.Counters["ctrl_bad_checksum"])
			}
		})
	}
}

// sniffer records every frame of an interface, whole (a GSO/GRO
// super-segment as one frame, as tcpdump sees it).
type sniffer struct {
	fd     int
	start  time.Time
	mu     sync.Mutex
	frames []timed
	quit   chan struct{}
	done   chan struct{}
}

func sniff(t *testing.T, ns, iface string) *sniffer {
	t.Helper()
	s := &sniffer{start: time.Now(), quit: make(chan struct{}), done: make(chan struct{})}
	err := nettest.Do(ns, func() error {
		ifc, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		// an AF_PACKET socket takes the protocol in network byte order
		proto := binary.BigEndian.Uint16(binary.NativeEndian.AppendUint16(nil, unix.ETH_P_ALL))
		if s.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(proto)); err != nil {
			return err
		}
		return unix.Bind(s.fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifc.Index})
	})
	if err != nil {
		t.Fatalf("sniff %s: %v", iface, err)
	}
	unix.SetsockoptTimeval(s.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 50000})
	go func() {
		defer close(s.done)
		buf := make([]byte, 1<<17)
		for {
			n, _, err := unix.Recvfrom(s.fd, buf, 0)
			if err != nil {
				select {
				case <-s.quit:
					return // nothing left to read
				default:
					continue
				}
			}
			s.mu.Lock()
			s.frames = append(s.frames, timed{at: time.Since(s.start), frame: append([]byte(nil), buf[:n]...)})
			s.mu.Unlock()
		}
	}()
	t.Cleanup(s.stop)
	return s
}

// captured returns the frames so far.
func (s *sniffer) captured() []timed {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.frames)
}

func (s *sniffer) stop() {
	select {
	case <-s.quit:
		return
	default:
	}
	close(s.quit)
	<-s.done
	unix.Close(s.fd)
}

// ctrlFrames counts the frames to or from port 21.
func ctrlFrames(frames []timed) uint64 {
	var n uint64
	for _, f := range frames {
		p := gopacket.NewPacket(f.frame, layers.LayerTypeEthernet, gopacket.Default)
		if tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP); ok && (tcp.SrcPort == 21 || tcp.DstPort == 21) {
			n++
		}
	}
	return n
}

// TestReplayGROMatchesLive sends super-segments through a live dataplane,
// captures the traffic there as tcpdump would, and replays the capture:
// replay makes the expectations the live parser made and counts the same
// gaps and segments. On the client's interface TC egress gets TCP's GSO
// segments whole; on the server's, TC ingress gets them whole too (veth
// and the forwarding gateway pass them on unsegmented, as after GRO).
func TestReplayGROMatchesLive(t *testing.T) {
	if os.Geteuid() != 0 {
		bpftest.SkipOrFail(t, "a live dataplane in namespaces needs root")
	}
	t.Run("client egress", func(t *testing.T) { groMatchesLive(t, false) })
	t.Run("server ingress", func(t *testing.T) { groMatchesLive(t, true) })
}

func groMatchesLive(t *testing.T, onServer bool) {
	tp := nettest.NewTopology(t, nettest.Options{Prefix: "fgr"})
	cli, srv := tp.Client(), tp.Server()
	guarded, local := cli, "192.0.2.0/24"
	if onServer {
		guarded, local = srv, "198.51.100.0/24"
	}
	pinDir := filepath.Join(nettest.BPFFS(t), "ftpgate")
	states := loader.StateDir(t.TempDir())
	dp, err := loader.Start(loader.Options{
		PinDir: pinDir, StateDir: states, NetNS: guarded.NS, Ifaces: []string{nettest.HostIf}, XDPMode: loader.XDPGeneric,
		CtrlPorts: []uint16{21}, AllowPorts: []uint16{21}, Config: maps.DefaultConfig(),
		Tables: loader.TableSizes{CtrlConns: 1024, Expectations: 1024, DataFlows: 1024},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dp.Close()
		loader.Detach(pinDir, states, "", nil)
	})

	portCmd := func(port int) string {
		return fmt.Sprintf("PORT 192,0,2,2,%d,%d\r\n", port>>8, port&0xff)
	}
	// Each connection sends its messages in order, each in one write. The
	// stack sends a write as GSO segments of several MSS (1448 bytes here),
	// the first one whole: a PORT at 3000 is read live, one at 4200 is not,
	// and one after a super-segment that ends with LF is.
	mss5 := 5 * 1448
	conns := [][]string{
		{lines(true, 3000, 100) + portCmd(50000) + lines(true, 8192-3000-len(portCmd(50000)), 100)},
		{lines(true, 4200, 100) + portCmd(50001) + lines(true, 8192-4200-len(portCmd(50001)), 100)},
		{lines(true, mss5, 100), portCmd(50002)},
	}
	ln, err := nettest.Listen(srv.NS, "tcp4", netip.AddrPortFrom(srv.Addr(4), 21).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// the server answers every message once it is all in
	served := make(chan error, len(conns))
	go func() {
		for _, msgs := range conns {
			c, err := ln.Accept()
			if err != nil {
				served <- err
				return
			}
			go func() {
				defer c.Close()
				if _, err := c.Write([]byte(greeting)); err != nil {
					served <- err
					return
				}
				for _, m := range msgs {
					if _, err := io.ReadFull(c, make([]byte, len(m))); err != nil {
						served <- err
						return
					}
					if _, err := c.Write([]byte("200 ok\r\n")); err != nil {
						served <- err
						return
					}
				}
				_, err := io.Copy(io.Discard, c)
				served <- err
			}()
		}
	}()

	sn := sniff(t, guarded.NS, nettest.HostIf)
	var open []net.Conn
	for _, msgs := range conns {
		c, err := nettest.Dial(context.Background(), cli.NS, "tcp4", ln.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, len(greeting))); err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if _, err := c.Write([]byte(m)); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, make([]byte, len("200 ok\r\n"))); err != nil {
				t.Fatal(err)
			}
		}
	}
	// closing removes a connection's expectations: look before
	liveExps, err := dp.Maps.ListExpectations()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range open {
		c.Close()
	}
	for range conns {
		if err := <-served; err != nil {
			t.Fatal(err)
		}
	}
	// the connections are closed (both FINs seen) and every segment the
	// dataplane counted is in the capture
	var liveCounters map[string]uint64
	if err := nettest.Poll(5*time.Second, func() error {
		if n, err := dp.Maps.Fill(maps.NameCtrlConns); err != nil || n != 0 {
			return fmt.Errorf("%d control connections left (%v)", n, err)
		}
		if liveCounters, err = dp.Maps.Counters(); err != nil {
			return nettest.Stop{Err: err}
		}
		if n := ctrlFrames(sn.captured()); n != liveCounters["ctrl_segments"] {
			return fmt.Errorf("%d control segments captured, %d counted", n, liveCounters["ctrl_segments"])
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sn.stop()
	frames := sn.captured()

	var supers int
	for _, f := range frames {
		if len(f.frame) > replay.MaxTestRunFrame {
			supers++
		}
	}
	if supers < len(conns) {
		t.Fatalf("captured %d frames, %d of them super-segments: the stack sent no GSO segments", len(frames), supers)
	}

	var live []string
	for _, e := range liveExps {
		live = append(live, e.Kind.String()+" "+strconv.Itoa(int(e.DPort)))
	}
	slices.Sort(live)

	got := replayJSONOf(t, writeCaptureFile(t, frames, false, layers.LinkTypeEthernet), "--local", local)
	var replayed []string
	for _, e := range got.Expectations {
		replayed = append(replayed, e.Kind+" "+strconv.Itoa(e.DPort))
		if e.Fate != "closed" {
			t.Errorf("expectation %+v: fate %s, want closed with its connection", e, e.Fate)
		}
	}
	slices.Sort(replayed)
	if want := "port 50000,port 50002"; strings.Join(live, ",") != want {
		t.Errorf("live expectations %v, want %s", live, want)
	}
	if strings.Join(replayed, ",") != strings.Join(live, ",") {
		t.Errorf("replay made %v, the live dataplane %v", replayed, live)
	}
	for _, name := range []string{"scan_limit", "ctrl_segments", "cmd_port", "ctrl_bad_checksum", "parse_resync", "ctrl_closed"} {
		if got.Counters[name] != liveCounters[name] {
			t.Errorf("%s: replay %d, live %d", name, got.Counters[name], liveCounters[name])
		}
	}
	if got.Oversized != supers {
		t.Errorf("oversized_frames %d, want %d", got.Oversized, supers)
	}
}

// withMACs gives a frame the Ethernet addresses of the link it crossed.
func withMACs(f timed, src, dst [6]byte) timed {
	f.frame = slices.Clone(f.frame)
	copy(f.frame[0:6], dst[:])
	copy(f.frame[6:12], src[:])
	return f
}

// TestReplaySpoofedLocalSource: --local emulates the reverse-path check. A
// PORT "from" an inside host that came from the outside router's MAC
// address (finding 1 of issue #11: one forged segment) is counted as
// ctrl_spoofed and creates nothing; the same segment sent by the gateway
// (the MAC outside packets are sent to) is outbound and parsed; with
// --rp-check off (or loose: the capture holds no routes) it is parsed.
func TestReplaySpoofedLocalSource(t *testing.T) {
	if os.Geteuid() != 0 {
		bpftest.SkipOrFail(t, "replay loads BPF programs: needs root")
	}
	router, gateway := [6]byte{0x02, 0, 0, 0, 0, 0x0a}, [6]byte{0x02, 0, 0, 0, 0, 0x0b}
	inside := netip.AddrPortFrom(srv4, 40000) // the protected side: --local 198.51.100.0/24
	outside := netip.AddrPortFrom(cli4, 21)
	port := fmt.Sprintf("PORT %s,195,80\r\n", strings.ReplaceAll(srv4.String(), ".", ","))
	// the inside client's segments are sent by sender, the outside server's
	// come from the router to the gateway
	capture := func(sender [6]byte) string {
		return writeCaptureFile(t, []timed{
			// an ordinary inbound packet: it shows which MAC is the gateway's
			withMACs(seg(0, netip.AddrPortFrom(cli4, 80), netip.AddrPortFrom(srv4, 45000), 1, packet.ACK, ""), router, gateway),
			withMACs(seg(time.Millisecond, inside, outside, 999, packet.SYN, ""), sender, router),
			withMACs(seg(2*time.Millisecond, outside, inside, 500, packet.SYN|packet.ACK, ""), router, gateway),
			withMACs(seg(3*time.Millisecond, inside, outside, 1000, packet.ACK, ""), sender, router),
			withMACs(seg(4*time.Millisecond, outside, inside, 501, packet.ACK|packet.PSH, greeting), router, gateway),
			withMACs(seg(5*time.Millisecond, inside, outside, 1000, packet.ACK|packet.PSH, port), sender, router),
		}, false, layers.LinkTypeEthernet)
	}
	for _, c := range []struct {
		name    string
		sender  [6]byte
		flags   []string
		expects int
		spoofed uint64
	}{
		{"forged, arriving from outside", router, nil, 0, 3},
		{"genuine, sent by the gateway", gateway, nil, 1, 0},
		{"forged, rp-check off", router, []string{"--rp-check", "off"}, 1, 0},
		{"forged, rp-check loose", router, []string{"--rp-check", "loose"}, 1, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := replayJSONOf(t, capture(c.sender), append([]string{"--local", "198.51.100.0/24"}, c.flags...)...)
			if len(got.Expectations) != c.expects || got.Counters["ctrl_spoofed"] != c.spoofed {
				t.Fatalf("expectations %+v, ctrl_spoofed %d; want %d and %d", got.Expectations, got.Counters["ctrl_spoofed"], c.expects, c.spoofed)
			}
			if got.Counters["ctrl_segments"] != 5 {
				t.Errorf("ctrl_segments %d, want 5", got.Counters["ctrl_segments"])
			}
		})
	}
}

// TestReplayScopedPort: a scoped control port is parsed towards its
// servers only, in replay as live.
func TestReplayScopedPort(t *testing.T) {
	if os.Geteuid() != 0 {
		bpftest.SkipOrFail(t, "replay loads BPF programs: needs root")
	}
	frames := func(server netip.Addr) []timed {
		c, s := netip.AddrPortFrom(cli4, 40000), netip.AddrPortFrom(server, 2121)
		return []timed{
			seg(0, c, s, 100, packet.SYN, ""),
			seg(time.Millisecond, s, c, 500, packet.SYN|packet.ACK, ""),
			seg(1200*time.Microsecond, c, s, 101, packet.ACK, ""),
			seg(1500*time.Microsecond, s, c, 501, packet.ACK|packet.PSH, greeting),
			seg(2*time.Millisecond, c, s, 101, packet.ACK|packet.PSH, "PASV\r\n"),
			seg(3*time.Millisecond, s, c, 501+uint32(len(greeting)), packet.ACK|packet.PSH, fmt.Sprintf("227 Entering Passive Mode (%s,117,48).\r\n", strings.ReplaceAll(server.String(), ".", ","))),
		}
	}
	scope := []string{"--ftp-port", "21", "--ftp-port", "2121@198.51.100.0/24"}
	if got := replayJSONOf(t, writeCaptureFile(t, frames(srv4), false, layers.LinkTypeEthernet), scope...); len(got.Expectations) != 1 {
		t.Errorf("towards a server in scope: %+v", got.Expectations)
	}
	got := replayJSONOf(t, writeCaptureFile(t, frames(netip.MustParseAddr("203.0.113.7")), false, layers.LinkTypeEthernet), scope...)
	if len(got.Expectations) != 0 || got.Counters["ctrl_out_of_scope"] != 6 {
		t.Errorf("towards another server: %+v, ctrl_out_of_scope %d", got.Expectations, got.Counters["ctrl_out_of_scope"])
	}
}
