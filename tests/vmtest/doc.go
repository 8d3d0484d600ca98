// Package vmtest is the end-to-end test that runs inside the VM matrix: a
// client, a gateway guarded by ftpgate and an FTP server on the namespace
// topology of internal/nettest (netlink only) and driven by a pure-Go FTP
// server and client, so that it needs no binary but its own. The NAT lab
// (natlab_test.go) does the same behind a NAT gateway whose nftables rules
// are made over netlink.
package vmtest
