package group

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Config is a node's place in its group.
type Config struct {
	Group  string // the group's name: only nodes of one name exchange
	NodeID string // this node's name, unique in the group
	// Listen is the HOST:PORT of the embedded server's route listener,
	// where peers connect; Peers the route listeners of the others
	Listen string
	Peers  []string
	// CA, Cert, Key: PEM files. Routes are mutual TLS: a peer is whoever
	// presents a certificate CA signed for the address it is dialled at
	CA, Cert, Key string
	// Insecure allows routes without TLS (labs only)
	Insecure bool
	// NATSURL joins an existing NATS cluster instead of embedding a server
	// (CA, Cert and Key, when given, are the client's TLS)
	NATSURL string

	DigestInterval   time.Duration // 0: DefaultDigestInterval
	PeerRate         float64       // 0: DefaultPeerRate
	PeerBurst        int           // 0: DefaultPeerBurst
	MaxRemotePerPeer int           // 0: DefaultMaxRemotePerPeer
	Log              *slog.Logger
}

// Enabled reports whether the configuration asks for a group at all.
func (c Config) Enabled() bool { return c.Group != "" }

// Errors a configuration is refused with.
var (
	ErrNoTLS = errors.New("group routes need --sync-ca, --sync-cert and --sync-key (or --sync-insecure for a lab)")
)

// Check validates c before anything starts: the settings, and the
// credentials they name (readable, a certificate that chains to the CA and
// names the node: see NewSealer).
func (c Config) Check() error {
	if err := c.checkSettings(); err != nil {
		return err
	}
	_, _, err := c.credentials()
	return err
}

// checkSettings validates c on its own, without reading its files.
func (c Config) checkSettings() error {
	if !c.Enabled() {
		if c.NodeID != "" || c.Listen != "" || len(c.Peers) > 0 || c.NATSURL != "" {
			return errors.New("--node-id, --sync-listen, --peer and --nats-url need --group")
		}
		return nil
	}
	if c.NodeID == "" {
		return errors.New("--group needs --node-id")
	}
	if !validToken(c.Group) || !validToken(c.NodeID) {
		return errors.New("--group and --node-id: letters, digits, '-' and '_' only")
	}
	if c.NATSURL != "" {
		if c.Listen != "" || len(c.Peers) > 0 {
			return errors.New("--nats-url joins an existing cluster: no --sync-listen or --peer with it")
		}
	} else {
		if c.Listen == "" {
			return errors.New("--group needs --sync-listen HOST:PORT (or --nats-url)")
		}
		for _, a := range append([]string{c.Listen}, c.Peers...) {
			if _, _, err := hostPort(a); err != nil {
				return err
			}
		}
	}
	tlsGiven := c.CA != "" || c.Cert != "" || c.Key != ""
	if tlsGiven && (c.CA == "" || c.Cert == "" || c.Key == "") {
		return ErrNoTLS
	}
	if !tlsGiven && !c.Insecure {
		return ErrNoTLS
	}
	return nil
}

func validToken(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return s != ""
}

