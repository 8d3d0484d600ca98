package main

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/ftpgate/ftpgate/internal/group"
	"github.com/ftpgate/ftpgate/loader"
	"github.com/ftpgate/ftpgate/maps"
)

// settingsTable is the one definition of every run-time setting of the
// dataplane. `run` (and the keys of its --config file), `config set` and
// `replay` take their flags, defaults, help, parsing and validation from it;
// `config`, `config --json` and `status` show maps.Config through it.
//
// Adding a setting: its field in struct config_val (bpf/, then
// `make generate`), the matching field of maps.Config with its line in
// maps' configToBPF/configFromBPF, and one row here; nothing else names it.
// TestConfigRoundTrip fails until the mapping has the field, and
// TestConfigFileSetsEverySetting until a row sets it.
var settingsTable = []setting{
	{name: "ftp-port", in: inRun | inReplay,
		usage: "FTP control `PORT` towards every server, or PORT@PREFIX towards the servers of PREFIX only (e.g. 2121@198.51.100.0/24; repeat; default 21)",
		kind:  ctrlPorts()},
	{name: "ftps-port", in: inRun,
		usage: "implicit-TLS control `PORT` (e.g. 990): its connections are encrypted from the first byte, tracked and never parsed (repeat)",
		kind:  ports(func(o *loader.Options) *[]uint16 { return &o.FTPSPorts }, func(*loader.Options) []uint16 { return nil })},
	// after ftp-port and ftps-port: its default is the control ports
	{name: "allow-port", in: inRun | inReplay, usage: "port accepting new connections (repeat; default: the FTP control ports)",
		kind: ports(func(o *loader.Options) *[]uint16 { return &o.AllowPorts }, ctrlPortNumbers)},
	{name: "expect-timeout", in: everywhere, json: "expect_timeout_ms", says: "expect timeout %s", usage: "lifetime of an unconsumed expectation",
		kind: duration(maps.DefaultExpectTimeout, func(c *maps.Config) *time.Duration { return &c.ExpectTimeout })},
	{name: "max-expect-per-conn", in: everywhere, json: "max_expect_per_conn", says: "max %s per connection",
		usage: fmt.Sprintf("pending expectations per control connection (1-%d; the oldest is evicted)", maps.MaxExpectPerConn),
		kind:  integer(maps.DefaultMaxExpectPerConn, func(c *maps.Config) *int { return &c.MaxExpectPerConn })},
	{name: "loose", in: everywhere, json: "loose", says: "loose %s", usage: "accept PORT/EPRT to third-party addresses and use the address a 227 announces",
		kind: boolean(func(c *maps.Config) *bool { return &c.Loose })},
	{name: "dry-run", in: everywhere, json: "dry_run", says: "dry-run %s", usage: "count what would be dropped, drop nothing",
		kind: boolean(func(c *maps.Config) *bool { return &c.DryRun })},
	{name: "fwmark", in: inRun | inSet, json: "fwmark", says: "fwmark %s",
		usage: "mark admitted data SYNs at TC ingress with `V[/M]` (for nftables: meta mark & M == V accept)",
		kind:  fwmark()},
	{name: "accounting", in: inRun | inSet, json: "accounting", says: "accounting %s", usage: "count packets and bytes of data flows (a map write per packet)",
		kind: boolean(func(c *maps.Config) *bool { return &c.Accounting })},
	{name: "allow-low-data-ports", in: everywhere, json: "allow_low_data_ports", says: "low data ports %s",
		usage: fmt.Sprintf("accept data ports below %d", maps.LowPortLimit),
		kind:  boolean(func(c *maps.Config) *bool { return &c.AllowLowDataPorts })},
	{name: "rp-check", in: everywhere, json: "rp_check", says: "rp-check %s",
		usage: "parse a control segment only if its source is routed back through the interface it arrived on (strict), has any route (loose), or always (off: asymmetric routing)",
		kind:  rpCheck()},
	// before nat-mechanism, which refines the mode nat asks for
	{name: "nat", in: inRun | inSet, json: "nat", says: "nat %s",
		usage: "rewrite the addresses PORT, EPRT and 227 announce from behind NAT (masquerade, DNAT) and take their data connections to the inside end (status shows whether this kernel can)",
		kind:  nat()},
	{name: "nat-mechanism", in: inRun,
		usage: "how --nat takes data connections inside: `auto`, conntrack (entries made from BPF, Linux >= 6.1 with conntrack BTF) or own (ftpgate translates them itself; status says which the kernel takes)",
		kind:  natMechanism()},
	{name: "tls-range", in: inRun,
		usage: "a server's passive `SERVER:LO-HI` (e.g. 198.51.100.2:30000-30099, [2001:db8::2]:30000-30099): a SYN to it is admitted only while its client has a live encrypted control connection to SERVER (repeat)",
		kind:  tlsRanges()},
	{name: "require-tls", in: inRun | inSet, json: "require_tls", says: "require-tls %s",
		usage: "reset a control connection, both ends, whose USER or PASS comes before TLS (AUTH TLS or an --ftps-port): no password crosses in clear",
		kind:  boolean(func(c *maps.Config) *bool { return &c.RequireTLS })},
	{name: "admit-hook", in: inRun,
		usage: "where the admission runs: `xdp` (the interface's XDP hook) or tc (first at TC ingress, no XDP program: the XDP hook may belong to another program; an skb per dropped SYN)",
		kind:  admitHook()},
	{name: "xdp-attach", in: inRun,
		usage: "how the XDP hook is taken: `auto` (join a libxdp dispatcher where one holds an interface, a plain XDP link otherwise), link, or libxdp (join or make a dispatcher that xdp-loader and other libxdp programs share)",
		kind:  xdpAttach()},
	{name: "xdp-priority", in: inRun,
		usage: fmt.Sprintf("run priority in a libxdp dispatcher, lower first (default %d: after DDoS filters at 10-20, before programs at libxdp's default 50)", loader.DefaultXDPPriority),
		kind:  xdpPriority()},
	{name: "ctrl-conns", in: inRun, usage: "control-connection table entries (fixed when first created)",
		kind: tableSize(loader.DefaultTableSizes.CtrlConns, func(t *loader.TableSizes) *uint32 { return &t.CtrlConns })},
	{name: "expectations", in: inRun, usage: "expectation table entries (fixed when first created)",
		kind: tableSize(loader.DefaultTableSizes.Expectations, func(t *loader.TableSizes) *uint32 { return &t.Expectations })},
	{name: "flows", in: inRun, usage: "data-flow table entries (fixed when first created)",
		kind: tableSize(loader.DefaultTableSizes.DataFlows, func(t *loader.TableSizes) *uint32 { return &t.DataFlows })},
	{name: "nat-own", in: inRun, usage: "entries of the table of data connections --nat translates itself, two per connection (fixed when first created)",
		kind: tableSize(loader.DefaultTableSizes.NATOwn, func(t *loader.TableSizes) *uint32 { return &t.NATOwn })},
	{name: "tls-sessions", in: inRun, usage: "entries of the table of (client, server) pairs with a live encrypted control connection (fixed when first created)",
		kind: tableSize(loader.DefaultTableSizes.TLSSessions, func(t *loader.TableSizes) *uint32 { return &t.TLSSessions })},
	// #15 gateway groups (docs/group.md): run only, checked as a whole by group.Config.Check
	{name: "group", in: inRun, usage: "share expectations with the other gateways of group `NAME` (ECMP, anycast, failover; docs/group.md)",
		kind: groupText(func(g *group.Config) *string { return &g.Group })},
	{name: "node-id", in: inRun, usage: "this gateway's `ID` in its group (unique; letters, digits, - and _)",
		kind: groupText(func(g *group.Config) *string { return &g.NodeID })},
	{name: "sync-listen", in: inRun, usage: "`HOST:PORT` where the group's peers connect (TLS routes, in run's network namespace)",
		kind: groupText(func(g *group.Config) *string { return &g.Listen })},
	{name: "peer", in: inRun, usage: "a peer's --sync-listen `HOST:PORT` (repeat)",
		kind: groupList(func(g *group.Config) *[]string { return &g.Peers })},
	{name: "sync-ca", in: inRun, usage: "PEM `FILE` of the CA that signs the group's certificates",
		kind: groupText(func(g *group.Config) *string { return &g.CA })},
	{name: "sync-cert", in: inRun, usage: "PEM `FILE`: this gateway's certificate (its credential in the group: it must name the address peers dial)",
		kind: groupText(func(g *group.Config) *string { return &g.Cert })},
	{name: "sync-key", in: inRun, usage: "PEM `FILE`: the key of --sync-cert",
		kind: groupText(func(g *group.Config) *string { return &g.Key })},
	{name: "sync-insecure", in: inRun, usage: "allow group routes without TLS (a lab only: anyone who reaches --sync-listen can open holes)",
		kind: groupBool(func(g *group.Config) *bool { return &g.Insecure })},
	{name: "sync-hold", in: inRun,
		usage: "hold a control segment that makes an expectation (227, 229, PORT, EPRT) until the group's peers have the expectation (at most 1 s), so its data connection passes whichever gateway it reaches (default: on with --group, off with --nat, which cannot hold; docs/group.md)",
		kind:  runOnly(boolean(func(c *maps.Config) *bool { return &c.SyncHold }))},
	{name: "nats-url", in: inRun, usage: "join an existing NATS cluster at `URL` instead of embedding a server (--sync-ca/cert/key are then the client's TLS)",
		kind: groupText(func(g *group.Config) *string { return &g.NATSURL })},
}

