package maps

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cilium/ebpf"

	"github.com/ftpgate/ftpgate/bpf"
)

// The SYN gate (#14, bpf/syngate.h): XDP skips its data_flows and
// expectations look-ups for a SYN to a port whose mark in syn_gate is older
// than config.syn_gate_horizon_s. docs/design.md, "The SYN gate", says why
// that never drops a SYN the look-ups would pass.
const (
	// SYNGateRTOMax is the longest interval between two SYNs of one
	// connection (Linux TCP_RTO_MAX)
	SYNGateRTOMax = time.Duration(bpf.FtpgateLimitsSYN_GATE_RTO_MAX_SEC) * time.Second
	// SYNGateSlack covers racing writers of one port, the Go side's time
	// between its clock read and its store, and a torn 8-byte store
	SYNGateSlack = time.Duration(bpf.FtpgateLimitsSYN_GATE_SLACK_SEC) * time.Second
	portEntries  = int(bpf.FtpgateLimitsPORT_ENTRIES)
)

// SYNGateHorizon is the horizon an expectation timeout needs: the timeout,
// the longest SYN retransmission interval and the slack, in whole seconds.
// Zero, the gate off, when that passes what config.syn_gate_horizon_s holds.
func SYNGateHorizon(timeout time.Duration) time.Duration {
	if timeout <= 0 {
		timeout = DefaultExpectTimeout
	}
	secs := (timeout + SYNGateRTOMax + SYNGateSlack + time.Second - 1) / time.Second
	if secs > math.MaxUint16 {
		return 0
	}
	return secs * time.Second
}

// raiseHorizon is the horizon after the expectation timeout becomes
// timeout: never lower than cur, since expectations made with a longer
// timeout may still live; off (zero) stays off until EnableSYNGate.
func raiseHorizon(cur, timeout time.Duration) time.Duration {
	if cur == 0 {
		return 0
	}
	h := SYNGateHorizon(timeout)
	if h == 0 {
		return 0
	}
	return max(cur, h)
}

// EnableSYNGate turns the gate on where it is off: in a new pin directory,
// one an older ftpgate wrote (its config has no horizon and its programs
// marked nothing), or after a timeout too long for a horizon. It must run
// once every program on these maps marks the gate (the loader: after
// attaching). It marks every port now, then sets a horizon that covers the
// configured timeout and the lifetime of every pinned expectation; flows
// admitted before now are covered by the marks, their retransmissions by
// the horizon. A gate already on is left as it is.
func (m *Maps) EnableSYNGate() error {
	cur, err := m.GetConfig()
	if err != nil {
		return err
	}
	if cur.SYNGateHorizon != 0 {
		return nil
	}
	longest := cur.ExpectTimeout
	err = each(m, NameExpectations, func(_ uint64, _ bpf.FtpgateExpectKey, v *bpf.FtpgateExpectVal) {
		if v.ExpiresNs > v.CreatedNs {
			longest = max(longest, time.Duration(v.ExpiresNs-v.CreatedNs))
		}
	})
	if err != nil {
		return err
	}
	h := SYNGateHorizon(longest)
	if h == 0 {
		return nil // the timeout is too long for a horizon: stays off
	}
	now, err := m.Now()
	if err != nil {
		return err
	}
	if err := m.fillSYNGate(now); err != nil {
		return err
	}
	// the marks first: the horizon turns the gate on
	cur, err = m.GetConfig()
	if err != nil {
		return err
	}
	cur.SYNGateHorizon = h
	return m.writeConfig(cur)
}

// ResetSYNGate sets the horizon of the configured timeout and makes every
// port's mark older than it: for tests and benchmarks whose tables are
// empty. (A mark of zero would be recent on a host up for less than the
// horizon, such as a test VM.)
func (m *Maps) ResetSYNGate() error {
	cur, err := m.GetConfig()
	if err != nil {
		return err
	}
	cur.SYNGateHorizon = SYNGateHorizon(cur.ExpectTimeout)
	now, err := m.Now()
	if err != nil {
		return err
	}
	// wraps on a host up for less than the horizon: ages are signed
	if err := m.fillSYNGate(now - uint64(cur.SYNGateHorizon) - uint64(time.Second)); err != nil {
		return err
	}
	return m.writeConfig(cur)
}

// MarkSYNGateAll marks every port now, as EnableSYNGate does: for tests and
// benchmarks that write many expectations or flows straight into the maps.
func (m *Maps) MarkSYNGateAll() error {
	now, err := m.Now()
	if err != nil {
		return err
	}
	return m.fillSYNGate(now)
}

// fillSYNGate sets every port's mark to at.
func (m *Maps) fillSYNGate(at uint64) error {
	keys := make([]uint32, portEntries)
	vals := make([]uint64, portEntries)
	for i := range keys {
		keys[i], vals[i] = uint32(i), at
	}
	if _, err := m.SYNGate.BatchUpdate(keys, vals, nil); err != nil {
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return fmt.Errorf("update %s: %w", NameSYNGate, err)
		}
		for i := range keys {
			if err := m.SYNGate.Put(keys[i], vals[i]); err != nil {
				return fmt.Errorf("update %s: %w", NameSYNGate, err)
			}
		}
	}
	return nil
}

// coverSYNGate raises the horizon to cover an expectation living ttl.
func (m *Maps) coverSYNGate(ttl time.Duration) error {
	c, err := m.GetConfig()
	if err != nil {
		return err
	}
	if h := raiseHorizon(c.SYNGateHorizon, ttl); h != c.SYNGateHorizon {
		c.SYNGateHorizon = h
		return m.putConfig(c)
	}
	return nil
}

// MarkSYNGate marks port now, before the caller writes what a SYN to it
// may need: AddExpectation does, and tests and benchmarks that write
// expectations or flows straight into the maps must. The mark must not be older than the store by more than half the
// slack (a racing program's later mark is overwritten by ours): the clock is
// read again after the store, and a store that took longer is made again.
func (m *Maps) MarkSYNGate(port uint16) error {
	c, err := m.GetConfig()
	if err != nil {
		return err
	}
	for range 8 {
		before, err := Monotonic()
		if err != nil {
			return err
		}
		mark := uint64(int64(before) + int64(c.ClockOffset))
		// only forward, as syn_gate_mark: a clock moved back must not age
		// the mark of an entry written before (review of #14, finding 4)
		var cur uint64
		if err := m.SYNGate.Lookup(uint32(port), &cur); err != nil {
			return fmt.Errorf("read %s: %w", NameSYNGate, err)
		}
		if int64(mark-cur) <= 0 {
			return nil
		}
		if err := m.SYNGate.Put(uint32(port), mark); err != nil {
			return fmt.Errorf("update %s: %w", NameSYNGate, err)
		}
		after, err := Monotonic()
		if err != nil {
			return err
		}
		if time.Duration(after-before) <= SYNGateSlack/2 {
			return nil
		}
	}
	return fmt.Errorf("update %s: every store of port %d took longer than %v", NameSYNGate, port, SYNGateSlack/2)
}
