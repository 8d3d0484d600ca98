// Package cpio writes the "newc" (SVR4, no CRC) cpio format, the only
// format the Linux kernel accepts for an initramfs.
//
// The writer is deliberately minimal: it emits directories, regular files,
// symlinks and device nodes with fixed ownership and timestamps, so the
// archive is reproducible for identical inputs.
package cpio

import (
	"fmt"
	"io"
	"strings"
)

// File-type bits of the mode field (the same values as S_IF* in stat(2)).
const (
	TypeDir     = 0o040000
	TypeRegular = 0o100000
	TypeSymlink = 0o120000
	TypeChar    = 0o020000
)

// headerSize is the fixed part of a newc header: the 6-byte magic followed
// by 13 eight-digit hexadecimal fields.
const headerSize = 6 + 13*8

// trailerName marks the end of an archive.
const trailerName = "TRAILER!!!"

// Writer appends entries to an underlying stream.
type Writer struct {
	w      io.Writer
	n      int64 // bytes written so far, to compute alignment padding
	ino    uint32
	closed bool
}

// NewWriter returns a Writer that writes the archive to w.
func NewWriter(w io.Writer) *Writer {
	// Inode numbers only need to be distinct for entries without hard
	// links; start above zero because some tools treat 0 specially.
	return &Writer{w: w, ino: 1}
}

// Entry describes one archive member.
type Entry struct {
	Name  string // path inside the archive, without a leading slash
	Mode  uint32 // type bits | permission bits
	Major uint32 // device numbers, for TypeChar only
	Minor uint32
	Data  []byte // contents for regular files, target for symlinks
}

// Dir adds a directory.
func (cw *Writer) Dir(name string, perm uint32) error {
	return cw.Write(Entry{Name: name, Mode: TypeDir | perm})
}

// File adds a regular file.
func (cw *Writer) File(name string, perm uint32, data []byte) error {
	return cw.Write(Entry{Name: name, Mode: TypeRegular | perm, Data: data})
}

// Symlink adds a symbolic link pointing at target.
func (cw *Writer) Symlink(name, target string) error {
	return cw.Write(Entry{Name: name, Mode: TypeSymlink | 0o777, Data: []byte(target)})
}

// CharDev adds a character device node.
func (cw *Writer) CharDev(name string, perm, major, minor uint32) error {
	return cw.Write(Entry{Name: name, Mode: TypeChar | perm, Major: major, Minor: minor})
}

// Write adds one entry.
func (cw *Writer) Write(e Entry) error {
	if cw.closed {
		return fmt.Errorf("cpio: write %q after close", e.Name)
	}
	name := strings.TrimPrefix(e.Name, "/")
	if name == "" {
		return fmt.Errorf("cpio: empty entry name")
	}
	nlink := uint32(1)
	if e.Mode&0o170000 == TypeDir {
		nlink = 2
	}
	cw.ino++
	return cw.emit(name, cw.ino, e.Mode, nlink, e.Major, e.Minor, e.Data)
}

// Close writes the trailer entry. It does not close the underlying writer.
func (cw *Writer) Close() error {
	if cw.closed {
		return nil
	}
	cw.closed = true
	return cw.emit(trailerName, 0, 0, 1, 0, 0, nil)
}

func (cw *Writer) emit(name string, ino, mode, nlink, major, minor uint32, data []byte) error {
	// Field order of the newc header: ino mode uid gid nlink mtime filesize
	// devmajor devminor rdevmajor rdevminor namesize check.
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, major, minor, len(name)+1, 0)
	if len(hdr) != headerSize {
		return fmt.Errorf("cpio: %q: field overflow in header", name)
	}
	if err := cw.put([]byte(hdr)); err != nil {
		return err
	}
	// The name is NUL-terminated, and both the header+name and the data
	// are padded to a multiple of four bytes.
	if err := cw.put(append([]byte(name), 0)); err != nil {
		return err
	}
	if err := cw.pad(); err != nil {
		return err
	}
	if err := cw.put(data); err != nil {
		return err
	}
	return cw.pad()
}

func (cw *Writer) put(b []byte) error {
	n, err := cw.w.Write(b)
	cw.n += int64(n)
	if err != nil {
		return fmt.Errorf("cpio: write: %w", err)
	}
	return nil
}

func (cw *Writer) pad() error {
	if r := cw.n % 4; r != 0 {
		return cw.put(make([]byte, 4-r))
	}
	return nil
}