// commands is the set of commands a setting appears in.
type commands uint8

const (
	inRun commands = 1 << iota
	// config set changes only the flags given: its flags have no defaults
	inSet
	inReplay
	everywhere = inRun | inSet | inReplay
)

// setting is one row of settingsTable.
type setting struct {
	name  string // the flag, and the key in run's config file
	usage string
	in    commands
	json  string // key in `config --json`; empty for what maps.Config does not hold
	says  string // how `config` and `status` word it, around the value (%s)
	kind
}

// kind is what a setting's type decides: its flag, how the flag's value
// reaches the options, and how it is shown.
type kind struct {
	flag  func(name, usage string, cmd commands) cli.Flag
	apply func(c *cli.Context, name string, cmd commands, o *loader.Options) error
	show  func(maps.Config) any    // the JSON value; nil outside maps.Config
	text  func(maps.Config) string // for people
}

// settingFlags is the flags of cmd's settings, in table order.
func settingFlags(cmd commands) []cli.Flag {
	var flags []cli.Flag
	for _, s := range settingsTable {
		if s.in&cmd != 0 {
			flags = append(flags, s.flag(s.name, s.usage, cmd))
		}
	}
	return flags
}

// applySettings parses cmd's settings from c into o, all of them (with their
// defaults) for run and replay, only those given for config set; then checks
// the configuration as a whole with maps.Config.Validate, which knows the
// ranges the programs rely on (so the rows of maps.Config do not repeat them).
func applySettings(c *cli.Context, cmd commands, o *loader.Options) error {
	for _, s := range settingsTable {
		if s.in&cmd == 0 || (cmd == inSet && !c.IsSet(s.name)) {
			continue
		}
		if err := s.apply(c, s.name, cmd, o); err != nil {
			return err
		}
	}
	return o.Config.Validate()
}

