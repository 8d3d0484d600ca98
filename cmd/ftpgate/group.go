package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v2"

	"github.com/ftpgate/ftpgate/internal/group"
	"github.com/ftpgate/ftpgate/loader"
	"github.com/ftpgate/ftpgate/maps"
)

// groupStatusEvery is how often run records its group's state for `status`.
const groupStatusEvery = time.Second

// runGroup joins run's gateway group (#15), when --group is given: it
// returns the consumer of the dataplane's events, the metrics, and the
// function that leaves the group. Without a group all three are nil.
func runGroup(ctx context.Context, dp *loader.Dataplane, opts loader.Options, log *slog.Logger) (func([]byte), prometheus.Collector, func(), error) {
	if !opts.Group.Enabled() {
		return nil, nil, nil, nil
	}
	cfg := opts.Group
	cfg.Log = log.With("group", cfg.Group)
	policy := func() group.Policy {
		c, err := dp.Maps.GetConfig()
		if err != nil {
			c = opts.Config // what run applied: `config set` may have changed it since
		}
		return group.PolicyFrom(c)
	}
	clock := func() (time.Duration, error) {
		t, err := dp.Maps.Now()
		return time.Duration(t), err
	}
	node, err := group.Start(cfg, dp.Maps, policy, clock)
	if err != nil {
		return nil, nil, nil, err
	}
	if list, err := dp.Maps.ListExpectations(); err == nil {
		node.Seed(list) // a restarted run's own, still live
	}
	log.Info("joined gateway group", "group", cfg.Group, "node", cfg.NodeID, "origin", group.NodeHash(cfg.NodeID),
		"listen", cfg.Listen, "peers", cfg.Peers, "nats_url", cfg.NATSURL, "tls", cfg.CA != "")
	stopHolds, closeReleaser := func() {}, func() {}
	if opts.Config.SyncHold {
		if stopHolds, closeReleaser, err = releaseHeld(dp, opts.NetNS, node, log); err != nil {
			node.Close()
			return nil, nil, nil, err
		}
	}
	consume := func(raw []byte) {
		ev, err := maps.DecodeEvent(raw)
		if err != nil {
			return
		}
		node.HandleEvent(ev)
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(groupStatusEvery)
		defer t.Stop()
		for {
			if err := opts.StateDir.WriteGroup(opts.PinDir, node.Status()); err != nil {
				log.Warn("record group state", "err", err)
			}
			select {
			case <-t.C:
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	leave := func() {
		close(done)
		<-stopped
		stopHolds()  // no segment comes after this
		node.Close() // sends on those still waiting
		closeReleaser()
		opts.StateDir.RemoveGroup(opts.PinDir)
	}
	return consume, node, leave, nil
}

// releaseHeld reads the held ring (--sync-hold): each control segment TC
// held waits in the group engine for the peers' acknowledgements of its
// expectation, then the releaser sends it on (loader.Releaser). It runs
// only with --sync-hold, and renews run's lease on the hold while it reads
// (the dataplane holds nothing without it). It returns the function that
// stops reading and the one that closes the releaser, for after the engine
// sent on the last segments.
func releaseHeld(dp *loader.Dataplane, ns string, node *group.Node, log *slog.Logger) (stop, closeReleaser func(), err error) {
	rel, err := loader.NewReleaser(ns)
	if err != nil {
		return nil, nil, err
	}
	if !rel.LiveFrames() {
		log.Warn("--sync-hold: " + loader.ErrNoLiveFrames.Error())
	}
	rd, err := ringbuf.NewReader(dp.Maps.Held)
	if err != nil {
		rel.Close()
		return nil, nil, fmt.Errorf("sync hold: read the %s ring: %w", maps.NameHeld, err)
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			rec, err := rd.Read()
			if errors.Is(err, ringbuf.ErrFlushed) || errors.Is(err, ringbuf.ErrClosed) {
				return
			}
			if err != nil {
				log.Warn("sync hold: read held segments", "err", err)
				continue
			}
			h, err := maps.DecodeHeld(rec.RawSample)
			if err != nil {
				log.Warn("sync hold: " + err.Error())
				continue
			}
			// one a previous run left in the pinned ring: its sender's
			// retransmissions pass by now
			if now, err := dp.Maps.Now(); err == nil && time.Duration(now)-h.Held > maps.HoldWait {
				node.C.HoldStale()
				continue
			}
			node.Hold(group.Key{Src: h.Src, Dst: h.Dst, DPort: h.DPort}, func() error {
				// first: the copy sent on must pass, and if it cannot be
				// sent, the sender's retransmission
				if err := dp.Maps.EndHold(h); err != nil {
					log.Warn("sync hold: " + err.Error())
				}
				return rel.Release(h)
			})
		}
	}()
	renew := func() {
		if err := dp.Maps.RenewHoldLease(rel.LiveFrames()); err != nil {
			log.Warn("sync hold: renew the lease", "err", err)
		}
	}
	renew() // the reader runs: hold from now on
	done, renewed := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(renewed)
		t := time.NewTicker(maps.HoldLeaseRenew)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				renew()
			case <-done:
				return
			}
		}
	}()
	// leaving: no new hold (the dataplane stays, no one would send it on),
	// then those in the ring to the engine, which sends them on as it closes
	return func() {
		close(done)
		<-renewed
		if err := dp.Maps.EndHoldLease(); err != nil {
			log.Warn("sync hold: end the lease", "err", err)
		}
		rd.Flush()
		<-stopped
		rd.Close()
	}, rel.Close, nil
}

