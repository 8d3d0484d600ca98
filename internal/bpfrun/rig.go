// Package bpfrun loads ftpgate's BPF programs without attaching them and
// runs packets through them with BPF_PROG_TEST_RUN: for replay, tests,
// fuzzing and benchmarks.
package bpfrun

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/ftpgate/ftpgate/bpf"
	"github.com/ftpgate/ftpgate/maps"
)

// XDP and TC return codes the tests compare against.
const (
	XDPDrop = 1
	XDPPass = 2
	TCOK    = 0
)

// Rig is a loaded collection with typed map views.
type Rig struct {
	Objs bpf.FtpgateObjects
	Maps *maps.Maps
	// AdmitHook is the admission program Admit runs: HookTC, otherwise
	// the XDP one
	AdmitHook string
	events    *ringbuf.Reader
	held      *ringbuf.Reader
}

// The admission hooks (--admit-hook).
const (
	HookXDP = "xdp"
	HookTC  = "tc"
)

// TC return codes of the admission at TC ingress (bpf/admit_tc.h).
const (
	TCShot = 2
	TCNext = ^uint32(0) // TC_ACT_UNSPEC, TCX_NEXT: -1
)

// Load loads a fresh collection with the given LRU table sizes (0: the
// object's defaults).
func Load(ctrlConns, expectations, flows uint32) (*Rig, error) {
	return LoadVariant(bpf.Plain, ctrlConns, expectations, flows)
}

// LoadVariant loads a fresh collection of one build of the object.
func LoadVariant(v bpf.Variant, ctrlConns, expectations, flows uint32) (*Rig, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}
	spec, err := bpf.LoadVariant(v)
	if err != nil {
		return nil, fmt.Errorf("load embedded object: %w", err)
	}
	maps.TableSizes{CtrlConns: ctrlConns, Expectations: expectations, DataFlows: flows}.Resize(spec)
	r := &Rig{}
	if err := spec.LoadAndAssign(&r.Objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			// the whole log, and the error itself for errors.As
			return nil, fmt.Errorf("load programs: %w\n%+v", err, ve)
		}
		return nil, fmt.Errorf("load programs: %w", err)
	}
	r.Maps = maps.FromObjects(&r.Objs.FtpgateMaps)
	return r, nil
}

// Close releases the collection.
func (r *Rig) Close() error {
	if r.events != nil {
		r.events.Close()
	}
	if r.held != nil {
		r.held.Close()
	}
	return r.Objs.Close()
}

// Events drains the ring buffer and returns what the programs reported.
func (r *Rig) Events() ([]maps.Event, error) {
	return drain(&r.events, r.Objs.Events, maps.DecodeEvent)
}

// Held drains the held ring (#15 --sync-hold) and returns its segments.
func (r *Rig) Held() ([]maps.HeldSegment, error) {
	return drain(&r.held, r.Objs.Held, maps.DecodeHeld)
}

// drain reads a ring until it is empty, opening its reader on first use.
func drain[T any](rd **ringbuf.Reader, ring *ebpf.Map, decode func([]byte) (T, error)) ([]T, error) {
	if *rd == nil {
		r, err := ringbuf.NewReader(ring)
		if err != nil {
			return nil, fmt.Errorf("open %v: %w", ring, err)
		}
		*rd = r
	}
	var out []T
	for {
		(*rd).SetDeadline(time.Now())
		rec, err := (*rd).Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("read %v: %w", ring, err)
		}
		v, err := decode(rec.RawSample)
		if err != nil {
			return out, err
		}
		out = append(out, v)
	}
}

// TestConfig is the default configuration with the reverse-path check off:
// a test run's skb is on loopback (or the interface the caller names) in
// this host's namespace, whose routes know nothing of the test addresses.
// The check is tested where the routes are made for it.
func TestConfig() maps.Config {
	c := maps.DefaultConfig()
	c.RPCheck = maps.RPOff
	return c
}

// Reset empties every table, zeroes the counters and restores the defaults
// (TestConfig).
func (r *Rig) Reset() error {
	for _, name := range append(slices.Clone(maps.SizedTables), maps.NameGuardedIfs) {
		if err := Clear(r.Maps.ByName(name)); err != nil {
			return err
		}
	}
	if err := r.Maps.CtrlScopes().Replace(nil); err != nil {
		return err
	}
	if err := r.Maps.TLSRanges().Replace(nil); err != nil {
		return err
	}
	if err := r.Maps.CtrlPorts().Replace([]uint16{21}); err != nil {
		return err
	}
	if err := r.Maps.AllowPorts().Replace(nil); err != nil {
		return err
	}
	if err := r.Maps.SetConfig(TestConfig()); err != nil {
		return err
	}
	// tls_ranges and tls_sessions are empty again: so are their bits (SetConfig keeps them)
	if err := r.Maps.SetTLSLookups(false, false); err != nil {
		return err
	}
	// the tables are empty: the SYN gate starts on, with no mark (#14)
	if err := r.Maps.ResetSYNGate(); err != nil {
		return err
	}
	if _, err := r.Events(); err != nil {
		return err
	}
	if err := Clear(r.Maps.HoldPending); err != nil {
		return err
	}
	if err := r.Maps.EndHoldLease(); err != nil {
		return err
	}
	if _, err := r.Held(); err != nil {
		return err
	}
	// a full bucket of rejection events on every CPU
	if err := r.Objs.EventBudget.Put(uint32(0), make([]bpf.FtpgateEventBudget, ebpf.MustPossibleCPU())); err != nil {
		return fmt.Errorf("reset event budget: %w", err)
	}
	zeros := make([]uint64, ebpf.MustPossibleCPU())
	for i := uint32(0); i < r.Objs.Stats.MaxEntries(); i++ {
		if err := r.Objs.Stats.Put(i, zeros); err != nil {
			return fmt.Errorf("zero counter %d: %w", i, err)
		}
	}
	return nil
}

