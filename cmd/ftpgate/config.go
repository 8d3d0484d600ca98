package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/maps"
)

// configCommand shows the run-time configuration, and changes it in place
// (the programs read it on every decision): no reload, no lost state.
func configCommand() *cli.Command {
	settable := []cli.Flag{
		&cli.DurationFlag{Name: "expect-timeout", Usage: "lifetime of an unconsumed expectation"},
		&cli.IntFlag{Name: "max-expect-per-conn", Usage: fmt.Sprintf("pending expectations per control connection (1-%d)", maps.MaxExpectPerConn)},
		&cli.BoolFlag{Name: "loose", Usage: "accept third-party PORT/EPRT addresses and use the address a 227 announces"},
		&cli.BoolFlag{Name: "dry-run", Usage: "count what would be dropped, drop nothing"},
		&cli.BoolFlag{Name: "accounting", Usage: "count packets and bytes of data flows"},
		&cli.BoolFlag{Name: "allow-low-data-ports", Usage: "accept data ports below 1024"},
		&cli.StringFlag{Name: "fwmark", Usage: "mark admitted data SYNs with `V[/M]`; \"off\" stops marking"},
	}
	return &cli.Command{
		Name:  "config",
		Usage: "show the run-time configuration (timeouts, limits, modes, fwmark)",
		Description: "`config set` changes it for the next packet, with no reload; like `ports add`,\n" +
			"the change lasts until the next `ftpgate run`, which applies its own flags.",
		Flags: commonFlags(jsonFlag()),
		Action: func(c *cli.Context) error {
			m, err := openMaps(c)
			if err != nil {
				return err
			}
			defer m.Close()
			cfg, err := m.GetConfig()
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, configJSON(cfg))
			}
			fmt.Fprintln(c.App.Writer, describeConfig(cfg))
			return nil
		},
		Subcommands: []*cli.Command{{
			Name:  "set",
			Usage: "change settings of the running dataplane (only the flags given)",
			Flags: commonFlags(settable...),
			Action: func(c *cli.Context) error {
				m, err := openMaps(c)
				if err != nil {
					return err
				}
				defer m.Close()
				cfg, err := m.GetConfig()
				if err != nil {
					return err
				}
				if c.IsSet("expect-timeout") {
					cfg.ExpectTimeout = c.Duration("expect-timeout")
				}
				if c.IsSet("max-expect-per-conn") {
					cfg.MaxExpectPerConn = c.Int("max-expect-per-conn")
				}
				for name, p := range map[string]*bool{"loose": &cfg.Loose, "dry-run": &cfg.DryRun,
					"accounting": &cfg.Accounting, "allow-low-data-ports": &cfg.AllowLowDataPorts} {
					if c.IsSet(name) {
						*p = c.Bool(name)
					}
				}
				if c.IsSet("fwmark") {
					cfg.FwmarkValue, cfg.FwmarkMask = 0, 0
					if s := c.String("fwmark"); s != "off" {
						if cfg.FwmarkValue, cfg.FwmarkMask, err = parseFwmark(s); err != nil {
							return err
						}
					}
				}
				if err := m.SetConfig(cfg); err != nil {
					return err
				}
				fmt.Fprintln(c.App.Writer, describeConfig(cfg))
				return nil
			},
		}},
	}
}

func fwmarkText(cfg maps.Config) string {
	if cfg.FwmarkValue == 0 {
		return "off"
	}
	return fmt.Sprintf("%#x/%#x", cfg.FwmarkValue, cfg.FwmarkMask)
}

func describeConfig(cfg maps.Config) string {
	return fmt.Sprintf("expect timeout %s, max %d per connection, loose %v, dry-run %v, fwmark %s, accounting %v, low data ports %v",
		cfg.ExpectTimeout, cfg.MaxExpectPerConn, cfg.Loose, cfg.DryRun, fwmarkText(cfg), cfg.Accounting, cfg.AllowLowDataPorts)
}

func configJSON(cfg maps.Config) map[string]any {
	return map[string]any{
		"expect_timeout_ms": cfg.ExpectTimeout.Milliseconds(), "max_expect_per_conn": cfg.MaxExpectPerConn,
		"loose": cfg.Loose, "dry_run": cfg.DryRun, "accounting": cfg.Accounting,
		"allow_low_data_ports": cfg.AllowLowDataPorts, "fwmark": fwmarkText(cfg),
	}
}
