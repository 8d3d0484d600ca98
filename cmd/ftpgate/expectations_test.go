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

// the lab's addresses, also for the synthetic packets
var (
	cli4 = nettest.ClientV4.Addr()
	srv4 = nettest.ServerV4.Addr()
	cli6 = nettest.ClientV6.Addr()
	srv6 = nettest.ServerV6.Addr()
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
	if f.jsonOf(t, &list, "expectations"); len(list) != 1 {
		t.Fatalf("expectations --json: %+v", list)
	}
	e := list[0]
	if e.Kind != "epsv" || e.Src != "2001:db8:1::2" || e.Dst != "2001:db8:2::2" || e.DPort != 30000 ||
		e.ExpiresMs <= 0 || e.ExpiresMs > 60000 || e.Control.ClientPort != 40000 || e.Control.Server != "2001:db8:2::2" {
		t.Fatalf("expectation %+v", e)
	}
	r := f.cmd([]string{"expectations"})
	if !strings.Contains(r.stdout, "[2001:db8:2::2]:30000") || strings.Contains(r.stdout, "30001") {
		t.Fatalf("expectations:\n%s", r.stdout)
	}
}
