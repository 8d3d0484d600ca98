package main

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/internal/group"
	"github.com/ftpgate/ftpgate/loader"
	"github.com/ftpgate/ftpgate/maps"
)

// settingsCommands finds, in the real command tree, the commands a row can name.
func settingsCommands(t *testing.T) map[commands]*cli.Command {
	t.Helper()
	out := map[commands]*cli.Command{}
	for _, c := range newApp(io.Discard, io.Discard).Commands {
		switch c.Name {
		case "run":
			out[inRun] = c
		case "replay":
			out[inReplay] = c
		case "config":
			for _, s := range c.Subcommands {
				if s.Name == "set" {
					out[inSet] = s
				}
			}
		}
	}
	if len(out) != 3 {
		t.Fatalf("run, config set and replay not all found: %v", out)
	}
	return out
}

// TestSettingsAppearWhereNamed: each row's flag is in exactly the commands
// the row names, with the row's help text; and the rows name the commands
// users already rely on.
func TestSettingsAppearWhereNamed(t *testing.T) {
	cliToday := map[string]commands{
		"ftp-port": inRun | inReplay, "allow-port": inRun | inReplay, "expect-timeout": everywhere, "max-expect-per-conn": everywhere,
		"loose": everywhere, "dry-run": everywhere, "fwmark": inRun | inSet, "accounting": inRun | inSet,
		"allow-low-data-ports": everywhere, "ctrl-conns": inRun, "expectations": inRun, "flows": inRun,
		"nat-own": inRun, "rp-check": everywhere, "nat": inRun | inSet, "nat-mechanism": inRun,
		"ftps-port": inRun, "tls-range": inRun, "require-tls": inRun | inSet, "tls-sessions": inRun,
		"admit-hook": inRun,
		"xdp-attach": inRun, "xdp-priority": inRun,
		"group": inRun, "node-id": inRun, "sync-listen": inRun, "peer": inRun, "sync-ca": inRun, "sync-cert": inRun,
		"sync-key": inRun, "sync-insecure": inRun, "nats-url": inRun, "sync-hold": inRun,
	}
	for _, s := range settingsTable {
		if cliToday[s.name] != s.in {
			t.Errorf("--%s is in commands %03b, want %03b (a new row: add it here)", s.name, s.in, cliToday[s.name])
		}
	}
	for cmd, c := range settingsCommands(t) {
		for _, s := range settingsTable {
			i := slices.IndexFunc(c.Flags, func(f cli.Flag) bool { return slices.Contains(f.Names(), s.name) })
			if (i >= 0) != (s.in&cmd != 0) {
				t.Errorf("%s: flag --%s present %v, row says %v", c.Name, s.name, i >= 0, s.in&cmd != 0)
				continue
			}
			if i >= 0 && !strings.HasPrefix(c.Flags[i].(cli.DocGenerationFlag).GetUsage(), s.usage) {
				t.Errorf("%s --%s: help is not the row's", c.Name, s.name)
			}
		}
	}
	for _, s := range settingsTable {
		if (s.json == "") != (s.show == nil) {
			t.Errorf("--%s: a JSON key needs a value to show and the other way round", s.name)
		}
	}
}

// parseSettings runs cmd on args up to its action, which returns the options
// the settings made of them instead of acting; run also reads its config file.
func parseSettings(t *testing.T, which commands, start loader.Options, args ...string) (loader.Options, error) {
	t.Helper()
	// a fresh command tree each time: this one's action can be replaced
	cmd := settingsCommands(t)[which]
	o := start
	cmd.Action = func(c *cli.Context) (err error) {
		if which == inRun {
			o, err = optionsFromFlags(c)
			return err
		}
		return applySettings(c, which, &o)
	}
	cmd.Subcommands = nil
	app := &cli.App{Name: "ftpgate", Commands: []*cli.Command{cmd}, Writer: io.Discard, ErrWriter: io.Discard}
	err := app.Run(append([]string{"ftpgate", cmd.Name}, args...))
	return o, err
}

