package bpftest

import (
	"strings"

	"golang.org/x/sys/unix"
)

// NATRefusal is what the VM matrix measured each kernel to say about the
// NAT object (the conntrack kfuncs of bpf/ct.h), condensed as the loader
// reports it: empty where the object loads. Tests assert it instead of
// skipping on a refusal, so that a kernel changing its mind fails a test.
// docs/nat.md, "Data connections and kernels", has the same table.
func NATRefusal() (release, refusal string) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", ""
	}
	release = unix.ByteSliceToString(u.Release[:])
	for _, k := range natRefusing {
		if strings.HasPrefix(release, k.release) {
			return release, k.refusal
		}
	}
	return release, ""
}

// natRefusing: kernels of the matrix that refuse the NAT object, by the
// start of their release, with a part of the loader's condensed reason.
var natRefusing = []struct{ release, refusal string }{
	// Debian's modules carry no BTF: no kfunc to resolve
	{"5.10.", "no conntrack kfunc"},
	// nf_conntrack.ko's BTF has private copies of struct nf_conn
	{"7.3.4+deb", "rejected by this kernel's verifier"},
}
