package nettest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// ConnectOutcome classifies a TCP connect attempt.
type ConnectOutcome int

const (
	// Connected: the handshake completed.
	Connected ConnectOutcome = iota
	// Refused: an RST came back (nothing listens, nobody drops).
	Refused
	// TimedOut: no answer at all within the timeout — the SYN was dropped.
	TimedOut
	// Unreachable: an ICMP error came back (e.g. a reject rule or no route).
	Unreachable
)

func (o ConnectOutcome) String() string {
	switch o {
	case Connected:
		return "connected"
	case Refused:
		return "refused"
	case TimedOut:
		return "timed out"
	case Unreachable:
		return "unreachable"
	}
	return fmt.Sprintf("ConnectOutcome(%d)", int(o))
}

// ConnectTimesOut attempts one TCP connect from namespace fromNS to
// addr:port and says whether it connected, was refused, or timed out
// (silently dropped) within timeout. An error is returned only for
// failures that fit none of those outcomes.
func ConnectTimesOut(ctx context.Context, fromNS string, addr netip.Addr, port int, timeout time.Duration) (ConnectOutcome, error) {
	network := "tcp4"
	if addr.Is6() && !addr.Is4In6() {
		network = "tcp6"
	}
	target := netip.AddrPortFrom(addr, uint16(port)).String()
	c, err := Dial(ctx, fromNS, network, target, timeout)
	if err == nil {
		c.Close()
		return Connected, nil
	}
	var se syscall.Errno
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused, nil
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return Unreachable, nil
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		// The caller's own context ending is not a verdict on the network.
		if ctx.Err() != nil {
			return TimedOut, fmt.Errorf("connect %s from %s: %w", target, fromNS, ctx.Err())
		}
		return TimedOut, nil
	case errors.As(err, &se):
		return TimedOut, fmt.Errorf("connect %s from %s: unexpected errno: %w", target, fromNS, err)
	}
	return TimedOut, fmt.Errorf("connect %s from %s: %w", target, fromNS, err)
}
