package bpf

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// Variant is one build of ftpgate.c. Both have the same maps and programs,
// so either loads into FtpgateObjects.
type Variant int

const (
	// Plain is the object every kernel of the matrix (5.10 and later) loads.
	Plain Variant = iota
	// NAT adds the NAT code that calls conntrack kfuncs (ct.h): kernels
	// without them, or whose conntrack BTF the verifier cannot match,
	// refuse it at load.
	NAT
)

func (v Variant) String() string {
	switch v {
	case Plain:
		return "plain"
	case NAT:
		return "nat"
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
	}
	return nil, fmt.Errorf("no object %v", v)
}
