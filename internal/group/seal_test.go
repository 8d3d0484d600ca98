package group

import (
	"strings"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/group/grouptest"
)

// TestSealer: a member signs as the node its certificate names, and a
// receiver opens what that node signed until the certificate expires;
// a certificate that names another node is refused at start.
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
	in := Msg{Node: "gw1", Digest: 42, Count: 1}
	b, err := gw1.Seal(in)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second time from the verified certificates
		out, why, err := gw2.Open(b, time.Now())
		if err != nil || out.Node != "gw1" || out.Digest != 42 {
			t.Fatalf("open: %+v %s %v", out, why, err)
		}
	}
	// grouptest certificates live a day
	if _, why, err := gw2.Open(b, time.Now().Add(48*time.Hour)); why != RejectSigner {
		t.Fatalf("an expired signer: %s %v", why, err)
	}
	plain, _ := Encode(in)
	if _, why, _ := gw2.Open(plain, time.Now()); why != RejectUnsigned {
		t.Fatalf("an unsigned message: %s", why)
	}
}
