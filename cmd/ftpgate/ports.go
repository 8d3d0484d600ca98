package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/maps"
)

// portSet is what `ports --json` and `allow --json` print; scoped control
// ports (`ports` only) are listed apart, so "ports" keeps meaning every
// server.
type portSet struct {
	Ports  []uint16         `json:"ports"`
	Scoped []maps.PortScope `json:"scoped,omitempty"`
}

// portArg is one argument of `ports add|del` or `allow add|del`: a port for
// every server, or (control ports only) scoped to server prefixes.
type portArg struct {
	port   uint16
	scopes []maps.PortScope
}

// portsCommand builds `ports` and `allow`: list, add and del on one port
// set; scoped says whether PORT@PREFIX is accepted (control ports).
func portsCommand(name, what string, set func(*maps.Maps) maps.PortSet, scoped bool) *cli.Command {
	change := func(verb string, global func(maps.PortSet, uint16) error, scope func(maps.ScopeSet, maps.PortScope) error) *cli.Command {
		cmd := pinCommand(verb, verb+" "+what, nil, func(c *cli.Context) error {
			// the arguments are checked before anything is opened
			args, err := portArgs(c, name+" "+verb, scoped)
			if err != nil {
				return err
			}
			return withMaps(c, func(m *maps.Maps) error {
				for _, a := range args {
					if a.scopes == nil {
						if err := global(set(m), a.port); err != nil {
							return err
						}
					}
					for _, s := range a.scopes {
						if err := scope(m.CtrlScopes(), s); err != nil {
							return err
						}
					}
				}
				return nil
			})
		})
		cmd.ArgsUsage = "PORT [PORT...]"
		if scoped {
			cmd.ArgsUsage = "PORT|PORT@PREFIX [...]"
		}
		return cmd
	}
	cmd := viewCommand(name, "list, add or delete "+what,
		func(m *maps.Maps) (portSet, error) {
			ports, err := set(m).List()
			if err != nil {
				return portSet{}, err
			}
			if ports == nil {
				ports = []uint16{}
			}
			s := portSet{Ports: ports}
			if scoped {
				s.Scoped, err = m.CtrlScopes().List()
			}
			return s, err
		},
		func(c *cli.Context, s portSet) error {
			for _, p := range s.Ports {
				fmt.Fprintln(c.App.Writer, p)
			}
			for _, p := range s.Scoped {
				fmt.Fprintln(c.App.Writer, p)
			}
			return nil
		})
	cmd.Description = "Changes take effect for the next packet, with no reload, and last until the\nnext `ftpgate run`, which applies its own flags as the complete set."
	if scoped {
		cmd.Description += "\n\nPORT is parsed towards every server; PORT@PREFIX (e.g. 2121@198.51.100.0/24,\nrepeat @PREFIX for several) only towards the servers of PREFIX. `del PORT`\nstops parsing PORT towards every server (its prefixes stay); `del PORT@PREFIX`\nremoves that prefix."
	}
	cmd.Subcommands = []*cli.Command{
		change("add", maps.PortSet.Add, maps.ScopeSet.Add),
		change("del", maps.PortSet.Del, maps.ScopeSet.Del),
	}
	return cmd
}

// portArgs reads the ports after `what` (e.g. "ports add").
func portArgs(c *cli.Context, what string, scoped bool) ([]portArg, error) {
	if c.NArg() == 0 {
		return nil, fmt.Errorf("%s: give at least one port", what)
	}
	var out []portArg
	for _, a := range c.Args().Slice() {
		if scoped && strings.Contains(a, "@") {
			port, scopes, err := maps.ParsePortScopes(a)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", what, a, err)
			}
			out = append(out, portArg{port, scopes})
			continue
		}
		p, err := strconv.Atoi(a)
		if err != nil {
			if scoped {
				return nil, fmt.Errorf("%s: %q is not a port number; write PORT or %s", what, a, maps.ScopeExample)
			}
			return nil, fmt.Errorf("%s: %q is not a port number", what, a)
		}
		if err := maps.ValidPort(p); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, portArg{port: uint16(p)})
	}
	return out, nil
}

// ctrlPortsText shows the control ports as status prints them: [21 2121@198.51.100.0/24].
func ctrlPortsText(global []uint16, scoped []maps.PortScope) string {
	var parts []string
	for _, p := range global {
		parts = append(parts, strconv.Itoa(int(p)))
	}
	for _, s := range scoped {
		parts = append(parts, s.String())
	}
	return "[" + strings.Join(parts, " ") + "]"
}
