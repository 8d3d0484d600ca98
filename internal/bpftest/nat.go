package bpftest

import (
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/maps"
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

// NATMechanism is what `run --nat --nat-mechanism mech` ("auto" or "",
// "conntrack", "own") gets on this kernel, as measured: the NAT mode the
// programs run, or maps.NATOff and a part of the loader's one-line
// refusal. The VM matrix's NAT lab runs whatever this says, so a kernel
// that gains a mechanism (ftpgate's own translation, NAT_OWN) changes
// only this function.
func NATMechanism(mech string) (release string, mode maps.NATMode, refusal string) {
	release, ct := NATRefusal()
	switch mech {
	case "", "auto", "conntrack":
		if ct != "" {
			return release, maps.NATOff, ct
		}
		return release, maps.NATCT, ""
	case "own":
		return release, maps.NATOff, "is not built yet"
	}
	return release, maps.NATOff, "NAT mechanism " + mech
}

// natRefusing: kernels of the matrix that refuse the NAT object, by the
// start of their release, with a part of the loader's condensed reason.
var natRefusing = []struct{ release, refusal string }{
	// Debian's modules carry no BTF: no kfunc to resolve
	{"5.10.", "no conntrack kfunc"},
	// nf_conntrack.ko's BTF has private copies of struct nf_conn
	{"7.3.4+deb", "rejected by this kernel's verifier"},
}
