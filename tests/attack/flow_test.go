package attack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/nettest"
	"github.com/ftpgate/ftpgate/tests/lab"
)

// TestDataFlowReuse is finding 7: after an admitted data connection closed,
// a new connection on the same 5-tuple is a new connection and needs a
// new expectation.
func TestDataFlowReuse(t *testing.T) {
	const row = "7 data connection reopened on the same 5-tuple after it closed"
	outcomes.note(row, "passive download from a fixed client port; then a listener on the server's data port and a new connect from the same client port")
	forEachTarget(t, spec{}, func(e *env) {
		s := e.open(4)
		target, err := s.passive()
		if err != nil {
			e.t.Fatal(err)
		}
		local := netip.AddrPortFrom(s.Addr.Addr(), ephemeral())
		if err := s.retrieve(target, local); err != nil {
			e.t.Fatalf("the admitted transfer: %v", err)
		}
		// vsftpd has closed its passive listener: the data port is free
		// for a service of the attacker's choosing.
		e.serve(e.l.ServerNS, target.Addr(), int(target.Port()))
		before := e.counters()
		e.report(row, e.reconnect(local, target))
		e.wantRefusalCounted(before, countSynDrop)
	})
}

// reconnect connects from local to target once the client's port is free
// again (the client closed last, so it has no TIME_WAIT to wait out).
func (e *env) reconnect(local, target netip.AddrPort) outcome {
	e.t.Helper()
	var c net.Conn
	var last error
	err := nettest.Poll(5*time.Second, func() error {
		return nettest.Do(e.l.ClientNS, func() error {
			d := net.Dialer{Timeout: attemptTimeout, LocalAddr: net.TCPAddrFromAddrPort(local)}
			c, last = d.DialContext(context.Background(), "tcp", target.String())
			if isAddrInUse(last) {
				return last // the old connection still holds the port
			}
			return nil
		})
	})
	if err != nil {
		e.t.Fatalf("reconnect from %s: %v", local, err)
	}
	if last == nil {
		c.Close()
		return outcome{Detail: fmt.Sprintf("reconnect from the same port admitted (%s -> %s)", local, target)}
	}
	why := last.Error()
	if ne, ok := errors.AsType[net.Error](last); ok && ne.Timeout() {
		why = lab.TimedOut.String()
	}
	return outcome{Safe: true, Detail: "reconnect from the same port " + why}
}
