package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/maps"
)

// portsCommand builds `ports` and `allow`: list, add and del on one port set.
func portsCommand(name, what string, set func(*maps.Maps) maps.PortSet) *cli.Command {
	change := func(verb string, apply func(maps.PortSet, uint16) error) *cli.Command {
		return &cli.Command{
			Name:      verb,
			Usage:     verb + " " + what,
			ArgsUsage: "PORT [PORT...]",
			Flags:     commonFlags(),
			Action: func(c *cli.Context) error {
				if c.NArg() == 0 {
					return fmt.Errorf("%s %s: give at least one port", name, verb)
				}
				var ports []uint16
				for _, a := range c.Args().Slice() {
					if strings.HasPrefix(a, "-") {
						return fmt.Errorf("%s %s: %q: flags go before the ports (ftpgate %s %s --pin-dir DIR PORT...)", name, verb, a, name, verb)
					}
					p, err := strconv.Atoi(a)
					if err != nil {
						return fmt.Errorf("%s %s: %q is not a port number", name, verb, a)
					}
					if err := maps.ValidPort(p); err != nil {
						return fmt.Errorf("%s %s: %w", name, verb, err)
					}
					ports = append(ports, uint16(p))
				}
				m, err := openMaps(c)
				if err != nil {
					return err
				}
				defer m.Close()
				for _, p := range ports {
					if err := apply(set(m), p); err != nil {
						return err
					}
				}
				return nil
			},
		}
	}
	return &cli.Command{
		Name:        name,
		Usage:       "list, add or delete " + what,
		Description: "Changes take effect for the next packet, with no reload, and last until the\nnext `ftpgate run`, which applies its own flags as the complete set.",
		Flags:       commonFlags(jsonFlag()),
		Subcommands: []*cli.Command{
			change("add", maps.PortSet.Add),
			change("del", maps.PortSet.Del),
		},
		Action: func(c *cli.Context) error {
			m, err := openMaps(c)
			if err != nil {
				return err
			}
			defer m.Close()
			ports, err := set(m).List()
			if err != nil {
				return err
			}
			if c.Bool("json") {
				if ports == nil {
					ports = []uint16{}
				}
				return printJSON(c.App.Writer, map[string]any{"ports": ports})
			}
			for _, p := range ports {
				fmt.Fprintln(c.App.Writer, p)
			}
			return nil
		},
	}
}
