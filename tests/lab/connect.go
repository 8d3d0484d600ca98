package lab

import (
	"context"
	"net/netip"
	"time"

	"github.com/ftpgate/ftpgate/internal/nettest"
)

// ConnectOutcome classifies a TCP connect attempt.
type ConnectOutcome = nettest.ConnectOutcome

// The outcomes; see nettest.
const (
	Connected   = nettest.Connected
	Refused     = nettest.Refused
	TimedOut    = nettest.TimedOut
	Unreachable = nettest.Unreachable
)

// ConnectTimesOut attempts one TCP connect from namespace fromNS to
// addr:port and says whether it connected, was refused, or timed out
// (silently dropped) within timeout; see nettest.ConnectTimesOut.
func (l *Lab) ConnectTimesOut(ctx context.Context, fromNS string, addr netip.Addr, port int, timeout time.Duration) (ConnectOutcome, error) {
	return nettest.ConnectTimesOut(ctx, fromNS, addr, port, timeout)
}
