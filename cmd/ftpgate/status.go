package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/loader"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show interfaces, attach modes, program ids and table fill; exit 0 only when attached",
		Flags: commonFlags(jsonFlag()),
		Action: func(c *cli.Context) error {
			if err := loader.CheckHost(); err != nil {
				return err
			}
			st, err := loader.ReadStatus(c.String("pin-dir"), stateDir(c), c.String("netns"))
			if err != nil {
				return err
			}
			if c.Bool("json") {
				if err := printJSON(c.App.Writer, st); err != nil {
					return err
				}
			} else {
				printStatus(c, st)
			}
			if err := st.Check(); err != nil {
				return cli.Exit(err.Error(), 3)
			}
			return nil
		},
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}

func printStatus(c *cli.Context, st *loader.Status) {
	w := c.App.Writer
	fmt.Fprintf(w, "pin dir:   %s\n", st.PinDir)
	if st.State != nil {
		ns := st.State.NetNS
		if ns == "" {
			ns = "(host)"
		}
		fmt.Fprintf(w, "run:       pid %d, version %s, started %s, netns %s\n", st.State.PID, st.State.Version, st.State.Started.Format("2006-01-02 15:04:05Z"), ns)
	}
	fmt.Fprintf(w, "ftp ports: %v   allowed ports: %v\n", st.Ctrl, st.Allow)
	fmt.Fprintf(w, "config:    %s\n\n", describeConfig(st.Config))

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INTERFACE\tIFINDEX\tXDP\tTC\tATTACHED")
	for _, i := range st.Ifaces {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", i.Name, i.Index, i.XDPMode, i.TCMode, yesNo(i.XDPAttached && i.TCAttached))
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROGRAM\tID\tTAG")
	for _, p := range st.Programs {
		fmt.Fprintf(tw, "%s\t%d\t%s\n", p.Name, p.ID, p.Tag)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TABLE\tENTRIES\tCAPACITY")
	for _, m := range st.Maps {
		fmt.Fprintf(tw, "%s\t%d\t%d\n", m.Name, m.Entries, m.Capacity)
	}
	tw.Flush()
}
