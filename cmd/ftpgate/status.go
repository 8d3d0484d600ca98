package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/loader"
)

func statusCommand() *cli.Command {
	return pinCommand("status", "show interfaces, attach modes, program ids and table fill; exit 0 only when attached and run is running",
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
			// attached and filtering, but degraded: a code of its own, so that
			// monitoring sees it and a script that only asks "attached?" can
			// accept 0 and 4
			if err := st.CheckDaemon(); err != nil {
				return cli.Exit(err.Error(), 4)
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

// seen is the mode the kernel reports, or the recorded one marked missing.
func seen(kernel, recorded string, attached bool) string {
	if attached {
		return kernel
	}
	return recorded + " (missing)"
}

func printStatus(c *cli.Context, st *loader.Status) error {
	w := c.App.Writer
	fmt.Fprintf(w, "pin dir:   %s\n", st.PinDir)
	if st.State != nil {
		ns := st.State.NetNS
		if ns == "" {
			ns = "(host)"
		}
		if st.Daemon.Running {
			fmt.Fprintf(w, "run:       pid %d, version %s, started %s, netns %s\n", st.Daemon.PID, st.State.Version, st.State.Started.Format("2006-01-02 15:04:05Z"), ns)
		} else {
			fmt.Fprintf(w, "run:       not running (%s); the dataplane stays attached — start `ftpgate run` again to age entries\n", st.Daemon.Reason)
		}
	}
	if st.State != nil && st.State.Object.Variant != "" {
		fmt.Fprintf(w, "object:    %s\n", objectText(st.State.Object))
	}
	fmt.Fprintf(w, "ftp ports: %s   allowed ports: %v\n", ctrlPortsText(st.Ctrl, st.Scoped), st.Allow)
	fmt.Fprintf(w, "config:    %s\n\n", describeConfig(st.Config))
	if st.Group != nil {
		if err := printGroup(w, st.Group); err != nil {
			return err
		}
	}

	// what the kernel shows; the modes run attached when a program is missing
	table(w, "INTERFACE\tIFINDEX\tXDP\tTC\tATTACHED", st.Ifaces, func(i loader.IfaceStatus) string {
		if !i.Present {
			return fmt.Sprintf("%s\t-\t%s\t%s\tNO (interface gone)", i.Name, i.XDPMode, i.TCMode)
		}
		xdp, tc := seen(string(i.XDPSeen), string(i.XDPMode), i.XDPAttached)+xdpAttachText(i.IfaceState), seen(string(i.TCSeen), string(i.TCMode), i.TCAttached)
		if i.AdmitHook == loader.AdmitTC {
			xdp = "- (admit-hook tc)"
			tc += " + admission"
			if !i.TCAdmitAttached {
				tc += " (missing)"
			}
		}
		return fmt.Sprintf("%s	%d	%s	%s	%s", i.Name, i.IndexSeen, xdp, tc, yesNo(i.Admitting() && i.TCAttached))
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

// objectText says which build of the programs runs and what it means for --nat.
func objectText(o loader.Object) string {
	switch {
	case o.NATRefused == "":
		return o.Variant + " (--nat takes data connections inside through conntrack entries, or ftpgate's own translation with --nat-mechanism own)"
	case o.NATOwnRefused == "":
		return fmt.Sprintf("%s (--nat takes data connections inside by ftpgate's own translation: the kernel refused the conntrack NAT object: %s)", o.Variant, o.NATRefused)
	}
	return fmt.Sprintf("%s (--nat unavailable: the kernel refused the NAT object: %s; and the own-translation one: %s)", o.Variant, o.NATRefused, o.NATOwnRefused)
}

// xdpAttachText says how the XDP hook is held when it is not a plain link.
func xdpAttachText(i loader.IfaceState) string {
	if i.XDPAttach != loader.AttachLibxdp {
		return ""
	}
	return fmt.Sprintf(" (libxdp, priority %d)", i.XDPPriority)
}
