package main

import (
	"slices"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/loader"
)

// TestPinDirWhereverGiven: --pin-dir and --state-dir given to a parent
// command (ports, allow, config) reach its subcommand; another instance, the
// default one included, is left alone.
func TestPinDirWhereverGiven(t *testing.T) {
	a, b := newFixture(t), newFixture(t)
	at := func(parent string, rest ...string) result {
		return ftpgate(append([]string{parent, "--pin-dir", a.pinDir, "--state-dir", string(a.states)}, rest...)...)
	}
	for _, r := range []result{at("ports", "add", "2121"), at("allow", "add", "2121"), at("config", "set", "--dry-run")} {
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
	}
	if got := portsOf(t, a, "ports"); !slices.Equal(got, []uint16{21, 2121}) {
		t.Errorf("ports of the named instance = %v, want [21 2121]", got)
	}
	if got := portsOf(t, a, "allow"); !slices.Equal(got, []uint16{21, 22, 2121}) {
		t.Errorf("allow of the named instance = %v, want [21 22 2121]", got)
	}
	if cfg, err := a.dp.Maps.GetConfig(); err != nil || !cfg.DryRun {
		t.Errorf("config set did not reach the named instance: %+v %v", cfg, err)
	}
	if got := portsOf(t, b, "ports"); !slices.Equal(got, []uint16{21}) {
		t.Errorf("ports of the other instance = %v, want [21]", got)
	}
	if got := portsOf(t, b, "allow"); !slices.Equal(got, []uint16{21, 22}) {
		t.Errorf("allow of the other instance = %v, want [21 22]", got)
	}
	if cfg, _ := b.dp.Maps.GetConfig(); cfg.DryRun {
		t.Error("config set changed the other instance")
	}

	// given at both levels, the one nearer the action wins: the later one
	r := ftpgate("config", "--pin-dir", b.pinDir, "set", "--pin-dir", a.pinDir, "--expect-timeout", "77s")
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	if cfg, _ := a.dp.Maps.GetConfig(); cfg.ExpectTimeout != 77*time.Second {
		t.Errorf("config set --pin-dir A under config --pin-dir B: A has %v", cfg.ExpectTimeout)
	}
	if cfg, _ := b.dp.Maps.GetConfig(); cfg.ExpectTimeout == 77*time.Second {
		t.Error("config set --pin-dir A under config --pin-dir B changed B")
	}
}

// TestCommonFlagsAtAnyLevel: each common flag is read from whichever level
// of the command line sets it, the nearest one first.
func TestCommonFlagsAtAnyLevel(t *testing.T) {
	var got []string
	app := &cli.App{Name: "ftpgate", Commands: []*cli.Command{{
		Name: "parent", Flags: commonFlags(),
		Subcommands: []*cli.Command{{Name: "child", Flags: commonFlags(), Action: func(c *cli.Context) error {
			got = []string{pinDir(c), netNS(c), string(stateDir(c))}
			return nil
		}}},
	}}}
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"parent", "child"}, []string{loader.DefaultPinDir, "", string(loader.DefaultStateDir)}},
		{[]string{"parent", "--pin-dir", "/p", "--netns", "n", "--state-dir", "/s", "child"}, []string{"/p", "n", "/s"}},
		{[]string{"parent", "child", "--pin-dir", "/p", "--netns", "n", "--state-dir", "/s"}, []string{"/p", "n", "/s"}},
		{[]string{"parent", "--pin-dir", "/p", "--netns", "n", "child", "--state-dir", "/s"}, []string{"/p", "n", "/s"}},
		{[]string{"parent", "--pin-dir", "/outer", "--netns", "outer", "child", "--pin-dir", "/p", "--netns=n"}, []string{"/p", "n", string(loader.DefaultStateDir)}},
	}
	for _, tc := range cases {
		got = nil
		if err := app.Run(append([]string{"ftpgate"}, tc.args...)); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%v: pin-dir, netns, state-dir = %q, want %q", tc.args, got, tc.want)
		}
	}
}
