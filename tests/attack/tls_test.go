package attack

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/tests/lab"
)

// TestSlipstreamTLSTicket is finding 2's TLS variant: a TLS 1.3 server
// chooses its session tickets' bytes, and a resuming client sends the
// ticket in clear in its ClientHello; a ticket carrying a PORT line must
// not open the client's port.
func TestSlipstreamTLSTicket(t *testing.T) {
	const row = "2b slipstreaming through TLS: PORT line in a TLS 1.3 session ticket, resumed on 2121"
	outcomes.note(row, "curl fetches twice over HTTPS (Connection: close), the second ClientHello carries the server's ticket `\\r\\nPORT <client>,12,234\\r\\n...`; the server holds the resumed request open while it connects back")
	sp := spec{opts: lab.Options{NoFTP: true}, gateFlags: []string{"--ftp-port", "21", "--ftp-port", "2121"}}
	forEachTarget(t, sp, func(e *env) {
		c, s := e.l.ClientAddr(4), e.l.ServerAddr(4)
		e.serve(e.l.ClientNS, c, victimPort)
		resumed, release := e.serveTLSTicket(netip.AddrPortFrom(s, lab.AltFTPPort), "\r\nPORT "+portArg(c, victimPort)+"\r\n")
		before := e.counters()
		url := "https://" + netip.AddrPortFrom(s, lab.AltFTPPort).String() + "/"
		fetched := make(chan error, 1)
		go func() {
			out, err := e.l.Exec(context.Background(), e.l.ClientNS, "curl", "-sS", "-k", "--tlsv1.3", "--max-time", "15",
				"-H", "Connection: close", url, url)
			if err != nil {
				e.t.Logf("curl: %s", out)
			}
			fetched <- err
		}()
		select {
		case <-resumed:
		case err := <-fetched:
			e.t.Fatalf("curl ended before it resumed the session: %v", err)
		case <-time.After(10 * time.Second):
			e.t.Fatal("curl did not resume the session")
		}
		e.report(row, e.attempt(e.l.ServerNS, c, victimPort))
		close(release)
		if err := <-fetched; err != nil {
			e.t.Fatalf("curl: %v", err)
		}
		e.wantRefusalCounted(before, countNotFTP)
	})
}

// serveTLSTicket runs an HTTPS server (TLS 1.3, self-signed) whose session
// tickets start with prefix. A request on a resumed session is held open
// until release is closed; resumed says it arrived.
func (e *env) serveTLSTicket(addr netip.AddrPort, prefix string) (resumed <-chan struct{}, release chan struct{}) {
	e.t.Helper()
	ln, err := e.l.Listen(e.l.ServerNS, "tcp", addr.String())
	if err != nil {
		e.t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "attacker.example"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		// the ticket is whatever the server says it is: here a line
		// followed by the session in clear (no secret matters in a test)
		WrapSession: func(_ tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
			b, err := ss.Bytes()
			return append([]byte(prefix), b...), err
		},
		UnwrapSession: func(identity []byte, _ tls.ConnectionState) (*tls.SessionState, error) {
			rest, ok := strings.CutPrefix(string(identity), prefix)
			if !ok {
				return nil, errors.New("not our ticket")
			}
			return tls.ParseSessionState([]byte(rest))
		},
	}
	read := make(chan struct{}, 1)
	release = make(chan struct{})
	var once atomic.Bool
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, TLSConfig: cfg,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			if r.TLS != nil && r.TLS.DidResume && once.CompareAndSwap(false, true) {
				read <- struct{}{}
				<-release
			}
			w.WriteHeader(http.StatusNoContent)
		})}
	go func() { _ = srv.Serve(tls.NewListener(ln, cfg)) }()
	e.t.Cleanup(func() { srv.Close() })
	return read, release
}
