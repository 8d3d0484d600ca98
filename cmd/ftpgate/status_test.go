package main

import (
	"strings"
	"testing"
)

func TestStatus(t *testing.T) {
	f := newFixture(t)
	r := f.cmd([]string{"status"})
	if r.code != 0 {
		t.Fatalf("status exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"fc0", "fc1", "generic", "ftpgate_xdp", "ftpgate_tc_ingress", "expectations", "[21 22]"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, r.stdout)
		}
	}
	var st struct {
		Attached bool `json:"attached"`
		Ifaces   []struct {
			Name        string `json:"name"`
			XDPMode     string `json:"xdp_mode"`
			TCMode      string `json:"tc_mode"`
			XDPAttached bool   `json:"xdp_attached"`
		} `json:"ifaces"`
		Programs []struct {
			ID uint32 `json:"id"`
		} `json:"programs"`
	}
	if f.jsonOf(t, &st, "status"); !st.Attached || len(st.Ifaces) != 2 || len(st.Programs) != 3 {
		t.Fatalf("status --json: %+v", st)
	}

	// after detach: non-zero and one line
	f.dp.Close()
	if r := f.cmd([]string{"detach"}); r.code != 0 {
		t.Fatalf("detach: %s", r.stderr)
	}
	oneLine(t, f.cmd([]string{"status"}))
}
