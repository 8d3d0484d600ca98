package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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
		node.Close()
		opts.StateDir.RemoveGroup(opts.PinDir)
	}
	return consume, node, leave, nil
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
	fmt.Fprintf(w, "sync:      local %d, sent %d, received %d, applied %d, rejected %d%s, snapshots %d (served %d), repairs %d, late %d, errors %d, delay p50 %dus p99 %dus\n\n",
		g.Local, c.Sent, c.Received, c.Applied, rejected, parenthesized(why), c.Snapshots, c.Served, c.Repairs, c.Late, c.Errors, c.DelayP50us, c.DelayP99us)
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

func parenthesized(parts []string) string {
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
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
