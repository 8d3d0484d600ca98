// Package group shares a gateway's expectations with the other gateways of
// its group (#15) over NATS: each daemon embeds a NATS server whose routes
// form a full mesh (or joins an existing cluster), publishes what its own
// dataplane reports (created, consumed, removed) and writes what its peers
// report into its own maps, after validating it. No leader, no quorum: each
// side of a partition keeps working, and a snapshot on (re)connection plus a
// periodic digest repair what core NATS, at most once, lost.
package group

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"time"

	"github.com/ftpgate/ftpgate/maps"
)

// Op says what happened to an expectation.
type Op string

// The operations a node publishes.
const (
	// OpCreated: the parser made the expectation; TTL is its remaining lifetime
	OpCreated Op = "created"
	// OpConsumed: a SYN was admitted through it (SPort, Seq name that SYN):
	// the peers remove it and make the data flow for a retransmission
	OpConsumed Op = "consumed"
	// OpRemoved: evicted, closed with its control connection, or expired
	OpRemoved Op = "removed"
)

// Entry is one expectation as it travels: its key, kind and control
// connection, and its remaining lifetime, never an absolute time (the
// clocks of two gateways differ).
type Entry struct {
	Op      Op           `json:"op,omitempty"`
	Kind    maps.Kind    `json:"kind"`
	Src     netip.Addr   `json:"src"`
	Dst     netip.Addr   `json:"dst"`
	DPort   uint16       `json:"dport"`
	Control maps.Control `json:"control"`
	// TTLms is the remaining lifetime in milliseconds when it was sent
	TTLms int64 `json:"ttl_ms,omitempty"`
	// MadeNs is, for created, when the parser made it, on the sender's
	// wall clock (Unix ns): receivers measure the replication delay with
	// it, which means something only where the clocks agree (one host, a
	// lab; NTP to a millisecond). Never used for lifetimes.
	MadeNs int64 `json:"made_ns,omitempty"`
	// SPort and Seq: for OpConsumed, the admitted SYN
	SPort uint16 `json:"sport,omitempty"`
	Seq   uint32 `json:"seq,omitempty"`
}

// Subject is group's subject name: "x" carries entries, "digest" the
// digests, "snap" and "snap.<node>" snapshot requests.
func Subject(group, name string) string { return "ftpgate." + group + "." + name }

// Key identifies an expectation, as the map key does.
type Key struct {
	Src   netip.Addr `json:"src"`
	Dst   netip.Addr `json:"dst"`
	DPort uint16     `json:"dport"`
}

// Key returns e's key.
func (e Entry) Key() Key { return Key{e.Src, e.Dst, e.DPort} }

// TTL returns the remaining lifetime e carries.
func (e Entry) TTL() time.Duration { return time.Duration(e.TTLms) * time.Millisecond }

// ttlMs is the lifetime a receiver gives an entry: what is left, in whole
// milliseconds, rounded down (a receiver never keeps it longer than the
// sender).
func ttlMs(left time.Duration) int64 { return max(int64(left/time.Millisecond), 0) }

// Msg is what a node publishes: a batch of entries from one node, or (on
// the digest subject) its digest.
type Msg struct {
	Node    string  `json:"node"`
	Entries []Entry `json:"entries,omitempty"`
	// Digest and Count describe the node's live expectations (digest subject)
	Digest uint64 `json:"digest,omitempty"`
	Count  int    `json:"count,omitempty"`
	// Ack asks each receiver to acknowledge the created entries once
	// written (--sync-hold holds their segment until then); Acks is such
	// an acknowledgement, on the sender's ack subject (hold.go)
	Ack  bool  `json:"ack,omitempty"`
	Acks []Ack `json:"acks,omitempty"`
	// Acking, in a digest: this node acknowledges entries that ask for it
	// (a member of an older version does not, and is not waited for)
	Acking bool `json:"acking,omitempty"`
	// Stamp, in a signed message: the sender's wall clock (Unix ns) when it
	// sealed it, made to rise with each message; a receiver refuses one not
	// above the last it took from that node on that subject (seal.go)
	Stamp int64 `json:"stamp,omitempty"`
}

// maxMsg bounds a message accepted from the bus (a snapshot of a full
// table fits: maxRemotePerPeer entries of ~300 bytes).
const maxMsg = 8 << 20

// ErrMsg is a message that cannot be decoded.
var ErrMsg = errors.New("malformed group message")

// Encode returns m's wire form.
func Encode(m Msg) ([]byte, error) { return json.Marshal(m) }

// checkSize refuses a message from the bus over maxMsg, before decoding.
func checkSize(b []byte) error {
	if len(b) > maxMsg {
		return fmt.Errorf("%w: %d bytes", ErrMsg, len(b))
	}
	return nil
}

// Decode parses a message from the bus.
func Decode(b []byte) (Msg, error) {
	if err := checkSize(b); err != nil {
		return Msg{}, err
	}
	var m Msg
	if err := json.Unmarshal(b, &m); err != nil {
		return Msg{}, fmt.Errorf("%w: %w", ErrMsg, err)
	}
	if m.Node == "" {
		return Msg{}, fmt.Errorf("%w: no node", ErrMsg)
	}
	return m, nil
}

// NodeHash is the origin tag a node's expectations carry in a peer's map
// (expect_val.origin): never 0, which means made here.
func NodeHash(node string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(node))
	if v := h.Sum32(); v != 0 {
		return v
	}
	return 1
}

// Digest hashes a set of expectation keys, in any order: equal sets give
// equal digests. Lifetimes are left out (they differ by the transit time).
func Digest(keys []Key) uint64 {
	sorted := slices.Clone(keys)
	slices.SortFunc(sorted, compareKeys)
	h := fnv.New64a()
	for _, k := range sorted {
		b, _ := k.Src.MarshalBinary()
		h.Write(b)
		b, _ = k.Dst.MarshalBinary()
		h.Write(b)
		h.Write([]byte{byte(k.DPort >> 8), byte(k.DPort)})
	}
	return h.Sum64()
}

// compareKeys orders keys by source, destination, then port.
func compareKeys(a, b Key) int {
	if c := a.Src.Compare(b.Src); c != 0 {
		return c
	}
	if c := a.Dst.Compare(b.Dst); c != 0 {
		return c
	}
	return cmp.Compare(a.DPort, b.DPort)
}
