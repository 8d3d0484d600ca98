package attack

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/tests/lab"
)

// TestSlipstream is finding 2 (NAT slipstreaming): with 2121 a control port
// for every destination, an inside user's ordinary HTTP POST to an outside
// server on 2121 whose body holds a PORT line must not let that server
// connect into the user's port.
func TestSlipstream(t *testing.T) {
	const row = "2 slipstreaming: HTTP POST to an outside server on 2121, body `PORT <client>,12,234`"
	outcomes.note(row, "curl with `Expect: 100-continue`, so the body starts a segment of its own (the alignment the kernel's helper needs); the server holds the request open while it connects back; ftpgate has 2121 as a control port for every destination (`--ftp-port 2121`)")
	sp := spec{opts: lab.Options{NoFTP: true}, gateFlags: []string{"--ftp-port", "21", "--ftp-port", "2121"}}
	forEachTarget(t, sp, func(e *env) {
		c, s := e.l.ClientAddr(4), e.l.ServerAddr(4)
		e.serve(e.l.ClientNS, c, victimPort)
		bodyRead, release := e.serveHTTP(netip.AddrPortFrom(s, lab.AltFTPPort))
		before := e.counters()
		body := "PORT " + portArg(c, victimPort) + "\r\n"
		url := "http://" + netip.AddrPortFrom(s, lab.AltFTPPort).String() + "/upload"
		posted := make(chan error, 1)
		go func() {
			out, err := e.l.Exec(context.Background(), e.l.ClientNS, "curl", "-sS", "--max-time", "15",
				"-H", "Expect: 100-continue", "--data-binary", body, url)
			if err != nil {
				e.t.Logf("curl: %s", out)
			}
			posted <- err
		}()
		select {
		case <-bodyRead:
		case err := <-posted:
			e.t.Fatalf("the user's POST ended before the server read its body: %v", err)
		case <-time.After(10 * time.Second):
			e.t.Fatal("the user's POST did not arrive")
		}
		e.report(row, e.attempt(e.l.ServerNS, c, victimPort))
		close(release)
		if err := <-posted; err != nil {
			e.t.Fatalf("the user's POST: %v", err)
		}
		e.wantRefusalCounted(before, countNotFTP)
	})
}

// serveHTTP runs an HTTP server in the server namespace that reads a
// request body (answering `Expect: 100-continue`), says so on bodyRead and
// keeps the request open until release is closed.
func (e *env) serveHTTP(addr netip.AddrPort) (bodyRead <-chan struct{}, release chan struct{}) {
	e.t.Helper()
	ln, err := e.l.Listen(e.l.ServerNS, "tcp", addr.String())
	if err != nil {
		e.t.Fatal(err)
	}
	read := make(chan struct{}, 1)
	release = make(chan struct{})
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		read <- struct{}{}
		<-release
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = srv.Serve(ln) }()
	e.t.Cleanup(func() { srv.Close() })
	return read, release
}
