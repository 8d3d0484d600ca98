package main

import (
	"strings"
	"testing"
)

func TestStats(t *testing.T) {
	f := newFixture(t)
	var v struct {
		Counters map[string]uint64 `json:"counters"`
	}
	f.jsonOf(t, &v, "stats")
	// the names the issue fixed are all there
	for _, name := range []string{"ctrl_segments", "cmd_port", "cmd_eprt", "cmd_pasv", "cmd_epsv", "reply_227", "reply_229",
		"expect_created", "expect_consumed", "expect_evicted", "expect_expired", "expect_closed", "reject_bounce",
		"reject_low_port", "reject_unpaired", "reject_malformed", "reject_overlong", "reject_family",
		"reply_addr_mismatch", "line_reassembled", "parse_resync", "scan_limit", "syn_pass_allowed",
		"syn_pass_expected", "syn_pass_retransmit", "syn_drop_unexpected", "syn_dryrun_would_drop", "drop_unparsed"} {
		if _, ok := v.Counters[name]; !ok {
			t.Errorf("counter %q missing", name)
		}
	}
	r := f.cmd([]string{"stats"}, "--all")
	if !strings.Contains(r.stdout, "syn_drop_unexpected") {
		t.Fatalf("stats --all:\n%s", r.stdout)
	}
}
