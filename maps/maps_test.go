package maps

import (
	"encoding/json"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/ftpgate/ftpgate/bpf"
)

func TestAddrWordsRoundTrip(t *testing.T) {
	for _, s := range []string{"192.0.2.1", "0.0.0.0", "255.255.255.255", "2001:db8::1", "::", "::ffff:192.0.2.1"} {
		a := netip.MustParseAddr(s)
		fam, w := Words(a)
		if got := Addr(fam, w); got != a {
			t.Errorf("%s -> %v -> %s", a, w, got)
		}
	}
}

// TestKindJSON: the names come from the C enum kind through BTF; the ones
// listings print never change.
func TestKindJSON(t *testing.T) {
	for k, want := range map[Kind]string{0: "none", KindPort: "port", KindEprt: "eprt", KindPasv: "pasv", KindEpsv: "epsv", 200: "none"} {
		if k.String() != want {
			t.Errorf("Kind(%d) = %q, want %q", k, k.String(), want)
		}
	}
	for _, k := range []Kind{KindPort, KindEprt, KindPasv, KindEpsv} {
		b, err := json.Marshal(k)
		if err != nil {
			t.Fatal(err)
		}
		var back Kind
		if err := json.Unmarshal(b, &back); err != nil || back != k {
			t.Errorf("%s: %s -> %v %v", k, b, back, err)
		}
	}
	var k Kind
	if err := json.Unmarshal([]byte(`"bogus"`), &k); err == nil {
		t.Error("unknown kind accepted")
	}
}

// TestCounterNames: the names come from the C enum through BTF; the ones
// the project promised never change.
func TestCounterNames(t *testing.T) {
	names, err := CounterNames()
	if err != nil {
		t.Fatal(err)
	}
	stable := []string{"ctrl_segments", "cmd_port", "cmd_eprt", "cmd_pasv", "cmd_epsv", "reply_227", "reply_229",
		"expect_created", "expect_consumed", "expect_evicted", "expect_expired", "expect_closed", "reject_bounce",
		"reject_low_port", "reject_unpaired", "reject_malformed", "reject_overlong", "reject_family",
		"reply_addr_mismatch", "line_reassembled", "parse_resync", "scan_limit", "syn_pass_allowed",
		"syn_pass_expected", "syn_pass_retransmit", "syn_drop_unexpected", "syn_dryrun_would_drop", "drop_unparsed"}
	if !slices.Equal(names[:len(stable)], stable) {
		t.Fatalf("the first counters moved or were renamed:\n got  %v\n want %v", names[:len(stable)], stable)
	}
	seen := map[string]bool{}
	for i, n := range names {
		if n == "" || seen[n] {
			t.Errorf("counter %d: %q empty or repeated", i, n)
		}
		seen[n] = true
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []Config{
		{ExpectTimeout: 0, MaxExpectPerConn: 1},
		{ExpectTimeout: time.Second, MaxExpectPerConn: 0},
		{ExpectTimeout: time.Second, MaxExpectPerConn: MaxExpectPerConn + 1},
	} {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	for p, ok := range map[int]bool{0: false, 1: true, 21: true, 65535: true, 65536: false, -1: false} {
		if (ValidPort(p) == nil) != ok {
			t.Errorf("ValidPort(%d) wrong", p)
		}
	}
}

// TestTable: the table names maps the object has, and its sized tables are
// exactly the object's hash maps but the guarded interfaces and the declared
// TLS ranges (operator settings, not connections) and hold_pending (a fixed
// LRU of held segments that run empties, #15), so TableSizes and the ager
// cover them all.
func TestTable(t *testing.T) {
	spec, err := bpf.LoadFtpgate()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range Names {
		if spec.Maps[name] == nil {
			t.Errorf("table names %s, which the object does not have", name)
		}
	}
	var hashes []string
	for name, ms := range spec.Maps {
		if (ms.Type == ebpf.LRUHash || ms.Type == ebpf.Hash) && name != NameGuardedIfs && name != NameTLSRanges && name != NameHoldPending {
			hashes = append(hashes, name)
		}
	}
	if !slices.Equal(slices.Sorted(slices.Values(hashes)), slices.Sorted(slices.Values(SizedTables))) {
		t.Errorf("SizedTables %v, the object's hash maps %v", SizedTables, hashes)
	}
	m := FromObjects(&bpf.FtpgateMaps{Config: &ebpf.Map{}})
	if m.ByName(NameConfig) == nil || m.ByName(NameStats) != nil {
		t.Error("FromObjects does not match the generated struct by pinned name")
	}
}
