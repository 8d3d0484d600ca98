package nettest

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Conntrack lists the TCP entries of the conntrack table of namespace ns
// over netlink (ctnetlink: nf_conntrack_netlink), for the family (4 or 6),
// one line each in conntrack -L's words: "src=A dst=B sport=P dport=Q"
// for the original tuple, the same for the reply tuple, then "mark=M". It
// needs no conntrack binary, so it works in the VM matrix too.
func Conntrack(ns string, family int) ([]string, error) {
	fam := netlink.InetFamily(unix.AF_INET)
	if family == 6 {
		fam = unix.AF_INET6
	}
	var out []string
	err := Do(ns, func() error {
		flows, err := netlink.ConntrackTableList(netlink.ConntrackTable, fam)
		if err != nil {
			return fmt.Errorf("list conntrack entries in %s: %w", ns, err)
		}
		for _, f := range flows {
			if f.Forward.Protocol != unix.IPPROTO_TCP {
				continue
			}
			out = append(out, fmt.Sprintf("src=%s dst=%s sport=%d dport=%d src=%s dst=%s sport=%d dport=%d mark=%d",
				f.Forward.SrcIP, f.Forward.DstIP, f.Forward.SrcPort, f.Forward.DstPort,
				f.Reverse.SrcIP, f.Reverse.DstIP, f.Reverse.SrcPort, f.Reverse.DstPort, f.Mark))
		}
		return nil
	})
	return out, err
}
