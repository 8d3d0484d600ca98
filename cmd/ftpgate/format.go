package main

import (
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/ftpgate/ftpgate/maps"
)

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

// table prints the header, if any, and a line per row in aligned columns;
// row gives its tab-separated cells.
func table[T any](w io.Writer, header string, rows []T, row func(T) string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if header != "" {
		fmt.Fprintln(tw, header)
	}
	for _, r := range rows {
		fmt.Fprintln(tw, row(r))
	}
	return tw.Flush()
}

// printCounters prints counters in the programs' order, with each line
// indented; zero ones only with all.
func printCounters(w io.Writer, indent string, counters map[string]uint64, all bool) error {
	names, err := maps.CounterNames()
	if err != nil {
		return err
	}
	// the names are shared: filter a copy
	names = slices.DeleteFunc(slices.Clone(names), func(n string) bool { return counters[n] == 0 && !all })
	return table(w, "", names, func(n string) string { return fmt.Sprintf("%s%s\t%d", indent, n, counters[n]) })
}

// withInside shows a data connection's public end and, when ftpgate NATs
// it, the inside end it reaches.
func withInside(public string, inside netip.AddrPort) string {
	if !inside.IsValid() {
		return public
	}
	return fmt.Sprintf("%s (inside %s)", public, inside)
}
