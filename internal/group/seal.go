package group

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// A member's messages are signed with its route key (docs/group.md,
// "Signed messages"): the routes' TLS proves who a route's far end is, but
// NATS does not say over which route a message came, so without a
// signature any member could speak in another's name. Each message travels
// in an envelope with the signer's certificate chain; a receiver takes it
// only when the group's CA signed that chain, the certificate names the
// node the message claims to come from, and the signature over the
// subject it came on and the message's bytes verifies. A stamp in the
// message, rising with each message a node seals, makes a replay on the
// same subject stale.

// Envelope is a signed message as it travels: Msg exactly as signed, the
// signer's certificate chain (DER, leaf first) and the signature.
type Envelope struct {
	Msg   json.RawMessage `json:"msg"`
	Chain [][]byte        `json:"chain"`
	Sig   []byte          `json:"sig"`
}

// Bounds of an envelope's chain: a leaf and its intermediates.
const (
	maxChainCerts = 4
	maxChainBytes = 16 << 10
)

// Sealer signs what this node publishes and opens what its peers do.
type Sealer struct {
	chain [][]byte // this node's certificate chain, DER, leaf first
	key   crypto.Signer
	roots *x509.CertPool

	mu        sync.Mutex
	lastStamp int64
	known     map[[32]byte]signer // chains verified before, by hash
	stamps    map[stampKey]int64  // the last stamp taken from a node on a subject
}

type stampKey struct{ node, subject string }

// signer is a verified chain's leaf and the node names it gives.
type signer struct {
	cert  *x509.Certificate
	names []string
}

// maxKnownSigners bounds the verified chains kept (a group is a handful of
// members; a renewed certificate adds one); maxStamps the stamps kept.
const (
	maxKnownSigners = 64
	maxStamps       = 4096
)

// CertNames are the node names a certificate gives its holder: its Common
// Name and DNS names that are node IDs (letters, digits, '-', '_').
func CertNames(c *x509.Certificate) []string {
	var names []string
	for _, n := range append([]string{c.Subject.CommonName}, c.DNSNames...) {
		if validToken(n) && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

// NewSealer signs as node with tc's certificate chain and key, and accepts
// chains roots (the group's CA) signed. It refuses, in one line, a
// certificate its peers would refuse everything from: one that does not
// name node, or does not chain to the CA for client authentication now.
func NewSealer(tc *tls.Config, node string) (*Sealer, error) {
	if len(tc.Certificates) == 0 || len(tc.Certificates[0].Certificate) == 0 {
		return nil, errors.New("--sync-cert: no certificate")
	}
	own := tc.Certificates[0]
	s := &Sealer{chain: own.Certificate, roots: tc.RootCAs, known: map[[32]byte]signer{}, stamps: map[stampKey]int64{}}
	who, err := s.signer(s.chain, time.Now())
	if err != nil {
		return nil, fmt.Errorf("--sync-cert does not chain to --sync-ca for client authentication now (%v): peers would refuse every message it signs", err)
	}
	if !slices.Contains(who.names, node) {
		return nil, fmt.Errorf("--sync-cert names %q, not --node-id %q: issue the member's certificate with its node ID as Common Name or DNS name (peers take a message as a node's only when its signer's certificate names that node)",
			who.names, node)
	}
	key, ok := own.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("--sync-key: not a signing key")
	}
	s.key = key
	return s, nil
}

// Seal returns m, published on subject, signed; it stamps m.
func (s *Sealer) Seal(subject string, m Msg) ([]byte, error) {
	s.mu.Lock()
	s.lastStamp = max(time.Now().UnixNano(), s.lastStamp+1)
	m.Stamp = s.lastStamp
	s.mu.Unlock()
	raw, err := Encode(m)
	if err != nil {
		return nil, err
	}
	sig, err := sign(s.key, signedBytes(subject, raw))
	if err != nil {
		return nil, fmt.Errorf("sign a group message: %w", err)
	}
	return json.Marshal(Envelope{Msg: raw, Chain: s.chain, Sig: sig})
}

// signedBytes is what a signature covers: the subject the message is
// published on (a reply's is the requester's inbox), then the message.
func signedBytes(subject string, msg []byte) []byte {
	return slices.Concat([]byte("ftpgate group message\x00"+subject+"\x00"), msg)
}

// Open returns the message in b, which came on subject, once its signer,
// signature and stamp check out; reason is one of the Reject names. With
// fresh, the stamp must be above the last taken from that node on that
// subject (a requester's inbox is new for each request: no need).
func (s *Sealer) Open(b []byte, subject string, fresh bool, now time.Time) (m Msg, reason string, err error) {
	if err := checkSize(b); err != nil {
		return Msg{}, RejectMalformed, err
	}
	var env Envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return Msg{}, RejectMalformed, fmt.Errorf("%w: %w", ErrMsg, err)
	}
	if len(env.Msg) == 0 || len(env.Chain) == 0 || len(env.Sig) == 0 {
		return Msg{}, RejectUnsigned, errors.New("not signed")
	}
	who, err := s.signer(env.Chain, now)
	if err != nil {
		return Msg{}, RejectSigner, err
	}
	if err := verify(who.cert, signedBytes(subject, env.Msg), env.Sig); err != nil {
		return Msg{}, RejectSignature, err
	}
	msg, err := Decode(env.Msg)
	if err != nil {
		return Msg{}, RejectMalformed, err
	}
	if !slices.Contains(who.names, msg.Node) {
		return Msg{}, RejectSigner, fmt.Errorf("signed by %q, claims to come from %q", who.names, msg.Node)
	}
	if fresh && !s.stamped(stampKey{msg.Node, subject}, msg.Stamp) {
		return Msg{}, RejectReplay, fmt.Errorf("stamp %d of %s on %s not above the last taken", msg.Stamp, msg.Node, subject)
	}
	return msg, "", nil
}

