package bzimage

import (
	"encoding/binary"
	"os"
	"testing"
)

// fakeBzImage builds just enough of a bzImage for Payload: a setup
// header pointing at payload.
func fakeBzImage(payload []byte) []byte {
	const setupSects = 2
	b := make([]byte, (setupSects+1)*512+16)
	b[offSetupSects] = setupSects
	copy(b[offHeaderMagic:], "HdrS")
	binary.LittleEndian.PutUint16(b[offVersion:], 0x20f)
	binary.LittleEndian.PutUint32(b[offPayloadOffset:], 16)
	binary.LittleEndian.PutUint32(b[offPayloadLength:], uint32(len(payload)))
	return append(b, payload...)
}

func TestPayloadFromHeader(t *testing.T) {
	xz := append([]byte{0xfd, '7', 'z', 'X', 'Z', 0x00}, "rest"...)
	got, name, err := Payload(append(fakeBzImage(xz), "trailing"...))
	if err != nil {
		t.Fatal(err)
	}
	if name != "xz" || string(got) != string(xz) {
		t.Fatalf("Payload = %q, %q", got, name)
	}
	if _, _, err := Payload(make([]byte, 1024)); err == nil {
		t.Fatal("accepted a file without HdrS")
	}
}

func TestHasNote(t *testing.T) {
	note := func(name string, typ uint32, desc []byte) []byte {
		b := binary.LittleEndian.AppendUint32(nil, uint32(len(name)+1))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(desc)))
		b = binary.LittleEndian.AppendUint32(b, typ)
		n := append([]byte(name), 0)
		for len(n)%4 != 0 {
			n = append(n, 0)
		}
		return append(append(b, n...), desc...)
	}
	seg := append(note("GNU", 3, make([]byte, 20)), note("Xen", xenElfnotePhys32Entry, make([]byte, 4))...)
	if !hasNote(seg, "Xen", xenElfnotePhys32Entry) {
		t.Fatal("PVH note not found")
	}
	if hasNote(seg[:len(seg)-6], "Xen", xenElfnotePhys32Entry) {
		t.Fatal("found a note in a truncated segment")
	}
}

// TestExtractRealKernel runs against a real kernel named by
// VMTEST_BZIMAGE (fetch-kernel.sh exercises the same path on every fetch).
func TestExtractRealKernel(t *testing.T) {
	path := os.Getenv("VMTEST_BZIMAGE")
	if path == "" {
		t.Skip("set VMTEST_BZIMAGE to a bzImage to test extraction on a real kernel")
	}
	bz, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := Extract(bz)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d byte vmlinux", path, len(img))
}
