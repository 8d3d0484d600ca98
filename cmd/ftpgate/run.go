package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/ftpgate/ftpgate/loader"
	"github.com/ftpgate/ftpgate/maps"
)

func runCommand() *cli.Command {
	flags := append([]cli.Flag{
		pinDirFlag(),
		netnsFlag(),
		stateDirFlag(),
		&cli.StringFlag{Name: "config", Usage: "YAML `FILE` whose keys are these flags' names; flags on the command line win"},
		altsrc.NewStringSliceFlag(&cli.StringSliceFlag{Name: "iface", Aliases: []string{"i"}, Usage: "guarded interface (repeat for several)"}),
	}, settingFlags(inRun)...)
	flags = append(flags,
		altsrc.NewStringFlag(&cli.StringFlag{Name: "xdp-mode", Value: string(loader.XDPAuto), Usage: "auto (native, generic on veth), native or generic"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "tc-attach", Value: string(loader.TCAuto), Usage: "auto (tcx on 6.6+, netlink below), tcx or netlink"}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: "age-interval", Value: loader.DefaultAgeInterval, Usage: "how often expired entries are reclaimed"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "metrics-addr", Usage: "serve Prometheus metrics on `ADDR` (e.g. 127.0.0.1:9469) at /metrics"}),
		&cli.StringFlag{Name: "ready-file", Usage: "write the PID to `PATH` once attached"},
		&cli.BoolFlag{Name: "detach-on-exit", Usage: "on SIGTERM/SIGINT remove everything instead of leaving the dataplane attached"},
	)
	return &cli.Command{
		Name:  "run",
		Usage: "attach to the guarded interfaces and age entries until stopped",
		Description: `run applies its flags and config file as the complete configuration: both
port sets, timeouts, limits and modes. Changes made at run time (ports add,
allow add) last until the next run. On SIGTERM/SIGINT it stops ageing and exits,
leaving the dataplane attached and pinned, so a restart loses nothing.`,
		Flags: flags,
		Before: func(c *cli.Context) error {
			// read here, not inside altsrc, whose wrapping would make its
			// one-line errors three
			src, err := configFileSource(c, flags)
			if err != nil {
				return err
			}
			return altsrc.InitInputSourceWithContext(flags, func(*cli.Context) (altsrc.InputSourceContext, error) { return src, nil })(c)
		},
		Action: runAction,
	}
}

func optionsFromFlags(c *cli.Context) (loader.Options, error) {
	var o loader.Options
	var err error
	o.PinDir = pinDir(c)
	o.StateDir = stateDir(c)
	o.NetNS = netNS(c)
	o.Ifaces = c.StringSlice("iface")
	if len(o.Ifaces) == 0 {
		return o, errors.New("no interface to guard: give --iface NAME (repeat for several)")
	}
	if err := applySettings(c, inRun, &o); err != nil {
		return o, err
	}
	if o.XDPMode, err = loader.ParseXDPMode(c.String("xdp-mode")); err != nil {
		return o, fmt.Errorf("--xdp-mode: %w", err)
	}
	if o.TCMode, err = loader.ParseTCMode(c.String("tc-attach")); err != nil {
		return o, fmt.Errorf("--tc-attach: %w", err)
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
	// the group's settings as a whole, before anything is attached
	if err := opts.Group.Check(); err != nil {
		return err
	}
	if err := syncHold(c, &opts, log); err != nil {
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
	log.Info("ftpgate running", "version", loader.Version, "pin_dir", opts.PinDir, "ftp_ports", ctrlPortsText(opts.CtrlPorts, opts.CtrlScopes),
		"allow_ports", opts.AllowPorts, "dry_run", opts.Config.DryRun, "rp_check", opts.Config.RPCheck.String())
	if w := natWithoutMark(opts.Config); w != "" {
		log.Warn(w)
	}

	if path := c.String("ready-file"); path != "" {
		if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			dp.Close()
			return fmt.Errorf("write ready file: %w", err)
		}
		defer os.Remove(path)
	}

	if err := dp.Watch(ctx); err != nil {
		dp.Close()
		return err
	}
	groupEvents, groupMetrics, leaveGroup, err := runGroup(ctx, dp, opts, log)
	if err != nil {
		dp.Close()
		return err
	}
	metrics := &loader.Collector{Dataplane: dp, Log: log}
	var consumers []func([]byte)
	if leaveGroup == nil {
		leaveGroup = func() {}
	} else {
		metrics.Extra = append(metrics.Extra, groupMetrics)
		consumers = append(consumers, groupEvents)
	}
	if addr := c.String("metrics-addr"); addr != "" {
		if err := loader.ServeMetrics(ctx, addr, metrics); err != nil {
			leaveGroup()
			dp.Close()
			return err
		}
		log.Info("serving metrics", "addr", addr)
	}
	ager := &loader.Ager{
		Maps: dp.Maps, Interval: c.Duration("age-interval"), FlowIdle: loader.DefaultFlowIdle,
		ClosedLinger: loader.DefaultClosedLinger, CtrlIdle: loader.DefaultCtrlIdle, Log: log, OnSweep: metrics.Add,
	}
	stopEvents := serveEvents(dp, opts, log, consumers...)
	ager.Run(ctx)
	stopEvents()
	leaveGroup() // before the maps close: it writes into them

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

// natWithoutMark says, for --nat without --fwmark, what the forward chain
// then lacks: the conntrack entry of a data connection is made new, not
// related, so only a mark tells it from a connection nobody negotiated.
// Empty otherwise.
func natWithoutMark(cfg maps.Config) string {
	if cfg.NAT == maps.NATOff || cfg.FwmarkValue != 0 {
		return ""
	}
	return "--nat without --fwmark: the forward chain cannot tell ftpgate's data connections (their conntrack entries are new, not related); " +
		"add --fwmark, e.g. --fwmark 0x100/0x100 with `meta mark & 0x100 == 0x100 accept` in the forward chain"
}
