package main

import (
	"fmt"
	"net/netip"

	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/internal/replay"
	"github.com/ftpgate/ftpgate/loader"
	"github.com/ftpgate/ftpgate/maps"
)

func replayCommand() *cli.Command {
	return &cli.Command{
		Name:  "replay",
		Usage: "run a capture through the real programs offline and print expectations and verdicts",
		Description: `replay loads the BPF programs without attaching them and runs every packet of
a pcap or pcapng capture (Ethernet, Linux cooked SLL/SLL2 or raw IP) through
them with BPF_PROG_TEST_RUN, in order: XDP first, as if the packet arrived on a
guarded interface, then TC ingress if it passed. Packets from a --local prefix
are outbound: TC egress only. The reverse-path check (--rp-check strict) is
emulated from the capture's Ethernet addresses: a packet from a --local source
sent by a MAC address other than the ones outside packets are sent to (the
protected side's) arrived from outside: a control segment among them counts
as ctrl_spoofed and is not parsed. Time follows the capture, so expectations expire
as they would have on the wire. No interface is touched. Runt frames are
skipped and counted; GRO/TSO super-segments are parsed as the live parser
reads them (their first 4096 payload bytes; the rest is a gap).`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "pcap", Required: true, Usage: "capture `FILE` (pcap or pcapng)"},
			&cli.StringSliceFlag{Name: "local", Usage: "`CIDR` of the protected side: its packets are outbound, unless they arrived from outside (repeat)"},
			jsonFlag(),
		}, settingFlags(inReplay)...),
		Action: replayAction,
	}
}

func replayAction(c *cli.Context) error {
	var o loader.Options
	if err := applySettings(c, inReplay, &o); err != nil {
		return err
	}
	opts := replay.Options{CtrlPorts: o.CtrlPorts, CtrlScopes: o.CtrlScopes, AllowPorts: o.AllowPorts, Config: o.Config}
	for _, s := range c.StringSlice("local") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("--local %q is not a prefix (e.g. 198.51.100.0/24 or 2001:db8::/32)", s)
		}
		opts.Local = append(opts.Local, p.Masked())
	}
	frames, err := replay.ReadCapture(c.String("pcap"))
	if err != nil {
		return err
	}
	res, err := replay.Run(frames, opts)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, res)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "%d packets replayed\n", res.Packets)
	if res.RuntFrames > 0 {
		fmt.Fprintf(w, "%d runt frame(s) skipped: shorter than their link-layer header or a 14-byte Ethernet header\n", res.RuntFrames)
	}
	if res.OversizedFrames > 0 {
		fmt.Fprintf(w, "%d oversized frame(s) (GRO/TSO): XDP saw their headers, the parser the first %d payload bytes of each control segment, as live (the rest counts as a gap)\n",
			res.OversizedFrames, maps.MaxScanBytes)
	}
	fmt.Fprintf(w, "\nexpectations created: %d\n", len(res.Expectations))
	table(w, "", res.Expectations, func(e *replay.Expectation) string {
		return fmt.Sprintf("  %s\t%s\t-> %s\t%s\tcontrol %s", e.Kind, e.Src, joinHostPort(e.Dst, e.DPort), e.Fate, control(e.Control))
	})
	fmt.Fprintf(w, "\nconnection attempts: %d\n", len(res.Connections))
	table(w, "", res.Connections, func(k replay.Connection) string {
		return fmt.Sprintf("  %s\t%s\t-> %s\t%s", k.Verdict, joinHostPort(k.Src, k.SPort), joinHostPort(k.Dst, k.DPort), k.Reason)
	})
	fmt.Fprintln(w, "\ncounters:")
	return printCounters(w, "  ", res.Counters, false)
}
