#!/bin/sh
# Installs the Debian packages ftpgate's build, tests and demo need, only
# when something is missing (apt-get update is slow; a warm machine skips it).
#   scripts/deps.sh test      tools for `make test` and `make demo`
#   scripts/deps.sh generate  clang-16 for `make generate` (headers are in bpf/include)
#   scripts/deps.sh headers   the Debian packages `make update-headers` copies from
#   scripts/deps.sh vm        qemu for `make vmtest`
set -eu

need=""
want() { # want BINARY PACKAGE
	command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || need="$need $2"
}
want_file() { # want_file PATH PACKAGE
	[ -e "$1" ] || need="$need $2"
}

for what in "$@"; do
	case "$what" in
	test)
		want ip iproute2
		want sysctl procps
		want bpftool bpftool
		want vsftpd vsftpd
		want curl curl
		want lftp lftp
		want nft nftables
		want conntrack conntrack
		want tcpdump tcpdump
		want ethtool ethtool
		# xdp-filter holds the XDP hook: beside --admit-hook tc (tests/e2e)
		# and named in the refusal (loader's TestXDPFilterHolderNamed)
		want xdp-filter xdp-tools
		# the FTPS lab (tests/ftpslab): its certificate, ftplib.FTP_TLS;
		# proftpd with mod_tls is extracted, not installed (tests/lab)
		want openssl openssl
		want python3 python3
		;;
	generate)
		want clang-16 clang-16
		want llvm-strip-16 llvm-16
		;;
	headers)
		want clang-16 clang-16
		want_file /usr/include/bpf/bpf_helpers.h libbpf-dev
		want_file /usr/include/linux/bpf.h linux-libc-dev
		;;
	vm)
		want qemu-system-x86_64 qemu-system-x86
		want xz xz-utils
		want zstd zstd
		# Debian's xdp-loader runs in the guests (VM_HOST_FILES): the
		# libxdp interoperability test
		want xdp-loader xdp-tools
		;;
	*)
		echo "deps.sh: unknown set '$what' (use test, generate, headers or vm)" >&2
		exit 2
		;;
	esac
done

if [ -n "$need" ]; then
	echo "deps: installing$need"
	export DEBIAN_FRONTEND=noninteractive
	# A mirror caught mid-sync fails one index (often the Contents files
	# apt-file adds) while the Packages lists are fine: the install below
	# is what decides.
	apt-get update -qq || echo "deps: apt-get update reported errors; installing from the lists it got" >&2
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
