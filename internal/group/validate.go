package group

import (
	"net/netip"
	"time"

	"github.com/ftpgate/ftpgate/maps"
)

// Policy is what a received entry is checked against: the receiving
// gateway's own rules, as its parser applies them to what it reads itself.
type Policy struct {
	// ExpectTimeout caps the lifetime a peer may give an expectation
	ExpectTimeout time.Duration
	// AllowLowDataPorts accepts data ports below maps.LowPortLimit
	AllowLowDataPorts bool
	// SyncHold: this node's parser holds the segments that make
	// expectations until the peers acknowledge them (hold.go)
	SyncHold bool
}

// PolicyFrom takes the policy from a dataplane configuration.
func PolicyFrom(c maps.Config) Policy {
	return Policy{ExpectTimeout: c.ExpectTimeout, AllowLowDataPorts: c.AllowLowDataPorts, SyncHold: c.SyncHold}
}

// Reasons a received message or entry is rejected, as the metrics name them.
const (
	RejectMalformed  = "malformed"      // not a group message
	RejectOp         = "op"             // unknown operation
	RejectFamily     = "family"         // addresses missing, of two families, or not unicast
	RejectKind       = "kind"           // not an expectation kind
	RejectLowPort    = "low_port"       // data port below 1024 without --allow-low-data-ports
	RejectPort       = "port"           // port 0
	RejectTTL        = "ttl_over_cap"   // lifetime beyond this gateway's --expect-timeout
	RejectExpired    = "expired"        // no lifetime left on arrival
	RejectRate       = "rate"           // over the per-peer rate limit
	RejectCap        = "cap"            // over the per-peer cap on remote expectations
	RejectWrite      = "write"          // the map refused it (full)
	RejectImpostor   = "impostor"       // claims to come from this node
	RejectUnexpected = "unexpected_msg" // a snapshot or digest nobody asked for is ignored
	// with TLS, every message is signed (seal.go)
	RejectUnsigned  = "unsigned"  // no envelope, or one without a certificate or signature
	RejectSigner    = "signer"    // a chain the group's CA did not sign (or expired), or a certificate that does not name the node the message claims
	RejectSignature = "signature" // the signature does not verify with the certificate's key (or for the subject it came on)
	RejectReplay    = "replay"    // a stamp not above the last taken from that node on that subject
)

// RejectReasons lists every reason, for metrics that show zeros too.
var RejectReasons = []string{RejectMalformed, RejectOp, RejectFamily, RejectKind, RejectLowPort, RejectPort,
	RejectTTL, RejectExpired, RejectRate, RejectCap, RejectWrite, RejectImpostor, RejectUnexpected,
	RejectUnsigned, RejectSigner, RejectSignature, RejectReplay}

// unicast reports whether a is an address a data connection can use.
func unicast(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsMulticast() && !(a.Is4() && a == netip.IPv4Unspecified()) &&
		a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// sameFamily reports whether every address is unicast and of one family.
func sameFamily(addrs ...netip.Addr) bool {
	for _, a := range addrs {
		if !unicast(a) || a.Is4() != addrs[0].Is4() || a.Is4In6() {
			return false
		}
	}
	return true
}

// Validate checks an entry from a peer against p; it returns the reason
// it is rejected, or "" when it may be written.
func (p Policy) Validate(e Entry) string {
	switch e.Op {
	case OpCreated, OpConsumed, OpRemoved:
	default:
		return RejectOp
	}
	if !sameFamily(e.Src, e.Dst) {
		return RejectFamily
	}
	if e.DPort == 0 {
		return RejectPort
	}
	if e.Op == OpRemoved {
		return "" // removing needs no more than a well-formed key
	}
	if !sameFamily(e.Src, e.Dst, e.Control.Client, e.Control.Server) {
		return RejectFamily
	}
	switch e.Kind {
	case maps.KindPort, maps.KindEprt, maps.KindPasv, maps.KindEpsv:
	default:
		return RejectKind
	}
	if int(e.DPort) < maps.LowPortLimit && !p.AllowLowDataPorts {
		return RejectLowPort
	}
	if e.Op == OpConsumed {
		if e.SPort == 0 {
			return RejectPort
		}
		return ""
	}
	if e.TTLms <= 0 {
		return RejectExpired
	}
	if p.ExpectTimeout > 0 && e.TTL() > p.ExpectTimeout {
		return RejectTTL
	}
	return ""
}

// bucket is a per-peer token bucket: rate entries a second, burst deep.
type bucket struct {
	tokens float64
	last   time.Time
}

func (b *bucket) take(now time.Time, rate float64, burst int) bool {
	if b.last.IsZero() {
		b.tokens = float64(burst)
	} else {
		b.tokens = min(float64(burst), b.tokens+now.Sub(b.last).Seconds()*rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
