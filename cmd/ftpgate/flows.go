package main

import (
	"fmt"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/maps"
)

func flowsCommand() *cli.Command {
	return &cli.Command{
		Name:  "flows",
		Usage: "list the data flows admitted through an expectation",
		Flags: commonFlags(jsonFlag()),
		Action: func(c *cli.Context) error {
			m, err := openMaps(c)
			if err != nil {
				return err
			}
			defer m.Close()
			list, err := m.ListFlows()
			if err != nil {
				return err
			}
			slices.SortFunc(list, func(a, b maps.Flow) int { return int(a.AgeMs - b.AgeMs) })
			if c.Bool("json") {
				if list == nil {
					list = []maps.Flow{}
				}
				return printJSON(c.App.Writer, list)
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KIND\tFROM\tTO\tAGE\tPACKETS\tBYTES\tSTATE\tCONTROL CONNECTION")
			for _, f := range list {
				state := "open"
				if f.Closed {
					state = "closed"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", f.Kind, joinHostPort(f.Src, f.SPort), joinHostPort(f.Dst, f.DPort),
					f.Age.Round(time.Second), f.Packets, f.Bytes, state, control(f.Control))
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
