package main

import (
	"io"
	"slices"
	"strings"
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

// TestFlagsFirst: flags after a command's arguments are read as if given
// before them; a value flag keeps its value, a bool flag takes none, and
// after -- nothing is a flag.
func TestFlagsFirst(t *testing.T) {
	type parsed struct {
		json   bool
		pinDir string
		ifaces []string
		args   []string
	}
	var got parsed
	leaf := &cli.Command{Name: "child", Aliases: []string{"c"}, ArgsUsage: "ARG...",
		Flags: []cli.Flag{jsonFlag(), pinDirFlag(), &cli.StringSliceFlag{Name: "iface", Aliases: []string{"i"}}},
		Action: func(c *cli.Context) error {
			got = parsed{c.Bool("json"), c.String("pin-dir"), c.StringSlice("iface"), c.Args().Slice()}
			return nil
		}}
	app := &cli.App{Name: "ftpgate", Writer: io.Discard, ErrWriter: io.Discard, Commands: []*cli.Command{
		{Name: "parent", Flags: []cli.Flag{pinDirFlag()}, Subcommands: []*cli.Command{leaf}},
	}}
	cases := []struct {
		args      []string
		reordered []string
		want      parsed
	}{
		{[]string{"parent", "child", "1", "--json", "2"},
			[]string{"parent", "child", "--json", "1", "2"}, parsed{true, loader.DefaultPinDir, nil, []string{"1", "2"}}},
		{[]string{"parent", "child", "1", "--json=false", "--pin-dir", "/p", "2"},
			[]string{"parent", "child", "--json=false", "--pin-dir", "/p", "1", "2"}, parsed{false, "/p", nil, []string{"1", "2"}}},
		{[]string{"parent", "--pin-dir", "/p", "c", "1", "-i", "a", "-i=b", "2", "--json"},
			[]string{"parent", "--pin-dir", "/p", "c", "-i", "a", "-i=b", "--json", "1", "2"}, parsed{true, loader.DefaultPinDir, []string{"a", "b"}, []string{"1", "2"}}},
		{[]string{"parent", "child", "1", "--pin-dir=/p", "--", "--json", "-i"},
			[]string{"parent", "child", "--pin-dir=/p", "--", "1", "--json", "-i"}, parsed{false, "/p", nil, []string{"1", "--json", "-i"}}},
		{[]string{"parent", "child", "--", "1", "--json"},
			[]string{"parent", "child", "--", "1", "--json"}, parsed{false, loader.DefaultPinDir, nil, []string{"1", "--json"}}},
		// a value flag's value that looks like an argument stays with it
		{[]string{"parent", "child", "--pin-dir", "child", "1"},
			[]string{"parent", "child", "--pin-dir", "child", "1"}, parsed{false, "child", nil, []string{"1"}}},
		// a value flag without its value stays last: moved, it would take
		// the first argument as its value
		{[]string{"parent", "child", "1", "2", "--pin-dir"},
			[]string{"parent", "child", "1", "2", "--pin-dir"}, parsed{false, loader.DefaultPinDir, nil, []string{"1", "2", "--pin-dir"}}},
	}
	for _, tc := range cases {
		args := append([]string{"ftpgate"}, tc.args...)
		if r := flagsFirst(app, args); !slices.Equal(r[1:], tc.reordered) {
			t.Errorf("flagsFirst(%q) = %q, want %q", tc.args, r[1:], tc.reordered)
			continue
		}
		got = parsed{}
		if err := app.Run(flagsFirst(app, args)); err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if got.json != tc.want.json || got.pinDir != tc.want.pinDir || !slices.Equal(got.ifaces, tc.want.ifaces) || !slices.Equal(got.args, tc.want.args) {
			t.Errorf("%q parsed as %+v, want %+v", tc.args, got, tc.want)
		}
	}
	// an unknown flag after the arguments is reported as unknown
	if err := app.Run(flagsFirst(app, []string{"ftpgate", "parent", "child", "1", "--bogus"})); err == nil || !strings.Contains(err.Error(), "flag provided but not defined: -bogus") {
		t.Errorf("unknown flag after the arguments: %v", err)
	}
}
