package bench

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/ftpgate/ftpgate/internal/bpfrun"
	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/maps"
)

// ctrlZero are the counters a timed control segment must not move: it is
// tracked in window on a trusted connection, passes the reverse-path check
// (strict: the route lookup answered and led back through the arrival
// interface) and is parsed.
var ctrlZero = []string{"tcp_untrusted", "tcp_out_of_window", "ctrl_bad_checksum", "ctrl_retransmit",
	"ctrl_pickup", "ctrl_not_ftp", "ctrl_spoofed", "rp_not_forwarding", "ctrl_skip_forwarded"}

// setRP switches the reverse-path check of the rig.
func setRP(r *bpfrun.Rig, mode maps.RPCheck) error {
	cfg := maps.DefaultConfig()
	cfg.RPCheck = mode
	return r.Maps.SetConfig(cfg)
}

// ctrlCases are the control-segment rows, run in the lab with rp-check mode.
// The client's segments arrive at TC ingress on "inside"; the server's,
// forwarded from "outside", are seen at TC egress on "inside" (arrival
// interface "outside"), as the rows before #11 saw them at egress. Every
// round starts from an empty control table and opens its connections
// (handshake, greeting) untimed, through the same interfaces.
func ctrlCases(r *bpfrun.Rig, l *rpLab, mode maps.RPCheck) []*ppCase {
	tcIn, tcEg := r.Objs.FtpgateTcIngress, r.Objs.FtpgateTcEgress
	srv := netip.AddrPortFrom(serverAddr, 21)
	suffix := " / rp-check " + mode.String()
	cliCtx, srvCtx := skbCtx(l.inside, 0), skbCtx(l.inside, l.outside)
	portBase := uint16(41000)
	if mode != maps.RPOff {
		portBase = 43000
	}

	// open makes a trusted control connection from the client port: its
	// setup segments go through the lab's interfaces
	open := func(port uint16, pasv bool) (*bpftest.Conn, error) {
		c := bpftest.NewConn(r, netip.AddrPortFrom(clientAddr, port), srv)
		c.Hook = func(frame []byte, fromClient bool) error {
			var err error
			if fromClient {
				_, err = r.TCOn(frame, true, l.inside, 0)
			} else {
				_, err = r.TCOn(frame, false, l.inside, l.outside)
			}
			return err
		}
		if err := errors.Join(c.Open(), c.Greet()); err != nil {
			return nil, err
		}
		if pasv {
			if err := c.ClientSends("PASV\r\n"); err != nil {
				return nil, err
			}
		}
		return c, nil
	}
	// capture returns the segment fn makes, not run
	capture := func(c *bpftest.Conn, fn func() error) ([]byte, error) {
		var got []byte
		hook := c.Hook
		c.Hook = func(f []byte, _ bool) error { got = f; return nil }
		defer func() { c.Hook = hook }()
		err := fn()
		return got, err
	}
	reset := func() error {
		if err := bpfrun.Clear(r.Objs.CtrlConns); err != nil {
			return err
		}
		if err := bpfrun.Clear(r.Objs.Expectations); err != nil {
			return err
		}
		_, err := r.Events()
		return err
	}
	// oneConn: 1000 segments in sequence on one connection
	oneConn := func(port uint16, prog *ebpf.Program, send func(c *bpftest.Conn) error) func(int) ([][]byte, *ebpf.Program, error) {
		return func(round int) ([][]byte, *ebpf.Program, error) {
			if err := reset(); err != nil {
				return nil, nil, err
			}
			c, err := open(port+uint16(round), false)
			if err != nil {
				return nil, nil, err
			}
			frames := make([][]byte, ppBatch)
			for i := range frames {
				if frames[i], err = capture(c, func() error { return send(c) }); err != nil {
					return nil, nil, err
				}
			}
			return frames, prog, nil
		}
	}
	// eachConn: one segment on each of 1000 fresh connections, so that
	// every frame creates an expectation without evicting one (cap 1 per
	// connection)
	eachConn := func(pasv bool, prog *ebpf.Program, send func(c *bpftest.Conn, i int) error) func(int) ([][]byte, *ebpf.Program, error) {
		return func(int) ([][]byte, *ebpf.Program, error) {
			if err := reset(); err != nil {
				return nil, nil, err
			}
			frames := make([][]byte, ppBatch)
			for i := range frames {
				c, err := open(uint16(50000+i), pasv)
				if err != nil {
					return nil, nil, err
				}
				if frames[i], err = capture(c, func() error { return send(c, i) }); err != nil {
					return nil, nil, err
				}
			}
			return frames, prog, nil
		}
	}
	const eightLines = "211-Features:\r\n EPRT\r\n EPSV\r\n MDTM\r\n PASV\r\n REST STREAM\r\n SIZE\r\n211 End\r\n"
	mk := func(name, counter string, ctx []byte, prepare func(int) ([][]byte, *ebpf.Program, error)) *ppCase {
		return &ppCase{name: name + suffix, tc: true, stateful: true, counter: counter, zero: ctrlZero,
			lab: l, rp: mode, ctx: ctx, prepare: prepare}
	}
	return []*ppCase{
		mk("tc control segment, no command (NOOP)", "ctrl_segments", cliCtx, oneConn(portBase, tcIn, func(c *bpftest.Conn) error {
			return c.ClientSends("NOOP\r\n")
		})),
		mk("tc control segment with PORT", "cmd_port", cliCtx, eachConn(false, tcIn, func(c *bpftest.Conn, i int) error {
			p := 40000 + i
			return c.ClientSends(fmt.Sprintf("PORT 192,0,2,2,%d,%d\r\n", p>>8, p&255))
		})),
		mk("tc 227 reply (after PASV)", "reply_227", srvCtx, eachConn(true, tcEg, func(c *bpftest.Conn, i int) error {
			p := 30000 + i
			return c.ServerSends(fmt.Sprintf("227 Entering Passive Mode (198,51,100,2,%d,%d).\r\n", p>>8, p&255))
		})),
		mk("tc segment of 8 lines (FEAT reply)", "ctrl_segments", srvCtx, oneConn(portBase+500, tcEg, func(c *bpftest.Conn) error {
			return c.ServerSends(eightLines)
		})),
	}
}
