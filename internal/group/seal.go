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

// A member's messages are signed with its route key (#15, "Signed
// messages"): the routes' TLS proves who a route's far end is, but NATS
// does not say over which route a message came, so without a signature any
// member could speak in another's name. Each message travels in an
// envelope with the signer's certificate; a receiver takes it only when
// the group's CA signed that certificate, the certificate names the node
// the message claims to come from (its Common Name or a DNS name), and
// the signature over the message's bytes verifies.

// Envelope is a signed message as it travels: Msg exactly as signed, the
// signer's certificate (DER) and the signature.
type Envelope struct {
	Msg  json.RawMessage `json:"msg"`
	Cert []byte          `json:"cert"`
	Sig  []byte          `json:"sig"`
}

// Sealer signs what this node publishes and opens what its peers do.
type Sealer struct {
	cert  []byte // this node's certificate, DER
	key   crypto.Signer
	roots *x509.CertPool

	mu    sync.Mutex
	known map[[32]byte]signer // certificates verified before, by their DER's hash
}

// signer is a verified certificate: its key, the names it gives, and
// until when it is valid.
type signer struct {
	cert  *x509.Certificate
	names []string
}

// maxKnownSigners bounds the verified certificates kept (a group is a
// handful of members; a peer whose certificate is renewed adds one).
const maxKnownSigners = 64

// CertNames are the names a certificate gives its holder: its Common
// Name and DNS names.
func CertNames(c *x509.Certificate) []string {
	names := slices.Clone(c.DNSNames)
	if c.Subject.CommonName != "" {
		names = append(names, c.Subject.CommonName)
	}
	return names
}

// NewSealer signs as node with tc's certificate and key, and accepts
// signers roots (the group's CA) signed. It refuses a certificate that does
// not name node: peers would refuse everything it signs.
func NewSealer(tc *tls.Config, node string) (*Sealer, error) {
	if len(tc.Certificates) == 0 || len(tc.Certificates[0].Certificate) == 0 {
		return nil, errors.New("--sync-cert: no certificate")
	}
	own := tc.Certificates[0]
	leaf, err := x509.ParseCertificate(own.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("--sync-cert: %w", err)
	}
	if !slices.Contains(CertNames(leaf), node) {
		return nil, fmt.Errorf("--sync-cert names %q, not --node-id %q: issue the member's certificate with its node ID as Common Name or DNS name (peers take a message as a node's only when its signer's certificate names that node)",
			CertNames(leaf), node)
	}
	key, ok := own.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("--sync-key: not a signing key")
	}
	return &Sealer{cert: own.Certificate[0], key: key, roots: tc.RootCAs, known: map[[32]byte]signer{}}, nil
}

// Seal returns m's wire form, signed.
func (s *Sealer) Seal(m Msg) ([]byte, error) {
	raw, err := Encode(m)
	if err != nil {
		return nil, err
	}
	sig, err := sign(s.key, raw)
	if err != nil {
		return nil, fmt.Errorf("sign a group message: %w", err)
	}
	return json.Marshal(Envelope{Msg: raw, Cert: s.cert, Sig: sig})
}

// Open returns the message in b once its signature and signer check out;
// the error's reason is one of the Reject names.
func (s *Sealer) Open(b []byte, now time.Time) (Msg, string, error) {
	if len(b) > maxMsg {
		return Msg{}, RejectMalformed, fmt.Errorf("%w: %d bytes", ErrMsg, len(b))
	}
	var env Envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return Msg{}, RejectMalformed, fmt.Errorf("%w: %w", ErrMsg, err)
	}
	if len(env.Msg) == 0 || len(env.Cert) == 0 || len(env.Sig) == 0 {
		return Msg{}, RejectUnsigned, errors.New("not signed")
	}
	msg, err := Decode(env.Msg)
	if err != nil {
		return Msg{}, RejectMalformed, err
	}
	who, err := s.signer(env.Cert, now)
	if err != nil {
		return Msg{}, RejectSigner, err
	}
	if !slices.Contains(who.names, msg.Node) {
		return Msg{}, RejectSigner, fmt.Errorf("signed by %q, claims to come from %q", who.names, msg.Node)
	}
	if err := verify(who.cert, env.Msg, env.Sig); err != nil {
		return Msg{}, RejectSignature, err
	}
	return msg, "", nil
}

// signer verifies a certificate against the group's CA, once while it is
// valid.
func (s *Sealer) signer(der []byte, now time.Time) (signer, error) {
	h := sha256.Sum256(der)
	s.mu.Lock()
	who, ok := s.known[h]
	s.mu.Unlock()
	if ok && now.Before(who.cert.NotAfter) {
		return who, nil
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return signer{}, err
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: s.roots, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return signer{}, err
	}
	who = signer{cert: c, names: CertNames(c)}
	s.mu.Lock()
	if len(s.known) >= maxKnownSigners {
		clear(s.known)
	}
	s.known[h] = who
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
