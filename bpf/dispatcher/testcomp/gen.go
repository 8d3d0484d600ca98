// Package testcomp is another operator's XDP program for the tests of
// ftpgate's libxdp mode: it drops UDP to port 9 and passes the rest.
package testcomp

//go:generate go tool bpf2go -cc clang-16 -cflags "-O2 -g -Wall -Werror -nostdinc -I ../../include" -target bpfel Testcomp testcomp.c
