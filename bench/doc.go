// Package bench holds ftpgate's benchmarks (issue #6): per-packet cost of the
// XDP and TC programs with BPF_PROG_TEST_RUN, the cost at 1k/100k/1M table
// entries, FTP throughput through a namespace gateway against no firewall and
// nftables with the ftp conntrack helper, and an unsolicited-SYN flood.
// Issue #12 adds the NAT object's cost per packet against the plain object
// (BenchmarkNATPerPacket) and a NATed transfer through tests/natlab's
// gateway, ftpgate --nat against the kernel's helper (BenchmarkNATLab).
//
// Every figure is a ratio against a baseline measured in the same process and
// the same rounds, interleaved; medians over rounds. Run with `make bench`;
// results go to stdout, out/bench/results.json and out/bench/results.md.
package bench
