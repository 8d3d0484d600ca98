// Package selftest checks the VM harness itself: it runs inside the guest
// and verifies the environment that the real BPF tests rely on. It only
// makes sense under tests/vm/run.sh; on a host it skips unless
// VMTEST_SELFTEST=1 is set (FTPGATE_VM_GUEST, set by the guest init, also
// enables it).
package selftest

import (
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func requireVM(t *testing.T) {
	t.Helper()
	if os.Getenv("FTPGATE_VM_GUEST") == "" && os.Getenv("VMTEST_SELFTEST") == "" {
		t.Skip("harness self-test: run through tests/vm/run.sh")
	}
}

func TestKernelVersion(t *testing.T) {
	requireVM(t)
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatalf("uname: %v", err)
	}
	rel := unix.ByteSliceToString(u.Release[:])
	t.Logf("kernel release %s", rel)
	// Debian kernels end in -amd64; anything else means we are not in
	// one of the harness VMs.
	if !strings.HasSuffix(rel, "-amd64") {
		t.Errorf("kernel release %q is not a Debian amd64 kernel", rel)
	}
}

func TestBPFFSMounted(t *testing.T) {
	requireVM(t)
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/bpf", &st); err != nil {
		t.Fatalf("statfs /sys/fs/bpf: %v", err)
	}
	if st.Type != unix.BPF_FS_MAGIC {
		t.Fatalf("/sys/fs/bpf has fs magic %#x, want bpffs %#x", st.Type, unix.BPF_FS_MAGIC)
	}
}

func TestBPFArrayMap(t *testing.T) {
	requireVM(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{
		Name:       "vmtest_array",
		Type:       ebpf.Array,
		KeySize:    4,
		ValueSize:  8,
		MaxEntries: 4,
	})
	if err != nil {
		t.Fatalf("create array map: %v", err)
	}
	defer m.Close()
	if err := m.Put(uint32(1), uint64(0xf7f9a7e)); err != nil {
		t.Fatalf("update: %v", err)
	}
	var got uint64
	if err := m.Lookup(uint32(1), &got); err != nil {
		t.Fatalf("lookup: %v", err)
	}
	if got != 0xf7f9a7e {
		t.Fatalf("lookup = %#x", got)
	}

	t.Run("pin", func(t *testing.T) {
		path := "/sys/fs/bpf/vmtest_array"
		if err := m.Pin(path); err != nil {
			t.Fatalf("pin: %v", err)
		}
		defer m.Unpin()
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("pinned map not visible: %v", err)
		}
	})
}

func TestVethPair(t *testing.T) {
	requireVM(t)
	// veth is a module on Debian kernels; the guest init loaded it. A
	// fresh network namespace keeps the test from touching a host's
	// interfaces if it is ever run outside a VM. unshare only moves the
	// calling thread, so the goroutine stays on it, and the thread is
	// never unlocked: Go then discards it instead of reusing a thread that
	// sits in the wrong namespace.
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatalf("unshare netns: %v", err)
	}
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: "vmt0"},
		PeerName:  "vmt1",
	}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("add veth pair: %v", err)
	}
	for _, name := range []string{"vmt0", "vmt1"} {
		l, err := netlink.LinkByName(name)
		if err != nil {
			t.Fatalf("lookup %s: %v", name, err)
		}
		if l.Type() != "veth" {
			t.Errorf("%s has type %q", name, l.Type())
		}
		if err := netlink.LinkSetUp(l); err != nil {
			t.Errorf("set %s up: %v", name, err)
		}
	}
	l, _ := netlink.LinkByName("vmt0")
	if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		t.Errorf("delete veth: %v", err)
	}
}
