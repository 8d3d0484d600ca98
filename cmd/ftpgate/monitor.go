package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/cilium/ebpf/ringbuf"
	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/maps"
)

func monitorCommand() *cli.Command {
	cmd := mapsCommand("monitor", "stream expectation events and rejections as they happen (like conntrack -E expect)",
		[]cli.Flag{jsonFlag(), &cli.IntFlag{Name: "count", Usage: "exit after `N` events (0: run until interrupted)"}}, monitor)
	cmd.Description = `monitor reads the events ring buffer until interrupted: expectations created,
consumed, evicted, expired and closed, and every rejected command or reply with
its reason. One reader at a time sees the events.`
	return cmd
}

func monitor(c *cli.Context, m *maps.Maps) error {
	rd, err := ringbuf.NewReader(m.Events)
	if err != nil {
		return fmt.Errorf("read %s: %w", maps.NameEvents, err)
	}
	defer rd.Close()
	// readiness, on stderr so that JSON on stdout stays clean
	fmt.Fprintf(c.App.ErrWriter, "monitoring %s/%s (interrupt to stop)\n", pinDir(c), maps.NameEvents)

	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); rd.Close() }()

	for n := 0; c.Int("count") == 0 || n < c.Int("count"); n++ {
		rec, err := rd.Read()
		if errors.Is(err, ringbuf.ErrClosed) || errors.Is(ctx.Err(), context.Canceled) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read events: %w", err)
		}
		ev, err := maps.DecodeEvent(rec.RawSample)
		if err != nil {
			return err
		}
		if c.Bool("json") {
			if err := printJSONLine(c, ev); err != nil {
				return err
			}
			continue
		}
		what := "[" + ev.Type + "]"
		if ev.Reason != "" {
			what = "[" + ev.Reason + "]"
		}
		flow := "-"
		if ev.Src.IsValid() {
			flow = fmt.Sprintf("%s -> %s", ev.Src, joinHostPort(ev.Dst, ev.DPort))
		}
		fmt.Fprintf(c.App.Writer, "%-22s %-5s %s  control %s\n", what, ev.Kind, flow, control(ev.Control))
	}
	return nil
}
