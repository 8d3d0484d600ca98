package bench

import (
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/ftpgate/ftpgate/bpf"
	"github.com/ftpgate/ftpgate/internal/bpfrun"
	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/maps"
)

// #13 FTPS: the TLS range check on a SYN. The rig's server declares
// ftpsLo-ftpsHi and the rig's client has a live encrypted session to it;
// ftpsStranger has none.
const (
	ftpsLo = 30000
	ftpsHi = 30099
)

var ftpsStranger = netip.MustParseAddr("203.0.113.9")

// ftpsSetup writes the server's range and the client's live session
// into the rig's maps, before each round of the TLS rows (untimed).
func ftpsSetup(r *bpfrun.Rig) error {
	fam, srv := maps.Words(serverAddr)
	_, cli := maps.Words(clientAddr)
	// through the maps API, which also sets config.tls_ranges for XDP
	if err := r.Maps.TLSRanges().Add(maps.TLSRange{Server: serverAddr, Lo: ftpsLo, Hi: ftpsHi}); err != nil {
		return fmt.Errorf("tls_ranges: %w", err)
	}
	now, err := r.Maps.Now()
	if err != nil {
		return err
	}
	sk := bpf.FtpgateTlsSessionKey{Family: fam, Client: cli, Server: srv}
	if err := r.Objs.TlsSessions.Put(sk, bpf.FtpgateTlsSessionVal{Live: 1, LastNs: now}); err != nil {
		return fmt.Errorf("tls_sessions: %w", err)
	}
	return nil
}

// ftpsLookups is the setup of a row with FTPS configured (on: a range
// declared, an encrypted session seen) or not (XDP skips both look-ups).
func ftpsLookups(r *bpfrun.Rig, on bool) func() error {
	return func() error { return r.Maps.SetTLSLookups(on, on) }
}

// ftpsCases are the per-packet rows of the range check: a SYN admitted
// through a range (stateful: each admission writes a data flow, so every
// frame is a new connection), a SYN into a range from a host without a
// session, and a server's SYN back to a client with a session (active
// FTPS), both dropped (stateless: nothing is written).
func ftpsCases(r *bpfrun.Rig, xdp *ebpf.Program) []*ppCase {
	cli := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(clientAddr, port) }
	srv := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(serverAddr, port) }
	// before each round: the range, the session and both look-ups on (the
	// baseline "xdp syn dropped" row turns the look-ups off)
	setup := func() error {
		if err := ftpsSetup(r); err != nil {
			return err
		}
		return ftpsLookups(r, true)()
	}
	return []*ppCase{
		{name: "xdp syn dropped, ftps configured", frame: bpftest.SYN(cli(40002), srv(5555)), prog: xdp, want: bpfrun.XDPDrop,
			setup: setup},
		{name: "xdp syn tls range, no session (dropped)", frame: bpftest.SYN(netip.AddrPortFrom(ftpsStranger, 40010), srv(ftpsLo+5)),
			prog: xdp, want: bpfrun.XDPDrop, setup: setup},
		{name: "xdp syn active ftps (dropped)", frame: bpftest.SYN(srv(20), cli(40011)), prog: xdp, want: bpfrun.XDPDrop,
			setup: setup},
		{name: "xdp syn tls range, live session", stateful: true, counter: "tls_range_pass",
			zero: []string{"tls_range_no_session", "syn_pass_expected"},
			prepare: func(round int) ([][]byte, *ebpf.Program, error) {
				// the look-ups on, the pair's bucket of range admissions full
				// again (ppBatch < the burst)
				if err := setup(); err != nil {
					return nil, nil, err
				}
				if err := bpfrun.Clear(r.Objs.DataFlows); err != nil {
					return nil, nil, err
				}
				if _, err := r.Events(); err != nil {
					return nil, nil, err
				}
				frames := make([][]byte, ppBatch)
				for i := range ppBatch {
					frames[i] = bpftest.SYN(cli(uint16(10000+i)), srv(uint16(ftpsLo+(i+round)%(ftpsHi-ftpsLo+1))))
				}
				return frames, xdp, nil
			}},
	}
}
