package main

import (
	"strings"
	"testing"

	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/loader"
	"github.com/ftpgate/ftpgate/maps"
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
	if f.jsonOf(t, &st, "status"); !st.Attached || len(st.Ifaces) != 2 || len(st.Programs) != 4 {
		t.Fatalf("status --json: %+v", st)
	}

	// after detach: non-zero and one line
	f.dp.Close()
	if r := f.cmd([]string{"detach"}); r.code != 0 {
		t.Fatalf("detach: %s", r.stderr)
	}
	oneLine(t, f.cmd([]string{"status"}))
}

// TestStatusAdmitHookTC: with --admit-hook tc, status says where the
// admission runs, counts the interface attached without an XDP program, and
// reports it missing once the TC admission is gone.
func TestStatusAdmitHookTC(t *testing.T) {
	f := newFixtureWith(t, func(o *loader.Options) { o.AdmitHook = loader.AdmitTC })
	r := f.cmd([]string{"status"})
	if r.code != 0 {
		t.Fatalf("status exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"- (admit-hook tc)", " + admission ", "ftpgate_tc_admit"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "(missing)") {
		t.Errorf("status says something is missing:\n%s", r.stdout)
	}
	var st struct {
		Attached bool `json:"attached"`
		Ifaces   []struct {
			AdmitHook       string `json:"admit_hook"`
			XDPAttached     bool   `json:"xdp_attached"`
			TCAdmitAttached bool   `json:"tc_admit_attached"`
		} `json:"ifaces"`
	}
	if f.jsonOf(t, &st, "status"); !st.Attached || len(st.Ifaces) != 2 || st.Ifaces[0].AdmitHook != "tc" ||
		st.Ifaces[0].XDPAttached || !st.Ifaces[0].TCAdmitAttached {
		t.Fatalf("status --json: %+v", st)
	}
}

// TestStatusAndConfigNAT: status names the object run loaded and what it
// means for --nat; config set --nat turns on the mechanism that object
// serves, and off again.
func TestStatusAndConfigNAT(t *testing.T) {
	f := newFixture(t)
	obj := f.dp.Object
	r := f.cmd([]string{"status"})
	if !strings.Contains(r.stdout, "object:    "+obj.Variant+" (") || !strings.Contains(r.stdout, "nat off") {
		t.Fatalf("status:\n%s", r.stdout)
	}
	var st struct {
		Run struct {
			Object loader.Object `json:"object"`
		} `json:"run"`
	}
	if f.jsonOf(t, &st, "status"); st.Run.Object != obj {
		t.Fatalf("status --json object %+v, want %+v", st.Run.Object, obj)
	}

	r = f.cmd([]string{"config", "set", "--nat"})
	mech := bpftest.NATMechanism()
	if mech == "" {
		oneLine(t, r)
		if !strings.Contains(r.stderr, "nf_nat_ftp") {
			t.Fatalf("config set --nat on a kernel refusing both NAT objects: %s", r.stderr)
		}
		return
	}
	// the mechanism the VM matrix measured this kernel to get
	want := map[string]maps.NATMode{"conntrack": maps.NATCT, "own": maps.NATOwn}[mech]
	if r.code != 0 || !strings.Contains(r.stdout, "nat "+mech) {
		t.Fatalf("config set --nat: %d %s%s, want nat %s", r.code, r.stdout, r.stderr, mech)
	}
	if cfg, err := f.dp.Maps.GetConfig(); err != nil || cfg.NAT != want {
		t.Fatalf("config after set --nat: %v %v, want %v", cfg.NAT, err, want)
	}
	if r = f.cmd([]string{"config", "set", "--nat=false"}); r.code != 0 || !strings.Contains(r.stdout, "nat off") {
		t.Fatalf("config set --nat=false: %d %s%s", r.code, r.stdout, r.stderr)
	}
}

// TestConfigSetKeepsOwnMechanism: `config set --nat` on a daemon run with
// --nat --nat-mechanism own keeps own translation (it used to switch to
// conntrack entries, breaking the live translated connections), also after
// a `config set --nat=false`.
func TestConfigSetKeepsOwnMechanism(t *testing.T) {
	if bpftest.NATMechanism() == "" {
		t.Skip("this kernel refuses both NAT objects, as measured")
	}
	f := newFixtureWith(t, func(o *loader.Options) {
		o.Config.NAT, o.NATMechanism = maps.NATOwn, loader.NATOwnTranslation
	})
	for _, args := range [][]string{{"--nat"}, {"--nat=false"}, {"--nat"}} {
		r := f.cmd([]string{"config", "set"}, args...)
		want := maps.NATOwn
		if args[0] == "--nat=false" {
			want = maps.NATOff
		}
		if cfg, err := f.dp.Maps.GetConfig(); r.code != 0 || err != nil || cfg.NAT != want {
			t.Fatalf("config set %s: %d %s%s, nat %v (%v), want %v", args[0], r.code, r.stdout, r.stderr, cfg.NAT, err, want)
		}
	}
}

// TestStatusShowsXDPAttach: status says when XDP runs in a libxdp
// dispatcher, and at which priority; a plain link adds nothing.
func TestStatusShowsXDPAttach(t *testing.T) {
	if got := xdpAttachText(loader.IfaceState{XDPAttach: loader.AttachLibxdp, XDPPriority: 40}); got != " (libxdp, priority 40)" {
		t.Errorf("libxdp: %q", got)
	}
	if got := xdpAttachText(loader.IfaceState{XDPAttach: loader.AttachLink}); got != "" {
		t.Errorf("link: %q", got)
	}
}
