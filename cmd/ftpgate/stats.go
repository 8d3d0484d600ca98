package main

import (
	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/maps"
)

// counterSet is what `stats --json` prints.
type counterSet struct {
	Counters map[string]uint64 `json:"counters"`
}

func statsCommand() *cli.Command {
	return viewCommand("stats", "print the named counters (events, and every reason a packet was dropped or a line ignored)",
		func(m *maps.Maps) (counterSet, error) {
			counters, err := m.Counters()
			return counterSet{counters}, err
		},
		func(c *cli.Context, s counterSet) error {
			return printCounters(c.App.Writer, "", s.Counters, c.Bool("all"))
		},
		&cli.BoolFlag{Name: "all", Usage: "include counters that are zero"})
}
