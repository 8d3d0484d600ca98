package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/internal/nettest"
	"github.com/ftpgate/ftpgate/loader"
	"github.com/ftpgate/ftpgate/maps"
)

// result is one CLI invocation's output and exit status.
type result struct {
	code           int
	stdout, stderr string
}

func ftpgate(args ...string) result {
	var out, errb bytes.Buffer
	code := run(append([]string{"ftpgate"}, args...), &out, &errb)
	return result{code, out.String(), errb.String()}
}

// fixture is a dataplane attached to a veth pair in a private netns, with
// pins on a private bpffs and a private state directory.
type fixture struct {
	ns, pinDir string
	states     loader.StateDir
	dp         *loader.Dataplane
}

func newFixture(t *testing.T) *fixture { t.Helper(); return newFixtureWith(t, nil) }

// newFixtureWith is newFixture with run's options changed by opt first.
func newFixtureWith(t *testing.T, opt func(*loader.Options)) *fixture {
	t.Helper()
	if os.Geteuid() != 0 {
		bpftest.SkipOrFail(t, "CLI tests against a live dataplane need root")
	}
	f := &fixture{}
	f.ns = nettest.VethNS(t, "fgc", "fc0", "fc1")
	f.pinDir = filepath.Join(nettest.BPFFS(t), "ftpgate")
	f.states = loader.StateDir(t.TempDir())
	opts := loader.Options{
		PinDir: f.pinDir, StateDir: f.states, NetNS: f.ns, Ifaces: []string{"fc0", "fc1"}, XDPMode: loader.XDPGeneric,
		CtrlPorts: []uint16{21}, AllowPorts: []uint16{21, 22}, Config: maps.DefaultConfig(),
		Tables: loader.TableSizes{CtrlConns: 1024, Expectations: 1024, DataFlows: 1024},
	}
	if opt != nil {
		opt(&opts)
	}
	dp, err := loader.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	f.dp = dp
	t.Cleanup(func() {
		dp.Close()
		loader.Detach(f.pinDir, f.states, "", nil)
	})
	return f
}

// cmd runs a command with this fixture's --pin-dir after the command words.
func (f *fixture) cmd(words []string, flags ...string) result {
	args := append(append(append([]string{}, words...), "--pin-dir", f.pinDir, "--state-dir", string(f.states)), flags...)
	return ftpgate(args...)
}

// jsonOf runs words with --json and decodes what it prints into v.
func (f *fixture) jsonOf(t *testing.T, v any, words ...string) {
	t.Helper()
	r := f.cmd(words, "--json")
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("%s --json: %v\n%s%s", strings.Join(words, " "), err, r.stdout, r.stderr)
	}
}

func oneLine(t *testing.T, r result) {
	t.Helper()
	if r.code == 0 {
		t.Fatalf("exit 0, want an error; stdout %q", r.stdout)
	}
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "ftpgate: ") {
		t.Fatalf("error is not one line starting with 'ftpgate: ':\n%s", r.stderr)
	}
}

// TestHelpOfEveryCommand walks the whole command tree.
func TestHelpOfEveryCommand(t *testing.T) {
	app := newApp(&bytes.Buffer{}, &bytes.Buffer{})
	var walk func(prefix []string, cmds []*cli.Command)
	walk = func(prefix []string, cmds []*cli.Command) {
		for _, c := range cmds {
			words := append(append([]string{}, prefix...), c.Name)
			r := ftpgate(append(words, "--help")...)
			if r.code != 0 || !strings.Contains(r.stdout, c.Usage) {
				t.Errorf("%v --help: exit %d\n%s%s", words, r.code, r.stdout, r.stderr)
			}
			walk(words, c.Subcommands)
		}
	}
	walk(nil, app.Commands)
	if r := ftpgate("--help"); r.code != 0 || !strings.Contains(r.stdout, "expectations") {
		t.Errorf("ftpgate --help: %d\n%s", r.code, r.stdout)
	}
}

func TestBadInputIsOneLine(t *testing.T) {
	cases := map[string][]string{
		"out of range":          {"run", "--iface", "lo", "--ftp-port", "0"},
		"1-65535":               {"run", "--iface", "lo", "--allow-port", "70000"},
		"give --iface":          {"run"},
		"unknown XDP mode":      {"run", "--iface", "lo", "--xdp-mode", "fast"},
		"unknown TC attach":     {"run", "--iface", "lo", "--tc-attach", "bpf"},
		"32-bit number":         {"run", "--iface", "lo", "--fwmark", "mark"},
		"inside the mask":       {"run", "--iface", "lo", "--fwmark", "0x100/0xff"},
		"max expectations":      {"run", "--iface", "lo", "--max-expect-per-conn", "9"},
		"is not a port number":  {"ports", "add", "ftp"},
		"is out of range":       {"allow", "add", "65536"},
		"give at least one":     {"ports", "del"},
		"unknown log level":     {"run", "--iface", "lo", "--log-level", "loud"},
		"flag provided but not": {"stats", "--bogus"},
		`--ftp-port 2121@300.1.1.0/24: "300.1.1.0/24" is not a prefix; write PORT@ADDR/LEN, e.g. 2121@198.51.100.0/24`: {"run", "--iface", "lo", "--ftp-port", "2121@300.1.1.0/24"},
		`--ftp-port 2121@: "" is not a prefix`:                              {"run", "--iface", "lo", "--ftp-port", "2121@"},
		`"x21" is not a port; write PORT or PORT@`:                          {"replay", "--pcap", "x", "--ftp-port", "x21@198.51.100.0/24"},
		`--rp-check "both": use strict, loose or off`:                       {"run", "--iface", "lo", "--rp-check", "both"},
		`ports add 2121@198.51.100.0/33: "198.51.100.0/33" is not a prefix`: {"ports", "add", "2121@198.51.100.0/33"},
		`is not a port number; write PORT or PORT@ADDR/LEN`:                 {"ports", "del", "21x"},
		`allow add: "2121@198.51.100.0/24" is not a port number`:            {"allow", "add", "2121@198.51.100.0/24"},
	}
	for want, args := range cases {
		t.Run(want, func(t *testing.T) {
			r := ftpgate(args...)
			oneLine(t, r)
			if !strings.Contains(r.stderr, want) {
				t.Fatalf("error %q does not say %q", r.stderr, want)
			}
		})
	}
}

// TestConfigFileIsRead: keys of the YAML file reach the flags (an invalid
// value from the file is reported; the file's interface is looked up).
func TestConfigFileIsRead(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("iface: [eth0]\nftp-port: [0]\n"), 0o644)
	r := ftpgate("run", "--config", bad)
	oneLine(t, r)
	if !strings.Contains(r.stderr, "--ftp-port 0: port 0 is out of range") {
		t.Fatalf("config value not applied: %s", r.stderr)
	}
	// the shipped example parses
	r = ftpgate("run", "--config", "../../deploy/ftpgate.yaml", "--xdp-mode", "bogus")
	oneLine(t, r)
	if !strings.Contains(r.stderr, `unknown XDP mode "bogus"`) {
		t.Fatalf("command-line flag did not win over the file: %s", r.stderr)
	}
}
