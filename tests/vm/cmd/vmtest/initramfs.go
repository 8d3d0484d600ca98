package main

import (
	"bufio"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ftpgate/ftpgate/tests/vm/internal/cpio"
)

// initramfsSpec lists what goes into a guest's initramfs.
type initramfsSpec struct {
	Init       string   // static init binary, becomes /init
	Binaries   []string // test binaries, become /bin/<basename>
	ModulesDir string   // directory of uncompressed *.ko, become /lib/modules-flat/
	Busybox    string   // optional static busybox for debugging, becomes /bin/busybox
	// host files at their own paths, with the shared libraries of the
	// executables among them (hostFiles)
	HostFiles []string
}

// busyboxApplets are linked to /bin/busybox when it is included. They are
// for interactive debugging only; tests must not rely on them.
var busyboxApplets = []string{"sh", "ls", "cat", "ip", "mount", "dmesg", "ps"}

// writeInitramfs writes an uncompressed newc archive. Uncompressed because
// under TCG the guest's decompressor is slow, while qemu loads the initrd
// into guest memory at host speed.
func writeInitramfs(path string, spec initramfsSpec) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create initramfs: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close initramfs: %w", cerr)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	w := cpio.NewWriter(bw)

	dirs := map[string]bool{}
	for _, d := range []string{"bin", "dev", "proc", "sys", "tmp", "run", "var", "lib", "lib/modules-flat", "etc"} {
		if err := w.Dir(d, 0o755); err != nil {
			return err
		}
		dirs[d] = true
	}
	// The kernel opens /dev/console for init's stdio before devtmpfs is
	// mounted, so the node must exist in the archive itself.
	if err := w.CharDev("dev/console", 0o600, 5, 1); err != nil {
		return err
	}
	if err := w.Symlink("var/run", "../run"); err != nil {
		return err
	}
	if err := addFile(w, "init", spec.Init, 0o755); err != nil {
		return err
	}
	for _, b := range spec.Binaries {
		if err := addFile(w, "bin/"+filepath.Base(b), b, 0o755); err != nil {
			return err
		}
	}
	if spec.ModulesDir != "" {
		mods, err := filepath.Glob(filepath.Join(spec.ModulesDir, "*.ko"))
		if err != nil {
			return fmt.Errorf("list modules: %w", err)
		}
		sort.Strings(mods)
		for _, m := range mods {
			if err := addFile(w, "lib/modules-flat/"+filepath.Base(m), m, 0o644); err != nil {
				return err
			}
		}
	}
	if err := addHostFiles(w, spec.HostFiles, dirs); err != nil {
		return err
	}
	if spec.Busybox != "" {
		if err := addFile(w, "bin/busybox", spec.Busybox, 0o755); err != nil {
			return err
		}
		for _, a := range busyboxApplets {
			if err := w.Symlink("bin/"+a, "busybox"); err != nil {
				return err
			}
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write initramfs: %w", err)
	}
	return nil
}

func addFile(w *cpio.Writer, name, src string, perm uint32) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return w.File(name, perm, data)
}

// checkStatic rejects dynamically linked executables: the guest has no
// libc or loader, and the failure inside the VM ("no such file or
// directory" for an existing file) is confusing.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; build it with CGO_ENABLED=0", path)
		}
	}
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("%s is built for %v, the VMs are x86_64", path, f.Machine)
	}
	return nil
}

// testName is the name a binary's results are reported under.
func testName(path string) string {
	return strings.TrimSuffix(filepath.Base(path), ".test")
}
