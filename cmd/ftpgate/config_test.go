package main

import (
	"strings"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/maps"
)

func TestConfigShowAndSet(t *testing.T) {
	f := newFixture(t)
	var got map[string]any
	if f.jsonOf(t, &got, "config"); got["dry_run"] != false || got["fwmark"] != "off" {
		t.Fatalf("config --json: %v", got)
	}
	r := f.cmd([]string{"config", "set"}, "--dry-run", "--expect-timeout", "90s", "--fwmark", "0x100/0xff00")
	if r.code != 0 {
		t.Fatalf("config set: %s", r.stderr)
	}
	cfg, err := f.dp.Maps.GetConfig()
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.DryRun || cfg.ExpectTimeout != 90*time.Second || cfg.FwmarkValue != 0x100 || cfg.FwmarkMask != 0xff00 || cfg.MaxExpectPerConn != 1 {
		t.Fatalf("config after set: %+v", cfg)
	}
	// only the flags given change
	if r := f.cmd([]string{"config", "set"}, "--fwmark", "off"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if cfg, _ = f.dp.Maps.GetConfig(); cfg.FwmarkValue != 0 || !cfg.DryRun {
		t.Fatalf("config after fwmark off: %+v", cfg)
	}
	oneLine(t, f.cmd([]string{"config", "set"}, "--max-expect-per-conn", "9"))
	// the reverse-path check: strict unless set
	if got["rp_check"] != "strict" {
		t.Fatalf("config --json rp_check %v, want strict", got["rp_check"])
	}
	if r := f.cmd([]string{"config", "set"}, "--rp-check", "loose"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if cfg, _ = f.dp.Maps.GetConfig(); cfg.RPCheck != maps.RPLoose || !cfg.DryRun {
		t.Fatalf("config after --rp-check loose: %+v", cfg)
	}
	if r := f.cmd([]string{"status"}); !strings.Contains(r.stdout, "dry-run true") {
		t.Fatalf("status does not show the change:\n%s", r.stdout)
	}
}
