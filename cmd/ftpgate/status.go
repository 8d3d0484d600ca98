package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/loader"
)

func statusCommand() *cli.Command {
	return pinCommand("status", "show interfaces, attach modes, program ids and table fill; exit 0 only when attached",
		[]cli.Flag{jsonFlag()}, func(c *cli.Context) error {
			if err := loader.CheckHost(); err != nil {
				return err
			}
			st, err := loader.ReadStatus(pinDir(c), stateDir(c), netNS(c))
			if err != nil {
				return err
			}
			if c.Bool("json") {
				err = printJSON(c.App.Writer, st)
			} else {
				err = printStatus(c, st)
			}
			if err != nil {
				return err
			}
			if err := st.Check(); err != nil {
				return cli.Exit(err.Error(), 3)
			}
			return nil
		})
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}

func printStatus(c *cli.Context, st *loader.Status) error {
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

	table(w, "INTERFACE\tIFINDEX\tXDP\tTC\tATTACHED", st.Ifaces, func(i loader.IfaceStatus) string {
		return fmt.Sprintf("%s\t%d\t%s\t%s\t%s", i.Name, i.Index, i.XDPMode, i.TCMode, yesNo(i.XDPAttached && i.TCAttached))
	})
	fmt.Fprintln(w)
	table(w, "PROGRAM\tID\tTAG", st.Programs, func(p loader.ProgramStatus) string {
		return fmt.Sprintf("%s\t%d\t%s", p.Name, p.ID, p.Tag)
	})
	fmt.Fprintln(w)
	return table(w, "TABLE\tENTRIES\tCAPACITY", st.Maps, func(m loader.MapStatus) string {
		return fmt.Sprintf("%s\t%d\t%d", m.Name, m.Entries, m.Capacity)
	})
}