// stamped takes stamp from a node on a subject if it is above the last.
func (s *Sealer) stamped(k stampKey, stamp int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	last, ok := s.stamps[k]
	if ok && stamp <= last {
		return false
	}
	if !ok && len(s.stamps) >= maxStamps {
		clear(s.stamps) // names are certified: only a CA issuing thousands gets here
	}
	s.stamps[k] = stamp
	return true
}

// signer verifies a certificate chain against the group's CA, once while
// its leaf is valid.
func (s *Sealer) signer(chain [][]byte, now time.Time) (signer, error) {
	size := 0
	for _, c := range chain {
		size += len(c)
	}
	if len(chain) > maxChainCerts || size > maxChainBytes {
		return signer{}, fmt.Errorf("a chain of %d certificates, %d bytes: at most %d, %d", len(chain), size, maxChainCerts, maxChainBytes)
	}
	h := sha256.New()
	for _, c := range chain {
		d := sha256.Sum256(c) // each certificate's hash: no two chains hash alike
		h.Write(d[:])
	}
	var id [32]byte
	h.Sum(id[:0])
	s.mu.Lock()
	who, ok := s.known[id]
	s.mu.Unlock()
	if ok && now.After(who.cert.NotBefore) && now.Before(who.cert.NotAfter) {
		return who, nil
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return signer{}, err
	}
	inter := x509.NewCertPool()
	for _, der := range chain[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return signer{}, err
		}
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: s.roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return signer{}, err
	}
	who = signer{cert: leaf, names: CertNames(leaf)}
	s.mu.Lock()
	if len(s.known) >= maxKnownSigners {
		clear(s.known)
	}
	s.known[id] = who
	s.mu.Unlock()
	return who, nil
}

// sign signs msg as x509 signature algorithms do for the key's type:
// Ed25519 over the message, ECDSA and RSA (PKCS #1 v1.5) over its SHA-256.
func sign(key crypto.Signer, msg []byte) ([]byte, error) {
	if _, ok := key.Public().(ed25519.PublicKey); ok {
		return key.Sign(rand.Reader, msg, crypto.Hash(0))
	}
	d := sha256.Sum256(msg)
	return key.Sign(rand.Reader, d[:], crypto.SHA256)
}

// verify checks sig over msg with c's key, as sign made it.
func verify(c *x509.Certificate, msg, sig []byte) error {
	var alg x509.SignatureAlgorithm
	switch c.PublicKey.(type) {
	case ed25519.PublicKey:
		alg = x509.PureEd25519
	case *ecdsa.PublicKey:
		alg = x509.ECDSAWithSHA256
	case *rsa.PublicKey:
		alg = x509.SHA256WithRSA
	default:
		return fmt.Errorf("a %T key", c.PublicKey)
	}
	return c.CheckSignature(alg, msg, sig)
}
