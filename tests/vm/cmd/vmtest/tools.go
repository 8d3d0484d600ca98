package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ftpgate/ftpgate/tests/vm/internal/bzimage"
	"github.com/ftpgate/ftpgate/tests/vm/internal/kmod"
)

// cmdExtractVmlinux: vmtest extract-vmlinux -o OUT BZIMAGE
func cmdExtractVmlinux(args []string) error {
	fs := flag.NewFlagSet("extract-vmlinux", flag.ContinueOnError)
	out := fs.String("o", "", "output ELF vmlinux")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() != 1 {
		return fmt.Errorf("usage: vmtest extract-vmlinux -o OUT BZIMAGE")
	}
	bz, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("read bzImage: %w", err)
	}
	img, err := bzimage.Extract(bz)
	if err != nil {
		return fmt.Errorf("extract vmlinux from %s: %w", fs.Arg(0), err)
	}
	if err := os.WriteFile(*out, img, 0o644); err != nil {
		return fmt.Errorf("write vmlinux: %w", err)
	}
	return nil
}

// cmdCollectModules: vmtest collect-modules -tree DIR -o OUTDIR NAME...
func cmdCollectModules(args []string) error {
	fs := flag.NewFlagSet("collect-modules", flag.ContinueOnError)
	tree := fs.String("tree", "", "unpacked /lib/modules/<kver> directory")
	out := fs.String("o", "", "output directory for uncompressed .ko files")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *tree == "" || *out == "" {
		return fmt.Errorf("usage: vmtest collect-modules -tree DIR -o OUTDIR NAME [NAME]")
	}
	t, err := kmod.Open(*tree)
	if err != nil {
		return err
	}
	res, err := t.Resolve(fs.Args())
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("create module dir: %w", err)
	}
	for _, m := range res.Modules {
		if err := os.WriteFile(filepath.Join(*out, m.Name+".ko"), m.Object, 0o644); err != nil {
			return fmt.Errorf("write module %s: %w", m.Name, err)
		}
	}
	if len(res.Builtin) > 0 {
		fmt.Fprintf(os.Stderr, "collect-modules: built into the kernel, nothing to load: %s\n", strings.Join(res.Builtin, " "))
	}
	for _, u := range res.Unresolved {
		fmt.Fprintf(os.Stderr, "collect-modules: warning: soft dependency %s is not a module name (probably an alias); "+
			"add the module providing it to VMTEST_MODULES if loading fails\n", u)
	}
	return nil
}
