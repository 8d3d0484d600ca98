package main

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/bpf"
	"github.com/ftpgate/ftpgate/maps"
)

var (
	cli4 = netip.MustParseAddr("192.0.2.2")
	srv4 = netip.MustParseAddr("198.51.100.2")
	cli6 = netip.MustParseAddr("2001:db8:1::2")
	srv6 = netip.MustParseAddr("2001:db8:2::2")
)

func ctrlKey(client, server netip.Addr) bpf.FtpgateCtrlKey {
	return maps.Control{Client: client, ClientPort: 40000, Server: server, ServerPort: 21}.Key()
}

func TestExpectations(t *testing.T) {
	f := newFixture(t)
	now, err := f.dp.Maps.Now()
	if err != nil {
		t.Fatal(err)
	}
	fam, src := maps.Words(cli6)
	_, dst := maps.Words(srv6)
	k := bpf.FtpgateExpectKey{Family: fam, Dport: 30000, Src: src, Dst: dst}
	v := bpf.FtpgateExpectVal{ExpiresNs: now + uint64(time.Minute), Kind: uint8(maps.KindEpsv), Ctrl: ctrlKey(cli6, srv6)}
	if err := f.dp.Maps.Expectations.Put(k, v); err != nil {
		t.Fatal(err)
	}
	// an expired entry the ager has not reclaimed is not listed
	k2 := k
	k2.Dport = 30001
	v.ExpiresNs = now - 1
	if err := f.dp.Maps.Expectations.Put(k2, v); err != nil {
		t.Fatal(err)
	}

	r := f.cmd([]string{"expectations"}, "--json")
	var list []struct {
		Kind      string `json:"kind"`
		Src, Dst  string
		DPort     int   `json:"dport"`
		ExpiresMs int64 `json:"expires_in_ms"`
		Control   struct {
			Client     string `json:"client"`
			ClientPort int    `json:"client_port"`
			Server     string `json:"server"`
			ServerPort int    `json:"server_port"`
		} `json:"control"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 1 {
		t.Fatalf("expectations --json: %v\n%s%s", err, r.stdout, r.stderr)
	}
	e := list[0]
	if e.Kind != "epsv" || e.Src != "2001:db8:1::2" || e.Dst != "2001:db8:2::2" || e.DPort != 30000 ||
		e.ExpiresMs <= 0 || e.ExpiresMs > 60000 || e.Control.ClientPort != 40000 || e.Control.Server != "2001:db8:2::2" {
		t.Fatalf("expectation %+v", e)
	}
	r = f.cmd([]string{"expectations"})
	if !strings.Contains(r.stdout, "[2001:db8:2::2]:30000") || strings.Contains(r.stdout, "30001") {
		t.Fatalf("expectations:\n%s", r.stdout)
	}
}

func TestFlowsAndCtrl(t *testing.T) {
	f := newFixture(t)
	fam, src := maps.Words(cli4)
	_, dst := maps.Words(srv4)
	now, _ := f.dp.Maps.Now()
	fk := bpf.FtpgateFlowKey{Family: fam, Sport: 50000, Dport: 30000, Src: src, Dst: dst}
	fv := bpf.FtpgateFlowVal{CreatedNs: now, LastSeenNs: now, Packets: 7, Bytes: 7000, Kind: uint8(maps.KindPasv), Ctrl: ctrlKey(cli4, srv4)}
	if err := f.dp.Maps.DataFlows.Put(fk, fv); err != nil {
		t.Fatal(err)
	}
	var cv bpf.FtpgateCtrlVal
	cv.CreatedNs = now
	cv.Dir[0].Lines, cv.Dir[1].Lines = 5, 6
	cv.Dir[0].PasvKind, cv.Dir[0].PasvGen = uint8(maps.KindPasv), 1
	if err := f.dp.Maps.CtrlConns.Put(ctrlKey(cli4, srv4), cv); err != nil {
		t.Fatal(err)
	}

	r := f.cmd([]string{"flows"}, "--json")
	var flows []maps.Flow
	if err := json.Unmarshal([]byte(r.stdout), &flows); err != nil || len(flows) != 1 {
		t.Fatalf("flows --json: %v\n%s", err, r.stdout)
	}
	if fl := flows[0]; fl.SPort != 50000 || fl.Packets != 7 || fl.Bytes != 7000 || fl.Src != cli4 {
		t.Fatalf("flow %+v", fl)
	}
	if r := f.cmd([]string{"flows"}); !strings.Contains(r.stdout, "192.0.2.2:50000") {
		t.Fatalf("flows:\n%s", r.stdout)
	}

	r = f.cmd([]string{"ctrl"})
	if !strings.Contains(r.stdout, "192.0.2.2:40000") || !strings.Contains(r.stdout, "5/6") || !strings.Contains(r.stdout, "pasv") {
		t.Fatalf("ctrl:\n%s", r.stdout)
	}
}

func TestStats(t *testing.T) {
	f := newFixture(t)
	r := f.cmd([]string{"stats"}, "--json")
	var v struct {
		Counters map[string]uint64 `json:"counters"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("stats --json: %v\n%s", err, r.stdout)
	}
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
	r = f.cmd([]string{"stats"}, "--all")
	if !strings.Contains(r.stdout, "syn_drop_unexpected") {
		t.Fatalf("stats --all:\n%s", r.stdout)
	}
}
