package loader

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ftpgate/ftpgate/bpf"
	"github.com/ftpgate/ftpgate/internal/nettest"
	"github.com/ftpgate/ftpgate/maps"
)

// admissionAt checks where the admission runs on every test interface: with
// AdmitTC, ftpgate_tc_admit ahead of the parser at TC ingress and no XDP
// program of ftpgate; with AdmitXDP, ftpgate_xdp and the parser alone at
// ingress.
func (e *testEnv) admissionAt(t *testing.T, hook AdmitHook, mode TCMode, progs map[string]uint32) {
	t.Helper()
	want := []uint32{progs["ftpgate_tc_ingress"]}
	if hook == AdmitTC {
		want = []uint32{progs["ftpgate_tc_admit"], progs["ftpgate_tc_ingress"]}
	}
	e.eachLink(t, func(name string, lk netlink.Link) error {
		x := lk.Attrs().Xdp
		ours := x != nil && x.Attached && x.ProgId == progs["ftpgate_xdp"]
		if ours != (hook == AdmitXDP) {
			return fmt.Errorf("%s: ftpgate's XDP program attached %v with --admit-hook %s", name, ours, hook)
		}
		var got []uint32
		if mode == TCX {
			res, err := link.QueryPrograms(link.QueryOptions{Target: lk.Attrs().Index, Attach: ebpf.AttachTCXIngress})
			if err != nil {
				return err
			}
			for _, p := range res.Programs {
				got = append(got, uint32(p.ID))
			}
		} else {
			filters, err := netlink.FilterList(lk, netlink.HANDLE_MIN_INGRESS)
			if err != nil {
				return err
			}
			// the kernel lists them in the order it runs them: by priority
			for _, f := range filters {
				if bf, ok := f.(*netlink.BpfFilter); ok {
					got = append(got, uint32(bf.Id))
				}
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("%s: %s ingress runs programs %v, want %v (admit %d, parser %d)", name, mode, got, want,
				progs["ftpgate_tc_admit"], progs["ftpgate_tc_ingress"])
		}
		return nil
	})
}

// TestAdmitHookTC: --admit-hook tc puts the admission first at TC ingress
// with either mechanism and no XDP program; a restart swaps it in place
// and keeps the state; restarts switch between the hooks with nothing of
// the other left; detach removes all.
func TestAdmitHookTC(t *testing.T) {
	for _, tc := range tcModes(t) {
		t.Run(string(tc), func(t *testing.T) {
			env := newEnv(t)
			opts := env.options(XDPGeneric, tc)
			opts.AdmitHook = AdmitTC
			dp := env.start(t, opts)
			for _, ifc := range dp.State.Ifaces {
				if ifc.AdmitHook != AdmitTC || ifc.XDPMode != "" || ifc.TCMode != tc {
					t.Errorf("%s recorded admit=%s xdp=%q tc=%s, want tc, none, %s", ifc.Name, ifc.AdmitHook, ifc.XDPMode, ifc.TCMode, tc)
				}
			}
			env.admissionAt(t, AdmitTC, tc, progIDs(t, env.pinDir))
			ek := bpf.FtpgateExpectKey{Family: unix.AF_INET, Dport: 30000, Src: [4]uint32{0x0a0200c0}, Dst: [4]uint32{0x146433c6}}
			ev := bpf.FtpgateExpectVal{ExpiresNs: ^uint64(0) >> 1, CreatedNs: 1, Kind: uint8(maps.KindPasv)}
			must(t, dp.Maps.Expectations.Put(ek, ev))
			oldProgs, oldLinks := progIDs(t, env.pinDir), linkIDs(t, env.pinDir)
			must(t, dp.Close())

			// the same hook again: swapped in place
			dp = env.start(t, opts)
			var got bpf.FtpgateExpectVal
			if err := dp.Maps.Expectations.Lookup(ek, &got); err != nil {
				t.Fatalf("expectation lost across restart: %v", err)
			}
			progs := progIDs(t, env.pinDir)
			if progs["ftpgate_tc_admit"] == oldProgs["ftpgate_tc_admit"] {
				t.Errorf("ftpgate_tc_admit still program %d: not swapped", progs["ftpgate_tc_admit"])
			}
			for name, id := range linkIDs(t, env.pinDir) {
				if oldLinks[name] != id {
					t.Errorf("link %s changed id %d -> %d: recreated instead of updated", name, oldLinks[name], id)
				}
			}
			env.admissionAt(t, AdmitTC, tc, progs)
			st, err := ReadStatus(env.pinDir, env.states, "")
			must(t, err)
			must(t, st.Check())
			must(t, dp.Close())

			// to XDP and back
			for _, hook := range []AdmitHook{AdmitXDP, AdmitTC} {
				opts.AdmitHook = hook
				dp = env.start(t, opts)
				if err := dp.Maps.Expectations.Lookup(ek, &got); err != nil {
					t.Fatalf("expectation lost switching to %s: %v", hook, err)
				}
				env.admissionAt(t, hook, tc, progIDs(t, env.pinDir))
				st, err := ReadStatus(env.pinDir, env.states, "")
				must(t, err)
				must(t, st.Check())
				must(t, dp.Close())
			}
			must(t, Detach(env.pinDir, env.states, "", nil))
			env.nothingLeft(t)
		})
	}
}

// TestTCAdmissionBesideForeignXDP: a program that is not ftpgate's holds
// the XDP hook; --admit-hook xdp is refused, --admit-hook tc attaches
// beside it and leaves it attached through run and detach.
func TestTCAdmissionBesideForeignXDP(t *testing.T) {
	env := newEnv(t)
	foreign := env.holdXDP(t)
	foreignStays := func(when string) {
		t.Helper()
		must(t, inNetns(env.ns, func() error {
			lk, err := netlink.LinkByName("fg0")
			if err != nil {
				return err
			}
			if x := lk.Attrs().Xdp; x == nil || !x.Attached || ebpf.ProgramID(x.ProgId) != foreign {
				return fmt.Errorf("%s: fg0's XDP program is %+v, want the foreign %d", when, x, foreign)
			}
			return nil
		}))
	}

	if _, err := Start(env.options(XDPGeneric, TCAuto)); !errors.Is(err, ErrXDPBusy) {
		t.Fatalf("start with the XDP hook: %v, want ErrXDPBusy", err)
	}
	opts := env.options(XDPGeneric, TCAuto)
	opts.AdmitHook = AdmitTC
	dp, err := Start(opts)
	if err != nil {
		t.Fatalf("start with the TC hook beside a foreign XDP program: %v", err)
	}
	foreignStays("after start")
	st, err := ReadStatus(env.pinDir, env.states, "")
	must(t, err)
	must(t, st.Check())
	must(t, dp.Close())
	must(t, Detach(env.pinDir, env.states, "", nil))
	foreignStays("after detach")
}

// TestReattachRecreatedInterfaceTCAdmission: with --admit-hook tc the link
// watcher gives a re-created interface its TC admission back, first at
// ingress and with no XDP program, and a SYN to an unexpected port that
// arrives on it is dropped and counted there.
func TestReattachRecreatedInterfaceTCAdmission(t *testing.T) {
	env := newEnv(t)
	opts := env.options(XDPGeneric, TCAuto)
	opts.AdmitHook = AdmitTC
	dp := env.start(t, opts)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	must(t, dp.Watch(ctx))
	old := env.ifindexes(t)

	env.deleteVeth(t)
	env.addVeth(t)
	must(t, nettest.Poll(reattachWait, func() error {
		st, err := ReadStatus(env.pinDir, env.states, "")
		if err != nil {
			return err
		}
		for _, i := range st.Ifaces {
			if i.IndexSeen == old[i.Name] {
				return fmt.Errorf("%s not re-created yet", i.Name)
			}
		}
		return st.Check()
	}))
	env.admissionAt(t, AdmitTC, dp.Ifaces()[0].TCMode, progIDs(t, env.pinDir))

	before := counter(t, dp, "syn_drop_unexpected")
	env.sendSYN(t, "fg1")
	must(t, nettest.Poll(reattachWait, func() error {
		if n := counter(t, dp, "syn_drop_unexpected"); n <= before {
			return fmt.Errorf("syn_drop_unexpected = %d, want > %d", n, before)
		}
		return nil
	}))
}

// TestAdmitHookTCSwitchesMechanism: a restart from netlink to TCX and back
// with --admit-hook tc ends with the admission and the parser on the new
// mechanism alone; the old ones go only after the new ones are attached
// (retireTC; review of #14, finding 2).
func TestAdmitHookTCSwitchesMechanism(t *testing.T) {
	if !HaveTCX() {
		t.Skip("no TCX on this kernel: one TC mechanism only")
	}
	env := newEnv(t)
	opts := env.options(XDPGeneric, TCNetlink)
	opts.AdmitHook = AdmitTC
	must(t, env.start(t, opts).Close())
	for _, mode := range []TCMode{TCX, TCNetlink} {
		opts.TCMode = mode
		dp := env.start(t, opts)
		progs := progIDs(t, env.pinDir)
		env.admissionAt(t, AdmitTC, mode, progs)
		other := TCX
		if mode == TCX {
			other = TCNetlink
		}
		// nothing of ftpgate's left on the other mechanism
		env.eachLink(t, func(name string, lk netlink.Link) error {
			if other == TCX {
				res, err := link.QueryPrograms(link.QueryOptions{Target: lk.Attrs().Index, Attach: ebpf.AttachTCXIngress})
				if err != nil {
					return err
				}
				if len(res.Programs) != 0 {
					return fmt.Errorf("%s: %d TCX programs left after the switch to %s", name, len(res.Programs), mode)
				}
				return nil
			}
			filters, err := netlink.FilterList(lk, netlink.HANDLE_MIN_INGRESS)
			if err != nil {
				return err
			}
			if len(filters) != 0 {
				return fmt.Errorf("%s: %d clsact ingress filters left after the switch to %s", name, len(filters), mode)
			}
			return nil
		})
		st, err := ReadStatus(env.pinDir, env.states, "")
		must(t, err)
		must(t, st.Check())
		must(t, dp.Close())
	}
	must(t, Detach(env.pinDir, env.states, "", nil))
	env.nothingLeft(t)
}
