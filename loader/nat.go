package loader

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/ftpgate/ftpgate/bpf"
	"github.com/ftpgate/ftpgate/maps"
)

// NATMechanism is the operator's choice of how the data connections of
// rewritten announcements reach the inside end (#12, --nat-mechanism).
type NATMechanism string

// The mechanisms an operator may ask for.
const (
	// NATAuto takes conntrack entries where the kernel accepts the NAT
	// object, ftpgate's own translation elsewhere.
	NATAuto NATMechanism = "auto"
	// NATConntrack forces conntrack entries made from BPF (maps.NATCT).
	NATConntrack NATMechanism = "conntrack"
	// NATOwnTranslation forces ftpgate's own translation (maps.NATOwn).
	NATOwnTranslation NATMechanism = "own"
)

// ParseNATMechanism reads auto, conntrack or own.
func ParseNATMechanism(s string) (NATMechanism, error) {
	return parseChoice("NAT mechanism", s, NATAuto, NATConntrack, NATOwnTranslation)
}

// Mode is the mechanism the programs would run if the kernel allows it:
// auto asks for conntrack entries first.
func (m NATMechanism) Mode() maps.NATMode {
	if m == NATOwnTranslation {
		return maps.NATOwn
	}
	return maps.NATCT
}

// Object is which build of the programs a dataplane runs (bpf.Variant) and
// why the kernel refused the builds before it: the NAT object (both
// mechanisms), then the own object (ftpgate's own translation only).
type Object struct {
	Variant string `json:"variant"`
	// NATRefused is the kernel's refusal of the NAT object, condensed to
	// one line; empty when it loaded
	NATRefused string `json:"nat_refused,omitempty"`
	// NATOwnRefused is the kernel's refusal of the own object, tried only
	// where the NAT object was refused; empty when it loaded or was not tried
	NATOwnRefused string `json:"nat_own_refused,omitempty"`
}

// ErrNATUnavailable means --nat cannot be served on this kernel or build.
var ErrNATUnavailable = errors.New("NAT is not available")

// the kernel's own FTP NAT helper, what to use where ftpgate cannot NAT
const natHelperAdvice = "use the kernel's FTP NAT helper instead (modprobe nf_nat_ftp and an nftables ct helper rule for the control ports), or run without --nat"

// ResolveNAT is the one place that turns the requested NAT mode (what
// --nat and --nat-mechanism made of maps.Config.NAT, forced or auto) into
// the mechanism in effect with obj: auto takes conntrack entries where the
// NAT object loaded and ftpgate's own translation where only the own
// object did; a forced mechanism is refused where its object did not load.
// NATOff stays off.
func ResolveNAT(want maps.NATMode, mech NATMechanism, obj Object) (maps.NATMode, error) {
	if want == maps.NATOff {
		return maps.NATOff, nil
	}
	if mech == "" {
		mech = NATAuto
	}
	if want == maps.NATOwn {
		mech = NATOwnTranslation
	}
	ct := obj.Variant == bpf.NAT.String()
	own := ct || obj.Variant == bpf.NATOwn.String()
	why := func(refused string) string {
		if refused == "" {
			return "the object is not loaded"
		}
		return refused
	}
	switch {
	case mech == NATOwnTranslation && own:
		return maps.NATOwn, nil
	case mech == NATOwnTranslation:
		return 0, fmt.Errorf("%w: --nat-mechanism own: this kernel refused the NAT objects (own translation: %s); %s", ErrNATUnavailable, why(obj.NATOwnRefused), natHelperAdvice)
	case ct:
		return maps.NATCT, nil
	case mech == NATConntrack:
		return 0, fmt.Errorf("%w: --nat-mechanism conntrack: this kernel refused the conntrack NAT object (%s); %s", ErrNATUnavailable, why(obj.NATRefused), natHelperAdvice)
	case own:
		return maps.NATOwn, nil
	}
	return 0, fmt.Errorf("%w: this kernel refused the conntrack NAT object (%s) and the own-translation one (%s); %s", ErrNATUnavailable, why(obj.NATRefused), why(obj.NATOwnRefused), natHelperAdvice)
}

// natSpec gives the spec of a NAT object (bpf.NAT, bpf.NATOwn); tests
// replace it to make the kernel refuse an object for real.
var natSpec = bpf.LoadVariant

// natProbeProgram is the NAT objects' program that calls every conntrack
// kfunc the object calls and no map (bpf/natct.h, bpf/natown.h): verified
// alone first, it gives a kernel's refusal in a fraction of the time the
// whole object takes.
const natProbeProgram = "ftpgate_nat_probe"

// natProbe verifies the probe program of the NAT spec alone, and removes
// it from the spec (it is never attached).
func natProbe(spec *ebpf.CollectionSpec) error {
	ps, ok := spec.Programs[natProbeProgram]
	if !ok {
		return fmt.Errorf("the NAT object has no program %s", natProbeProgram)
	}
	delete(spec.Programs, natProbeProgram)
	prog, err := ebpf.NewProgram(ps)
	if err != nil {
		return err
	}
	return prog.Close()
}

// kfuncs holds the conntrack kfuncs the NAT object calls, so that a
// refusal can name the one at fault (bpf/ct.h declares them).
var kfuncName = regexp.MustCompile(`bpf_(skb_ct_lookup|skb_ct_alloc|ct_insert_entry|ct_release|ct_set_timeout|ct_set_nat_info)`)

// NATRefusal condenses the kernel's (or the library's) refusal of the NAT
// object to one line that names the missing feature.
func NATRefusal(err error) string {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		line := lastLogLine(ve.Log)
		if k := kfuncName.FindString(line); k != "" {
			return fmt.Sprintf("%s rejected by this kernel's verifier: %s", k, line)
		}
		return "verifier: " + line
	}
	msg := err.Error()
	if errors.Is(err, ebpf.ErrNotSupported) {
		if k := kfuncName.FindString(msg); k != "" {
			return fmt.Sprintf("no conntrack kfunc %s in the kernel's BTF (they need Linux 6.1 and nf_conntrack and nf_nat loaded, with BTF)", k)
		}
	}
	if k := kfuncName.FindString(msg); k != "" {
		return fmt.Sprintf("%s: %s", k, msg)
	}
	return msg
}

// lastLogLine is the verifier's verdict: the last line of its log that is
// not a statistic.
func lastLogLine(log []string) string {
	for i := len(log) - 1; i >= 0; i-- {
		l := strings.TrimSpace(log[i])
		if l == "" || strings.HasPrefix(l, "processed ") || strings.HasPrefix(l, "verification time") ||
			strings.HasPrefix(l, "stack depth") || strings.HasPrefix(l, "(truncated") {
			continue
		}
		return l
	}
	return "no log"
}
