package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/loader"
	"github.com/ftpgate/ftpgate/maps"
)

// run builds the CLI and runs it; output goes to the given writers so that
// tests can read it. It returns the process exit status.
func run(args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	if err := app.Run(flagsFirst(app, args)); err != nil {
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			if msg := err.Error(); msg != "" {
				fmt.Fprintf(stderr, "ftpgate: %s\n", msg)
			}
			return ec.ExitCode()
		}
		fmt.Fprintf(stderr, "ftpgate: %s\n", err)
		return 1
	}
	return 0
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:      "ftpgate",
		Usage:     "an FTP application-layer gateway in eBPF/XDP",
		Version:   loader.Version,
		Writer:    stdout,
		ErrWriter: stderr,
		// errors are printed once, by run
		ExitErrHandler:  func(*cli.Context, error) {},
		HideHelpCommand: true,
		Commands: []*cli.Command{
			runCommand(),
			statusCommand(),
			expectationsCommand(),
			flowsCommand(),
			ctrlCommand(),
			statsCommand(),
			configCommand(),
			portsCommand("ports", "control ports (FTP control channels are parsed there; adding one does not allow connections to it)", (*maps.Maps).CtrlPorts, true),
			portsCommand("allow", "allowed ports (new connections to them are admitted)", (*maps.Maps).AllowPorts, false),
			tlsRangeCommand(),
			monitorCommand(),
			replayCommand(),
			detachCommand(),
			versionCommand(),
		},
	}
}

// flags shared by every command
func pinDirFlag() cli.Flag {
	return &cli.StringFlag{Name: "pin-dir", Value: loader.DefaultPinDir, Usage: "bpffs directory holding ftpgate's pinned maps, programs and links"}
}

// stateDirFlag is hidden: operators keep the default, tests and side-by-side
// instances give their own.
func stateDirFlag() cli.Flag {
	return &cli.StringFlag{Name: "state-dir", Value: string(loader.DefaultStateDir), Hidden: true, Usage: "directory of run's state files"}
}

func netnsFlag() cli.Flag {
	return &cli.StringFlag{Name: "netns", Usage: "network namespace (`NAME` under /var/run/netns) for interfaces and netlink; pins stay in the host's bpffs"}
}

func jsonFlag() cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: "print JSON with stable field names"}
}

func commonFlags(extra ...cli.Flag) []cli.Flag {
	return append([]cli.Flag{pinDirFlag(), netnsFlag(), stateDirFlag()}, extra...)
}

// pinCommand builds a command on the dataplane pinned at --pin-dir: every
// such command takes --pin-dir and --netns, read with pinDir and netNS so that
// they count on a parent command too.
func pinCommand(name, usage string, flags []cli.Flag, action cli.ActionFunc) *cli.Command {
	return &cli.Command{Name: name, Usage: usage, Flags: commonFlags(flags...), Action: action}
}

// mapsCommand builds a command whose action works on the pinned maps,
// opened for it and closed after.
func mapsCommand(name, usage string, flags []cli.Flag, action func(*cli.Context, *maps.Maps) error) *cli.Command {
	return pinCommand(name, usage, flags, func(c *cli.Context) error {
		return withMaps(c, func(m *maps.Maps) error { return action(c, m) })
	})
}

// viewCommand builds a read-only command: it reads a value from the pinned
// maps and prints it as JSON with --json, else as text.
func viewCommand[T any](name, usage string, read func(*maps.Maps) (T, error), text func(*cli.Context, T) error, extra ...cli.Flag) *cli.Command {
	return mapsCommand(name, usage, append([]cli.Flag{jsonFlag()}, extra...), func(c *cli.Context, m *maps.Maps) error {
		v, err := read(m)
		if err != nil {
			return err
		}
		if c.Bool("json") {
			return printJSON(c.App.Writer, v)
		}
		return text(c, v)
	})
}

// withMaps opens the pinned maps named by --pin-dir for f.
func withMaps(c *cli.Context, f func(*maps.Maps) error) error {
	if err := loader.CheckHost(); err != nil {
		return err
	}
	m, err := maps.Open(pinDir(c))
	if err != nil {
		return err
	}
	defer m.Close()
	return f(m)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("unknown log level %q: use debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// printJSONLine prints v as one line of JSON (streams).
func printJSONLine(c *cli.Context, v any) error {
	return json.NewEncoder(c.App.Writer).Encode(v)
}
