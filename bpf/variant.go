package bpf

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// Variant is one build of ftpgate.c. All have the same maps and programs,
// so any loads into FtpgateObjects.
type Variant int

const (
	// Plain is the object every kernel of the matrix (5.10 and later) loads.
	Plain Variant = iota
	// NAT adds the NAT code that calls conntrack kfuncs (ct.h): kernels
	// without them, or whose conntrack BTF the verifier cannot match,
	// refuse it at load.
	NAT
	// NATOwn is the NAT object without the kfuncs that make conntrack
	// entries: the control rewrite and ftpgate's own translation of data
	// connections (natown.h), for kernels that refuse bpf_ct_set_nat_info.
	// It still looks conntrack entries up (bpf_skb_ct_lookup).
	NATOwn
)

func (v Variant) String() string {
	switch v {
	case Plain:
		return "plain"
	case NAT:
		return "nat"
	case NATOwn:
		return "nat-own"
	}
	return fmt.Sprintf("variant(%d)", int(v))
}

// LoadVariant returns the embedded CollectionSpec of v.
func LoadVariant(v Variant) (*ebpf.CollectionSpec, error) {
	switch v {
	case Plain:
		return LoadFtpgate()
	case NAT:
		return LoadFtpgateNat()
	case NATOwn:
		return LoadFtpgateNatOwn()
	}
	return nil, fmt.Errorf("no object %v", v)
}
