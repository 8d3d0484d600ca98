package main

import (
	"fmt"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/maps"
)

func expectationsCommand() *cli.Command {
	return &cli.Command{
		Name:  "expectations",
		Usage: "list the live expectations (negotiated data connections not yet made)",
		Flags: commonFlags(jsonFlag()),
		Action: func(c *cli.Context) error {
			m, err := openMaps(c)
			if err != nil {
				return err
			}
			defer m.Close()
			list, err := m.ListExpectations()
			if err != nil {
				return err
			}
			// expired entries the ager has not reclaimed yet admit nothing
			list = slices.DeleteFunc(list, func(e maps.Expectation) bool { return e.ExpiresIn <= 0 })
			slices.SortFunc(list, func(a, b maps.Expectation) int { return int(a.ExpiresIn - b.ExpiresIn) })
			if c.Bool("json") {
				if list == nil {
					list = []maps.Expectation{}
				}
				return printJSON(c.App.Writer, list)
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KIND\tFROM\tTO\tEXPIRES IN\tCONTROL CONNECTION")
			for _, e := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Kind, e.Src, joinHostPort(e.Dst, e.DPort),
					e.ExpiresIn.Round(time.Second), control(e.Control))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(list) == 0 {
				fmt.Fprintln(c.App.Writer, "(none)")
			}
			return nil
		},
	}
}
