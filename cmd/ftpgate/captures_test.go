package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/ftpgate/ftpgate/internal/bpftest"
)

// Public captures of real FTP sessions: nDPI's test captures, taken from
// Debian's ndpi source package by scripts/public-captures.sh into
// .cache/captures (third-party data, LGPL-3.0-or-later: never committed).
const (
	capturesDir    = "../../.cache/captures"
	capturesScript = "../../scripts/public-captures.sh"
	// installEnv lets a test fetch what it needs (as tests/lab does)
	installEnv = "FTPGATE_INSTALL"
)

// publicCaptures returns the directory holding the public captures,
// fetching them first when FTPGATE_INSTALL=1 (make test sets it). Without
// them the test skips, or fails under FTPGATE_REQUIRE_BPF=1 (make test, CI).
func publicCaptures(t *testing.T) string {
	t.Helper()
	if exec.Command(capturesScript, "--check").Run() == nil {
		return capturesDir
	}
	if os.Getenv(installEnv) != "1" {
		bpftest.SkipOrFail(t, "public captures not in .cache/captures: run scripts/public-captures.sh (or set %s=1)", installEnv)
	}
	out, err := exec.Command(capturesScript).CombinedOutput()
	if err != nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		bpftest.SkipOrFail(t, "public captures could not be fetched (%v, %s): make a Debian mirror reachable through /etc/apt/sources.list.d/*.sources and run scripts/public-captures.sh",
			err, lines[len(lines)-1])
	}
	return capturesDir
}

// outcome lists a replay's expectations as "kind src -> dst:port fate" and
// its connection attempts as "dport verdict reason".
func outcome(got replayJSON) (exps, conns []string) {
	for _, e := range got.Expectations {
		exps = append(exps, fmt.Sprintf("%s %s -> %s:%d %s", e.Kind, e.Src, e.Dst, e.DPort, e.Fate))
	}
	for _, c := range got.Connections {
		conns = append(conns, fmt.Sprintf("%d %s %s", c.DPort, c.Verdict, c.Reason))
	}
	return exps, conns
}

