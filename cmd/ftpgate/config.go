package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/loader"
)

// configCommand shows the run-time configuration, and changes it in place
// (the programs read it on every decision): no reload, no lost state.
func configCommand() *cli.Command {
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
			Flags: commonFlags(settingFlags(inSet)...),
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
				o := loader.Options{Config: cfg}
				if err := applySettings(c, inSet, &o); err != nil {
					return err
				}
				if err := m.SetConfig(o.Config); err != nil {
					return err
				}
				fmt.Fprintln(c.App.Writer, describeConfig(o.Config))
				return nil
			},
		}},
	}
}
