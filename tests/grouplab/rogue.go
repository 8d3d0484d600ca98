package grouplab

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ftpgate/ftpgate/internal/group"
	"github.com/ftpgate/ftpgate/internal/nettest"
	"github.com/ftpgate/ftpgate/maps"
	"github.com/ftpgate/ftpgate/tests/lab"
)

// RogueEnv names the file of a rogue member's orders: the lab's test
// binary, started again with it set (TestMain), runs RunRogue instead of
// the tests, in the rogue's namespace.
const RogueEnv = "FTPGATE_GROUPLAB_ROGUE"

// RogueNode is the rogue member's node ID.
const RogueNode = "rogue"

// RogueOrders are what the rogue member does: join the group with a
// certificate the group's CA signed (a compromised or misconfigured
// member), then publish Publish, in order.
type RogueOrders struct {
	Group, Node   string
	Listen        string
	Peers         []string
	CA, Cert, Key string
	Publish       []RawMsg
}

// RawMsg is one message as the rogue publishes it: any bytes, on any
// subject, or Sign signed with the rogue's own key and certificate.
type RawMsg struct {
	Subject string
	Data    []byte
	Sign    *group.Msg
}

// rogueSent is the line the rogue prints when everything is published.
const rogueSent = "rogue: published"

// RunRogue is the rogue process: it joins the group as a member (the
// embedded server and engine of group.Start, over a table that keeps
// nothing), waits for a route to and a digest from every peer, publishes
// its orders on its bus connection, says so on stdout, and stays until
// SIGTERM.
func RunRogue(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var o RogueOrders
	if err := json.Unmarshal(b, &o); err != nil {
		return fmt.Errorf("orders %s: %w", path, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	n, err := group.Start(group.Config{Group: o.Group, NodeID: o.Node, Listen: o.Listen, Peers: o.Peers,
		CA: o.CA, Cert: o.Cert, Key: o.Key}, discard{},
		func() group.Policy { return group.Policy{ExpectTimeout: maps.DefaultExpectTimeout} }, nil)
	if err != nil {
		return err
	}
	defer n.Close()
	// a route to every peer, and a digest heard from each: the peers'
	// subscriptions have crossed the routes
	deadline := time.Now().Add(30 * time.Second)
	for len(n.Status().Routes) < len(o.Peers) || len(n.Peers()) < len(o.Peers) {
		if time.Now().After(deadline) {
			return fmt.Errorf("no route to or digest from every peer in 30 s: %+v", n.Status())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	for _, m := range o.Publish {
		if m.Sign != nil {
			if m.Data, err = n.Seal(m.Subject, *m.Sign); err != nil {
				return err
			}
		}
		if err := n.Conn().Publish(m.Subject, m.Data); err != nil {
			return fmt.Errorf("publish on %s: %w", m.Subject, err)
		}
	}
	if err := n.Conn().Flush(); err != nil {
		return err
	}
	fmt.Printf("%s %d messages\n", rogueSent, len(o.Publish))
	<-ctx.Done()
	return nil
}

// discard is a table that keeps nothing: the rogue writes no map.
type discard struct{}

func (discard) AddExpectation(maps.Expectation, time.Duration) error { return nil }
func (discard) DeleteExpectation(maps.Expectation) error             { return nil }
func (discard) AddFlow(maps.Flow, uint32) error                      { return nil }

// Rogue is a rogue member running in its own namespace on the sync bridge.
type Rogue struct {
	NS   string
	Addr netip.Addr
	cmd  *exec.Cmd
	done chan struct{}
	out  strings.Builder
}

// rogueAddr is the rogue's address on the sync network: the one after
// the gateways'.
var rogueAddr = syncAddr(Gateways)

// StartRogueMember starts a rogue member in its own namespace on the sync
// bridge, with a certificate the group's CA signed for its address, and
// returns once it has published msgs to the group.
func (l *Lab) StartRogueMember(msgs []RawMsg) *Rogue {
	l.t.Helper()
	r := &Rogue{NS: strings.TrimSuffix(l.Syn, "-syn") + "-rogue", Addr: rogueAddr, done: make(chan struct{})}
	nettest.NS(l.t, r.NS)
	l.ip(r.NS, "link", "set", "lo", "up")
	l.veth(l.Syn, "yr", r.NS, "gy")
	l.ip(l.Syn, "link", "set", "yr", "master", "br0")
	l.addr(r.NS, "gy", r.Addr.String()+"/27")
	cert, key := l.pki.Issue(l.t, RogueNode, r.Addr)
	o := RogueOrders{Group: "lab", Node: RogueNode, Listen: netip.AddrPortFrom(r.Addr, SyncPort).String(),
		CA: l.pki.CA, Cert: cert, Key: key, Publish: msgs}
	for i := range Gateways {
		o.Peers = append(o.Peers, netip.AddrPortFrom(syncAddr(i), SyncPort).String())
	}
	b, err := json.Marshal(o)
	if err != nil {
		l.t.Fatal(err)
	}
	orders := filepath.Join(l.Dir, "rogue.json")
	if err := os.WriteFile(orders, b, 0o600); err != nil {
		l.t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		l.t.Fatal(err)
	}
	r.cmd = exec.Command("nsenter", "--net=/run/netns/"+r.NS, self)
	r.cmd.Env = append(os.Environ(), RogueEnv+"="+orders)
	r.cmd.Stderr = &r.out
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		l.t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		l.t.Fatalf("start the rogue: %v", err)
	}
	sent := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), rogueSent) {
				sent <- sc.Text()
			}
		}
		_ = r.cmd.Wait()
		close(r.done)
	}()
	l.t.Cleanup(func() { r.Stop() })
	select {
	case line := <-sent:
		l.t.Logf("%s (at %s, its certificate signed by the group's CA)", line, r.Addr)
	case <-r.done:
		l.t.Fatalf("the rogue exited: %s", r.out.String())
	case <-time.After(45 * time.Second):
		r.Stop()
		l.t.Fatalf("the rogue published nothing in 45 s: %s", r.out.String())
	}
	return r
}

// Stop ends the rogue process (SIGTERM to its PID); its namespace goes
// with the lab's.
func (r *Rogue) Stop() error {
	if lab.Terminate(r.cmd.Process, syscall.SIGTERM, r.done, 10*time.Second) {
		return errors.New("the rogue was killed after 10 s")
	}
	return nil
}