// TestReplayPublicCaptures replays real sessions recorded elsewhere, with
// other servers, clients and stacks than the lab's, whole and from points in
// the middle: the expectations a gateway owes them must come out.
func TestReplayPublicCaptures(t *testing.T) {
	if os.Geteuid() != 0 {
		bpftest.SkipOrFail(t, "replay loads BPF programs: needs root")
	}
	dir := publicCaptures(t)
	for _, c := range []struct {
		name, file string
		flags      []string
		exps       []string
		conns      []string
	}{
		// NcFTP (192.168.1.212, behind a NAT) and vsFTPd 3.0.3 (90.130.70.73),
		// from the handshake to QUIT: LIST and RETR each after a PASV whose
		// 227 names the control connection's server address, (…,100,85) and
		// (…,95,203). Guarding the server's side, the client's data SYNs
		// come in and consume them.
		{"vsftpd session", "ftp.pcap", []string{"--local", "90.130.70.73/32"},
			[]string{
				"pasv 192.168.1.212 -> 90.130.70.73:25685 consumed",
				"pasv 192.168.1.212 -> 90.130.70.73:24523 consumed",
			},
			[]string{"21 pass allowed-port", "25685 pass expected", "24523 pass expected"}},
		// IPv6: USER and SYST refused with 530, QUIT; nothing negotiated
		{"refused login over IPv6", "ftp_failed.pcap", []string{"--local", "2a00:800:1010::1/128"},
			nil, []string{"21 pass allowed-port"}},
		// AUTH TLS, 234, a TLS session (the login inside it), then PASV and
		// a 227 (10,220,50,76,64,155) in clear after the TLS close_notify,
		// every segment twice (a mirror port). Neither is at a line start
		// in its byte stream: the TLS records before them end in no line
		// feed, so "PASV" and "227" are the ends of long binary lines; the
		// kernel's helper, which parses only after a line feed, makes no
		// expectation either.
		{"AUTH TLS then clear PASV", "ftp-start-tls.pcap", []string{"--local", "10.220.50.76/32"},
			nil, []string{"21 pass allowed-port"}},
		// a ProFTPD session with bytes overwritten at random: addresses,
		// ports and payload corrupted, 11 of its 12 streams on port 21 begin
		// without a handshake, the 227 answering the PASV is 0xaa bytes; the
		// client's data SYN to 58999 has nothing to match. Other SYNs (SMB
		// ports, a corrupted 170.170.170.170) are dropped as unsolicited.
		{"corrupted proftpd session", "fuzz-2006-06-26-2594.pcap", nil,
			nil, []string{
				"445 drop no-expectation", "139 drop no-expectation", "139 drop no-expectation",
				"445 drop no-expectation", "139 drop no-expectation", "445 drop no-expectation",
				"21 pass allowed-port", "43690 drop no-expectation", "58999 drop no-expectation",
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := replayJSONOf(t, filepath.Join(dir, c.file), c.flags...)
			exps, conns := outcome(got)
			if !slices.Equal(exps, c.exps) || !slices.Equal(conns, c.conns) {
				t.Errorf("expectations %q\nwant %q\nconnections %q\nwant %q", exps, c.exps, conns, c.conns)
			}
		})
	}

	// ftp.pcap picked up mid-stream, as by a gateway started during the
	// session: the capture begins at the first control segment whose payload
	// starts with from, less its first cut bytes. What the session negotiates
	// after the two directions were seen agreeing and after a reply line
	// from the server must come out; a 227 whose PASV was not seen must not.
	const second = "pasv 192.168.1.212 -> 90.130.70.73:24523 consumed"
	for _, c := range []struct {
		name, from string
		cut        int
		exps       []string
		conns      []string
		// maybe: the data port of an expectation that may come out or not,
		// with its data connection: a PASV in the capture's first segment,
		// before anything from the server (today's parser makes none: a
		// pickup starts at the next line start)
		maybe int
	}{
		{"at the first PASV", "PASV", 0, []string{second}, []string{"24523 pass expected"}, 25685},
		{"at the 227 to the first PASV", "227 Entering Passive Mode (90,130,70,73,100,85)", 0,
			[]string{second}, []string{"25685 drop no-expectation", "24523 pass expected"}, 0},
		{"between the transfers, client first", "TYPE I", 0, []string{second}, []string{"24523 pass expected"}, 0},
		{"between the transfers, server first", "200 Switching to Binary mode", 0,
			[]string{second}, []string{"24523 pass expected"}, 0},
		// the capture starts with "48576\r\n", the end of a line
		{"mid-line, in the reply to SIZE", "213 1048576", 6, []string{second}, []string{"24523 pass expected"}, 0},
	} {
		t.Run("ftp.pcap picked up "+c.name, func(t *testing.T) {
			path := pickUp(t, filepath.Join(dir, "ftp.pcap"), c.from, c.cut)
			got := replayJSONOf(t, path, "--local", "90.130.70.73/32")
			exps, conns := outcome(got)
			if c.maybe != 0 {
				port := strconv.Itoa(c.maybe)
				exps = slices.DeleteFunc(exps, func(e string) bool { return strings.Contains(e, ":"+port+" ") })
				conns = slices.DeleteFunc(conns, func(k string) bool { return strings.HasPrefix(k, port+" ") })
			}
			if !slices.Equal(exps, c.exps) || !slices.Equal(conns, c.conns) {
				t.Errorf("expectations %q\nwant %q\nconnections %q\nwant %q", exps, c.exps, conns, c.conns)
			}
		})
	}
}

// pickUp writes the capture at src from its first control segment (port
// 21) whose payload starts with from, that segment less its first cut bytes (a
// capture that starts mid-line), into a temporary file.
func pickUp(t *testing.T, src, from string, cut int) string {
	t.Helper()
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(r.Snaplen(), r.LinkType()); err != nil {
		t.Fatal(err)
	}
	started := false
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !started {
			p := gopacket.NewPacket(data, r.LinkType(), gopacket.Default)
			tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
			if !ok || (tcp.SrcPort != 21 && tcp.DstPort != 21) || !bytes.HasPrefix(tcp.Payload, []byte(from)) {
				continue
			}
			started = true
			if cut > 0 {
				data = trimSegment(t, p, cut)
				ci.CaptureLength, ci.Length = len(data), len(data)
			}
		}
		if err := w.WritePacket(ci, data); err != nil {
			t.Fatal(err)
		}
	}
	if !started {
		t.Fatalf("no segment of %s starts with %q", src, from)
	}
	path := filepath.Join(t.TempDir(), "picked-up.pcap")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// trimSegment returns the IPv4 TCP segment p without the first n bytes of
// its payload: as the rest of the segment, sent on its own.
func trimSegment(t *testing.T, p gopacket.Packet, n int) []byte {
	t.Helper()
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if eth == nil || ip == nil || tcp == nil || len(tcp.Payload) <= n {
		t.Fatalf("cannot cut %d bytes off %v", n, p)
	}
	payload := tcp.Payload[n:]
	tcp.Seq += uint32(n)
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	out := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(out, opts, eth, ip, tcp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