// describeConfig shows cfg in the words `config` and `status` have always
// used (scripts read them).
func describeConfig(cfg maps.Config) string {
	var parts []string
	for _, s := range settingsTable {
		if s.show != nil {
			parts = append(parts, fmt.Sprintf(s.says, s.text(cfg)))
		}
	}
	return strings.Join(parts, ", ")
}

func configJSON(cfg maps.Config) map[string]any {
	out := map[string]any{}
	for _, s := range settingsTable {
		if s.show != nil {
			out[s.json] = s.show(cfg)
		}
	}
	return out
}

// yamlFlag gives run the flag that its config file can set too.
func yamlFlag[F, Y cli.Flag](f F, yaml func(F) Y, cmd commands) cli.Flag {
	if cmd == inRun {
		return yaml(f)
	}
	return f
}

// defaultFor leaves out the default where it would not be applied.
func defaultFor[T any](cmd commands, v T) T {
	if cmd == inSet {
		var zero T
		return zero
	}
	return v
}

func boolean(field func(*maps.Config) *bool) kind {
	return kind{
		flag: func(name, usage string, cmd commands) cli.Flag {
			return yamlFlag(&cli.BoolFlag{Name: name, Usage: usage}, altsrc.NewBoolFlag, cmd)
		},
		apply: func(c *cli.Context, name string, _ commands, o *loader.Options) error {
			*field(&o.Config) = c.Bool(name)
			return nil
		},
		show: func(cfg maps.Config) any { return *field(&cfg) },
		text: func(cfg maps.Config) string { return strconv.FormatBool(*field(&cfg)) },
	}
}

