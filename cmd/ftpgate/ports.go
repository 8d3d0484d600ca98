package main

import (
	"fmt"
	"strconv"

	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/maps"
)

// portSet is what `ports --json` and `allow --json` print.
type portSet struct {
	Ports []uint16 `json:"ports"`
}

// portsCommand builds `ports` and `allow`: list, add and del on one port set.
func portsCommand(name, what string, set func(*maps.Maps) maps.PortSet) *cli.Command {
	change := func(verb string, apply func(maps.PortSet, uint16) error) *cli.Command {
		cmd := pinCommand(verb, verb+" "+what, nil, func(c *cli.Context) error {
			// the arguments are checked before anything is opened
			ports, err := portArgs(c, name+" "+verb)
			if err != nil {
				return err
			}
			return withMaps(c, func(m *maps.Maps) error {
				for _, p := range ports {
					if err := apply(set(m), p); err != nil {
						return err
					}
				}
				return nil
			})
		})
		cmd.ArgsUsage = "PORT [PORT...]"
		return cmd
	}
	cmd := viewCommand(name, "list, add or delete "+what,
		func(m *maps.Maps) (portSet, error) {
			ports, err := set(m).List()
			if ports == nil {
				ports = []uint16{}
			}
			return portSet{ports}, err
		},
		func(c *cli.Context, s portSet) error {
			for _, p := range s.Ports {
				fmt.Fprintln(c.App.Writer, p)
			}
			return nil
		})
	cmd.Description = "Changes take effect for the next packet, with no reload, and last until the\nnext `ftpgate run`, which applies its own flags as the complete set."
	cmd.Subcommands = []*cli.Command{
		change("add", maps.PortSet.Add),
		change("del", maps.PortSet.Del),
	}
	return cmd
}

// portArgs reads the port numbers after `what` (e.g. "ports add").
func portArgs(c *cli.Context, what string) ([]uint16, error) {
	if c.NArg() == 0 {
		return nil, fmt.Errorf("%s: give at least one port", what)
	}
	var ports []uint16
	for _, a := range c.Args().Slice() {
		p, err := strconv.Atoi(a)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a port number", what, a)
		}
		if err := maps.ValidPort(p); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		ports = append(ports, uint16(p))
	}
	return ports, nil
}
