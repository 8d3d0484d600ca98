// Package bench holds ftpgate's benchmarks (issue #6): per-packet cost of the
// XDP and TC programs with BPF_PROG_TEST_RUN, the cost at 1k/100k/1M table
// entries, FTP throughput through a namespace gateway against no firewall and
// nftables with the ftp conntrack helper, and an unsolicited-SYN flood.
//
// Every figure is a ratio against a baseline measured in the same process and
// the same rounds, interleaved; medians over rounds. Run with `make bench`;
// results go to stdout, out/bench/results.json and out/bench/results.md.
package bench
