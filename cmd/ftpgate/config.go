package main

import (
	"encoding/json"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/loader"
	"github.com/ftpgate/ftpgate/maps"
)

// configCommand shows the run-time configuration, and changes it in place
// (the programs read it on every decision): no reload, no lost state.
func configCommand() *cli.Command {
	cmd := viewCommand("config", "show the run-time configuration (timeouts, limits, modes, fwmark)",
		func(m *maps.Maps) (shownConfig, error) {
			cfg, err := m.GetConfig()
			return shownConfig(cfg), err
		},
		func(c *cli.Context, cfg shownConfig) error {
			_, err := fmt.Fprintln(c.App.Writer, describeConfig(maps.Config(cfg)))
			return err
		})
	cmd.Description = "`config set` changes it for the next packet, with no reload; like `ports add`,\n" +
		"the change lasts until the next `ftpgate run`, which applies its own flags."
	cmd.Subcommands = []*cli.Command{
		mapsCommand("set", "change settings of the running dataplane (only the flags given)", settingFlags(inSet), setConfig),
	}
	return cmd
}

// shownConfig prints with the JSON keys of settingsTable.
type shownConfig maps.Config

func (s shownConfig) MarshalJSON() ([]byte, error) { return json.Marshal(configJSON(maps.Config(s))) }

// setConfig changes the settings given on the command line, keeps the rest.
func setConfig(c *cli.Context, m *maps.Maps) error {
	cfg, err := m.GetConfig()
	if err != nil {
		return err
	}
	o := loader.Options{Config: cfg}
	if err := applySettings(c, inSet, &o); err != nil {
		return err
	}
	if c.IsSet("nat") {
		if o.Config.NAT, err = natForRunning(c, o.Config.NAT, cfg.NAT); err != nil {
			return err
		}
	}
	if err := m.SetConfig(o.Config); err != nil {
		return err
	}
	_, err = fmt.Fprintln(c.App.Writer, describeConfig(o.Config))
	return err
}

// natForRunning resolves the NAT mode `config set` asks for against the
// object the running `ftpgate run` loaded and the --nat-mechanism it was
// given, as its state file records them: `config set --nat` on a daemon
// running own translation stays with it (running is the mode in effect
// before the change, for a run that recorded no mechanism).
func natForRunning(c *cli.Context, want, running maps.NATMode) (maps.NATMode, error) {
	if want == maps.NATOff {
		return want, nil
	}
	st, err := stateDir(c).Read(pinDir(c))
	if err != nil {
		return 0, err
	}
	if st == nil || st.Object.Variant == "" {
		return 0, fmt.Errorf("config set --nat: no `ftpgate run` of this version recorded for %s, so the object it loaded is unknown: restart it with --nat", pinDir(c))
	}
	mech := st.NATMechanism
	if mech == "" && running == maps.NATOwn {
		mech = loader.NATOwnTranslation
	}
	return loader.ResolveNAT(want, mech, st.Object)
}
