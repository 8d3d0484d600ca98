package main

import (
	"fmt"
	"slices"
	"strings"
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

func joinHostPort(a fmt.Stringer, port uint16) string {
	s := a.String()
	if strings.Contains(s, ":") {
		return fmt.Sprintf("[%s]:%d", s, port)
	}
	return fmt.Sprintf("%s:%d", s, port)
}

func control(c maps.Control) string {
	return joinHostPort(c.Client, c.ClientPort) + " -> " + joinHostPort(c.Server, c.ServerPort)
}