func hostPort(a string) (string, int, error) {
	h, p, err := net.SplitHostPort(a)
	if err != nil {
		return "", 0, fmt.Errorf("sync address %q: %w", a, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return "", 0, fmt.Errorf("sync address %q: port 1-65535", a)
	}
	return h, n, nil
}

// credentials loads the routes' TLS and the sealer that signs with the
// same certificate; both nil without TLS (--sync-insecure).
func (c Config) credentials() (*tls.Config, *Sealer, error) {
	tc, err := c.tlsConfig()
	if err != nil || tc == nil {
		return nil, nil, err
	}
	seal, err := NewSealer(tc, c.NodeID)
	if err != nil {
		return nil, nil, err
	}
	return tc, seal, nil
}

// tlsConfig loads the CA, certificate and key: the same for accepting and
// dialling routes, each side verifying the other's certificate.
func (c Config) tlsConfig() (*tls.Config, error) {
	if c.CA == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(c.CA)
	if err != nil {
		return nil, fmt.Errorf("--sync-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--sync-ca %s: no certificate in it", c.CA)
	}
	cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
	if err != nil {
		return nil, fmt.Errorf("--sync-cert/--sync-key: %w", err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}, nil
}

// Node is a running group member: the embedded server (if any), the
// connection and the engine.
type Node struct {
	*Engine
	cfg Config
	srv *server.Server
	nc  *nats.Conn
}

// Start joins the group: it starts the embedded server (or dials
// NATSURL), connects, and starts exchanging; tbl receives what the peers
// send, policy says what is acceptable (read for every message: `config
// set` changes it at run time), clock is the dataplane's clock of event
// times (maps.Maps.Now), nil to take events as they come.
func Start(cfg Config, tbl Table, policy func() Policy, clock func() (time.Duration, error)) (*Node, error) {
	if err := cfg.checkSettings(); err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	tc, seal, err := cfg.credentials()
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg}
	var opts []nats.Option
	url := cfg.NATSURL
	if url == "" {
		token, err := randomToken()
		if err != nil {
			return nil, err
		}
		if n.srv, err = startServer(cfg, tc, token); err != nil {
			return nil, err
		}
		url = n.srv.ClientURL()
		opts = append(opts, nats.InProcessServer(n.srv), nats.Token(token))
	} else if tc != nil {
		client := tc.Clone()
		client.ClientAuth, client.ClientCAs = tls.NoClientCert, nil
		opts = append(opts, nats.Secure(client))
	}
	opts = append(opts, nats.Name("ftpgate-"+cfg.NodeID), nats.NoEcho(), nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond), nats.ReconnectBufSize(8<<20))
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		n.shutdown()
		return nil, fmt.Errorf("connect to the group bus: %w", err)
	}
	n.nc = nc
	g := newEngine(cfg, tbl, policy, clock)
	g.seal = seal
	if n.srv != nil {
		g.routed = routedPeers(n.srv)
	}
	n.Engine = g
	if err := g.attach(nc); err != nil {
		n.Close()
		return nil, err
	}
	// a reconnected client (--nats-url) missed what was said meanwhile
	nc.SetReconnectHandler(func(*nats.Conn) { go g.requestSnapshot("") })
	return n, nil
}

func newEngine(cfg Config, tbl Table, policy func() Policy, clock func() (time.Duration, error)) *Engine {
	g := &Engine{node: cfg.NodeID, group: cfg.Group, tbl: tbl, policy: policy, clock: clock, log: cfg.Log,
		interval: cfg.DigestInterval, rate: cfg.PeerRate, burst: cfg.PeerBurst, capPerPeer: cfg.MaxRemotePerPeer,
		now: time.Now, local: map[Key]local{}, peers: map[string]*peer{}, drops: map[Key]time.Time{}, holds: holds{}}
	if g.interval <= 0 {
		g.interval = DefaultDigestInterval
	}
	if g.rate <= 0 {
		g.rate = DefaultPeerRate
	}
	if g.burst <= 0 {
		g.burst = DefaultPeerBurst
	}
	if g.capPerPeer <= 0 {
		g.capPerPeer = DefaultMaxRemotePerPeer
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	return g
}

func randomToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("group bus token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// startServer runs the embedded server: routes on cfg.Listen to
// cfg.Peers, and a client listener on loopback behind token (with
// DontListen, nats-server 2.15 does not cluster either).
func startServer(cfg Config, tc *tls.Config, token string) (*server.Server, error) {
	host, port, err := hostPort(cfg.Listen)
	if err != nil {
		return nil, err
	}
	var routes []*url.URL
	for _, p := range cfg.Peers {
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: p})
	}
	opts := &server.Options{
		ServerName:      cfg.NodeID,
		Host:            "127.0.0.1",
		Port:            server.RANDOM_PORT,
		Authorization:   token,
		NoSigs:          true,
		NoSystemAccount: true,
		MaxPayload:      maxMsg,
		HTTPPort:        0,
		Cluster: server.ClusterOpts{
			Name:           "ftpgate-" + cfg.Group,
			Host:           host,
			Port:           port,
			TLSConfig:      tc,
			TLSTimeout:     2,
			NoAdvertise:    true,
			ConnectRetries: -1,
			PoolSize:       -1,
			// a route over a path that went dark (a partition) is noticed
			// in about routePing*routePingsOut, not nats' default minutes
			PingInterval: routePing,
			MaxPingsOut:  routePingsOut,
		},
		Routes: routes,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("group server: %w", err)
	}
	srv.SetLoggerV2(&natsLog{cfg.Log}, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("group server: not ready listening for routes on %s", cfg.Listen)
	}
	return srv, nil
}

// routePing and routePingsOut bound how long a dead route stays up.
const (
	routePing     = time.Second
	routePingsOut = 3
)

