package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/tests/lab"
	"github.com/ftpgate/ftpgate/tests/natlab"
)

// #12: a NATed 200 MiB transfer through the NAT lab's gateway
// (tests/natlab), ftpgate run --nat against the kernel's helper
// (nf_conntrack_ftp + nf_nat_ftp), the same sessions in both.

const natLabRounds = 15 // a 200 MiB transfer lasts about 0.15-0.5 s here: single ones vary by ±30 %

// natXfer is one NATed session: a download by curl from host of
// FileName at server.
type natXfer struct {
	name   string
	host   string
	server netip.AddrPort
	args   []string // curl's data-connection options
}

var natXfers = []natXfer{
	{name: "download PASV from a published inside server (outside -> 198.51.100.1:21 -> S1, curl trusting the 227 address)",
		host: natlab.HostOutside, server: netip.AddrPortFrom(natlab.Public, natlab.FTPPort),
		args: []string{"--ftp-pasv", "--disable-epsv", "--no-ftp-skip-pasv-ip"}},
	{name: "download PORT by an inside client (192.0.2.2 behind masquerade -> O1)",
		host: natlab.HostInShort, server: netip.AddrPortFrom(natlab.O1Addr, natlab.FTPPort),
		args: []string{"--ftp-port", "-", "--disable-eprt"}},
}

