package grouplab

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestSymmetricHash: with one seed and one nexthop order on both routers,
// the L4 hash picks the same gateway for both directions of a flow (what
// `ip route get` says each router would do).
func TestSymmetricHash(t *testing.T) {
	if os.Getenv("FTPGATE_GROUPLAB") == "" {
		t.Skip("part of the group lab: make grouplab (FTPGATE_GROUPLAB=1)")
	}
	l := New(t)
	via := func(ns string, args ...string) string {
		out, err := exec.Command("ip", append([]string{"-n", ns, "route", "get"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip route get %v: %v %s", args, err, out)
		}
		f := strings.Fields(string(out))
		for i, w := range f {
			if w == "dev" {
				return f[i+1]
			}
		}
		return string(out)
	}
	same, spread := 0, map[string]int{}
	for p := 20000; p < 20060; p++ {
		fwd := via(l.RtC, "198.51.100.2", "from", "192.0.2.2", "iif", "r0", "ipproto", "tcp", "sport", strconv.Itoa(p), "dport", "21")
		back := via(l.RtS, "192.0.2.2", "from", "198.51.100.2", "iif", "r0", "ipproto", "tcp", "sport", "21", "dport", strconv.Itoa(p))
		spread[fwd]++
		if fwd == back {
			same++
		}
	}
	t.Logf("%d of 60 flows take one gateway both ways; forward spread %v", same, spread)
	if same != 60 || len(spread) != Gateways {
		t.Fatalf("asymmetric or unspread hashing")
	}
}
