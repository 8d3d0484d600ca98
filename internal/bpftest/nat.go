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
	release, k := natMeasured()
	return release, k.refusal
}

// NATOwnRefusal is the same for the own object (bpf.NATOwn: only
// bpf_skb_ct_lookup), which the loader tries where the NAT object is
// refused: empty where it loads or is not tried.
func NATOwnRefusal() (release, refusal string) {
	release, k := natMeasured()
	return release, k.ownRefusal
}

// NATMechanism is the mechanism --nat (auto) gets on this kernel, as the
// VM matrix measured: "conntrack" (the NAT object loads), "own" (only the
// own object loads) or "" (both refused: --nat is refused).
func NATMechanism() string {
	_, k := natMeasured()
	switch {
	case k.refusal == "":
		return "conntrack"
	case k.ownRefusal == "":
		return "own"
	}
	return ""
}

// NATRun is what `run --nat --nat-mechanism mech` ("auto" or "",
// "conntrack", "own") gets on this kernel, as measured: the NAT mode the
// programs run, or maps.NATOff and a part of the loader's one-line
// refusal. The VM matrix's NAT lab runs whatever this says.
func NATRun(mech string) (release string, mode maps.NATMode, refusal string) {
	release, k := natMeasured()
	switch mech {
	case "", "auto":
		switch NATMechanism() {
		case "conntrack":
			return release, maps.NATCT, ""
		case "own":
			return release, maps.NATOwn, ""
		}
		return release, maps.NATOff, k.refusal
	case "conntrack":
		if k.refusal != "" {
			return release, maps.NATOff, k.refusal
		}
		return release, maps.NATCT, ""
	case "own":
		// the NAT object runs own translation too; the own object is
		// tried where the NAT object is refused
		if k.refusal != "" && k.ownRefusal != "" {
			return release, maps.NATOff, k.ownRefusal
		}
		return release, maps.NATOwn, ""
	}
	return release, maps.NATOff, "NAT mechanism " + mech
}

func natMeasured() (string, natKernel) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", natKernel{}
	}
	release := unix.ByteSliceToString(u.Release[:])
	for _, k := range natRefusing {
		if strings.HasPrefix(release, k.release) {
			return release, k
		}
	}
	return release, natKernel{}
}

// natKernel is a kernel of the matrix that refuses a NAT object, by the
// start of its release, with a part of the loader's condensed reason for
// each object.
type natKernel struct{ release, refusal, ownRefusal string }

// natRefusing: the kernels of the matrix that refuse the NAT object; the
// others (6.1, 6.12, and 6.18 here) load it and get conntrack entries.
var natRefusing = []natKernel{
	// Debian's modules carry no BTF: no kfunc to resolve, for either object;
	// the inside end of a masqueraded control connection is only in conntrack
	{"5.10.", "no conntrack kfunc", "no conntrack kfunc"},
	// nf_conntrack.ko's BTF has private copies of struct nf_conn, which
	// bpf_ct_set_nat_info refuses; the own object calls only
	// bpf_skb_ct_lookup and loads
	{"7.3.4+deb", "rejected by this kernel's verifier", ""},
}
