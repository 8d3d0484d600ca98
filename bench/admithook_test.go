package bench

import (
	"fmt"
	"testing"
)

// admitHookConfigs are the admission hooks the SYN-flood comparison runs:
// both XDP modes and TC ingress (--admit-hook tc).
var admitHookConfigs = []labConfig{labConfigs[2], labConfigs[3], {"ftpgate TC admission", func(l *netLab) (func() error, *gate, error) {
	g, err := l.gateUp("generic", "--admit-hook", "tc")
	if err != nil {
		return nil, nil, err
	}
	return g.down, g, nil
}}}

// BenchmarkAdmitHook floods the lab's gateway with unsolicited SYNs with
// the admission at native XDP, generic XDP and TC ingress, and reports the
// SYNs each drops per softirq CPU-second: what BPF_PROG_TEST_RUN cannot
// show, the skb every SYN becomes before TC (and generic XDP) sees it.
func BenchmarkAdmitHook(b *testing.B) {
	needRoot(b)
	if !onlyOnce(b, "admithook") {
		return
	}
	l := newGatedLab(b, 1<<20)
	perCPUs := make([][]float64, len(admitHookConfigs))
	for round := range floodRounds {
		for _, ci := range rotated(round, len(admitHookConfigs)) {
			c := admitHookConfigs[ci]
			down, g, err := c.up(l)
			if err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
			m, err := floodDrops(l, func() (uint64, error) { return g.counter("syn_drop_unexpected") })
			if derr := down(); err == nil {
				err = derr
			}
			if err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
			if m.dropped < 0.9*float64(m.sent) {
				addNote("admit-hook", "%s round %d: %v dropped of %d sent", c.name, round, m.dropped, m.sent)
			}
			perCPUs[ci] = append(perCPUs[ci], m.perCPU)
		}
	}
	for ci, c := range admitHookConfigs {
		addRow(Row{Section: "admit-hook", Case: "SYNs dropped per softirq CPU-second / " + c.name, Value: median(perCPUs[ci]), Unit: "pkt/s",
			Note: fmt.Sprintf("rounds: %s", fmtList(perCPUs[ci], 1))})
	}
	tc := len(admitHookConfigs) - 1
	for ci := range tc {
		rs := make([]float64, floodRounds)
		for r := range rs {
			rs[r] = perCPUs[tc][r] / perCPUs[ci][r]
		}
		addRow(Row{Section: "admit-hook", Case: "SYNs dropped per softirq CPU-second / " + admitHookConfigs[tc].name, Value: median(perCPUs[tc]), Unit: "pkt/s",
			Baseline: admitHookConfigs[ci].name, BaseValue: median(perCPUs[ci]), Ratio: median(rs)})
	}
	addNote("admit-hook", "the flood section's generator and CPU accounting (at most %d SYNs or %v per measurement, softirq ticks minus the idle rate), %d rounds, hooks rotated; every SYN must be counted in syn_drop_unexpected (90%%, else a note)", floodPackets, floodMaxTime, floodRounds)
}
