package main

import (
	"strings"
	"testing"

	"github.com/ftpgate/ftpgate/bpf"
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
