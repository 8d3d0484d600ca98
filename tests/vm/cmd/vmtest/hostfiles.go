package main

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ftpgate/ftpgate/tests/vm/internal/cpio"
)

// hostFiles expands --host-files: each pattern (a path or a glob) names host
// files that go into the guest at the same path; a dynamically linked
// executable brings its shared libraries and their loader, as ldd lists
// them, so a Debian tool (xdp-loader) runs in the guest unchanged.
func hostFiles(patterns []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, pat := range patterns {
		matches, err := filepath.Glob(pat)
		if err != nil {
			return nil, fmt.Errorf("--host-files %q: %w", pat, err)
		}
		if len(matches) == 0 {
			return nil, fmt.Errorf("--host-files %q: no such file on this host", pat)
		}
		for _, m := range matches {
			add(m)
			libs, err := sharedLibraries(m)
			if err != nil {
				return nil, err
			}
			for _, l := range libs {
				add(l)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// sharedLibraries is the closure ldd prints for a dynamically linked ELF
// executable (the libraries and the interpreter); nothing for other files.
func sharedLibraries(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, nil // not ELF: a data file
	}
	dynamic := false
	for _, p := range f.Progs {
		dynamic = dynamic || p.Type == elf.PT_INTERP
	}
	f.Close()
	if !dynamic {
		return nil, nil
	}
	out, err := exec.Command("ldd", path).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", path, err)
	}
	var libs []string
	for _, line := range strings.Split(string(out), "\n") {
		// "libbpf.so.1 => /lib/x86_64-linux-gnu/libbpf.so.1 (0x...)" or
		// "/lib64/ld-linux-x86-64.so.2 (0x...)"; vdso has no file
		fields := strings.Fields(line)
		for _, f := range fields {
			if strings.HasPrefix(f, "/") {
				libs = append(libs, f)
				break
			}
		}
	}
	return libs, nil
}

// addHostFiles writes each host file at its own path, creating parent
// directories the archive lacks (dirs holds those already written). A
// symlink on the host is written as the file it points to.
func addHostFiles(w *cpio.Writer, files []string, dirs map[string]bool) error {
	for _, f := range files {
		name := strings.TrimPrefix(filepath.Clean(f), "/")
		var parents []string
		for d := filepath.Dir(name); d != "." && !dirs[d]; d = filepath.Dir(d) {
			parents = append(parents, d)
		}
		for i := len(parents) - 1; i >= 0; i-- {
			if err := w.Dir(parents[i], 0o755); err != nil {
				return err
			}
			dirs[parents[i]] = true
		}
		st, err := os.Stat(f)
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		if err := addFile(w, name, f, uint32(st.Mode().Perm())); err != nil {
			return err
		}
	}
	return nil
}
