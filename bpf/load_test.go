package bpf_test

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/maps"
)

// memAvailable returns MemAvailable from /proc/meminfo in bytes.
func memAvailable(t *testing.T) uint64 {
	f, err := os.Open("/proc/meminfo")
	must(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemAvailable:" {
			kb, err := strconv.ParseUint(fields[1], 10, 64)
			must(t, err)
			return kb * 1024
		}
	}
	t.Fatal("no MemAvailable in /proc/meminfo")
	return 0
}

// TestLoadsWithMillionEntries proves the verifier accepts the programs with
// the largest supported tables (LRU maps preallocate: about 1 GiB here).
func TestLoadsWithMillionEntries(t *testing.T) {
	if os.Geteuid() != 0 {
		bpftest.SkipOrFail(t, "needs root")
	}
	const million = 1 << 20
	const need = 2 << 30
	if avail := memAvailable(t); avail < need {
		// a resource of the machine, not a kernel feature: a plain skip
		t.Skipf("needs %d MiB of free memory for 1M-entry tables, have %d MiB", need>>20, avail>>20)
	}
	r, err := bpftest.Load(million, million, million)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, m := range []string{maps.NameCtrlConns, maps.NameExpectations, maps.NameDataFlows} {
		if got := r.Maps.ByName(m).MaxEntries(); got != million {
			t.Errorf("%s has %d entries, want %d", m, got, million)
		}
	}
}

// TestBpftoolShowsFieldNames pins the expectations map and reads it back with
// bpftool: operators must see named fields, not bytes.
func TestBpftoolShowsFieldNames(t *testing.T) {
	bpftool, err := exec.LookPath("bpftool")
	if err != nil {
		t.Skip("bpftool is not installed (the test command installs it on the host)")
	}
	r := bpftest.Shared(t)
	passive(t, r)

	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, ""); err != nil {
		t.Fatalf("mount bpffs on %s: %v", dir, err)
	}
	t.Cleanup(func() { unix.Unmount(dir, 0) })
	pin := filepath.Join(dir, maps.NameExpectations)
	must(t, r.Objs.Expectations.Pin(pin))
	t.Cleanup(func() { r.Objs.Expectations.Unpin() })

	out, err := exec.Command(bpftool, "-j", "map", "dump", "pinned", pin).CombinedOutput()
	if err != nil {
		t.Fatalf("bpftool: %v\n%s", err, out)
	}
	var dump []struct {
		Key   map[string]any `json:"key"`
		Value map[string]any `json:"value"`
	}
	// bpftool prints "formatted" objects when the map carries BTF
	var formatted []struct {
		Formatted struct {
			Key   map[string]any `json:"key"`
			Value map[string]any `json:"value"`
		} `json:"formatted"`
	}
	if err := json.Unmarshal(out, &dump); err != nil || len(dump) != 1 || dump[0].Key == nil {
		if err := json.Unmarshal(out, &formatted); err != nil || len(formatted) != 1 {
			t.Fatalf("bpftool output is not one BTF-formatted entry: %v\n%s", err, out)
		}
		dump[0].Key, dump[0].Value = formatted[0].Formatted.Key, formatted[0].Formatted.Value
	}
	for _, field := range []string{"family", "dport", "src", "dst"} {
		if _, ok := dump[0].Key[field]; !ok {
			t.Errorf("key has no field %q: %s", field, out)
		}
	}
	for _, field := range []string{"expires_ns", "kind", "ctrl"} {
		if _, ok := dump[0].Value[field]; !ok {
			t.Errorf("value has no field %q: %s", field, out)
		}
	}
	if dport, _ := dump[0].Key["dport"].(float64); dport != 30000 {
		t.Errorf("dport = %v, want 30000", dump[0].Key["dport"])
	}
}
