package cpio

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestRoundTripWithSystemCpio checks the archive against GNU cpio, an
// independent reader, when it is installed.
func TestRoundTripWithSystemCpio(t *testing.T) {
	bin, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("cpio(1) not installed")
	}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.Dir("bin", 0o755))
	must(w.File("bin/hello", 0o755, []byte("hello, world\n")))
	must(w.File("bin/empty", 0o644, nil))
	must(w.Symlink("sh", "bin/hello"))
	must(w.Close())
	if buf.Len()%4 != 0 {
		t.Fatalf("archive length %d not 4-aligned", buf.Len())
	}

	dir := t.TempDir()
	cmd := exec.Command(bin, "-idm", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dir, "bin/hello"))
	must(err)
	if string(got) != "hello, world\n" {
		t.Fatalf("bin/hello = %q", got)
	}
	target, err := os.Readlink(filepath.Join(dir, "sh"))
	must(err)
	if target != "bin/hello" {
		t.Fatalf("sh -> %q", target)
	}
	fi, err := os.Stat(filepath.Join(dir, "bin/empty"))
	must(err)
	if fi.Size() != 0 || fi.Mode().Perm() != 0o644 {
		t.Fatalf("bin/empty: size %d mode %v", fi.Size(), fi.Mode())
	}
}

// TestLayout parses the archive back field by field, so the format is
// checked even where cpio(1) is not installed.
func TestLayout(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.File("a", 0o644, []byte("xyz")); err != nil {
		t.Fatal(err)
	}
	if err := w.CharDev("dev/console", 0o600, 5, 1); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	type entry struct {
		name       string
		mode, size uint64
		rmaj, rmin uint64
		data       string
	}
	var got []entry
	for off := 0; off < len(b); {
		if string(b[off:off+6]) != "070701" {
			t.Fatalf("offset %d: bad magic %q", off, b[off:off+6])
		}
		field := func(i int) uint64 {
			var v uint64
			for _, c := range b[off+6+8*i : off+6+8*(i+1)] {
				v = v*16 + uint64(bytes.IndexByte([]byte("0123456789abcdef"), c))
			}
			return v
		}
		namesize, size := int(field(11)), int(field(6))
		e := entry{name: string(b[off+110 : off+110+namesize-1]), mode: field(1), size: uint64(size), rmaj: field(9), rmin: field(10)}
		off += (110 + namesize + 3) &^ 3
		e.data = string(b[off : off+size])
		off += (size + 3) &^ 3
		name := e.name
		got = append(got, e)
		if name == "TRAILER!!!" {
			if off != len(b) {
				t.Fatalf("%d bytes after trailer", len(b)-off)
			}
			break
		}
	}
	if len(got) != 3 {
		t.Fatalf("got %d entries: %+v", len(got), got)
	}
	if got[0].name != "a" || got[0].mode != TypeRegular|0o644 || got[0].data != "xyz" {
		t.Errorf("file entry = %+v", got[0])
	}
	if got[1].name != "dev/console" || got[1].mode != TypeChar|0o600 || got[1].rmaj != 5 || got[1].rmin != 1 {
		t.Errorf("device entry = %+v", got[1])
	}
}
