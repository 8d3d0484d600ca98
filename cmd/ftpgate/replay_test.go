package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/internal/packet"
)

// a timed frame of a synthetic capture
type timed struct {
	at    time.Duration
	frame []byte
}

func seg(at time.Duration, src, dst netip.AddrPort, seq uint32, flags uint8, payload string) timed {
	return timed{at, packet.TCP{Src: src, Dst: dst, Seq: seq, Flags: flags, Payload: []byte(payload)}.Bytes()}
}

// session: a PASV that is used, an unsolicited SYN, a retransmitted data
// SYN, and a second PASV whose data connection comes too late.
func session() []timed {
	c, s := netip.AddrPortFrom(cli4, 40000), netip.AddrPortFrom(srv4, 21)
	pasv := "PASV\r\n"
	r1 := "227 Entering Passive Mode (198,51,100,2,117,48).\r\n"
	r2 := "227 Entering Passive Mode (198,51,100,2,117,49).\r\n"
	data := netip.AddrPortFrom(srv4, 30000)
	late := netip.AddrPortFrom(srv4, 30001)
	return []timed{
		seg(0, c, s, 100, packet.SYN, ""),
		seg(time.Millisecond, s, c, 500, packet.SYN|packet.ACK, ""),
		seg(2*time.Millisecond, c, s, 101, packet.ACK|packet.PSH, pasv),
		seg(3*time.Millisecond, s, c, 501, packet.ACK|packet.PSH, r1),
		seg(4*time.Millisecond, netip.AddrPortFrom(cli4, 50000), data, 1, packet.SYN, ""),
		seg(5*time.Millisecond, netip.AddrPortFrom(cli4, 50000), data, 1, packet.SYN, ""),
		seg(6*time.Millisecond, netip.AddrPortFrom(cli4, 50001), netip.AddrPortFrom(srv4, 31337), 1, packet.SYN, ""),
		seg(7*time.Millisecond, c, s, 101+uint32(len(pasv)), packet.ACK|packet.PSH, pasv),
		seg(8*time.Millisecond, s, c, 501+uint32(len(r1)), packet.ACK|packet.PSH, r2),
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
		switch lt {
		case layers.LinkTypeLinuxSLL:
			h := make([]byte, 16)
			binary.BigEndian.PutUint16(h[2:], 1) // ARPHRD_ETHER
			binary.BigEndian.PutUint16(h[14:], binary.BigEndian.Uint16(data[12:14]))
			data = append(h, data[14:]...)
		case layers.LinkTypeRaw:
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
	Expectations []struct {
		Kind  string `json:"kind"`
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
			if got.Packets != 10 || len(got.Expectations) != 2 || len(got.Connections) != 5 {
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
		for _, want := range []string{"10 packets replayed", "consumed", "no-expectation", "syn_pass_expected"} {
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
		frames = append(frames, timed{time.Duration(n) * time.Millisecond, f})
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
