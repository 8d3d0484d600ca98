package loader

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/bpf"
	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/maps"
)

// TestResolveNAT: the mechanism in effect per request and object; every
// refusal is one line naming what is missing and what to use instead.
func TestResolveNAT(t *testing.T) {
	natObj := Object{Variant: bpf.NAT.String()}
	ownObj := Object{Variant: bpf.NATOwn.String(), NATRefused: "bpf_ct_set_nat_info rejected by this kernel's verifier"}
	plainObj := Object{Variant: bpf.Plain.String(), NATRefused: "no conntrack kfunc bpf_skb_ct_alloc in the kernel's BTF",
		NATOwnRefused: "no conntrack kfunc bpf_skb_ct_lookup in the kernel's BTF"}
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
		{maps.NATOwn, NATOwnTranslation, natObj, maps.NATOwn, ""},
		{maps.NATCT, NATAuto, ownObj, maps.NATOwn, ""},
		{maps.NATOwn, NATOwnTranslation, ownObj, maps.NATOwn, ""},
		{maps.NATCT, NATConntrack, ownObj, 0, "--nat-mechanism conntrack: this kernel refused the conntrack NAT object (bpf_ct_set_nat_info rejected"},
		{maps.NATCT, NATAuto, plainObj, 0, "refused the conntrack NAT object (no conntrack kfunc bpf_skb_ct_alloc in the kernel's BTF) and the own-translation one (no conntrack kfunc bpf_skb_ct_lookup"},
		{maps.NATCT, NATConntrack, plainObj, 0, "refused the conntrack NAT object"},
		{maps.NATOwn, NATOwnTranslation, plainObj, 0, "--nat-mechanism own: this kernel refused the NAT objects (own translation: no conntrack kfunc bpf_skb_ct_lookup"},
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

// refuseKfunc makes the NAT objects that call kfunc name call one no
// kernel has in its place: the kernel refuses them at load as one without
// name would. An object that does not call name is left as it is.
func refuseKfunc(t *testing.T, name string) {
	t.Helper()
	orig := natSpec
	natSpec = func(v bpf.Variant) (*ebpf.CollectionSpec, error) {
		spec, err := orig(v)
		if err != nil {
			return nil, err
		}
		var fn *btf.Func
		if err := spec.Types.TypeByName(name, &fn); err != nil {
			return spec, nil
		}
		fn.Name += "_absent"
		return spec, nil
	}
	t.Cleanup(func() { natSpec = orig })
}

// TestNATObjectAndFallback: run loads the NAT object on this kernel and
// takes --nat as conntrack entries; when the kernel refuses the NAT object
// (bpf_ct_set_nat_info, as Debian's 7.3.4 does), run falls back to the own
// object on the same pins (state kept), records the reason for status, and
// --nat gets ftpgate's own translation; when it refuses both
// (bpf_skb_ct_lookup, as 5.10), the plain object, and --nat is refused in
// one line naming the missing kfunc and the kernel helper; a later run
// switches back.
func TestNATObjectAndFallback(t *testing.T) {
	env := newEnv(t)
	opts := env.options(XDPGeneric, TCNetlink)
	opts.Config.NAT = maps.NATOff // ask for NAT only where the kernel can
	dp := env.start(t, opts)
	if _, want := bpftest.NATRefusal(); dp.Object != (Object{Variant: "nat"}) || want != "" {
		skipUnlessNATKernel(t, dp.Object)
	}
	must(t, dp.Close())
	opts.Config.NAT = maps.NATCT
	dp = env.start(t, opts)
	cfg, err := dp.Maps.GetConfig()
	must(t, err)
	if cfg.NAT != maps.NATCT {
		t.Fatalf("config.nat = %v, want conntrack", cfg.NAT)
	}
	if st, err := env.states.Read(env.pinDir); err != nil || st.Object.Variant != "nat" {
		t.Fatalf("state records object %+v (%v), want nat", st, err)
	}
	ek := bpf.FtpgateExpectKey{Family: unix.AF_INET, Dport: 30000, Src: [4]uint32{0x0a0200c0}, Dst: [4]uint32{0x146433c6}}
	must(t, dp.Maps.Expectations.Put(ek, bpf.FtpgateExpectVal{ExpiresNs: ^uint64(0) >> 1, CreatedNs: 1, Nat: maps.NATTarget(netip.MustParseAddrPort("192.168.1.2:5000"))}))
	must(t, dp.Close())

	// a kernel refusing bpf_ct_set_nat_info: the own object, own translation
	refuseKfunc(t, "bpf_ct_set_nat_info")
	dp = env.start(t, opts)
	if dp.Object.Variant != "nat-own" || !strings.Contains(dp.Object.NATRefused, "no conntrack kfunc bpf_ct_set_nat_info") || dp.Object.NATOwnRefused != "" {
		t.Fatalf("object %+v, want nat-own with the NAT object's refusal", dp.Object)
	}
	if cfg, err := dp.Maps.GetConfig(); err != nil || cfg.NAT != maps.NATOwn {
		t.Fatalf("config.nat = %v (%v), want own", cfg.NAT, err)
	}
	must(t, dp.Close())

	// and bpf_skb_ct_lookup: the plain object, --nat refused
	refuseKfunc(t, "bpf_skb_ct_lookup")
	_, err = Start(opts)
	if !errors.Is(err, ErrNATUnavailable) || strings.Contains(err.Error(), "\n") ||
		!strings.Contains(err.Error(), "no conntrack kfunc bpf_skb_ct_lookup") || !strings.Contains(err.Error(), "nf_nat_ftp") {
		t.Fatalf("run --nat on a kernel refusing both NAT objects: %v; want one line naming the kfunc and the kernel helper", err)
	}

	opts.Config.NAT = maps.NATOff
	dp = env.start(t, opts)
	if dp.Object.Variant != "plain" || !strings.Contains(dp.Object.NATRefused, "bpf_skb_ct_lookup") || !strings.Contains(dp.Object.NATOwnRefused, "bpf_skb_ct_lookup") {
		t.Fatalf("object %+v, want plain with both refusals", dp.Object)
	}
	var ev bpf.FtpgateExpectVal
	if err := dp.Maps.Expectations.Lookup(ek, &ev); err != nil || maps.Inside(unix.AF_INET, ev.Nat).String() != "192.168.1.2:5000" {
		t.Fatalf("expectation across the switch to the plain object: %v %+v", err, ev)
	}
	st, err := ReadStatus(env.pinDir, env.states, "")
	must(t, err)
	if st.State.Object != dp.Object {
		t.Fatalf("status shows object %+v, want %+v", st.State.Object, dp.Object)
	}
	must(t, dp.Close())

	natSpec = bpf.LoadVariant
	opts.Config.NAT = maps.NATCT
	if dp = env.start(t, opts); dp.Object.Variant != "nat" {
		t.Fatalf("back on the NAT object: %+v", dp.Object)
	}
}

// skipUnlessNATKernel skips where the kernel refuses the NAT object as the
// VM matrix measured (bpftest.NATRefusal, and for the own object
// bpftest.NATOwnRefusal) and fails elsewhere.
func skipUnlessNATKernel(t *testing.T, o Object) {
	t.Helper()
	release, want := bpftest.NATRefusal()
	_, wantOwn := bpftest.NATOwnRefusal()
	variant := map[string]string{"conntrack": "nat", "own": "nat-own", "": "plain"}[bpftest.NATMechanism()]
	if want != "" && strings.Contains(o.NATRefused, want) && o.Variant == variant &&
		(wantOwn == "" && o.NATOwnRefused == "" || wantOwn != "" && strings.Contains(o.NATOwnRefused, wantOwn)) {
		t.Skipf("kernel %s refuses the NAT object, as measured: %s (own object: %q)", release, o.NATRefused, o.NATOwnRefused)
	}
	t.Fatalf("kernel %s: object %+v (measured refusal: %q)", release, o, want)
}

// TestNATRefusalIsOneLine: the two refusals the VM matrix measured, as
// the library reports them, condense to one line naming the kfunc.
func TestNATRefusalIsOneLine(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		// Debian 5.10: modules without BTF
		{fmt.Errorf("load program: %w", fmt.Errorf("kfunc %q: %w", "bpf_skb_ct_lookup", ebpf.ErrNotSupported)),
			"no conntrack kfunc bpf_skb_ct_lookup in the kernel's BTF (they need Linux 6.1 and nf_conntrack and nf_nat loaded, with BTF)"},
		// Debian 7.3.4: private copies of struct nf_conn in nf_conntrack.ko's BTF
		{fmt.Errorf("load programs: %w", &ebpf.VerifierError{Cause: unix.EINVAL, Log: []string{
			"2414: (85) call bpf_ct_set_nat_info#127541",
			"kernel function bpf_ct_set_nat_info R1 expected pointer to STRUCT nf_conn___init but R1 has a pointer to STRUCT nf_conn___init",
			"processed 42236 insns (limit 1000000) max_states_per_insn 25 total_states 2393 peak_states 940 mark_read 0", ""}}),
			"bpf_ct_set_nat_info rejected by this kernel's verifier: kernel function bpf_ct_set_nat_info R1 expected pointer to STRUCT nf_conn___init but R1 has a pointer to STRUCT nf_conn___init"},
	} {
		if got := NATRefusal(tc.err); got != tc.want {
			t.Errorf("NATRefusal(%v)\n got  %q\n want %q", tc.err, got, tc.want)
		}
	}
}

