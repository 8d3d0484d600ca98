package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/cilium/ebpf/ringbuf"
	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/loader"
	"github.com/ftpgate/ftpgate/maps"
)

func monitorCommand() *cli.Command {
	cmd := mapsCommand("monitor", "stream expectation events, rejections and dropped SYNs as they happen (like conntrack -E expect)",
		[]cli.Flag{jsonFlag(), &cli.IntFlag{Name: "count", Usage: "exit after `N` events (0: run until interrupted)"}}, monitor)
	cmd.Description = `monitor prints events as they happen, each with its time: expectations
created, consumed, evicted, expired and closed, every rejected command or reply
with its reason, and every dropped (or, in dry-run, would-be dropped) data SYN
with its reason. Rejections and dropped SYNs are rate-limited in the kernel
(the rest count as events_suppressed); expectation events never are.

While ` + "`ftpgate run`" + ` is live, monitor gets the events from run (any number of
monitors at once). Without a live run it reads the ring buffer itself,
skipping what was there before it started; it says so on stderr.`
	return cmd
}

// timeLayout is the text format of an event's time: wall clock, milliseconds.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// eventSource is where monitor reads raw event records from: run's socket
// or, without a live run, the ring itself.
type eventSource interface {
	// read returns the next record and how many events were missed before it
	read() ([]byte, uint32, error)
	Close() error
}

type ringSource struct{ rd *ringbuf.Reader }

func (r ringSource) read() ([]byte, uint32, error) {
	rec, err := r.rd.Read()
	if errors.Is(err, ringbuf.ErrClosed) {
		return nil, 0, io.EOF
	}
	return rec.RawSample, 0, err
}

func (r ringSource) Close() error { return r.rd.Close() }

type socketSource struct{ *loader.EventStream }

func (s socketSource) read() ([]byte, uint32, error) { return s.Read() }

// openEvents connects to run's events socket, or falls back to the ring;
// direct tells which.
func openEvents(c *cli.Context, m *maps.Maps) (src eventSource, direct bool, err error) {
	path := stateDir(c).EventsSocket(pinDir(c))
	st, err := loader.DialEvents(path)
	if err == nil {
		fmt.Fprintf(c.App.ErrWriter, "monitoring the events of `ftpgate run` (%s; interrupt to stop)\n", path)
		return socketSource{st}, false, nil
	}
	// the ring has one reader position: reading it beside a live run would
	// split the events between the two
	if pid, ok := loader.RunHolding(pinDir(c)); ok {
		return nil, false, fmt.Errorf("`ftpgate run` (pid %d) holds %s but serves no events on %s (%v): give monitor the --state-dir run was given, or restart run", pid, pinDir(c), path, errors.Unwrap(err))
	}
	rd, rerr := ringbuf.NewReader(m.Events)
	if rerr != nil {
		return nil, false, fmt.Errorf("read %s: %w", maps.NameEvents, rerr)
	}
	fmt.Fprintf(c.App.ErrWriter, "no live `ftpgate run` serves events (%v): reading the ring directly, skipping older events\n", errors.Unwrap(err))
	// readiness, on stderr so that JSON on stdout stays clean
	fmt.Fprintf(c.App.ErrWriter, "monitoring %s/%s (interrupt to stop)\n", pinDir(c), maps.NameEvents)
	return ringSource{rd}, true, nil
}

func monitor(c *cli.Context, m *maps.Maps) error {
	cfg, err := m.GetConfig()
	if err != nil {
		return err
	}
	clock, err := maps.NewWallClock(cfg.ClockOffset)
	if err != nil {
		return err
	}
	start := clock.Now()

	src, direct, err := openEvents(c, m)
	if err != nil {
		return err
	}
	defer src.Close()
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); src.Close() }()

	for n := 0; c.Int("count") == 0 || n < c.Int("count"); {
		raw, missed, err := src.read()
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, io.EOF) {
			fmt.Fprintln(c.App.ErrWriter, "`ftpgate run` stopped serving events")
			return nil
		}
		if err != nil {
			return fmt.Errorf("read events: %w", err)
		}
		if missed > 0 {
			fmt.Fprintf(c.App.ErrWriter, "%d events missed: monitor is slower than the events\n", missed)
		}
		ev, err := maps.DecodeEvent(raw)
		if err != nil {
			return err
		}
		if direct && ev.Time < start {
			continue // left in the ring before monitor started
		}
		ev.Wall = clock.Wall(ev.Time)
		n++
		if c.Bool("json") {
			if err := printJSONLine(c, ev); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintln(c.App.Writer, eventLine(ev))
	}
	return nil
}

// eventLine is an event as monitor prints it in text.
func eventLine(ev maps.Event) string {
	what := "[" + ev.Type + "]"
	if ev.Reason != "" {
		what = "[" + ev.Reason + "]"
	}
	when := ev.Wall.Format(timeLayout)
	switch ev.Type {
	case maps.EventSYNDrop, maps.EventTLSRangePass, maps.EventTLSRangeDrop:
		return fmt.Sprintf("%s %-22s SYN %s -> %s", when, what, joinHostPort(ev.Src, ev.SPort), joinHostPort(ev.Dst, ev.DPort))
	case maps.EventTLSStart:
		return fmt.Sprintf("%s %-22s %-5s control %s", when, what, ev.TLS, control(ev.Control))
	case maps.EventLoginCleartext:
		// the client's address is who sent a password in clear
		return fmt.Sprintf("%s %-22s client %s  control %s", when, what, ev.Control.Client, control(ev.Control))
	}
	flow := "-"
	if ev.Src.IsValid() {
		flow = fmt.Sprintf("%s -> %s", ev.Src, joinHostPort(ev.Dst, ev.DPort))
	}
	if ev.Inside.IsValid() {
		flow += " (inside " + ev.Inside.String() + ")"
	}
	return fmt.Sprintf("%s %-22s %-5s %s  control %s", when, what, ev.Kind, flow, control(ev.Control))
}

// serveEvents drains the event ring for monitors while run runs. Without
// the socket run leaves the ring alone, and monitors read it themselves.
func serveEvents(dp *loader.Dataplane, opts loader.Options, log *slog.Logger, consumers ...func([]byte)) (stop func()) {
	path := opts.StateDir.EventsSocket(opts.PinDir)
	srv, err := loader.ServeEvents(dp.Maps, path, log)
	if err != nil {
		log.Warn("not serving events: monitor will read the ring itself", "err", err)
		if len(consumers) > 0 {
			log.Error("the gateway group gets no events of this gateway: its peers learn nothing from it")
		}
		return func() {}
	}
	for _, fn := range consumers {
		srv.AddConsumer(fn)
	}
	log.Info("serving events", "socket", path)
	return func() {
		if err := srv.Close(); err != nil {
			log.Warn("close events socket", "err", err)
		}
	}
}
