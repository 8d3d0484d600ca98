package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/ftpgate/ftpgate/loader"
	"github.com/ftpgate/ftpgate/maps"
)

func runCommand() *cli.Command {
	flags := []cli.Flag{
		pinDirFlag(),
		netnsFlag(),
		stateDirFlag(),
		&cli.StringFlag{Name: "config", Usage: "YAML `FILE` whose keys are these flags' names; flags on the command line win"},
		altsrc.NewStringSliceFlag(&cli.StringSliceFlag{Name: "iface", Aliases: []string{"i"}, Usage: "guarded interface (repeat for several)"}),
		altsrc.NewIntSliceFlag(&cli.IntSliceFlag{Name: "ftp-port", Usage: "FTP control port (repeat; default 21)"}),
		altsrc.NewIntSliceFlag(&cli.IntSliceFlag{Name: "allow-port", Usage: "port accepting new connections (repeat; default: the FTP control ports)"}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "loose", Usage: "accept PORT/EPRT to third-party addresses and use the address a 227 announces"}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: "expect-timeout", Value: maps.DefaultExpectTimeout, Usage: "lifetime of an unconsumed expectation"}),
		altsrc.NewIntFlag(&cli.IntFlag{Name: "max-expect-per-conn", Value: 1, Usage: fmt.Sprintf("pending expectations per control connection (1-%d; the oldest is evicted)", maps.MaxExpectPerConn)}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "dry-run", Usage: "count what would be dropped, drop nothing"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "fwmark", Usage: "mark admitted data SYNs at TC ingress with `V[/M]` (for nftables: meta mark & M == V accept)"}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "accounting", Usage: "count packets and bytes of data flows (a map write per packet)"}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "allow-low-data-ports", Usage: "accept data ports below 1024"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "xdp-mode", Value: string(loader.XDPAuto), Usage: "auto (native, generic on veth), native or generic"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "tc-attach", Value: string(loader.TCAuto), Usage: "auto (tcx on 6.6+, netlink below), tcx or netlink"}),
		altsrc.NewIntFlag(&cli.IntFlag{Name: "ctrl-conns", Value: int(loader.DefaultTableSizes.CtrlConns), Usage: "control-connection table entries (fixed when first created)"}),
		altsrc.NewIntFlag(&cli.IntFlag{Name: "expectations", Value: int(loader.DefaultTableSizes.Expectations), Usage: "expectation table entries (fixed when first created)"}),
		altsrc.NewIntFlag(&cli.IntFlag{Name: "flows", Value: int(loader.DefaultTableSizes.DataFlows), Usage: "data-flow table entries (fixed when first created)"}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: "age-interval", Value: loader.DefaultAgeInterval, Usage: "how often expired entries are reclaimed"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "metrics-addr", Usage: "serve Prometheus metrics on `ADDR` (e.g. 127.0.0.1:9469) at /metrics"}),
		&cli.StringFlag{Name: "ready-file", Usage: "write the PID to `PATH` once attached"},
		&cli.BoolFlag{Name: "detach-on-exit", Usage: "on SIGTERM/SIGINT remove everything instead of leaving the dataplane attached"},
	}
	return &cli.Command{
		Name:  "run",
		Usage: "attach to the guarded interfaces and age entries until stopped",
		Description: `run applies its flags and config file as the complete configuration: both
port sets, timeouts, limits and modes. Changes made at run time (ports add,
allow add) last until the next run. On SIGTERM/SIGINT it stops ageing and exits,
leaving the dataplane attached and pinned, so a restart loses nothing.`,
		Flags:  flags,
		Before: altsrc.InitInputSourceWithContext(flags, altsrc.NewYamlSourceFromFlagFunc("config")),
		Action: runAction,
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

// parseFwmark reads V or V/M (decimal or 0x hex).
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

func optionsFromFlags(c *cli.Context) (loader.Options, error) {
	var o loader.Options
	var err error
	o.PinDir = c.String("pin-dir")
	o.StateDir = stateDir(c)
	o.NetNS = c.String("netns")
	o.Ifaces = c.StringSlice("iface")
	if len(o.Ifaces) == 0 {
		return o, errors.New("no interface to guard: give --iface NAME (repeat for several)")
	}
	if o.CtrlPorts, err = portList("ftp-port", c.IntSlice("ftp-port")); err != nil {
		return o, err
	}
	if len(o.CtrlPorts) == 0 {
		o.CtrlPorts = []uint16{21}
	}
	if o.AllowPorts, err = portList("allow-port", c.IntSlice("allow-port")); err != nil {
		return o, err
	}
	if len(o.AllowPorts) == 0 {
		o.AllowPorts = o.CtrlPorts
	}
	if o.XDPMode, err = loader.ParseXDPMode(c.String("xdp-mode")); err != nil {
		return o, fmt.Errorf("--xdp-mode: %w", err)
	}
	if o.TCMode, err = loader.ParseTCMode(c.String("tc-attach")); err != nil {
		return o, fmt.Errorf("--tc-attach: %w", err)
	}
	cfg := maps.Config{
		ExpectTimeout:     c.Duration("expect-timeout"),
		MaxExpectPerConn:  c.Int("max-expect-per-conn"),
		Loose:             c.Bool("loose"),
		DryRun:            c.Bool("dry-run"),
		Accounting:        c.Bool("accounting"),
		AllowLowDataPorts: c.Bool("allow-low-data-ports"),
	}
	if cfg.FwmarkValue, cfg.FwmarkMask, err = parseFwmark(c.String("fwmark")); err != nil {
		return o, err
	}
	if err := cfg.Validate(); err != nil {
		return o, err
	}
	o.Config = cfg
	for name, p := range map[string]*uint32{"ctrl-conns": &o.Tables.CtrlConns, "expectations": &o.Tables.Expectations, "flows": &o.Tables.DataFlows} {
		n := c.Int(name)
		if n < 1 || n > 1<<24 {
			return o, fmt.Errorf("--%s %d is out of range: use 1-%d", name, n, 1<<24)
		}
		*p = uint32(n)
	}
	if c.Duration("age-interval") <= 0 {
		return o, errors.New("--age-interval must be positive")
	}
	return o, nil
}

func runAction(c *cli.Context) error {
	log, err := newLogger(c.App.ErrWriter, c.String("log-level"))
	if err != nil {
		return err
	}
	opts, err := optionsFromFlags(c)
	if err != nil {
		return err
	}
	opts.Logger = log

	// handle SIGTERM/SIGINT from here on: a signal during start-up must not
	// kill the process half-way
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	dp, err := loader.Start(opts)
	if err != nil {
		if errors.Is(err, loader.ErrLocked) {
			return fmt.Errorf("%w: stop the other `ftpgate run`, or give another --pin-dir", err)
		}
		return err
	}
	log.Info("ftpgate running", "version", loader.Version, "pin_dir", opts.PinDir, "ftp_ports", opts.CtrlPorts,
		"allow_ports", opts.AllowPorts, "dry_run", opts.Config.DryRun)

	if path := c.String("ready-file"); path != "" {
		if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			dp.Close()
			return fmt.Errorf("write ready file: %w", err)
		}
		defer os.Remove(path)
	}

	metrics := &loader.Collector{Maps: dp.Maps, Ifaces: dp.State.Ifaces, Log: log}
	if addr := c.String("metrics-addr"); addr != "" {
		if err := loader.ServeMetrics(ctx, addr, metrics); err != nil {
			dp.Close()
			return err
		}
		log.Info("serving metrics", "addr", addr)
	}
	ager := &loader.Ager{
		Maps: dp.Maps, Interval: c.Duration("age-interval"), FlowIdle: loader.DefaultFlowIdle,
		ClosedLinger: loader.DefaultClosedLinger, CtrlIdle: loader.DefaultCtrlIdle, Log: log, OnSweep: metrics.Add,
	}
	ager.Run(ctx)

	if err := dp.Close(); err != nil {
		log.Warn("release handles", "err", err)
	}
	if c.Bool("detach-on-exit") {
		if err := loader.Detach(opts.PinDir, opts.StateDir, opts.NetNS, log); err != nil {
			return fmt.Errorf("detach: %w", err)
		}
		log.Info("detached and removed pins")
		return nil
	}
	log.Info("stopped; dataplane stays attached", "pin_dir", opts.PinDir)
	return nil
}
