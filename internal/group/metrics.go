package group

import "github.com/prometheus/client_golang/prometheus"

var (
	descMsgs = prometheus.NewDesc("ftpgate_group_entries_total",
		"Gateway-group expectation entries by what became of them: sent (published), received (from peers), applied (written here), late (a SYN dropped here whose expectation arrived from a peer within 3 s).",
		[]string{"what"}, nil)
	descRejected = prometheus.NewDesc("ftpgate_group_rejected_total",
		"Entries and messages from peers refused, by reason.", []string{"reason"}, nil)
	descSnapshots = prometheus.NewDesc("ftpgate_group_snapshots_total",
		"Snapshots received (applied), served (sent to a peer), and repairs (snapshot requests a digest mismatch caused).", []string{"what"}, nil)
	descHeld = prometheus.NewDesc("ftpgate_group_held_total",
		"--sync-hold: control segments TC held, by what run did with them: confirmed (sent on once every peer waited for acknowledged the expectation), alone (no peer to wait for), timeout (a peer waited for had not answered within 1 s, HOLD_WAIT_MS), superseded (another came for the same expectation), closed (run left the group), failed (not sent on: the sender's retransmission brings it), stale (a previous run's, not sent).",
		[]string{"outcome"}, nil)
	descAcks = prometheus.NewDesc("ftpgate_group_acks_total",
		"--sync-hold: acknowledgements received from peers.", nil, nil)
	descErrors = prometheus.NewDesc("ftpgate_group_errors_total",
		"Publications and snapshot requests that failed on the bus.", nil, nil)
	descRoutes = prometheus.NewDesc("ftpgate_group_routes",
		"Peers the embedded server has a route to, and configured peers it has none to.", []string{"state"}, nil)
	descPeers = prometheus.NewDesc("ftpgate_group_peer_entries",
		"Live expectations a peer holds here, and whether its last digest matched (in_sync 1).", []string{"peer", "in_sync"}, nil)
)

// Describe implements prometheus.Collector.
func (n *Node) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMsgs, descRejected, descSnapshots, descHeld, descAcks, descErrors, descRoutes, descPeers} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (n *Node) Collect(ch chan<- prometheus.Metric) {
	st := n.Status()
	c := st.Counters
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(descMsgs, c.Sent, "sent")
	counter(descMsgs, c.Received, "received")
	counter(descMsgs, c.Applied, "applied")
	counter(descMsgs, c.Late, "late")
	for r, v := range c.Rejected {
		counter(descRejected, v, r)
	}
	counter(descSnapshots, c.Snapshots, "received")
	counter(descSnapshots, c.Served, "served")
	counter(descSnapshots, c.Repairs, "repairs")
	for o, v := range c.Held {
		counter(descHeld, v, o)
	}
	counter(descAcks, c.Acks)
	counter(descErrors, c.Errors)
	ch <- prometheus.MustNewConstMetric(descRoutes, prometheus.GaugeValue, float64(len(st.Routes)), "up")
	ch <- prometheus.MustNewConstMetric(descRoutes, prometheus.GaugeValue, float64(st.PeersDown), "down")
	for _, p := range st.Peers {
		sync := "0"
		if p.InSync {
			sync = "1"
		}
		ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, float64(p.Entries), p.Node, sync)
	}
}
