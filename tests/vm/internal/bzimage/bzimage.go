// Package bzimage extracts the ELF vmlinux embedded in an x86 bzImage.
//
// Booting the ELF directly through its PVH entry point skips the kernel's
// self-decompression, which under TCG (no KVM) dominates boot time because
// the XZ decoder runs in emulated code.
//
// Instead of scanning for compression magics (which can hit false
// positives inside the setup code), the payload is located through the
// boot protocol header fields payload_offset/payload_length (protocol
// 2.08+, i.e. every kernel this harness cares about).
package bzimage

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os/exec"
)

// Offsets into the real-mode setup header, see Documentation/arch/x86/boot.rst.
const (
	offSetupSects    = 0x1f1
	offHeaderMagic   = 0x202
	offVersion       = 0x206
	offPayloadOffset = 0x248
	offPayloadLength = 0x24c
)

// compression describes how to undo one of the kernel's payload encodings.
type compression struct {
	name  string
	magic []byte
	// sizeAppended: the kernel build appends the uncompressed size as a
	// little-endian uint32 after the stream (scripts/Makefile.lib
	// size_append) for every format except gzip, whose trailer already
	// carries it.
	sizeAppended bool
	// command decompresses stdin to stdout; nil means handled in Go.
	command []string
}

var compressions = []compression{
	{name: "gzip", magic: []byte{0x1f, 0x8b}},
	{name: "xz", magic: []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}, sizeAppended: true, command: []string{"xz", "-dc"}},
	{name: "zstd", magic: []byte{0x28, 0xb5, 0x2f, 0xfd}, sizeAppended: true, command: []string{"zstd", "-dcq"}},
	{name: "lzma", magic: []byte{0x5d, 0x00, 0x00}, sizeAppended: true, command: []string{"xz", "-dc", "--format=lzma"}},
	{name: "bzip2", magic: []byte{'B', 'Z', 'h'}, sizeAppended: true, command: []string{"bzip2", "-dc"}},
	{name: "lz4", magic: []byte{0x02, 0x21, 0x4c, 0x18}, sizeAppended: true, command: []string{"lz4", "-dcq"}},
}

// Payload returns the compressed kernel embedded in a bzImage and the name
// of its compression.
func Payload(bz []byte) ([]byte, string, error) {
	if len(bz) < offPayloadLength+4 {
		return nil, "", errors.New("file too short for a bzImage header")
	}
	if string(bz[offHeaderMagic:offHeaderMagic+4]) != "HdrS" {
		return nil, "", errors.New("no HdrS boot header: not a bzImage")
	}
	if v := binary.LittleEndian.Uint16(bz[offVersion:]); v < 0x208 {
		return nil, "", fmt.Errorf("boot protocol %#x predates payload fields (need 2.08)", v)
	}
	setupSects := int(bz[offSetupSects])
	if setupSects == 0 {
		setupSects = 4 // historical meaning of 0
	}
	// payload_offset is relative to the protected-mode code, which starts
	// right after the boot sector and the setup sectors.
	start := (setupSects+1)*512 + int(binary.LittleEndian.Uint32(bz[offPayloadOffset:]))
	length := int(binary.LittleEndian.Uint32(bz[offPayloadLength:]))
	if start < 0 || length <= 0 || start+length > len(bz) {
		return nil, "", fmt.Errorf("payload [%d,+%d) outside file of %d bytes", start, length, len(bz))
	}
	payload := bz[start : start+length]
	for _, c := range compressions {
		if bytes.HasPrefix(payload, c.magic) {
			return payload, c.name, nil
		}
	}
	return nil, "", fmt.Errorf("unknown payload compression (first bytes % x)", payload[:min(8, len(payload))])
}

// Extract returns the decompressed ELF vmlinux of a bzImage. It fails if
// the result is not an ELF image with a PVH entry note, since such an image
// could not be booted with qemu -kernel.
func Extract(bz []byte) ([]byte, error) {
	payload, name, err := Payload(bz)
	if err != nil {
		return nil, err
	}
	var c compression
	for _, cc := range compressions {
		if cc.name == name {
			c = cc
		}
	}
	var want uint32
	if c.sizeAppended {
		if len(payload) < 4 {
			return nil, errors.New("payload too short")
		}
		want = binary.LittleEndian.Uint32(payload[len(payload)-4:])
		payload = payload[:len(payload)-4]
	}
	var out []byte
	if c.command == nil {
		zr, err := gzip.NewReader(bytes.NewReader(payload))
		if err != nil {
			return nil, fmt.Errorf("gzip payload: %w", err)
		}
		zr.Multistream(false)
		if out, err = io.ReadAll(zr); err != nil {
			return nil, fmt.Errorf("gzip payload: %w", err)
		}
	} else {
		cmd := exec.Command(c.command[0], c.command[1:]...)
		cmd.Stdin = bytes.NewReader(payload)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if out, err = cmd.Output(); err != nil {
			return nil, fmt.Errorf("%s payload via %v: %w: %s", name, c.command, err, bytes.TrimSpace(stderr.Bytes()))
		}
	}
	if c.sizeAppended && uint32(len(out)) != want {
		return nil, fmt.Errorf("%s payload decompressed to %d bytes, header says %d", name, len(out), want)
	}
	if err := checkPVH(out); err != nil {
		return nil, err
	}
	return out, nil
}

// xenElfnotePhys32Entry is the ELF note type the PVH boot path looks for
// (XEN_ELFNOTE_PHYS32_ENTRY); qemu needs it to boot an ELF kernel directly.
const xenElfnotePhys32Entry = 18

func checkPVH(img []byte) error {
	f, err := elf.NewFile(bytes.NewReader(img))
	if err != nil {
		return fmt.Errorf("decompressed payload is not ELF: %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		notes, err := io.ReadAll(p.Open())
		if err != nil {
			return fmt.Errorf("read PT_NOTE: %w", err)
		}
		if hasNote(notes, "Xen", xenElfnotePhys32Entry) {
			return nil
		}
	}
	return errors.New("vmlinux has no PVH entry note (kernel built without CONFIG_PVH)")
}

// hasNote walks a PT_NOTE segment (namesz, descsz, type, name, desc; name
// and desc 4-byte aligned).
func hasNote(b []byte, name string, typ uint32) bool {
	align := func(n uint32) int { return int((n + 3) &^ 3) }
	for len(b) >= 12 {
		namesz := binary.LittleEndian.Uint32(b[0:])
		descsz := binary.LittleEndian.Uint32(b[4:])
		t := binary.LittleEndian.Uint32(b[8:])
		b = b[12:]
		if align(namesz) > len(b) {
			return false
		}
		n := string(bytes.TrimRight(b[:namesz], "\x00"))
		b = b[align(namesz):]
		if align(descsz) > len(b) {
			return false
		}
		b = b[align(descsz):]
		if n == name && t == typ {
			return true
		}
	}
	return false
}
