// Package ctread is a test-only BPF program, never part of ftpgate's
// objects: it reads a conntrack entry back with bpf_skb_ct_lookup, so the
// NAT tests check the entries the NAT object makes the way BPF sees them,
// beside what ctnetlink lists.
package ctread

// The conntrack declarations are the NAT object's own (../ct.h).
//
//go:generate go tool bpf2go -cc clang-16 -cflags "-O2 -g -Wall -Werror -nostdinc -I ../include -DFTPGATE_NAT" -target bpfel -type ct_tuple Ctread ctread.c
