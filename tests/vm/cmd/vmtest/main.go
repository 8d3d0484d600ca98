// Command vmtest runs Go test binaries inside qemu VMs that boot real
// Debian kernels, one VM per kernel, and summarizes the results.
//
//	vmtest run --kernels "5.10 6.1 6.12 7.x" --binaries "out/vm/a.test out/vm/b.test"
//
// It also carries the helpers fetch-kernel.sh needs (extract-vmlinux,
// collect-modules) so that all binary-format handling is Go code.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "run":
		var ok bool
		ok, err = cmdRun(os.Args[2:])
		if err == nil && !ok {
			os.Exit(1)
		}
	case "extract-vmlinux":
		err = cmdExtractVmlinux(os.Args[2:])
	case "collect-modules":
		err = cmdCollectModules(os.Args[2:])
	case "initramfs":
		err = cmdInitramfs(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmtest %s: %v\n", os.Args[1], err)
		os.Exit(2)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  vmtest run [flags]                          boot the kernel matrix (see vmtest run -h)
  vmtest initramfs -o OUT -init BIN [-modules DIR] [-busybox BIN] TEST...
  vmtest extract-vmlinux -o OUT BZIMAGE       used by fetch-kernel.sh
  vmtest collect-modules -tree DIR -o OUT NAME...  used by fetch-kernel.sh
`)
	os.Exit(2)
}
