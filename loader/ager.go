package loader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cilium/ebpf"

	"github.com/ftpgate/ftpgate/maps"
)

// Ager reclaims table entries nobody will use again. Correctness never
// depends on it: the XDP filter checks expiry itself. ctrl_conns and
// expectations are plain hashes that refuse new entries when full (counted),
// so the ager is what frees their room; the LRU tables evict on their own.
type Ager struct {
	Maps     *maps.Maps
	Interval time.Duration
	// FlowIdle reclaims data flows not seen for this long. Without
	// accounting a flow is only touched on SYN, FIN and RST, so this bounds
	// how long a finished-but-unclosed transfer stays listed. It also
	// reclaims the translation of a data connection ftpgate translates
	// itself (nat_own, touched by every packet) idle this long.
	FlowIdle time.Duration
	// ClosedLinger keeps flows and control connections that saw FIN or RST
	// this long, for listings and retransmitted SYNs; a translation
	// (nat_own) that saw FIN or RST, this long after its last packet.
	ClosedLinger time.Duration
	// CtrlIdle reclaims control connections silent for this long; one that
	// speaks again is picked up mid-stream.
	CtrlIdle time.Duration
	// EmbryoIdle reclaims untrusted control connections silent for this
	// long (their table is an LRU: this only keeps it tidy).
	EmbryoIdle time.Duration
	Log        *slog.Logger
	// OnSweep, if set, receives what each sweep reclaimed (metrics).
	OnSweep func(Reclaimed)
}

// Ager defaults.
const (
	DefaultAgeInterval  = 10 * time.Second
	DefaultFlowIdle     = time.Hour
	DefaultClosedLinger = time.Minute
	DefaultCtrlIdle     = 24 * time.Hour
	DefaultEmbryoIdle   = 2 * time.Minute
)

// Reclaimed counts what one sweep removed.
type Reclaimed struct {
	Expectations, Flows, Conns, Embryos, Sources, NATOwn int
	// TLSSessions: (client, server) pairs removed or recounted (#13)
	TLSSessions int
}

// Run sweeps every Interval until ctx ends.
func (a *Ager) Run(ctx context.Context) {
	t := time.NewTicker(a.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r, err := a.Sweep()
			if err != nil {
				a.Log.Warn("ager sweep", "err", err)
				continue
			}
			if a.OnSweep != nil {
				a.OnSweep(r)
			}
			if r != (Reclaimed{}) {
				a.Log.Debug("ager reclaimed", "expectations", r.Expectations, "flows", r.Flows, "ctrl_conns", r.Conns,
					"ctrl_embryo", r.Embryos, "embryo_sources", r.Sources, "nat_own", r.NATOwn, "tls_sessions", r.TLSSessions)
			}
		}
	}
}

// Sweep makes one pass over the connection tables. ctrl_conns and
// expectations are plain hash tables that refuse new entries when full, so
// this sweep is what frees their room.
func (a *Ager) Sweep() (Reclaimed, error) {
	var r Reclaimed
	exps, err := a.Maps.StaleExpectations()
	if err == nil {
		r.Expectations, err = deleteKeys(a.Maps.Expectations, exps)
	}
	if err != nil {
		return r, err
	}
	flows, err := a.Maps.StaleFlows(a.ClosedLinger, a.FlowIdle)
	if err == nil {
		r.Flows, err = deleteKeys(a.Maps.DataFlows, flows)
	}
	if err != nil {
		return r, err
	}
	own, err := a.Maps.StaleNATOwn(a.ClosedLinger, a.FlowIdle)
	if err == nil {
		r.NATOwn, err = deleteKeys(a.Maps.NATOwn, own)
	}
	if err != nil {
		return r, err
	}
	conns, err := a.Maps.StaleConns(a.ClosedLinger, a.CtrlIdle)
	if err == nil {
		r.Conns, err = deleteKeys(a.Maps.CtrlConns, conns)
	}
	if err != nil {
		return r, err
	}
	// after the control connections: a pair whose encrypted connections
	// were reclaimed silent (never counted out by TC) closes its TLS ranges
	if r.TLSSessions, err = a.Maps.RecountTLSSessions(tlsSettle(a.Interval)); err != nil {
		return r, err
	}
	idle := a.EmbryoIdle
	if idle == 0 {
		idle = DefaultEmbryoIdle
	}
	embryos, err := a.Maps.StaleEmbryos(idle)
	if err == nil {
		r.Embryos, err = deleteKeys(a.Maps.CtrlEmbryo, embryos)
	}
	if err != nil {
		return r, err
	}
	srcs, err := a.Maps.StaleSources()
	if err == nil {
		r.Sources, err = deleteKeys(a.Maps.EmbryoSources, srcs)
	}
	return r, err
}

// tlsSettle is how long a tls_sessions entry must be untouched by TC before
// the ager recounts it: TC may be counting a connection in or out while the
// ager reads ctrl_conns. One sweep interval, at least a second.
func tlsSettle(interval time.Duration) time.Duration { return max(interval, time.Second) }

// deleteKeys deletes in one batch where the kernel can (5.6+), one by one
// otherwise. Keys already gone (consumed meanwhile) are not errors.
func deleteKeys[K any](m *ebpf.Map, keys []K) (int, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	n, err := m.BatchDelete(keys, nil)
	if err == nil {
		return n, nil
	}
	if !errors.Is(err, ebpf.ErrNotSupported) && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return n, fmt.Errorf("delete from %s: %w", m.String(), err)
	}
	// batch unsupported, or stopped at a key that vanished: finish one by one
	n = 0
	for _, k := range keys {
		err := m.Delete(k)
		if err == nil {
			n++
		} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
			return n, fmt.Errorf("delete from %s: %w", m.String(), err)
		}
	}
	return n, nil
}
