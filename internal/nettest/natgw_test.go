package nettest_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/ftpgate/ftpgate/internal/bpftest"
	"github.com/ftpgate/ftpgate/internal/nettest"
)

// TestNATRulesetOverNetlink: the ruleset built over netlink is the one its
// NFT text (and docs/nat.md) shows, as nft itself lists it, and its INVALID
// counter reads back. Where there is no nft binary (the VM guests) only the
// counter is checked.
func TestNATRulesetOverNetlink(t *testing.T) {
	if os.Geteuid() != 0 {
		bpftest.SkipOrFail(t, "network namespaces need root")
	}
	r := nettest.DefaultNATRuleset()
	tp := nettest.NewNATGateway(t, "fgw", r)
	if n, err := nettest.NATInvalid(tp.Gateway, r.Table); err != nil || n != 0 {
		t.Fatalf("INVALID counter: %d, %v", n, err)
	}
	nft, err := exec.LookPath("nft")
	if err != nil {
		t.Log("no nft binary: the listing is not compared")
		return
	}
	var out []byte
	err = nettest.Do(tp.Gateway, func() error {
		var err error
		out, err = exec.Command(nft, "list", "table", "ip", r.Table).CombinedOutput()
		return err
	})
	if err != nil {
		t.Fatalf("nft list: %v: %s", err, out)
	}
	if got := string(out); got != r.NFT() {
		t.Errorf("nft lists\n%s\nwant\n%s", got, r.NFT())
	}
	doc, err := os.ReadFile("../../docs/nat.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), r.NFT()) {
		t.Errorf("docs/nat.md lacks the VM matrix's NAT ruleset:\n%s", r.NFT())
	}
}