// TestMarkOwnLive: a NAT object loaded over a pinned nat_own that holds
// translations (made by the object a restart replaces) starts with
// nat_own_live set, so it keeps translating them whatever config.nat says;
// over an empty one it starts clear (packets of no translation pay no lookup).
func TestMarkOwnLive(t *testing.T) {
	if unix.Geteuid() != 0 {
		bpftest.SkipOrFail(t, "creating a map needs root")
	}
	spec, err := bpf.LoadVariant(bpf.NATOwn)
	if err != nil {
		t.Fatal(err)
	}
	own, err := ebpf.NewMap(spec.Maps[maps.NameNATOwn])
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	live := func() uint32 {
		var v uint32
		if err := spec.Variables["nat_own_live"].Get(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if err := markOwnLive(spec, own); err != nil || live() != 0 {
		t.Fatalf("empty nat_own: nat_own_live %d (%v), want 0", live(), err)
	}
	if err := own.Put(bpf.FtpgateFlowKey{Family: unix.AF_INET, Sport: 1}, bpf.FtpgateNatOwnVal{Side: 1}); err != nil {
		t.Fatal(err)
	}
	if err := markOwnLive(spec, own); err != nil || live() != 1 {
		t.Fatalf("nat_own with an entry: nat_own_live %d (%v), want 1", live(), err)
	}
}
