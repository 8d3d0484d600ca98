// Package testcomp is another operator's XDP program for the tests of
// ftpgate's libxdp mode: it drops UDP to port 9 and passes the rest.
package testcomp

//go:generate go tool bpf2go -cc clang-16 -cflags "-O2 -g -Wall -Werror -nostdinc -I ../../include" -target bpfel Testcomp testcomp.c

// Object is the compiled object, for loaders other than cilium/ebpf (the
// tests hand it to xdp-loader).
func Object() []byte { return _TestcompBytes }
