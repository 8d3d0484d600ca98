// Package kmod picks kernel modules out of an unpacked Debian kernel
// package so they can be loaded in a guest that has no modprobe.
//
// Dependencies come from each module's own .modinfo "depends=" field
// rather than modules.dep, because trixie packages do not ship
// modules.dep (depmod runs at install time). Modules are decompressed on
// the host so the guest can hand plain ELF objects to finit_module.
package kmod

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// suffixes a module file may carry, compressed variants last.
var suffixes = []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"}

// Normalize maps a module name to the kernel's canonical form: the kernel
// treats '-' and '_' in module names as equivalent.
func Normalize(name string) string { return strings.ReplaceAll(name, "-", "_") }

// Tree is an index of one /lib/modules/<kver> directory.
type Tree struct {
	Root    string
	files   map[string]string // normalized name -> path
	builtin map[string]bool
}

// Open indexes the modules under root.
func Open(root string) (*Tree, error) {
	t := &Tree{Root: root, files: map[string]string{}, builtin: map[string]bool{}}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if name, ok := moduleName(d.Name()); ok {
			t.files[name] = path
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index modules in %s: %w", root, err)
	}
	// modules.builtin lets us tell "built in, nothing to load" apart from
	// "does not exist in this kernel".
	if f, err := os.Open(filepath.Join(root, "modules.builtin")); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if name, ok := moduleName(filepath.Base(sc.Text())); ok {
				t.builtin[name] = true
			}
		}
	}
	return t, nil
}

func moduleName(file string) (string, bool) {
	for _, s := range suffixes {
		if strings.HasSuffix(file, s) {
			return Normalize(strings.TrimSuffix(file, s)), true
		}
	}
	return "", false
}

// Module is one resolved module, decompressed.
type Module struct {
	Name    string
	Object  []byte
	Depends []string
	Aliases []string
}

// Resolution is the outcome of Resolve.
type Resolution struct {
	Modules []Module // dependencies before their users
	Builtin []string // requested or needed, but built into the kernel
	// Unresolved lists soft dependencies that name no module file. They
	// are usually aliases (libcrc32c's "crc32c" is provided by
	// crc32c_generic or crc32c-intel); resolving aliases would mean
	// decompressing every module of the tree, so the caller reports them
	// and the user names the provider explicitly.
	Unresolved []string
}

// Resolve returns the named modules plus everything they depend on.
// Hard dependencies must exist; soft dependencies ("softdep=pre: x post: y")
// are included when they name a module file, because the guest has no
// modprobe to honour them at load time.
func (t *Tree) Resolve(names []string) (Resolution, error) {
	var res Resolution
	seen := map[string]bool{}
	var visit func(name, from string, soft bool) error
	visit = func(name, from string, soft bool) error {
		name = Normalize(name)
		if seen[name] {
			return nil
		}
		seen[name] = true
		path, ok := t.files[name]
		switch {
		case ok:
		case t.builtin[name]:
			res.Builtin = append(res.Builtin, name)
			return nil
		case soft:
			res.Unresolved = append(res.Unresolved, fmt.Sprintf("%s (softdep of %s)", name, from))
			return nil
		case from != "":
			return fmt.Errorf("module %s (needed by %s) not found under %s", name, from, t.Root)
		default:
			return fmt.Errorf("module %s not found under %s", name, t.Root)
		}
		obj, err := readModule(path)
		if err != nil {
			return err
		}
		info, err := modinfo(obj)
		if err != nil {
			return fmt.Errorf("module %s: %w", name, err)
		}
		deps := splitList(info["depends"], ",")
		for _, d := range deps {
			if err := visit(d, name, false); err != nil {
				return err
			}
		}
		for _, sd := range info["softdep"] {
			for _, w := range strings.Fields(sd) {
				if w == "pre:" || w == "post:" {
					continue
				}
				if err := visit(w, name, true); err != nil {
					return err
				}
			}
		}
		res.Modules = append(res.Modules, Module{Name: name, Object: obj, Depends: deps, Aliases: info["alias"]})
		return nil
	}
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	for _, n := range sorted {
		// NAME? is loaded where the kernel has it: crc32c_generic provides
		// libcrc32c's crc32c up to 6.13, later kernels have neither
		if opt, ok := strings.CutSuffix(n, "?"); ok {
			if _, have := t.files[Normalize(opt)]; !have {
				continue
			}
			n = opt
		}
		if err := visit(n, "", false); err != nil {
			return Resolution{}, err
		}
	}
	// A soft dependency is satisfied after all if another selected module
	// provides it as an alias (e.g. crc32c_generic: alias=crc32c).
	provided := map[string]bool{}
	for _, m := range res.Modules {
		for _, a := range m.Aliases {
			provided[Normalize(a)] = true
		}
	}
	var unresolved []string
	for _, u := range res.Unresolved {
		if !provided[strings.Fields(u)[0]] {
			unresolved = append(unresolved, u)
		}
	}
	res.Unresolved = unresolved
	return res, nil
}

func splitList(values []string, sep string) []string {
	var out []string
	for _, v := range values {
		for _, item := range strings.Split(v, sep) {
			if item != "" {
				out = append(out, item)
			}
		}
	}
	return out
}

// readModule returns the plain ELF object of a possibly compressed module.
func readModule(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read module: %w", err)
	}
	var tool []string
	switch {
	case strings.HasSuffix(path, ".ko"):
		return raw, nil
	case strings.HasSuffix(path, ".ko.gz"):
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("gunzip %s: %w", path, err)
		}
		out, err := io.ReadAll(zr)
		if err != nil {
			return nil, fmt.Errorf("gunzip %s: %w", path, err)
		}
		return out, nil
	case strings.HasSuffix(path, ".ko.xz"):
		tool = []string{"xz", "-dc"}
	case strings.HasSuffix(path, ".ko.zst"):
		tool = []string{"zstd", "-dcq"}
	}
	cmd := exec.Command(tool[0], tool[1:]...)
	cmd.Stdin = bytes.NewReader(raw)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("decompress %s with %s: %w: %s", path, tool[0], err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// modinfo reads the .modinfo section: NUL-separated "key=value" strings,
// where keys such as alias or softdep may repeat.
func modinfo(obj []byte) (map[string][]string, error) {
	f, err := elf.NewFile(bytes.NewReader(obj))
	if err != nil {
		return nil, fmt.Errorf("parse ELF: %w", err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("no .modinfo section")
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("read .modinfo: %w", err)
	}
	info := map[string][]string{}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if k, v, ok := strings.Cut(string(kv), "="); ok {
			info[k] = append(info[k], v)
		}
	}
	return info, nil
}
