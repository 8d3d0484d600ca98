package loader

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/maps"
)

// dropSYN runs the XDP program on a SYN to a port nothing admits: one
// syn_drop event.
func dropSYN(t *testing.T, dp *Dataplane, sport uint16) {
	t.Helper()
	frame := bpftest.SYN(netip.AddrPortFrom(netip.MustParseAddr("192.0.2.10"), sport), netip.MustParseAddrPort("198.51.100.20:30000"))
	if _, err := dp.objs.FtpgateXdp.Run(&ebpf.RunOptions{Data: frame}); err != nil {
		t.Fatal(err)
	}
}

// TestEventServerDrainsAndServes: run's event server empties the ring with
// no monitor connected (no stale events, no events_lost), and a monitor
// that connects gets every event from then on.
func TestEventServerDrainsAndServes(t *testing.T) {
	env := newEnv(t)
	dp := env.start(t, env.options(XDPGeneric, TCNetlink))
	srv, err := ServeEvents(dp.Maps, env.states.EventsSocket(env.pinDir), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	probe, err := ringbuf.NewReader(dp.Maps.Events)
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	for i := range 20 {
		dropSYN(t, dp, uint16(40000+i))
	}
	for deadline := time.Now().Add(5 * time.Second); probe.AvailableBytes() != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("ring still holds %d bytes with nobody but run reading", probe.AvailableBytes())
		}
		time.Sleep(10 * time.Millisecond)
	}

	st, err := DialEvents(env.states.EventsSocket(env.pinDir))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	dropSYN(t, dp, 50123)
	raw, skipped, err := st.Read()
	if err != nil {
		t.Fatal(err)
	}
	ev, err := maps.DecodeEvent(raw)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != maps.EventSYNDrop || ev.SPort != 50123 || skipped != 0 {
		t.Fatalf("monitor got %+v (skipped %d), want the syn_drop from port 50123", ev, skipped)
	}

	// closing the server ends the stream and removes the socket
	srv.Close()
	if _, _, err := st.Read(); err == nil {
		t.Fatal("stream still open after the server closed")
	}
	if _, err := DialEvents(env.states.EventsSocket(env.pinDir)); err == nil {
		t.Fatal("socket still accepts after the server closed")
	}
}

// TestEventsSocketPath: beside the state file, named after it, and short
// enough for a socket address whatever the pin directory.
func TestEventsSocketPath(t *testing.T) {
	d := StateDir("/run/ftpgate")
	pin := "/sys/fs/bpf/ftpgate"
	state := d.Path(pin, ".json")
	if got, want := d.EventsSocket(pin), strings.TrimSuffix(state, filepath.Ext(state))+".events.sock"; got != want {
		t.Errorf("socket %s, want %s beside the state file %s", got, want, state)
	}
	long := "/sys/fs/bpf/a-very-long-pin-directory-name/that-goes/on-and-on/and-on-for-more/than-a-socket-address-holds"
	got := d.EventsSocket(long)
	if len(got) > maxSocketPath || filepath.Dir(got) != d.dir() || got == d.EventsSocket(long+"2") {
		t.Errorf("socket for a long pin dir: %s", got)
	}
}

// TestDetachRemovesLeftSocket: a run killed with SIGKILL leaves its events
// socket; detach removes it with the state file.
func TestDetachRemovesLeftSocket(t *testing.T) {
	env := newEnv(t)
	must(t, env.start(t, env.options(XDPGeneric, TCNetlink)).Close())
	path := env.states.EventsSocket(env.pinDir)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	must(t, err)
	ln.SetUnlinkOnClose(false) // as a killed process leaves it
	must(t, ln.Close())
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("no left socket to test with: %v", err)
	}
	must(t, Detach(env.pinDir, env.states, "", nil))
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("detach left %s (%v)", path, err)
	}
}

// TestEventsSocketIsRootsOnly: events name the hosts of every control
// connection, so the socket is born 0600, whatever the umask.
func TestEventsSocketIsRootsOnly(t *testing.T) {
	env := newEnv(t)
	dp := env.start(t, env.options(XDPGeneric, TCNetlink))
	old := unix.Umask(0)
	defer unix.Umask(old)
	srv, err := ServeEvents(dp.Maps, env.states.EventsSocket(env.pinDir), nil)
	must(t, err)
	defer srv.Close()
	fi, err := os.Lstat(env.states.EventsSocket(env.pinDir))
	must(t, err)
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("events socket mode %v, want a socket with 0600", fi.Mode())
	}
}
