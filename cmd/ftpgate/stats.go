package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/maps"
)

func statsCommand() *cli.Command {
	return &cli.Command{
		Name:  "stats",
		Usage: "print the named counters (events, and every reason a packet was dropped or a line ignored)",
		Flags: commonFlags(jsonFlag(), &cli.BoolFlag{Name: "all", Usage: "include counters that are zero"}),
		Action: func(c *cli.Context) error {
			m, err := openMaps(c)
			if err != nil {
				return err
			}
			defer m.Close()
			counters, err := m.Counters()
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, map[string]any{"counters": counters})
			}
			names, err := maps.CounterNames()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			for _, n := range names {
				if counters[n] != 0 || c.Bool("all") {
					fmt.Fprintf(tw, "%s\t%d\n", n, counters[n])
				}
			}
			return tw.Flush()
		},
	}
}