func BenchmarkNATLab(b *testing.B) {
	needRoot(b)
	if !onlyOnce(b, "nat-lab") {
		return
	}
	lab.Require(b)
	bin := builtFtpgate(b)
	// the labs keep their servers' files in the test's temporary
	// directory: on tmpfs, as BenchmarkLab's, so that writing 1.2 GB of
	// them is not a wait for the disk
	b.Setenv("TMPDIR", "/dev/shm")
	modes := []natlab.Mode{natlab.Kernel, natlab.FtpgateNAT}
	labs := make([]*natlab.Lab, len(modes))
	for i, m := range modes {
		t0 := time.Now()
		labs[i] = natlab.New(b, natlab.Options{Mode: m, Ftpgate: bin, FileSize: labFileSize})
		b.Logf("%s lab built in %.1f s", m, time.Since(t0).Seconds())
	}
	ctx := context.Background()
	invalid0 := make([]uint64, len(labs))
	for i, l := range labs {
		var err error
		if invalid0[i], err = l.Invalid(ctx); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		// one transfer of each kind first, untimed, its file checked: the
		// rounds then only count bytes
		for _, x := range natXfers {
			if err := natVerify(ctx, l, x); err != nil {
				b.Fatalf("%s, %s: %v", modes[i], x.name, err)
			}
		}
		b.Logf("%s lab: checked transfers in %.1f s", modes[i], time.Since(t0).Seconds())
	}
	// bytes/s per mode, transfer and round
	tp := make([][][]float64, len(modes))
	for i := range tp {
		tp[i] = make([][]float64, len(natXfers))
	}
	for round := range natLabRounds {
		for xi, x := range natXfers {
			for _, mi := range rotated(round, len(modes)) {
				bps, err := natTransfer(ctx, labs[mi], x)
				if err != nil {
					b.Fatalf("%s, %s, round %d: %v", modes[mi], x.name, round, err)
				}
				tp[mi][xi] = append(tp[mi][xi], bps)
			}
		}
	}
	for i, l := range labs {
		inv, err := l.Invalid(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if inv != invalid0[i] {
			b.Fatalf("%s: conntrack counted %d INVALID packets during the transfers", modes[i], inv-invalid0[i])
		}
	}
	// every data connection of ftpgate's lab went through a conntrack
	// entry it made: one per transfer, the untimed ones included
	c, err := labs[1].Gate.Counters()
	if err != nil {
		b.Fatal(err)
	}
	sessions := uint64(len(natXfers) * (natLabRounds + 1))
	if c["nat_ct_inserted"] != sessions || c["nat_rewrite"] != sessions {
		b.Fatalf("ftpgate --nat: nat_ct_inserted %d, nat_rewrite %d after %d sessions: not every transfer took the NAT path",
			c["nat_ct_inserted"], c["nat_rewrite"], sessions)
	}

	const mib = 1 << 20
	for xi, x := range natXfers {
		for mi, m := range modes {
			addRow(Row{Section: "nat throughput", Case: fmt.Sprintf("%s / %s", x.name, natModeName(m)), Value: median(tp[mi][xi]) / mib,
				Unit: "MiB/s", Note: "rounds: " + fmtList(tp[mi][xi], mib)})
		}
		row := Row{Section: "nat throughput", Case: fmt.Sprintf("%s / %s", x.name, natModeName(natlab.FtpgateNAT)),
			Value: median(tp[1][xi]) / mib, Unit: "MiB/s", Baseline: natModeName(natlab.Kernel), BaseValue: median(tp[0][xi]) / mib,
			Ratio: medianRatio(tp[1][xi], tp[0][xi])}
		atLeast(1.0).apply(&row)
		addRow(row)
	}
	addNote("nat throughput", "tests/natlab's gateway (masquerade for 192.0.2.0/24, DNAT of 198.51.100.1:21 to S1, forward policy drop with `ct state invalid` counted and dropped), one lab per mode, both built before the rounds: the kernel's helper (`ct helper` for ports 21 and 2121; nf_nat_ftp) and ftpgate run --nat --fwmark %s on wan0 (XDP mode auto: generic on veth); vsftpd, a %d MiB random file on each server (in the lab's temporary directory)", natlab.Fwmark, labFileSize>>20)
	addNote("nat throughput", "curl -o /dev/null, speed_download, size checked; one untimed transfer of each kind per lab first, its sha256 checked; %d rounds, each transfer in both labs in a rotated order; ratio = median over rounds of the per-round ratio; conntrack's INVALID counter did not move in either lab; in ftpgate's lab nat_rewrite and nat_ct_inserted moved once per transfer (%d)", natLabRounds, sessions)
}

func natModeName(m natlab.Mode) string {
	if m == natlab.Kernel {
		return "kernel helper (nf_nat_ftp)"
	}
	return "ftpgate --nat"
}

// natCurl runs curl for x in lab l, writing the file to out, and returns
// what -w printed (speed_download size_download).
func natCurl(ctx context.Context, l *natlab.Lab, x natXfer, out string) (speed, size float64, err error) {
	args := []string{"netns", "exec", l.NS(x.host), "curl", "-sS", "-g", "--max-time", "120"}
	args = append(args, x.args...)
	url := fmt.Sprintf("ftp://%s/%s", x.server, natlab.FileName)
	args = append(args, "-o", out, "-w", "%{speed_download} %{size_download}", url)
	cmd := exec.CommandContext(ctx, "ip", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return 0, 0, fmt.Errorf("curl: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	f := strings.Fields(stdout.String())
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("curl output %q", stdout.String())
	}
	speed, _ = strconv.ParseFloat(f[0], 64)
	size, _ = strconv.ParseFloat(f[1], 64)
	return speed, size, nil
}

// natTransfer runs one timed transfer and returns bytes/s.
func natTransfer(ctx context.Context, l *natlab.Lab, x natXfer) (float64, error) {
	speed, size, err := natCurl(ctx, l, x, "/dev/null")
	if err != nil {
		return 0, err
	}
	if int(size) != labFileSize {
		return 0, fmt.Errorf("transferred %v bytes, want %d", size, labFileSize)
	}
	return speed, nil
}

// natVerify runs one transfer into a file and checks it against the
// server's: the session really reached the backend it names.
func natVerify(ctx context.Context, l *natlab.Lab, x natXfer) error {
	out := filepath.Join(l.Dir, "verify.bin")
	defer os.Remove(out)
	if _, _, err := natCurl(ctx, l, x, out); err != nil {
		return err
	}
	f, err := os.Open(out)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	want := l.Backends["S1"].FileSHA256
	if x.server.Addr() == natlab.O1Addr {
		want = l.Backends["O1"].FileSHA256
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("downloaded file's sha256 %s, the server's %s", got, want)
	}
	return nil
}
