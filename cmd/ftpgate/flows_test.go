package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/bpf"
	"github.com/ftpgate/ftpgate/internal/nettest"
	"github.com/ftpgate/ftpgate/maps"
)

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
	cv.Dir[0].Ftp.Cmd[0], cv.Dir[0].Ftp.Queued = uint8(maps.KindPasv), 1
	if err := f.dp.Maps.CtrlConns.Put(ctrlKey(cli4, srv4), cv); err != nil {
		t.Fatal(err)
	}

	var flows []maps.Flow
	if f.jsonOf(t, &flows, "flows"); len(flows) != 1 {
		t.Fatalf("flows --json: %+v", flows)
	}
	if fl := flows[0]; fl.SPort != 50000 || fl.Packets != 7 || fl.Bytes != 7000 || fl.Src != cli4 {
		t.Fatalf("flow %+v", fl)
	}
	if r := f.cmd([]string{"flows"}); !strings.Contains(r.stdout, "192.0.2.2:50000") {
		t.Fatalf("flows:\n%s", r.stdout)
	}

	r := f.cmd([]string{"ctrl"})
	if !strings.Contains(r.stdout, "192.0.2.2:40000") || !strings.Contains(r.stdout, "5/6") || !strings.Contains(r.stdout, "pasv") {
		t.Fatalf("ctrl:\n%s", r.stdout)
	}
}

// TestListingsShowInsideEnd: with NAT, expectations and flows show the
// inside end beside the public one, in the table and in JSON; without it,
// nothing more than before.
func TestListingsShowInsideEnd(t *testing.T) {
	f := newFixture(t)
	public := nettest.GwClientV4.Addr()
	inside := netip.AddrPortFrom(srv4, 5000)
	if err := f.dp.Maps.AddExpectation(maps.Expectation{Kind: maps.KindPasv, Src: cli4, Dst: public, DPort: 30000, Inside: inside}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := f.dp.Maps.AddExpectation(maps.Expectation{Kind: maps.KindPasv, Src: cli4, Dst: public, DPort: 30001}, time.Minute); err != nil {
		t.Fatal(err)
	}
	fam, src := maps.Words(cli4)
	_, dst := maps.Words(public)
	now, _ := f.dp.Maps.Now()
	fk := bpf.FtpgateFlowKey{Family: fam, Sport: 50000, Dport: 30002, Src: src, Dst: dst}
	fv := bpf.FtpgateFlowVal{CreatedNs: now, LastSeenNs: now, Kind: uint8(maps.KindPasv), Nat: maps.NATTarget(inside)}
	if err := f.dp.Maps.DataFlows.Put(fk, fv); err != nil {
		t.Fatal(err)
	}

	var exps []map[string]any
	f.jsonOf(t, &exps, "expectations")
	insides := map[float64]any{}
	for _, e := range exps {
		insides[e["dport"].(float64)] = e["inside"]
	}
	if len(exps) != 2 || insides[30000] != "198.51.100.2:5000" || insides[30001] != nil {
		t.Fatalf("expectations --json: %v", exps)
	}
	var flows []maps.Flow
	if f.jsonOf(t, &flows, "flows"); len(flows) != 1 || flows[0].Inside != inside {
		t.Fatalf("flows --json: %+v", flows)
	}
	r := f.cmd([]string{"expectations"})
	if !strings.Contains(r.stdout, "192.0.2.1:30000 (inside 198.51.100.2:5000)") || strings.Contains(r.stdout, "30001 (inside") {
		t.Fatalf("expectations:\n%s", r.stdout)
	}
	if r := f.cmd([]string{"flows"}); !strings.Contains(r.stdout, "192.0.2.1:30002 (inside 198.51.100.2:5000)") {
		t.Fatalf("flows:\n%s", r.stdout)
	}
}
