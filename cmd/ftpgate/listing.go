package main

import (
	"fmt"
	"slices"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/maps"
)

// listing describes a read-only table command over the pinned maps.
type listing[T any] struct {
	name, usage string
	header      string                        // tab-separated column titles
	read        func(*maps.Maps) ([]T, error) // the rows
	order       func(a, b T) int              // sort order
	row         func(T) string                // tab-separated cells
}

// command builds the CLI command: open the pins, read, sort, print a table
// or (with --json) a JSON array, never null.
func (l listing[T]) command() *cli.Command {
	return &cli.Command{
		Name:  l.name,
		Usage: l.usage,
		Flags: commonFlags(jsonFlag()),
		Action: func(c *cli.Context) error {
			m, err := openMaps(c)
			if err != nil {
				return err
			}
			defer m.Close()
			list, err := l.read(m)
			if err != nil {
				return err
			}
			slices.SortFunc(list, l.order)
			if c.Bool("json") {
				if list == nil {
					list = []T{}
				}
				return printJSON(c.App.Writer, list)
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, l.header)
			for _, v := range list {
				fmt.Fprintln(tw, l.row(v))
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
