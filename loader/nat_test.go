package loader

import (
	"errors"
	"strings"
	"testing"

	"github.com/ftpgate/ftpgate/bpf"
	"github.com/ftpgate/ftpgate/maps"
)

// TestResolveNAT: the mechanism in effect per request and object; every
// refusal is one line naming what is missing and what to use instead.
func TestResolveNAT(t *testing.T) {
	natObj := Object{Variant: bpf.NAT.String()}
	plainObj := Object{Variant: bpf.Plain.String(), NATRefused: "no conntrack kfunc bpf_skb_ct_alloc in the kernel's BTF"}
	for _, tc := range []struct {
		want    maps.NATMode
		mech    NATMechanism
		obj     Object
		got     maps.NATMode
		refusal string // a part of the error, "" for none
	}{
		{maps.NATOff, NATAuto, plainObj, maps.NATOff, ""},
		{maps.NATOff, NATOwnTranslation, natObj, maps.NATOff, ""},
		{maps.NATCT, NATAuto, natObj, maps.NATCT, ""},
		{maps.NATCT, NATConntrack, natObj, maps.NATCT, ""},
		{maps.NATCT, "", natObj, maps.NATCT, ""},
		{maps.NATCT, NATAuto, plainObj, 0, "refused the conntrack NAT object (no conntrack kfunc bpf_skb_ct_alloc"},
		{maps.NATCT, NATConntrack, plainObj, 0, "refused the conntrack NAT object"},
		{maps.NATOwn, NATOwnTranslation, natObj, 0, "own (ftpgate translating data connections itself) is not built yet"},
	} {
		got, err := ResolveNAT(tc.want, tc.mech, tc.obj)
		if tc.refusal == "" {
			if err != nil || got != tc.got {
				t.Errorf("%v %q %v: %v %v, want %v", tc.want, tc.mech, tc.obj, got, err, tc.got)
			}
			continue
		}
		if err == nil || !errors.Is(err, ErrNATUnavailable) || !strings.Contains(err.Error(), tc.refusal) ||
			!strings.Contains(err.Error(), "nf_nat_ftp") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v %q %v: %v, want one line with %q and the kernel helper", tc.want, tc.mech, tc.obj, err, tc.refusal)
		}
	}
}