// duration is shown in milliseconds in JSON (its key says _ms).
func duration(def time.Duration, field func(*maps.Config) *time.Duration) kind {
	return kind{
		flag: func(name, usage string, cmd commands) cli.Flag {
			return yamlFlag(&cli.DurationFlag{Name: name, Usage: usage, Value: defaultFor(cmd, def)}, altsrc.NewDurationFlag, cmd)
		},
		apply: func(c *cli.Context, name string, _ commands, o *loader.Options) error {
			*field(&o.Config) = c.Duration(name)
			return nil
		},
		show: func(cfg maps.Config) any { return field(&cfg).Milliseconds() },
		text: func(cfg maps.Config) string { return field(&cfg).String() },
	}
}

func integer(def int, field func(*maps.Config) *int) kind {
	return kind{
		flag: func(name, usage string, cmd commands) cli.Flag {
			return yamlFlag(&cli.IntFlag{Name: name, Usage: usage, Value: defaultFor(cmd, def)}, altsrc.NewIntFlag, cmd)
		},
		apply: func(c *cli.Context, name string, _ commands, o *loader.Options) error {
			*field(&o.Config) = c.Int(name)
			return nil
		},
		show: func(cfg maps.Config) any { return *field(&cfg) },
		text: func(cfg maps.Config) string { return strconv.Itoa(*field(&cfg)) },
	}
}

func fwmark() kind {
	text := func(cfg maps.Config) string {
		if cfg.FwmarkValue == 0 {
			return "off"
		}
		return fmt.Sprintf("%#x/%#x", cfg.FwmarkValue, cfg.FwmarkMask)
	}
	return kind{
		flag: func(name, usage string, cmd commands) cli.Flag {
			if cmd == inSet {
				usage += `; "off" stops marking`
			}
			return yamlFlag(&cli.StringFlag{Name: name, Usage: usage}, altsrc.NewStringFlag, cmd)
		},
		apply: func(c *cli.Context, name string, cmd commands, o *loader.Options) (err error) {
			s := c.String(name)
			// run says "no marking" by leaving it out; config set needs a word
			if cmd == inSet && s == "off" {
				s = ""
			}
			o.Config.FwmarkValue, o.Config.FwmarkMask, err = parseFwmark(s)
			return err
		},
		show: func(cfg maps.Config) any { return text(cfg) },
		text: text,
	}
}

// ports is a repeated port flag; def gives the set when none is given.
func ports(field func(*loader.Options) *[]uint16, def func(*loader.Options) []uint16) kind {
	return kind{
		flag: func(name, usage string, cmd commands) cli.Flag {
			return yamlFlag(&cli.IntSliceFlag{Name: name, Usage: usage}, altsrc.NewIntSliceFlag, cmd)
		},
		apply: func(c *cli.Context, name string, _ commands, o *loader.Options) error {
			list, err := portList(name, c.IntSlice(name))
			if err != nil {
				return err
			}
			if len(list) == 0 {
				list = def(o)
			}
			*field(o) = list
			return nil
		},
	}
}

// ctrlPorts is the repeated --ftp-port: PORT (every server) or
// PORT@PREFIX[@PREFIX...] (those servers only); none gives port 21.
func ctrlPorts() kind {
	return kind{
		flag: func(name, usage string, cmd commands) cli.Flag {
			return yamlFlag(&cli.StringSliceFlag{Name: name, Usage: usage}, altsrc.NewStringSliceFlag, cmd)
		},
		apply: func(c *cli.Context, name string, _ commands, o *loader.Options) error {
			o.CtrlPorts, o.CtrlScopes = nil, nil
			for _, v := range c.StringSlice(name) {
				port, scopes, err := maps.ParsePortScopes(v)
				if err != nil {
					return fmt.Errorf("--%s %s: %w", name, v, err)
				}
				if scopes == nil {
					o.CtrlPorts = append(o.CtrlPorts, port)
				}
				o.CtrlScopes = append(o.CtrlScopes, scopes...)
			}
			if len(o.CtrlPorts) == 0 && len(o.CtrlScopes) == 0 {
				o.CtrlPorts = []uint16{21}
			}
			return nil
		},
	}
}

