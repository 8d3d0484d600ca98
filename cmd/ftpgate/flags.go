package main

import (
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/loader"
)

// commonFlag reads a flag that a command and its parent both define
// (--pin-dir, --netns, --state-dir): `ports --pin-dir X add` sets it on
// `ports`, and the subcommand's own flag, unset, would give its default. The
// nearest level that sets it wins, so the last one on the command line does;
// none set gives the default.
func commonFlag(c *cli.Context, name string) string {
	for _, level := range c.Lineage() {
		if slices.Contains(level.LocalFlagNames(), name) {
			return level.String(name)
		}
	}
	return c.String(name)
}

func pinDir(c *cli.Context) string { return commonFlag(c, "pin-dir") }

func netNS(c *cli.Context) string { return commonFlag(c, "netns") }

func stateDir(c *cli.Context) loader.StateDir { return loader.StateDir(commonFlag(c, "state-dir")) }

// flagsFirst moves the flags that follow a command's arguments in front of
// them, so that `ports add 2121 --pin-dir X` means `ports add --pin-dir X
// 2121`: urfave/cli stops reading flags at the first argument. It walks args
// down app's command tree as the parser will, so a value flag (--pin-dir X)
// moves with its value and a bool flag alone; after "--" nothing moves.
// Flags it does not know move too, and the parser then names them.
func flagsFirst(app *cli.App, args []string) []string {
	if len(args) == 0 {
		return args
	}
	out := []string{args[0]}
	flags, cmds := app.Flags, app.Commands
	rest := args[1:]
	// takeFlag appends the flag at rest[i] (and its value) to *to, returning
	// the index of the last token taken.
	takeFlag := func(to *[]string, i int) int {
		*to = append(*to, rest[i])
		if takesValue(flags, rest[i]) && i+1 < len(rest) {
			i++
			*to = append(*to, rest[i])
		}
		return i
	}
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		switch {
		case a == "--":
			return append(out, rest[i:]...)
		case isFlag(a):
			i = takeFlag(&out, i)
			continue
		}
		if cmd := findCommand(cmds, a); cmd != nil {
			out = append(out, a)
			flags, cmds = cmd.Flags, cmd.Subcommands
			continue
		}
		// the first argument of the command: flags stop here
		var moved, positional, end, dangling []string
		for j := i; j < len(rest); j++ {
			switch b := rest[j]; {
			case isFlag(b) && takesValue(flags, b) && j == len(rest)-1:
				// a value flag with no value: moved in front, it would take
				// the first argument as its value; left last, it is refused
				// as an argument
				dangling = append(dangling, b)
			case b == "--":
				// it now ends the flags before all the arguments
				end = []string{b}
				positional = append(positional, rest[j+1:]...)
				j = len(rest)
			case isFlag(b):
				j = takeFlag(&moved, j)
			default:
				positional = append(positional, b)
			}
		}
		if slices.ContainsFunc(moved, isHelp) {
			// help takes no arguments: the parser would read one as a topic
			return append(out, moved...)
		}
		return slices.Concat(out, moved, end, positional, dangling)
	}
	return out
}

func isHelp(arg string) bool { return arg == "-h" || arg == "--help" || arg == "-help" }

func isFlag(arg string) bool { return len(arg) > 1 && arg[0] == '-' }

// takesValue says whether arg, a flag among flags, reads the next argument.
func takesValue(flags []cli.Flag, arg string) bool {
	name := strings.TrimLeft(arg, "-")
	if strings.Contains(name, "=") {
		return false
	}
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			v, ok := f.(interface{ TakesValue() bool })
			return ok && v.TakesValue()
		}
	}
	return false // --help, --version, or unknown: the parser reports those
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}
