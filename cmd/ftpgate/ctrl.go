package main

import (
	"fmt"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/maps"
)

func ctrlCommand() *cli.Command {
	return &cli.Command{
		Name:  "ctrl",
		Usage: "list the FTP control connections being parsed",
		Flags: commonFlags(jsonFlag()),
		Action: func(c *cli.Context) error {
			m, err := openMaps(c)
			if err != nil {
				return err
			}
			defer m.Close()
			list, err := m.ListConns()
			if err != nil {
				return err
			}
			slices.SortFunc(list, func(a, b maps.Conn) int { return int(a.AgeMs - b.AgeMs) })
			if c.Bool("json") {
				if list == nil {
					list = []maps.Conn{}
				}
				return printJSON(c.App.Writer, list)
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CLIENT\tSERVER\tAGE\tIDLE\tLINES C/S\tPENDING\tSTATE")
			for _, k := range list {
				state := "open"
				if k.Closing {
					state = "closing"
				}
				pending := k.Pending
				if pending == "" {
					pending = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", joinHostPort(k.Client, k.ClientPort), joinHostPort(k.Server, k.ServerPort),
					(time.Duration(k.AgeMs) * time.Millisecond).Round(time.Second), (time.Duration(k.IdleMs) * time.Millisecond).Round(time.Second),
					k.ClientLines, k.ServerLines, pending, state)
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
