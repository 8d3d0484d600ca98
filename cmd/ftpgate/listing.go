package main

import (
	"fmt"
	"slices"

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

// command builds the CLI command: read, sort, print a table or (with
// --json) a JSON array, never null.
func (l listing[T]) command() *cli.Command {
	read := func(m *maps.Maps) ([]T, error) {
		list, err := l.read(m)
		slices.SortFunc(list, l.order)
		if list == nil {
			list = []T{}
		}
		return list, err
	}
	return viewCommand(l.name, l.usage, read, func(c *cli.Context, list []T) error {
		if err := table(c.App.Writer, l.header, list, l.row); err != nil {
			return err
		}
		if len(list) == 0 {
			fmt.Fprintln(c.App.Writer, "(none)")
		}
		return nil
	})
}