// TestSettingsDefaults: without flags, run and replay apply maps.DefaultConfig
// and run the default table sizes.
func TestSettingsDefaults(t *testing.T) {
	o, err := parseSettings(t, inRun, loader.Options{}, "--iface", "lo")
	if err != nil {
		t.Fatal(err)
	}
	if o.Config != maps.DefaultConfig() || o.Tables != loader.DefaultTableSizes ||
		!slices.Equal(o.CtrlPorts, []uint16{21}) || !slices.Equal(o.AllowPorts, []uint16{21}) {
		t.Fatalf("run defaults: %+v", o)
	}
	o, err = parseSettings(t, inReplay, loader.Options{}, "--pcap", "unread")
	if err != nil {
		t.Fatal(err)
	}
	if o.Config != maps.DefaultConfig() || !slices.Equal(o.CtrlPorts, []uint16{21}) {
		t.Fatalf("replay defaults: %+v", o)
	}
}

// TestConfigSetChangesOnlyWhatIsGiven: the flags of config set have no
// defaults that would overwrite the running configuration.
func TestConfigSetChangesOnlyWhatIsGiven(t *testing.T) {
	running := maps.Config{ExpectTimeout: time.Minute, MaxExpectPerConn: 2, FwmarkValue: 1, FwmarkMask: 3, Accounting: true}
	o, err := parseSettings(t, inSet, loader.Options{Config: running}, "--loose")
	if err != nil {
		t.Fatal(err)
	}
	want := running
	want.Loose = true
	if o.Config != want {
		t.Fatalf("config set --loose: %+v, want %+v", o.Config, want)
	}
	if o, err = parseSettings(t, inSet, loader.Options{Config: running}, "--fwmark", "off"); err != nil || o.Config.FwmarkValue != 0 {
		t.Fatalf("config set --fwmark off: %v %+v", err, o.Config)
	}
	if _, err := parseSettings(t, inRun, loader.Options{}, "--iface", "lo", "--fwmark", "off"); err == nil {
		t.Fatal("run --fwmark off accepted; only config set knows off")
	}
}