// Conn is the node's connection to its group's bus (the group lab's rogue
// member publishes on it what no dataplane made).
func (n *Node) Conn() *nats.Conn { return n.nc }

// Close leaves the group.
func (n *Node) Close() {
	if n.Engine != nil {
		n.Engine.Close()
	}
	n.shutdown()
}

func (n *Node) shutdown() {
	if n.nc != nil {
		n.nc.Close()
	}
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
	}
}

// routedEvery bounds how stale the engine's view of the routes may be.
const routedEvery = 100 * time.Millisecond

// routedPeers returns a function naming the peers the embedded server has
// a route to, read again at most every routedEvery.
func routedPeers(srv *server.Server) func() map[string]bool {
	var mu sync.Mutex
	var at time.Time
	var last map[string]bool
	return func() map[string]bool {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(at) < routedEvery && last != nil {
			return last
		}
		rz, err := srv.Routez(nil)
		if err != nil {
			return last
		}
		last, at = map[string]bool{}, time.Now()
		for _, r := range rz.Routes {
			last[r.RemoteName] = true
		}
		return last
	}
}

// Route is one route of the embedded server.
type Route struct {
	Peer   string `json:"peer"`   // the remote server's name (its node ID)
	Addr   string `json:"addr"`   // the address of the connection's far end
	Dialed bool   `json:"dialed"` // this node dialled it (one of its --peer)
}

// Status is what `ftpgate status` shows of the group.
type Status struct {
	Group string `json:"group"`
	Node  string `json:"node"`
	// Bus: "embedded" (routes on Listen) or the --nats-url
	Bus       string `json:"bus"`
	Listen    string `json:"listen,omitempty"`
	Connected bool   `json:"connected"`
	// Routes: one per peer server reached (a peer's pooled routes count
	// once); PeersDown: configured peers no route reaches
	Routes    []Route     `json:"routes"`
	PeersDown int         `json:"peers_down"`
	Peers     []PeerState `json:"peers"`
	Local     int         `json:"local"` // live expectations made here, published
	Counters  Snapshot    `json:"counters"`
	Updated   time.Time   `json:"updated"` // when this was read
}

// Status returns the node's state now.
func (n *Node) Status() Status {
	st := Status{Group: n.cfg.Group, Node: n.cfg.NodeID, Bus: "embedded", Listen: n.cfg.Listen,
		Connected: n.nc != nil && n.nc.IsConnected(), Routes: []Route{}, Updated: time.Now()}
	if n.cfg.NATSURL != "" {
		st.Bus, st.Listen = n.cfg.NATSURL, ""
	}
	if n.srv != nil {
		if rz, err := n.srv.Routez(nil); err == nil {
			seen := map[string]bool{}
			for _, r := range rz.Routes {
				if seen[r.RemoteName] {
					continue
				}
				seen[r.RemoteName] = true
				st.Routes = append(st.Routes, Route{Peer: r.RemoteName, Addr: net.JoinHostPort(r.IP, strconv.Itoa(r.Port)), Dialed: r.DidSolicit})
			}
		}
		slices.SortFunc(st.Routes, func(a, b Route) int { return strings.Compare(a.Peer, b.Peer) })
		st.PeersDown = max(len(n.cfg.Peers)-len(st.Routes), 0)
	}
	if n.Engine != nil {
		st.Peers, st.Local, st.Counters = n.Engine.Peers(), n.Engine.Local(), n.Engine.C.Snapshot()
	}
	return st
}

// natsLog hands the embedded server's log to slog: its notices at debug
// level (route connected, ...), its warnings and errors as they are.
type natsLog struct{ l *slog.Logger }

func (l *natsLog) Noticef(f string, v ...any) { l.l.Debug("nats: " + fmt.Sprintf(f, v...)) }
func (l *natsLog) Warnf(f string, v ...any)   { l.l.Warn("nats: " + fmt.Sprintf(f, v...)) }
func (l *natsLog) Fatalf(f string, v ...any)  { l.l.Error("nats: " + fmt.Sprintf(f, v...)) }
func (l *natsLog) Errorf(f string, v ...any)  { l.l.Warn("nats: " + fmt.Sprintf(f, v...)) }
func (l *natsLog) Debugf(f string, v ...any)  { l.l.Debug("nats: " + fmt.Sprintf(f, v...)) }
func (l *natsLog) Tracef(f string, v ...any)  {}
