package group

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/group/grouptest"
	"github.com/ftpgate/ftpgate/maps"
)

// TestSealer: a member signs as the node its certificate names, for the
// subject it publishes on; a receiver opens it there, once, until the
// certificate expires. A certificate that names another node is refused
// at start.
func TestSealer(t *testing.T) {
	p := grouptest.NewPKI(t, "ca")
	sealer := func(cn, node string) (*Sealer, error) {
		cert, k := p.Issue(t, cn, loopback)
		tc, err := Config{CA: p.CA, Cert: cert, Key: k}.tlsConfig()
		if err != nil {
			t.Fatal(err)
		}
		return NewSealer(tc, node)
	}
	if _, err := sealer("gw1", "gw2"); err == nil || !strings.Contains(err.Error(), "--node-id") {
		t.Fatalf("a certificate for gw1 taken for gw2: %v", err)
	}
	gw1, err := sealer("gw1", "gw1")
	if err != nil {
		t.Fatal(err)
	}
	gw2, err := sealer("gw2", "gw2")
	if err != nil {
		t.Fatal(err)
	}
	const subj = "ftpgate.g.digest"
	in := Msg{Node: "gw1", Digest: 42, Count: 1}
	b, err := gw1.Seal(subj, in)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second time from the verified certificates
		out, why, err := gw2.Open(b, subj, false, time.Now())
		if err != nil || out.Node != "gw1" || out.Digest != 42 {
			t.Fatalf("open: %+v %s %v", out, why, err)
		}
	}
	if _, why, err := gw2.Open(b, subj, true, time.Now()); err != nil {
		t.Fatalf("first on the subject: %s %v", why, err)
	}
	if _, why, _ := gw2.Open(b, subj, true, time.Now()); why != RejectReplay {
		t.Fatalf("again on the subject: %q, want %q", why, RejectReplay)
	}
	if _, why, _ := gw2.Open(b, "ftpgate.other.digest", false, time.Now()); why != RejectSignature {
		t.Fatalf("on another group's subject: %q, want %q", why, RejectSignature)
	}
	// grouptest certificates live a day
	if _, why, err := gw2.Open(b, subj, false, time.Now().Add(48*time.Hour)); why != RejectSigner {
		t.Fatalf("an expired signer: %s %v", why, err)
	}
	plain, _ := Encode(in)
	if _, why, _ := gw2.Open(plain, subj, false, time.Now()); why != RejectUnsigned {
		t.Fatalf("an unsigned message: %s", why)
	}
}

// TestSealerIntermediate: a member whose certificate an intermediate CA
// signed sends the chain, and a peer that trusts only the root opens its
// messages.
func TestSealerIntermediate(t *testing.T) {
	mk := func(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
		if parent == nil {
			parent, parentKey = tmpl, k
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &k.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c, k
	}
	ca := &x509.Certificate{Subject: pkix.Name{CommonName: "root"}, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	root, rootKey := mk(ca, nil, nil)
	inter, interKey := mk(&x509.Certificate{Subject: pkix.Name{CommonName: "intermediate"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}, root, rootKey)
	leaf, leafKey := mk(&x509.Certificate{Subject: pkix.Name{CommonName: "gw1"}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}, inter, interKey)
	roots := x509.NewCertPool()
	roots.AddCert(root)
	tc := &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.Raw, inter.Raw}, PrivateKey: leafKey}}}
	s, err := NewSealer(tc, "gw1")
	if err != nil {
		t.Fatalf("a chain through an intermediate: %v", err)
	}
	b, err := s.Seal("ftpgate.g.x", Msg{Node: "gw1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, why, err := s.Open(b, "ftpgate.g.x", true, time.Now()); err != nil {
		t.Fatalf("open: %s %v", why, err)
	}
	// the leaf alone does not chain to the root
	tc.Certificates[0].Certificate = [][]byte{leaf.Raw}
	if _, err := NewSealer(tc, "gw1"); err == nil || !strings.Contains(err.Error(), "--sync-ca") {
		t.Fatalf("a leaf without its intermediate: %v", err)
	}
}

// TestStampsLeaveInOrder: messages one node publishes on one subject from
// many goroutines at once all arrive: none is taken for a replay because
// another goroutine's later stamp overtook it on the way out.
func TestStampsLeaveInOrder(t *testing.T) {
	p := grouptest.NewPKI(t, "ca")
	n := cluster(t, p, "a", "b")
	a, b := n[0], n[1]
	const senders, each = 16, 50
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				// the removal of a key nobody holds: valid, and writes nothing
				e := Entry{Op: OpRemoved, Kind: maps.KindPasv, Src: client, Dst: srv, DPort: uint16(30000 + s*each + i), Control: ctrl}
				a.Engine.publish(a.Engine.subject("x"), Msg{Node: "a", Entries: []Entry{e}})
			}
		}()
	}
	wg.Wait()
	eventually(t, 10*time.Second, func() bool { return b.C.Received.Load() >= senders*each || b.C.Rejected()[RejectReplay] > 0 },
		"b to receive %d entries: %d, rejected %v", senders*each, b.C.Received.Load(), b.C.Rejected())
	if r := b.C.Rejected()[RejectReplay]; r != 0 {
		t.Fatalf("%d of a's messages refused as replays", r)
	}
}