// ctrlPortNumbers is every control port, scoped or not, and every
// implicit-TLS port, once.
func ctrlPortNumbers(o *loader.Options) []uint16 {
	out := slices.Clone(o.CtrlPorts)
	for _, s := range o.CtrlScopes {
		if !slices.Contains(out, s.Port) {
			out = append(out, s.Port)
		}
	}
	for _, p := range o.FTPSPorts {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// tlsRanges is the repeated --tls-range SERVER:LO-HI.
func tlsRanges() kind {
	return kind{
		flag: func(name, usage string, cmd commands) cli.Flag {
			return yamlFlag(&cli.StringSliceFlag{Name: name, Usage: usage}, altsrc.NewStringSliceFlag, cmd)
		},
		apply: func(c *cli.Context, name string, _ commands, o *loader.Options) error {
			o.TLSRanges = nil
			for _, v := range c.StringSlice(name) {
				r, err := maps.ParseTLSRange(v)
				if err != nil {
					return fmt.Errorf("--%s: %w", name, err)
				}
				o.TLSRanges = append(o.TLSRanges, r)
			}
			return nil
		},
	}
}

// runOnly is a setting of maps.Config that run sets and `config` does not
// show (its words stay what scripts read).
func runOnly(k kind) kind {
	k.show, k.text = nil, nil
	return k
}

// groupText is a string of run's group configuration.
func groupText(field func(*group.Config) *string) kind {
	return kind{
		flag: func(name, usage string, cmd commands) cli.Flag {
			return yamlFlag(&cli.StringFlag{Name: name, Usage: usage}, altsrc.NewStringFlag, cmd)
		},
		apply: func(c *cli.Context, name string, _ commands, o *loader.Options) error {
			*field(&o.Group) = c.String(name)
			return nil
		},
	}
}

// groupList is a repeated string of run's group configuration.
func groupList(field func(*group.Config) *[]string) kind {
	return kind{
		flag: func(name, usage string, cmd commands) cli.Flag {
			return yamlFlag(&cli.StringSliceFlag{Name: name, Usage: usage}, altsrc.NewStringSliceFlag, cmd)
		},
		apply: func(c *cli.Context, name string, _ commands, o *loader.Options) error {
			*field(&o.Group) = c.StringSlice(name)
			return nil
		},
	}
}

// groupBool is a switch of run's group configuration.
func groupBool(field func(*group.Config) *bool) kind {
	return kind{
		flag: func(name, usage string, cmd commands) cli.Flag {
			return yamlFlag(&cli.BoolFlag{Name: name, Usage: usage}, altsrc.NewBoolFlag, cmd)
		},
		apply: func(c *cli.Context, name string, _ commands, o *loader.Options) error {
			*field(&o.Group) = c.Bool(name)
			return nil
		},
	}
}

func rpCheck() kind {
	text := func(cfg maps.Config) string { return cfg.RPCheck.String() }
	return kind{
		flag: func(name, usage string, cmd commands) cli.Flag {
			return yamlFlag(&cli.StringFlag{Name: name, Usage: usage, Value: defaultFor(cmd, maps.RPStrict.String())}, altsrc.NewStringFlag, cmd)
		},
		apply: func(c *cli.Context, name string, _ commands, o *loader.Options) (err error) {
			if o.Config.RPCheck, err = maps.ParseRPCheck(c.String(name)); err != nil {
				return fmt.Errorf("--%s %q: use strict, loose or off", name, c.String(name))
			}
			return nil
		},
		show: func(cfg maps.Config) any { return text(cfg) },
		text: text,
	}
}

// nat asks for the mechanism --nat-mechanism names (auto: conntrack first);
// the loader's ResolveNAT decides what the kernel can run.
func nat() kind {
	text := func(cfg maps.Config) string { return cfg.NAT.String() }
	return kind{
		flag: func(name, usage string, cmd commands) cli.Flag {
			return yamlFlag(&cli.BoolFlag{Name: name, Usage: usage}, altsrc.NewBoolFlag, cmd)
		},
		apply: func(c *cli.Context, name string, _ commands, o *loader.Options) error {
			o.Config.NAT = maps.NATOff
			if c.Bool(name) {
				o.Config.NAT = o.NATMechanism.Mode()
			}
			return nil
		},
		show: func(cfg maps.Config) any { return text(cfg) },
		text: text,
	}
}

func natMechanism() kind {
	k := choice(loader.NATAuto, loader.ParseNATMechanism, func(o *loader.Options) *loader.NATMechanism { return &o.NATMechanism })
	apply := k.apply
	k.apply = func(c *cli.Context, name string, cmd commands, o *loader.Options) error {
		if err := apply(c, name, cmd, o); err != nil {
			return err
		}
		if o.Config.NAT != maps.NATOff {
			o.Config.NAT = o.NATMechanism.Mode()
		}
		return nil
	}
	return k
}

// choice is a setting of one of a few words, parsed by the loader's parse
// (loader.ChoiceError); a refusal names the flag and what it takes.
func choice[T ~string](def T, parse func(string) (T, error), field func(*loader.Options) *T) kind {
	return kind{
		flag: func(name, usage string, cmd commands) cli.Flag {
			return yamlFlag(&cli.StringFlag{Name: name, Usage: usage, Value: defaultFor(cmd, string(def))}, altsrc.NewStringFlag, cmd)
		},
		apply: func(c *cli.Context, name string, _ commands, o *loader.Options) error {
			v, err := parse(c.String(name))
			var ce *loader.ChoiceError
			if errors.As(err, &ce) {
				return fmt.Errorf("--%s %q: %s", name, ce.Value, ce.Use())
			}
			if err != nil {
				return fmt.Errorf("--%s: %w", name, err)
			}
			*field(o) = v
			return nil
		},
	}
}

// admitHook is recorded per interface in the state file; a restart with
// the other hook moves the admission there.
func admitHook() kind {
	return choice(loader.AdmitXDP, loader.ParseAdmitHook, func(o *loader.Options) *loader.AdmitHook { return &o.AdmitHook })
}

// tableSize is fixed when the maps are first created.
func tableSize(def uint32, field func(*loader.TableSizes) *uint32) kind {
	return kind{
		flag: func(name, usage string, cmd commands) cli.Flag {
			return yamlFlag(&cli.IntFlag{Name: name, Usage: usage, Value: int(defaultFor(cmd, def))}, altsrc.NewIntFlag, cmd)
		},
		apply: func(c *cli.Context, name string, _ commands, o *loader.Options) error {
			n := c.Int(name)
			if n < 1 || n > maps.MaxTableEntries {
				return fmt.Errorf("--%s %d is out of range: use 1-%d", name, n, maps.MaxTableEntries)
			}
			*field(&o.Tables) = uint32(n)
			return nil
		},
	}
}

func portList(name string, vals []int) ([]uint16, error) {
	var out []uint16
	for _, v := range vals {
		if err := maps.ValidPort(v); err != nil {
			return nil, fmt.Errorf("--%s: %w", name, err)
		}
		out = append(out, uint16(v))
	}
	return out, nil
}

// parseFwmark reads V or V/M (decimal or 0x hex); empty is no marking.
func parseFwmark(s string) (value, mask uint32, err error) {
	if s == "" {
		return 0, 0, nil
	}
	vs, ms, hasMask := strings.Cut(s, "/")
	v, err := strconv.ParseUint(vs, 0, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("--fwmark %q: value is not a 32-bit number (e.g. 0x100 or 0x100/0xff00)", s)
	}
	m := uint64(0xffffffff)
	if hasMask {
		if m, err = strconv.ParseUint(ms, 0, 32); err != nil {
			return 0, 0, fmt.Errorf("--fwmark %q: mask is not a 32-bit number (e.g. 0x100/0xff00)", s)
		}
	}
	if v == 0 || uint32(v)&uint32(m) != uint32(v) {
		return 0, 0, fmt.Errorf("--fwmark %q: the value must be non-zero and inside the mask", s)
	}
	return uint32(v), uint32(m), nil
}

func xdpAttach() kind {
	return choice(loader.AttachAuto, loader.ParseXDPAttach, func(o *loader.Options) *loader.XDPAttach { return &o.XDPAttach })
}

func xdpPriority() kind {
	return kind{
		flag: func(name, usage string, cmd commands) cli.Flag {
			return yamlFlag(&cli.IntFlag{Name: name, Usage: usage, Value: defaultFor(cmd, loader.DefaultXDPPriority)}, altsrc.NewIntFlag, cmd)
		},
		apply: func(c *cli.Context, name string, _ commands, o *loader.Options) error {
			n := c.Int(name)
			if n < 1 || n > loader.MaxXDPPriority {
				return fmt.Errorf("--%s %d is out of range: use 1-%d", name, n, loader.MaxXDPPriority)
			}
			o.XDPPriority = uint32(n)
			return nil
		},
	}
}