// printGroup shows run's gateway group: the routes to its peers, what each
// peer holds here, and the counters.
func printGroup(w io.Writer, g *group.Status) error {
	bus := "embedded, routes on " + g.Listen
	if g.Bus != "embedded" {
		bus = g.Bus
	}
	conn := "connected"
	if !g.Connected {
		conn = "NOT connected"
	}
	fmt.Fprintf(w, "group:     %s, node %s (origin %08x), %s, %s; routes up %d, peers unreached %d; as of %s ago\n",
		g.Group, g.Node, group.NodeHash(g.Node), bus, conn, len(g.Routes), g.PeersDown, time.Since(g.Updated).Round(time.Second))
	c := g.Counters
	var rejected uint64
	var why []string
	for _, r := range group.RejectReasons {
		if n := c.Rejected[r]; n > 0 {
			rejected += n
			why = append(why, fmt.Sprintf("%s %d", r, n))
		}
	}
	fmt.Fprintf(w, "sync:      local %d, sent %d, received %d, applied %d, rejected %d%s, snapshots %d (served %d), repairs %d, late %d, errors %d, delay p50 %dus p99 %dus\n",
		g.Local, c.Sent, c.Received, c.Applied, rejected, parenthesized(why), c.Snapshots, c.Served, c.Repairs, c.Late, c.Errors, c.DelayP50us, c.DelayP99us)
	if held := c.Held; held != nil && (c.Acks > 0 || sumOf(held) > 0) {
		var how []string
		for _, o := range group.HoldResults {
			how = append(how, fmt.Sprintf("%s %d", o, held[o]))
		}
		fmt.Fprintf(w, "hold:      segments %d (%s), acks %d, wait p50 %dus p99 %dus\n", sumOf(held), strings.Join(how, ", "), c.Acks, c.HoldP50us, c.HoldP99us)
	}
	fmt.Fprintln(w)
	route := map[string]string{}
	for _, r := range g.Routes {
		route[r.Peer] = r.Addr
	}
	peers := g.Peers
	for _, r := range g.Routes { // a peer routed to but not heard from yet
		if !slices.ContainsFunc(peers, func(p group.PeerState) bool { return p.Node == r.Peer }) {
			peers = append(peers, group.PeerState{Node: r.Peer, Origin: group.NodeHash(r.Peer), LastSeen: -1})
		}
	}
	err := table(w, "PEER\tORIGIN\tROUTE\tENTRIES\tIN SYNC\tLAST HEARD", peers, func(p group.PeerState) string {
		r := route[p.Node]
		if r == "" {
			r = "-"
			if g.Bus == "embedded" {
				r = "DOWN"
			}
		}
		heard := "never"
		if p.LastSeen >= 0 {
			heard = (time.Duration(p.LastSeen) * time.Millisecond).Round(100*time.Millisecond).String() + " ago"
		}
		return fmt.Sprintf("%s\t%08x\t%s\t%d\t%s\t%s", p.Node, p.Origin, r, p.Entries, yesNo(p.InSync), heard)
	})
	fmt.Fprintln(w)
	return err
}

func sumOf(m map[string]uint64) (n uint64) {
	for _, v := range m {
		n += v
	}
	return n
}

func parenthesized(parts []string) string {
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// syncHold settles --sync-hold: on by default in a group, since without it
// a data SYN that follows its 227 within microseconds can reach a peer
// before the expectation (docs/group.md, "Hold"), but off by default with
// --nat, which cannot hold (below), and off outside a group. Given
// explicitly, checkSyncHold judges it.
func syncHold(c *cli.Context, opts *loader.Options, log *slog.Logger) error {
	if !c.IsSet("sync-hold") && opts.Group.Enabled() {
		opts.Config.SyncHold = opts.Config.NAT == maps.NATOff
		if !opts.Config.SyncHold {
			log.Warn("--sync-hold off: not with --nat; a data connection may wait one SYN retransmission (1 s) when it reaches another gateway than its control connection first")
		}
	}
	return checkSyncHold(*opts)
}

// checkSyncHold refuses --sync-hold outside a group, and with --nat: NAT's
// sequence adjustment is not made for a rewritten segment TC drops (the
// programs also skip the hold while config.nat is on, for a `config set --nat`).
func checkSyncHold(opts loader.Options) error {
	if !opts.Config.SyncHold {
		return nil
	}
	if !opts.Group.Enabled() {
		return fmt.Errorf("--sync-hold needs --group: it holds a data connection until its expectation is on the peers")
	}
	if opts.Config.NAT != maps.NATOff {
		return fmt.Errorf("--sync-hold cannot be combined with --nat: NAT's sequence adjustment does not handle a dropped rewritten segment")
	}
	return nil
}
