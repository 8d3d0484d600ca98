package loader

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/cilium/ebpf/link"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
)

// behindBack removes, without ftpgate, fg0's TC ingress program and fg1's
// XDP program, as an operator's `tc filter del` or `bpftool link detach` would.
func behindBack(t *testing.T, env *testEnv, tc TCMode) {
	t.Helper()
	detachLink := func(pin string) error {
		l, err := link.LoadPinnedLink(pin, nil)
		if err != nil {
			return err
		}
		defer l.Close()
		return l.Detach()
	}
	must(t, inNetns(env.ns, func() error {
		lk, err := netlink.LinkByName("fg0")
		if err != nil {
			return err
		}
		if tc == TCNetlink {
			err = netlink.FilterDel(tcFilter(lk.Attrs().Index, tcHooks[0], nil))
		} else {
			err = detachLink(linkPin(env.pinDir, "fg0", "tcx-ingress"))
		}
		if err != nil {
			return err
		}
		return detachLink(linkPin(env.pinDir, "fg1", "xdp"))
	}))
}

// TestStatusAsksTheKernel: status reports what the kernel has attached, not
// what the state file and the pins say.
func TestStatusAsksTheKernel(t *testing.T) {
	for _, tc := range tcModes(t) {
		t.Run(string(tc), func(t *testing.T) {
			env := newEnv(t)
			dp := env.start(t, env.options(XDPGeneric, tc))
			c0 := &Collector{Dataplane: dp, Log: slog.New(slog.DiscardHandler)}
			if got := gauge(t, c0, "ftpgate_attach_info", "iface"); got["fg0"] != 1 || got["fg1"] != 1 {
				t.Errorf("ftpgate_attach_info before = %v, want 1 for fg0 and fg1", got)
			}
			behindBack(t, env, tc)
			st, err := ReadStatus(env.pinDir, env.states, "")
			must(t, err)
			got := map[string][2]bool{}
			for _, i := range st.Ifaces {
				got[i.Name] = [2]bool{i.XDPAttached, i.TCAttached}
			}
			if want := map[string][2]bool{"fg0": {true, false}, "fg1": {false, true}}; got["fg0"] != want["fg0"] || got["fg1"] != want["fg1"] {
				t.Errorf("status (xdp, tc attached) = %v, want %v", got, want)
			}
			if err := st.Check(); err == nil || !strings.Contains(err.Error(), "missing") {
				t.Errorf("Check = %v, want a missing program", err)
			}
			c := &Collector{Dataplane: dp, Log: slog.New(slog.DiscardHandler)}
			if got := gauge(t, c, "ftpgate_attach_info", "iface"); got["fg0"] != 0 || got["fg1"] != 0 {
				t.Errorf("ftpgate_attach_info = %v, want 0 for fg0 and fg1", got)
			}
		})
	}
}

// gauge scrapes c and returns metric name's values by the label key.
func gauge(t *testing.T, c *Collector, name, key string) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	must(t, reg.Register(c))
	families, err := reg.Gather()
	must(t, err)
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			v := m.GetGauge().GetValue()
			if m.GetCounter() != nil {
				v = m.GetCounter().GetValue()
			}
			for _, l := range m.GetLabel() {
				if l.GetName() == key {
					out[l.GetValue()] = v
				}
			}
		}
	}
	return out
}
