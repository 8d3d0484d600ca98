package nettest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/ftpgate/ftpgate/internal/bpftest"
)

func TestParseKmsg(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    KmsgRecord
		ok      bool
		trouble bool
	}{
		{"6,1234,5678,-;veth0: link up\n", KmsgRecord{1234, 6, "veth0: link up"}, true, false},
		// facility 3 (daemon) << 3 | warning
		{"28,7,9,-;something warned\n SUBSYSTEM=net\n", KmsgRecord{7, 4, "something warned"}, true, true},
		{"4,8,9,c;netlink: 'x': attribute type 3 has an invalid length.\n", KmsgRecord{8, 4, "netlink: 'x': attribute type 3 has an invalid length."}, true, true},
		{"6,9,9,-;------------[ cut here ]------------ WARNING: at net/x.c:1\n", KmsgRecord{9, 6, "------------[ cut here ]------------ WARNING: at net/x.c:1"}, true, true},
		{"6,10,9,-;kernel BUG at mm/slub.c:1\n", KmsgRecord{10, 6, "kernel BUG at mm/slub.c:1"}, true, true},
		{"no header", KmsgRecord{}, false, false},
		{"x,1,2,-;text", KmsgRecord{}, false, false},
	} {
		got, ok := parseKmsg(tc.in)
		if ok != tc.ok || got != tc.want || (ok && got.trouble() != tc.trouble) {
			t.Errorf("parseKmsg(%q) = %+v, %v (trouble %v); want %+v, %v (trouble %v)", tc.in, got, ok, got.trouble(), tc.want, tc.ok, tc.trouble)
		}
	}
}

// TestKmsgReadsNewRecords writes an informational record (no warning, so
// that nothing else watching the log takes it for one) and finds it after
// the mark, and only after it.
func TestKmsgReadsNewRecords(t *testing.T) {
	if os.Geteuid() != 0 {
		bpftest.SkipOrFail(t, "/dev/kmsg needs root")
	}
	seq, err := KmsgLast()
	if err != nil {
		t.Fatal(err)
	}
	text := fmt.Sprintf("ftpgate nettest: kmsg probe %d", rand.Uint64())
	if err := os.WriteFile("/dev/kmsg", []byte("<6>"+text+"\n"), 0); err != nil {
		t.Fatal(err)
	}
	recs, err := Kmsg(seq)
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, r := range recs {
		if r.Seq <= seq {
			t.Errorf("record %d is not after %d", r.Seq, seq)
		}
		if r.Text == text && r.Level == 6 {
			found++
		}
	}
	if found != 1 {
		t.Errorf("the probe is %d times in %+v", found, recs)
	}
	if w, err := KernelWarnings(seq); err != nil || containsText(w, text) {
		t.Errorf("KernelWarnings = %q, %v; an informational record is no warning", w, err)
	}
}

func containsText(lines []string, text string) bool {
	for _, l := range lines {
		if l == "<6> "+text {
			return true
		}
	}
	return false
}
