package loader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ftpgate/ftpgate/maps"
)

// Collector exposes the dataplane to Prometheus. It reads the maps and asks
// the kernel what is attached at scrape time, so the figures are never
// staler than the scrape.
type Collector struct {
	Dataplane *Dataplane
	// Reclaimed counts what the ager removed, per table.
	Reclaimed struct{ Expectations, Flows, Conns, Embryos, Sources, NATOwn, TLSSessions atomic.Uint64 }
	Log       *slog.Logger
	// Extra are collected along, on the same endpoint (the gateway
	// group's, #15)
	Extra []prometheus.Collector
}

var (
	descEvents = prometheus.NewDesc("ftpgate_events_total",
		"Dataplane events and drop/skip reasons, by counter name (see `ftpgate stats`).", []string{"event"}, nil)
	descEntries = prometheus.NewDesc("ftpgate_map_entries",
		"Entries in a table.", []string{"map"}, nil)
	descCapacity = prometheus.NewDesc("ftpgate_map_capacity",
		"Capacity (max_entries) of a table.", []string{"map"}, nil)
	descAttach = prometheus.NewDesc("ftpgate_attach_info",
		"1 when the kernel shows ftpgate's XDP and both TC programs on a guarded interface, 0 when any is missing or the interface is gone; modes as the kernel reports them (as run attached them when missing).",
		[]string{"iface", "xdp_mode", "tc_mode"}, nil)
	descReattach = prometheus.NewDesc("ftpgate_reattach_total",
		"Times run re-attached a guarded interface that was deleted and created again.", []string{"iface"}, nil)
	descBuild = prometheus.NewDesc("ftpgate_build_info",
		"Build information.", []string{"version", "goversion"}, nil)
	descReclaimed = prometheus.NewDesc("ftpgate_ager_reclaimed_total",
		"Entries the ager removed (expired expectations, idle flows and control connections).", []string{"map"}, nil)
	descScrapeErrors = prometheus.NewDesc("ftpgate_scrape_errors",
		"1 when the last scrape could not read a map.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEvents, descEntries, descCapacity, descAttach, descReattach, descBuild, descReclaimed, descScrapeErrors} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	failed := 0.0
	m := c.Dataplane.Maps
	counters, err := m.Counters()
	if err != nil {
		c.Log.Warn("metrics: read counters", "err", err)
		failed = 1
	}
	for name, v := range counters {
		ch <- prometheus.MustNewConstMetric(descEvents, prometheus.CounterValue, float64(v), name)
	}
	for _, name := range maps.SizedTables {
		n, err := m.Fill(name)
		if err != nil {
			c.Log.Warn("metrics: count entries", "map", name, "err", err)
			failed = 1
			continue
		}
		ch <- prometheus.MustNewConstMetric(descEntries, prometheus.GaugeValue, float64(n), name)
		ch <- prometheus.MustNewConstMetric(descCapacity, prometheus.GaugeValue, float64(m.ByName(name).MaxEntries()), name)
	}
	seen, err := c.Dataplane.Observe()
	if err != nil {
		c.Log.Warn("metrics: query attachments", "err", err)
		failed = 1
	}
	for _, i := range seen {
		v, xdp, tc := 0.0, i.XDPMode, i.TCMode
		if i.XDPAttached {
			xdp = i.XDPSeen
		}
		if i.TCAttached {
			tc = i.TCSeen
		}
		if i.Admitting() && i.TCAttached {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descAttach, prometheus.GaugeValue, v, i.Name, string(xdp), string(tc))
	}
	for name, n := range c.Dataplane.Reattached() {
		ch <- prometheus.MustNewConstMetric(descReattach, prometheus.CounterValue, float64(n), name)
	}
	ch <- prometheus.MustNewConstMetric(descBuild, prometheus.GaugeValue, 1, Version, runtime.Version())
	ch <- prometheus.MustNewConstMetric(descReclaimed, prometheus.CounterValue, float64(c.Reclaimed.Expectations.Load()), maps.NameExpectations)
	ch <- prometheus.MustNewConstMetric(descReclaimed, prometheus.CounterValue, float64(c.Reclaimed.Flows.Load()), maps.NameDataFlows)
	ch <- prometheus.MustNewConstMetric(descReclaimed, prometheus.CounterValue, float64(c.Reclaimed.Conns.Load()), maps.NameCtrlConns)
	ch <- prometheus.MustNewConstMetric(descReclaimed, prometheus.CounterValue, float64(c.Reclaimed.Embryos.Load()), maps.NameCtrlEmbryo)
	ch <- prometheus.MustNewConstMetric(descReclaimed, prometheus.CounterValue, float64(c.Reclaimed.Sources.Load()), maps.NameEmbryoSrcs)
	ch <- prometheus.MustNewConstMetric(descReclaimed, prometheus.CounterValue, float64(c.Reclaimed.NATOwn.Load()), maps.NameNATOwn)
	ch <- prometheus.MustNewConstMetric(descReclaimed, prometheus.CounterValue, float64(c.Reclaimed.TLSSessions.Load()), maps.NameTLSSessions)
	ch <- prometheus.MustNewConstMetric(descScrapeErrors, prometheus.GaugeValue, failed)
}

// Add records one ager sweep.
func (c *Collector) Add(r Reclaimed) {
	c.Reclaimed.Expectations.Add(uint64(r.Expectations))
	c.Reclaimed.Flows.Add(uint64(r.Flows))
	c.Reclaimed.Conns.Add(uint64(r.Conns))
	c.Reclaimed.Embryos.Add(uint64(r.Embryos))
	c.Reclaimed.Sources.Add(uint64(r.Sources))
	c.Reclaimed.NATOwn.Add(uint64(r.NATOwn))
	c.Reclaimed.TLSSessions.Add(uint64(r.TLSSessions))
}

// ServeMetrics serves /metrics on addr until ctx ends. The listener is
// opened before it returns, so a bad address is reported at once.
func ServeMetrics(ctx context.Context, addr string, c *Collector) error {
	reg := prometheus.NewRegistry()
	for _, x := range append([]prometheus.Collector{c}, c.Extra...) {
		if err := reg.Register(x); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics address %q: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.Log.Error("metrics server", "err", err)
		}
	}()
	return nil
}