// TestConfigFileSetsEverySetting: each of run's settings is read from the
// YAML file under its flag's name.
func TestConfigFileSetsEverySetting(t *testing.T) {
	yaml := map[string]string{
		"ftp-port": "[2121, 21, 990@198.51.100.0/24@2001:db8::/32]", "allow-port": "[22]", "rp-check": "loose", "expect-timeout": "90s", "max-expect-per-conn": "3",
		"loose": "true", "dry-run": "true", "fwmark": "0x100/0xff00", "accounting": "true", "allow-low-data-ports": "true",
		"ctrl-conns": "1000", "expectations": "2000", "flows": "3000", "nat-own": "4000", "nat": "true", "nat-mechanism": "conntrack",
		"ftps-port": "[990]", "tls-range": "[198.51.100.2:30000-30099, '[2001:db8::2]:30000-30099']", "require-tls": "true", "tls-sessions": "5000",
		"admit-hook": "tc",
		"xdp-attach": "libxdp", "xdp-priority": "15",
		"group": "edge", "node-id": "gw1", "sync-listen": "192.0.2.1:7422", "peer": "[192.0.2.2:7422, 192.0.2.3:7422]",
		"sync-ca": "ca.pem", "sync-cert": "gw1.pem", "sync-key": "gw1.key", "sync-insecure": "true", "nats-url": "nats://192.0.2.9:4222",
		"sync-hold": "true",
	}
	var file bytes.Buffer
	file.WriteString("iface: [lo]\n")
	for _, s := range settingsTable {
		if s.in&inRun == 0 {
			continue
		}
		v, ok := yaml[s.name]
		if !ok {
			t.Fatalf("no sample value for %s: add one here", s.name)
		}
		fmt.Fprintf(&file, "%s: %s\n", s.name, v)
	}
	path := filepath.Join(t.TempDir(), "ftpgate.yaml")
	if err := os.WriteFile(path, file.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := parseSettings(t, inRun, loader.Options{}, "--config", path)
	if err != nil {
		t.Fatal(err)
	}
	want := maps.Config{ExpectTimeout: 90 * time.Second, MaxExpectPerConn: 3, FwmarkValue: 0x100, FwmarkMask: 0xff00,
		Loose: true, DryRun: true, Accounting: true, AllowLowDataPorts: true, RPCheck: maps.RPLoose, NAT: maps.NATCT, RequireTLS: true, SyncHold: true}
	ranges := []maps.TLSRange{{Server: netip.MustParseAddr("198.51.100.2"), Lo: 30000, Hi: 30099}, {Server: netip.MustParseAddr("2001:db8::2"), Lo: 30000, Hi: 30099}}
	scopes := []maps.PortScope{{Port: 990, Prefix: netip.MustParsePrefix("198.51.100.0/24")}, {Port: 990, Prefix: netip.MustParsePrefix("2001:db8::/32")}}
	if o.Config != want || o.NATMechanism != loader.NATConntrack || o.AdmitHook != loader.AdmitTC || o.XDPAttach != loader.AttachLibxdp || o.XDPPriority != 15 || o.Tables != (loader.TableSizes{CtrlConns: 1000, Expectations: 2000, DataFlows: 3000, NATOwn: 4000, TLSSessions: 5000}) ||
		!slices.Equal(o.FTPSPorts, []uint16{990}) || !slices.Equal(o.TLSRanges, ranges) ||
		!slices.Equal(o.CtrlPorts, []uint16{2121, 21}) || !slices.Equal(o.CtrlScopes, scopes) || !slices.Equal(o.AllowPorts, []uint16{22}) ||
		!reflect.DeepEqual(o.Group, group.Config{Group: "edge", NodeID: "gw1", Listen: "192.0.2.1:7422", Peers: []string{"192.0.2.2:7422", "192.0.2.3:7422"},
			CA: "ca.pem", Cert: "gw1.pem", Key: "gw1.key", Insecure: true, NATSURL: "nats://192.0.2.9:4222"}) {
		t.Fatalf("from %s:\n%s\ngot %+v", path, file.String(), o)
	}
	// a field of maps.Config that no row sets cannot be configured (the
	// clock offset and replay's pieces are for tests and replay only; the
	// two TLS look-up bits are kept by the range set and TC, the SYN gate's
	// horizon by the Go side)
	v := reflect.ValueOf(o.Config)
	for i := range v.NumField() {
		if name := v.Type().Field(i).Name; name != "ClockOffset" && name != "ReplayPieces" && name != "TLSRanges" && name != "TLSSeen" && name != "SYNGateHorizon" && v.Field(i).IsZero() {
			t.Errorf("maps.Config.%s is set by no row of settingsTable", name)
		}
	}
}

// TestConfigShownByName: `config --json` keeps its keys, and the description
// keeps its wording.
func TestConfigShownByName(t *testing.T) {
	cfg := maps.DefaultConfig()
	var keys []string
	for k := range configJSON(cfg) {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"accounting", "allow_low_data_ports", "dry_run", "expect_timeout_ms", "fwmark", "loose", "max_expect_per_conn", "nat", "require_tls", "rp_check"}
	if !slices.Equal(keys, want) {
		t.Fatalf("config --json keys %v, want %v", keys, want)
	}
	if ms := configJSON(cfg)["expect_timeout_ms"]; ms != maps.DefaultExpectTimeout.Milliseconds() {
		t.Fatalf("expect_timeout_ms = %v", ms)
	}
	// the wording scripts have read since the first release
	d := describeConfig(cfg)
	want = []string{"expect timeout 5m0s, max 1 per connection, loose false, dry-run false, fwmark off, accounting false, low data ports false, rp-check strict, nat off, require-tls false"}
	if d != want[0] {
		t.Errorf("description %q, want %q", d, want[0])
	}
	for _, s := range settingsTable {
		if (s.show != nil) != (s.says != "") {
			t.Errorf("setting %s: shown in config but not described, or the reverse", s.name)
		}
	}
}

// TestNATSettings: --nat asks for the mechanism --nat-mechanism names
// (auto: conntrack first), off is off whatever the mechanism, and a bad
// mechanism is refused in one line saying what to use.
func TestNATSettings(t *testing.T) {
	for _, tc := range []struct {
		args []string
		nat  maps.NATMode
		mech loader.NATMechanism
	}{
		{nil, maps.NATOff, loader.NATAuto},
		{[]string{"--nat"}, maps.NATCT, loader.NATAuto},
		{[]string{"--nat", "--nat-mechanism", "conntrack"}, maps.NATCT, loader.NATConntrack},
		{[]string{"--nat", "--nat-mechanism", "own"}, maps.NATOwn, loader.NATOwnTranslation},
		{[]string{"--nat-mechanism", "own"}, maps.NATOff, loader.NATOwnTranslation},
	} {
		o, err := parseSettings(t, inRun, loader.Options{}, append([]string{"--iface", "lo"}, tc.args...)...)
		if err != nil || o.Config.NAT != tc.nat || o.NATMechanism != tc.mech {
			t.Errorf("run %v: nat %v mechanism %q (%v), want %v %q", tc.args, o.Config.NAT, o.NATMechanism, err, tc.nat, tc.mech)
		}
	}
	_, err := parseSettings(t, inRun, loader.Options{}, "--iface", "lo", "--nat", "--nat-mechanism", "kernel")
	if err == nil || err.Error() != `--nat-mechanism "kernel": use auto, conntrack or own` {
		t.Fatalf("bad mechanism: %v", err)
	}
	running := maps.DefaultConfig()
	running.NAT = maps.NATCT
	if o, err := parseSettings(t, inSet, loader.Options{Config: running}, "--nat=false"); err != nil || o.Config.NAT != maps.NATOff {
		t.Fatalf("config set --nat=false: %v %v", o.Config.NAT, err)
	}
}

// TestAdmitHookSetting: --admit-hook defaults to xdp, takes tc, and refuses
// anything else in one line.
func TestAdmitHookSetting(t *testing.T) {
	for _, c := range []struct {
		args []string
		want loader.AdmitHook
	}{
		{nil, loader.AdmitXDP},
		{[]string{"--admit-hook", "tc"}, loader.AdmitTC},
		{[]string{"--admit-hook", "xdp"}, loader.AdmitXDP},
	} {
		o, err := parseSettings(t, inRun, loader.Options{}, append([]string{"--iface", "lo"}, c.args...)...)
		if err != nil || o.AdmitHook != c.want {
			t.Errorf("%v: %v %q, want %q", c.args, err, o.AdmitHook, c.want)
		}
	}
	_, err := parseSettings(t, inRun, loader.Options{}, "--iface", "lo", "--admit-hook", "skb")
	if err == nil || err.Error() != `--admit-hook "skb": use xdp or tc` {
		t.Fatalf("--admit-hook skb: %v", err)
	}
}

// TestXDPAttachSettings: --xdp-attach and --xdp-priority reach the options,
// and a bad value gets one line naming the flag and what it takes.
func TestXDPAttachSettings(t *testing.T) {
	o, err := parseSettings(t, inRun, loader.Options{}, "--iface", "lo")
	if err != nil || o.XDPAttach != loader.AttachAuto || o.XDPPriority != loader.DefaultXDPPriority {
		t.Fatalf("defaults: %v %q %d, want auto %d", err, o.XDPAttach, o.XDPPriority, loader.DefaultXDPPriority)
	}
	if o, err = parseSettings(t, inRun, loader.Options{}, "--iface", "lo", "--xdp-attach", "link", "--xdp-priority", "5"); err != nil || o.XDPAttach != loader.AttachLink || o.XDPPriority != 5 {
		t.Fatalf("--xdp-attach link --xdp-priority 5: %v %q %d", err, o.XDPAttach, o.XDPPriority)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--xdp-attach", "dispatcher"}, `--xdp-attach "dispatcher": use auto, link or libxdp`},
		{[]string{"--xdp-priority", "0"}, "--xdp-priority 0 is out of range: use 1-2147483647"},
	} {
		_, err := parseSettings(t, inRun, loader.Options{}, append([]string{"--iface", "lo"}, c.args...)...)
		if err == nil || err.Error() != c.want {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}
