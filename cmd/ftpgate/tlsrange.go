package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/maps"
)

// tlsRangeCommand builds `tls-range`: list, add and del the servers'
// declared passive ranges (#13).
func tlsRangeCommand() *cli.Command {
	change := func(verb string, op func(maps.TLSRangeSet, maps.TLSRange) error) *cli.Command {
		cmd := pinCommand(verb, verb+" a server's TLS range", nil, func(c *cli.Context) error {
			// the arguments are checked before anything is opened
			if c.NArg() == 0 {
				return fmt.Errorf("tls-range %s: give at least one SERVER:LO-HI, e.g. 198.51.100.2:30000-30099", verb)
			}
			var rs []maps.TLSRange
			for _, a := range c.Args().Slice() {
				r, err := maps.ParseTLSRange(a)
				if err != nil {
					return fmt.Errorf("tls-range %s: %w", verb, err)
				}
				rs = append(rs, r)
			}
			return withMaps(c, func(m *maps.Maps) error {
				for _, r := range rs {
					if err := op(m.TLSRanges(), r); err != nil {
						return err
					}
				}
				return nil
			})
		})
		cmd.ArgsUsage = "SERVER:LO-HI [...]"
		return cmd
	}
	cmd := viewCommand("tls-range", "list, add or delete the passive ranges of FTPS servers",
		func(m *maps.Maps) ([]maps.TLSRange, error) {
			rs, err := m.TLSRanges().List()
			if rs == nil {
				rs = []maps.TLSRange{}
			}
			return rs, err
		},
		func(c *cli.Context, rs []maps.TLSRange) error {
			for _, r := range rs {
				fmt.Fprintln(c.App.Writer, r)
			}
			return nil
		})
	cmd.Description = "A SYN to SERVER on a port of one of its ranges is admitted only while its client\n" +
		"has a live encrypted control connection (AUTH TLS answered 234, or an --ftps-port)\n" +
		"to SERVER through this gateway; cleartext sessions keep using their PASV/EPSV\n" +
		"expectations. SERVER:LO-HI is 198.51.100.2:30000-30099 or [2001:db8::2]:30000-30099.\n" +
		"Changes take effect for the next packet and last until the next `ftpgate run`,\n" +
		"which applies its --tls-range flags as the complete set."
	cmd.Subcommands = []*cli.Command{
		change("add", maps.TLSRangeSet.Add),
		change("del", maps.TLSRangeSet.Del),
	}
	return cmd
}