// Clear deletes every entry of a hash map.
func Clear(m *ebpf.Map) error {
	var keys [][]byte
	var k, v []byte
	it := m.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, append([]byte(nil), k...))
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("iterate: %w", err)
	}
	for _, key := range keys {
		if err := m.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete: %w", err)
		}
	}
	return nil
}

// XDP runs the admission filter on a frame and returns its verdict.
func (r *Rig) XDP(frame []byte) (uint32, error) {
	ret, err := r.Objs.FtpgateXdp.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		return 0, fmt.Errorf("run xdp: %w", err)
	}
	return ret, nil
}

// Admit runs the admission program of r.AdmitHook on a frame and returns
// its verdict in XDP's terms, so that one table of cases tests both hooks.
func (r *Rig) Admit(frame []byte) (uint32, error) {
	if r.AdmitHook == HookTC {
		return r.AdmitTC(frame)
	}
	return r.XDP(frame)
}

// AdmitTC runs the admission at TC ingress on a frame on loopback and
// returns XDPDrop for TC_ACT_SHOT, XDPPass for TC_ACT_UNSPEC (the next
// program runs); any other code is an error. The admission reads no
// arrival interface, and 5.10 refuses a test run that sets one.
func (r *Rig) AdmitTC(frame []byte) (uint32, error) {
	in := SkbCtx{Ifindex: loopbackIfindex}
	ret, err := r.Objs.FtpgateTcAdmit.Run(&ebpf.RunOptions{Data: frame, Context: in})
	if err != nil {
		return 0, fmt.Errorf("run tc admit: %w", err)
	}
	switch ret {
	case TCShot:
		return XDPDrop, nil
	case TCNext:
		return XDPPass, nil
	}
	return 0, fmt.Errorf("tc admit returned %d, want TC_ACT_SHOT or TC_ACT_UNSPEC", int32(ret))
}

// SkbCtx is the start of struct __sk_buff: the fields BPF_PROG_TEST_RUN lets a
// caller set (mark, ingress_ifindex, ifindex) and read back.
type SkbCtx struct {
	Len            uint32
	PktType        uint32
	Mark           uint32
	QueueMapping   uint32
	Protocol       uint32
	VlanPresent    uint32
	VlanTci        uint32
	VlanProto      uint32
	Priority       uint32
	IngressIfindex uint32
	Ifindex        uint32
	TcIndex        uint32
	Cb             [5]uint32
	// the rest of struct __sk_buff, zero: the kernel copies its whole
	// context out and refuses a smaller buffer
	_ [skbCtxRest]byte
}

// skbCtxRest leaves room for struct __sk_buff growing in future kernels.
const skbCtxRest = 256

// loopbackIfindex is the device test runs attach the skb to: it always exists.
const loopbackIfindex = 1

// TC runs the parser as at ingress or egress. ingressIfindex is the
// interface the packet arrived on (0: locally generated). It returns the
// skb mark the program left.
func (r *Rig) TC(frame []byte, ingress bool, ingressIfindex uint32) (mark uint32, err error) {
	return r.TCOn(frame, ingress, loopbackIfindex, ingressIfindex)
}

// TCOn is TC on the device ifindex of the calling thread's network
// namespace (the device the skb is on: at ingress, the one it arrived on).
func (r *Rig) TCOn(frame []byte, ingress bool, ifindex, ingressIfindex uint32) (mark uint32, err error) {
	prog := r.Objs.FtpgateTcEgress
	if ingress {
		prog = r.Objs.FtpgateTcIngress
	}
	in := SkbCtx{IngressIfindex: ingressIfindex, Ifindex: ifindex}
	var out SkbCtx
	ret, err := prog.Run(&ebpf.RunOptions{Data: frame, Context: in, ContextOut: &out})
	if err != nil {
		return 0, fmt.Errorf("run tc: %w", err)
	}
	if ret != TCOK {
		return 0, fmt.Errorf("tc returned %d, want TC_ACT_OK", ret)
	}
	return out.Mark, nil
}

// Counters returns the summed counters.
func (r *Rig) Counters() (map[string]uint64, error) { return r.Maps.Counters() }

// SetClock moves the programs' clock by d from the kernel's.
func (r *Rig) SetClock(d time.Duration) error { return r.Maps.SetClockOffset(d) }
