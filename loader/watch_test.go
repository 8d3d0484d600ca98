package loader

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/bpf"
	"github.com/ftpgate/ftpgate/internal/nettest"
	"github.com/ftpgate/ftpgate/internal/packet"
)

// reattachWait bounds how long the link watcher may take to give a
// re-created interface its programs back: seconds on a host, more in a
// TCG guest sharing two cores with another (CI once took over 10 s on 7.x).
const reattachWait = 60 * time.Second

// syncBuffer is a log sink the watcher goroutine and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// ifindexes returns the current ifindex of each test interface.
func (e *testEnv) ifindexes(t *testing.T) map[string]int {
	t.Helper()
	out := map[string]int{}
	e.eachLink(t, func(name string, lk netlink.Link) error {
		out[name] = lk.Attrs().Index
		return nil
	})
	return out
}

// deleteVeth deletes the veth pair (both ends go).
func (e *testEnv) deleteVeth(t *testing.T) {
	t.Helper()
	must(t, inNetns(e.ns, func() error {
		lk, err := netlink.LinkByName(e.ifaces[0])
		if err != nil {
			return err
		}
		return netlink.LinkDel(lk)
	}))
}

func (e *testEnv) addVeth(t *testing.T) {
	t.Helper()
	must(t, inNetns(e.ns, func() error {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: e.ifaces[0]}, PeerName: e.ifaces[1]}); err != nil {
			return err
		}
		for _, n := range e.ifaces {
			lk, err := netlink.LinkByName(n)
			if err != nil {
				return err
			}
			if err := netlink.LinkSetUp(lk); err != nil {
				return err
			}
		}
		return nil
	}))
}

// sendSYN sends a SYN to an unexpected port out of from, so that it
// arrives on its veth peer.
func (e *testEnv) sendSYN(t *testing.T, from string) {
	t.Helper()
	frame := packet.TCP{
		Src:   netip.MustParseAddrPort("192.0.2.10:40000"),
		Dst:   netip.MustParseAddrPort("198.51.100.20:30000"),
		Flags: packet.SYN, Seq: 1,
	}.Bytes()
	must(t, inNetns(e.ns, func() error {
		lk, err := netlink.LinkByName(from)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: lk.Attrs().Index, Halen: 6})
	}))
}

func guardedIndexes(t *testing.T, dp *Dataplane) map[uint32]bool {
	t.Helper()
	out := map[uint32]bool{}
	var k uint32
	var v bpf.FtpgateIfaceVal
	it := dp.Maps.GuardedIfs.Iterate()
	for it.Next(&k, &v) {
		out[k] = true
	}
	must(t, it.Err())
	return out
}

// TestReattachRecreatedInterface: while run watches, a guarded interface
// deleted and created again gets ftpgate's programs back (same modes, on
// the new ifindex, as the kernel shows), the guarded_ifs map and the state
// file follow, both events are logged, ftpgate_reattach_total counts it,
// and a SYN to an unexpected port is dropped again.
func TestReattachRecreatedInterface(t *testing.T) {
	for _, tc := range tcModes(t) {
		t.Run(string(tc), func(t *testing.T) {
			env := newEnv(t)
			var logs syncBuffer
			opts := env.options(XDPGeneric, tc)
			opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			dp := env.start(t, opts)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			must(t, dp.Watch(ctx))
			c := &Collector{Dataplane: dp, Log: slog.New(slog.DiscardHandler)}
			old := env.ifindexes(t)

			env.deleteVeth(t)
			must(t, nettest.Poll(reattachWait, func() error {
				if !strings.Contains(logs.String(), "disappeared") {
					return fmt.Errorf("no log of the deletion:\n%s", logs.String())
				}
				return nil
			}))
			if got := gauge(t, c, "ftpgate_attach_info", "iface"); got["fg0"] != 0 || got["fg1"] != 0 {
				t.Errorf("ftpgate_attach_info while gone = %v, want 0", got)
			}

			env.addVeth(t)
			now := env.ifindexes(t)
			must(t, nettest.Poll(reattachWait, func() error {
				st, err := ReadStatus(env.pinDir, env.states, "")
				if err != nil {
					return err
				}
				// the watcher writes the state file after it attached
				for _, i := range st.Ifaces {
					if i.Index != i.IndexSeen {
						return fmt.Errorf("%s: recorded ifindex %d, now %d", i.Name, i.Index, i.IndexSeen)
					}
				}
				return st.Check()
			}))

			st, err := ReadStatus(env.pinDir, env.states, "")
			must(t, err)
			for _, i := range st.Ifaces {
				if i.Index != now[i.Name] || i.Index == old[i.Name] || i.XDPSeen != XDPGeneric || i.TCSeen != tc {
					t.Errorf("%s after re-creation: recorded ifindex %d (now %d, was %d), xdp %s, tc %s", i.Name, i.Index, now[i.Name], old[i.Name], i.XDPSeen, i.TCSeen)
				}
			}
			// the kernel's own view: ftpgate's XDP program on the new ifindex
			xdpID := progIDs(t, env.pinDir)["ftpgate_xdp"]
			env.eachLink(t, func(name string, lk netlink.Link) error {
				if x := lk.Attrs().Xdp; x == nil || x.ProgId != xdpID {
					return fmt.Errorf("%s: XDP %+v, want program %d", name, x, xdpID)
				}
				return nil
			})
			g := guardedIndexes(t, dp)
			for name := range now {
				if !g[uint32(now[name])] || g[uint32(old[name])] {
					t.Errorf("guarded_ifs = %v, want %s's new ifindex %d and not the old %d", g, name, now[name], old[name])
				}
			}
			if got := gauge(t, c, "ftpgate_attach_info", "iface"); got["fg0"] != 1 || got["fg1"] != 1 {
				t.Errorf("ftpgate_attach_info after re-attach = %v, want 1", got)
			}
			if got := gauge(t, c, "ftpgate_reattach_total", "iface"); got["fg0"] != 1 || got["fg1"] != 1 {
				t.Errorf("ftpgate_reattach_total = %v, want 1 each", got)
			}
			if !strings.Contains(logs.String(), "re-attached") {
				t.Errorf("no log of the re-attachment:\n%s", logs.String())
			}

			before := counter(t, dp, "syn_drop_unexpected")
			env.sendSYN(t, "fg1")
			must(t, nettest.Poll(reattachWait, func() error {
				if n := counter(t, dp, "syn_drop_unexpected"); n <= before {
					return fmt.Errorf("syn_drop_unexpected = %d, want > %d", n, before)
				}
				return nil
			}))
		})
	}
}

func counter(t *testing.T, dp *Dataplane, name string) uint64 {
	t.Helper()
	c, err := dp.Maps.Counters()
	must(t, err)
	return c[name]
}
