package grouplab

import (
	"fmt"
	"net"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/ftpgate/ftpgate/internal/nettest"
)

// rehash makes router ns hash what arrives on dev from its headers. A
// packet a local TCP socket sent carries the socket's random hash
// (sk_txhash), veths keep it across namespaces, and the multipath lookup
// takes an L4 hash already present instead of computing one: the client's
// and the server's random hashes would pick unrelated gateways for the two
// directions. On real links the skb is new on the router (its NIC's RSS
// hash, if the driver sets one, is what the router uses: see
// docs/group.md). A TCX ingress program that clears the hash
// (bpf_set_hash_invalid) stands for the wire.
func rehash(t testing.TB, ns, dev string) {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.SchedCLS,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.FnSetHashInvalid.Call(), // r1 is the skb
			asm.Mov.Imm(asm.R0, 0),      // TC_ACT_OK
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatalf("load the rehash program: %v", err)
	}
	var l link.Link
	err = nettest.Do(ns, func() error {
		iface, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		l, err = link.AttachTCX(link.TCXOptions{Interface: iface.Index, Program: prog, Attach: ebpf.AttachTCXIngress})
		return err
	})
	prog.Close()
	if err != nil {
		t.Fatalf("%s: attach the rehash program to %s: %v", ns, dev, fmt.Errorf("%w", err))
	}
	t.Cleanup(func() { l.Close() })
}
