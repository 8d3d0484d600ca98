package main

import (
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/loader"
)

// commonFlag reads a flag that a command and its parent both define
// (--pin-dir, --netns, --state-dir): `ports --pin-dir X add` sets it on
// `ports`, and the subcommand's own flag, unset, would give its default. The
// nearest level that sets it wins, so the last one on the command line does;
// none set gives the default.
func commonFlag(c *cli.Context, name string) string {
	for _, level := range c.Lineage() {
		if slices.Contains(level.LocalFlagNames(), name) {
			return level.String(name)
		}
	}
	return c.String(name)
}

func pinDir(c *cli.Context) string { return commonFlag(c, "pin-dir") }

func netNS(c *cli.Context) string { return commonFlag(c, "netns") }

func stateDir(c *cli.Context) loader.StateDir { return loader.StateDir(commonFlag(c, "state-dir")) }
